import ArgumentParser
import Foundation
import VLModels
import VLTensor

/// `vlseg forward`: one forward pass, for debugging against reference implementations.
struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run CLIPSeg once and write the logits and named intermediates.",
        discussion: """
            --inputs IN.safetensors reads pixel_values [B,3,H,W] (float32) and input_ids / attention_mask [B,T] \
            (int64) and writes logits plus every intermediate (vision.hidden_states.i, decoder.*, ...) to --out. \
            This debugging path runs every vision layer so that all hidden states exist.
            """)

    @Option(help: "Model directory (Hugging Face CLIPSeg layout).")
    var model: String

    @Option(help: "safetensors file with pixel_values, input_ids and attention_mask.")
    var inputs: String

    @Option(help: "Output safetensors file.")
    var out: String

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try reportingErrors {
            threadOptions.apply()
            let m = try CLIPSegModel.load(directory: URL(fileURLWithPath: model))
            printError("model: \(m.parameters.parameterCount.grouped) parameters")
            let file = try SafeTensorsFile(path: inputs)
            let pixels = try file.tensor("pixel_values")
            let ids = try file.integers("input_ids"), mask = try file.integers("attention_mask")
            guard ids.shape.count == 2, ids.shape == mask.shape, ids.shape[0] == pixels.shape.first else {
                throw ModelLoadError.invalidConfig(file: inputs, key: "input_ids",
                                                   reason: "shape \(ids.shape) (attention_mask \(mask.shape)) does not match pixel_values \(pixels.shape)")
            }
            let t = ids.shape[1]
            let prompts = TextPrompts(inputIDs: (0..<ids.shape[0]).map { Array(ids.values[$0 * t..<($0 + 1) * t]) },
                                      attentionMask: (0..<ids.shape[0]).map { Array(mask.values[$0 * t..<($0 + 1) * t]) })
            var writer = SafeTensorsWriter()
            var seen = Set<String>()
            let observer: ForwardObserver = { name, value in
                if seen.insert(name).inserted { writer.add(name, value) }
            }
            let start = Date()
            try GradMode.withoutGradients {
                let cond = m.conditionalEmbeddings(text: prompts, trimPadding: false, observer: observer)
                _ = m.segment(pixels: pixels, conditional: cond, allVisionLayers: true, observer: observer)
                try writer.write(to: URL(fileURLWithPath: out))
            }
            print("wrote \(writer.items.count) tensors to \(out) (logits \(pixels.shape[0])x\(pixels.shape[2])x\(pixels.shape[3]), \(String(format: "%.2f", Date().timeIntervalSince(start))) s)")
        }
    }
}
