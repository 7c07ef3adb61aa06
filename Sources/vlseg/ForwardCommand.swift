import ArgumentParser
import Foundation
import VLData
import VLModels
import VLTensor
import VLTokenizer
import VLTrain

/// `vlseg forward`: one forward pass, for debugging against reference implementations.
struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run a model (CLIPSeg or CRIS) once and write the logits and named intermediates.",
        discussion: """
            --inputs IN.safetensors reads pixel_values [B,3,H,W] (float32) and input_ids / attention_mask [B,T] \
            (int64) and writes logits plus every intermediate to --out: for CLIPSeg vision.hidden_states.i, \
            decoder.*, ... (this debugging path runs every vision layer so that all hidden states exist); for CRIS \
            vis.C3, vis.C4, vis.C5, text.word_feats, text.state, neck.out, decoder.out, proj.out, logits and the \
            other stages' outputs, under the reference fixture's names. The text is used at its given length.
            --image a.png --prompt "a polyp" --out mask.png segments one image (PNG or JPEG) and writes the \
            mask (0/255, the image's own resolution); --checkpoint adds trained tensors (trainable.safetensors).
            """)

    @Option(help: "Model directory (Hugging Face CLIPSeg layout, or a CRIS directory with model_type cris).")
    var model: String

    @Option(help: "safetensors file with pixel_values, input_ids and attention_mask.")
    var inputs: String?

    @Option(help: "An image to segment (PNG or JPEG).")
    var image: String?

    @Option(help: "The text prompt for --image.")
    var prompt: String?

    @Option(help: "Trained tensors to apply (a checkpoint directory or trainable.safetensors), for --image.")
    var checkpoint: String?

    @Option(
        help:
            "Input side for --image (the model sees size x size; default: the model directory's: a CLIPSeg processor size, else its config)."
    )
    var size: Int?

    @Option(help: "Output: a safetensors file (--inputs) or a mask PNG (--image).")
    var out: String

    @Option(
        help: ArgumentHelp(
            "With --inputs: a tuning method to run (its options as tuning.KEY=VALUE arguments; vlseg config list shows them): \(TuningMethodReference.names()).",
            valueName: "name"))
    var tuning: String?

    @Option(help: "With --tuning: the method's trainable tensors (safetensors, canonical names).")
    var trainable: String?

    @Flag(help: "With --inputs: also write loss and grad.<name> for every trainable tensor (IN holds target [B,H,W]).")
    var grads = false

    @Argument(help: "Tuning options: tuning.KEY=VALUE.")
    var tuningOptions: [String] = []

    @Flag(help: "With --image: also write <out>.overlay.png.")
    var overlay = false

    func validate() throws {
        guard (inputs == nil) != (image == nil) else { throw ValidationError("give either --inputs or --image") }
        if trainable != nil && tuning == nil { throw ValidationError("--trainable needs --tuning") }
        if let bad = tuningOptions.first(where: { !$0.hasPrefix("tuning.") || !$0.contains("=") }) {
            throw ValidationError("'\(bad)': only tuning.KEY=VALUE arguments are accepted")
        }
        if image != nil && prompt == nil { throw ValidationError("--image needs --prompt") }
    }

    @OptionGroup var threadOptions: ThreadOptions

    @OptionGroup var precisionOption: PrecisionOption

    func run() throws {
        try reportingErrors {
            threadOptions.apply()
            try precisionOption.apply()
            let m = try ModelDirectory.load(URL(fileURLWithPath: model))
            printError("model: \(m.architectureName), \(m.learnableParameterCount.grouped) parameters")
            if let image, let prompt {
                try segmentImage(m, image: image, prompt: prompt)
                return
            }
            let inputs = self.inputs!
            let file = try SafeTensorsFile(path: inputs)
            let pixels = try file.tensor("pixel_values")
            let ids = try file.integers("input_ids"), mask = try file.integers("attention_mask")
            guard ids.shape.count == 2, ids.shape == mask.shape, ids.shape[0] == pixels.shape.first else {
                throw ModelLoadError.invalidConfig(
                    file: inputs, key: "input_ids",
                    reason:
                        "shape \(ids.shape) (attention_mask \(mask.shape)) does not match pixel_values \(pixels.shape)")
            }
            let t = ids.shape[1]
            let prompts = TextPrompts(
                inputIDs: (0..<ids.shape[0]).map { Array(ids.values[$0 * t..<($0 + 1) * t]) },
                attentionMask: (0..<ids.shape[0]).map { Array(mask.values[$0 * t..<($0 + 1) * t]) })
            var trainableNames: [String] = []
            if let tuning {
                trainableNames = try installTuning(tuning, on: m)
            }
            var writer = SafeTensorsWriter()
            var seen = Set<String>()
            let observer: ForwardObserver = { name, value in
                if seen.insert(name).inserted { writer.add(name, value) }
            }
            let start = Date()
            // Every intermediate under its reference name; text at its given length.
            func forward() -> Tensor {
                if let cris = m as? CRISModel {
                    return cris(pixels: pixels, text: prompts, trimPadding: false, observer: observer)
                }
                let clipseg = m as! CLIPSegModel
                let cond = clipseg.conditionalEmbeddings(
                    text: prompts, trimPadding: false, pixels: pixels, observer: observer)
                return clipseg.segment(pixels: pixels, conditional: cond, allVisionLayers: true, observer: observer)
            }
            if grads {
                let target = try file.tensor("target")
                let logits = forward()
                guard target.count == logits.count else {
                    throw ModelLoadError.invalidConfig(
                        file: inputs, key: "target",
                        reason: "shape \(target.shape) does not match logits \(logits.shape)")
                }
                let loss = SegmentationLoss()(logits, target: target.reshaped(logits.shape))
                loss.backward()
                writer.add("loss", loss.reshaped([1]))
                for name in trainableNames {
                    writer.add("grad.\(name)", m.parameters[name].grad ?? Tensor(zeros: m.parameters[name].shape))
                }
            } else {
                _ = GradMode.withoutGradients { forward() }
            }
            try writer.write(to: URL(fileURLWithPath: out))
            print(
                "wrote \(writer.items.count) tensors to \(out) (logits \(pixels.shape[0])x\(pixels.shape[2])x\(pixels.shape[3]), \(String(format: "%.2f", Date().timeIntervalSince(start))) s)"
            )
        }
    }

    /// People mode: one image, one prompt, one mask at the image's resolution.
    func segmentImage(_ m: SegmentationModel, image: String, prompt: String) throws {
        if let checkpoint {
            // Tuning methods that add tensors need `vlseg predict` with the run's config; the decoder and
            // full fine-tuning only change existing weights, which this loads directly.
            let n = try Inference.loadTrainable(checkpoint, into: m)
            printError("applied \(n) trained tensors from \(checkpoint)")
        }
        let tokenizer = try CLIPTokenizer(directory: URL(fileURLWithPath: model))
        let rgb = try ImageIO.readImage(URL(fileURLWithPath: image))
        let preprocessing = try ImagePreprocessing.of(directory: URL(fileURLWithPath: model))
        let size = self.size ?? preprocessing.size
        try m.validateInputSize(size)
        let pixels = rgb.resized(width: size, height: size, filter: ResizeFilter(preprocessing)).normalizedTensor(
            Normalization(preprocessing)
        ).reshaped([1, 3, size, size])
        TruncationNotice.check([prompt], tokenizer: tokenizer, maxLength: CLIPTokenizer.contextLength) {
            printError($0)
        }
        let encoding: CLIPTokenizer.Encoding = tokenizer.encode(prompt, maxLength: CLIPTokenizer.contextLength)
        let logits = GradMode.withoutGradients {
            m.segmentationLogits(
                pixels: pixels,
                text: TextPrompts(inputIDs: [encoding.inputIDs], attentionMask: [encoding.attentionMask]))
        }
        let full = logits.resized(to: (rgb.height, rgb.width), mode: .bilinear)
        let values = full.withUnsafePointer { p in (0..<(rgb.width * rgb.height)).map { p[$0] > 0 ? UInt8(1) : 0 } }
        let mask = BinaryMask(width: rgb.width, height: rgb.height, values: values)
        try ImageIO.writeMaskPNG(mask, to: URL(fileURLWithPath: out))
        if overlay {
            let url = URL(fileURLWithPath: out).deletingPathExtension().appendingPathExtension("overlay.png")
            try ImageIO.writePNG(ImageIO.overlay(image: rgb, mask: mask), to: url)
        }
        print(
            String(
                format: "wrote %@ (%dx%d, %.1f%% foreground; model input %dx%d) for \"%@\"", out, rgb.width, rgb.height,
                100 * mask.foregroundRatio, size, size, prompt))
    }

    /// Installs `--tuning` with its options, loads `--trainable` values, and makes every trainable
    /// tensor a gradient leaf; returns the trainable names.
    func installTuning(_ name: String, on m: SegmentationModel) throws -> [String] {
        let resolved = try ConfigLoader(configDir: nil).load(overrides: ["tuning=\(name)"] + tuningOptions)
        let (_, names) = try RunSetup.tuning(resolved.config.tuning, seed: 0, model: m)
        if let trainable {
            let file = try SafeTensorsFile(path: trainable)
            let unknown = file.names.filter { !names.contains($0) }
            if !unknown.isEmpty {
                throw ModelLoadError.unexpectedKeys(file: trainable, keys: unknown)
            }
            let missing = names.filter { !file.contains($0) }
            if !missing.isEmpty { throw ModelLoadError.missingKeys(file: trainable, keys: missing) }
            for n in names {
                let t = try file.tensor(n)
                guard t.shape == m.parameters[n].shape else {
                    throw ModelLoadError.shapeMismatch(
                        file: trainable, key: n, expected: m.parameters[n].shape, found: t.shape)
                }
                m.parameters.set(n, t)
            }
        }
        for n in names { m.parameters.markTrainable(n) }
        printError(
            "tuning \(name): \(names.count) trainable tensors, \(names.reduce(0) { $0 + m.parameters[$1].count }.grouped) parameters"
        )
        return names
    }
}
