import ArgumentParser
import Foundation
import VLData
import VLModels
import VLTensor
import VLTrain

/// `vlseg forward`: one forward pass, for debugging against reference implementations.
struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run CLIPSeg once and write the logits and named intermediates.",
        discussion: """
            --inputs IN.safetensors reads pixel_values [B,3,H,W] (float32) and input_ids / attention_mask [B,T] \
            (int64) and writes logits plus every intermediate (vision.hidden_states.i, decoder.*, ...) to --out. \
            This debugging path runs every vision layer so that all hidden states exist.
            --image a.png --prompt "a polyp" --out mask.png segments one image (PNG or JPEG) and writes the \
            mask (0/255, the image's own resolution); --checkpoint adds trained tensors (trainable.safetensors).
            """)

    @Option(help: "Model directory (Hugging Face CLIPSeg layout).")
    var model: String

    @Option(help: "safetensors file with pixel_values, input_ids and attention_mask.")
    var inputs: String?

    @Option(help: "An image to segment (PNG or JPEG).")
    var image: String?

    @Option(help: "The text prompt for --image.")
    var prompt: String?

    @Option(help: "Trained tensors to apply (a checkpoint directory or trainable.safetensors), for --image.")
    var checkpoint: String?

    @Option(help: "Input side for --image (the model sees size x size).")
    var size: Int = 352

    @Option(help: "Output: a safetensors file (--inputs) or a mask PNG (--image).")
    var out: String

    @Flag(help: "With --image: also write <out>.overlay.png.")
    var overlay = false

    func validate() throws {
        guard (inputs == nil) != (image == nil) else { throw ValidationError("give either --inputs or --image") }
        if image != nil && prompt == nil { throw ValidationError("--image needs --prompt") }
    }

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        try reportingErrors {
            threadOptions.apply()
            let m = try CLIPSegModel.load(directory: URL(fileURLWithPath: model))
            printError("model: \(m.parameters.parameterCount.grouped) parameters")
            if let image, let prompt {
                try segmentImage(m, image: image, prompt: prompt)
                return
            }
            let inputs = self.inputs!
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

    /// People mode: one image, one prompt, one mask at the image's resolution.
    func segmentImage(_ m: CLIPSegModel, image: String, prompt: String) throws {
        if let checkpoint {
            // Tuning methods that add tensors need `vlseg predict` with the run's config; the decoder and
            // full fine-tuning only change existing weights, which this loads directly.
            let n = try Inference.loadTrainable(checkpoint, into: m)
            printError("applied \(n) trained tensors from \(checkpoint)")
        }
        let tokenizer = try CLIPTokenizer(directory: URL(fileURLWithPath: model))
        let rgb = try ImageIO.readImage(URL(fileURLWithPath: image))
        let pixels = rgb.resized(width: size, height: size).normalizedTensor(.imageNet).reshaped([1, 3, size, size])
        let encoding: CLIPTokenizer.Encoding = tokenizer.encode(prompt, maxLength: CLIPTokenizer.contextLength)
        let logits = GradMode.withoutGradients {
            m(pixels: pixels, text: TextPrompts(inputIDs: [encoding.inputIDs], attentionMask: [encoding.attentionMask]))
        }
        let full = logits.resized(to: (rgb.height, rgb.width), mode: .bilinear)
        let p = full.pointer
        let mask = BinaryMask(width: rgb.width, height: rgb.height, values: (0..<(rgb.width * rgb.height)).map { p[$0] > 0 ? 1 : 0 })
        try ImageIO.writeMaskPNG(mask, to: URL(fileURLWithPath: out))
        if overlay {
            let url = URL(fileURLWithPath: out).deletingPathExtension().appendingPathExtension("overlay.png")
            try ImageIO.writePNG(ImageIO.overlay(image: rgb, mask: mask), to: url)
        }
        print(String(format: "wrote %@ (%dx%d, %.1f%% foreground) for \"%@\"", out, rgb.width, rgb.height, 100 * mask.foregroundRatio, prompt))
    }
}
