import Foundation
import Synchronization
import VLModels
import VLTensor
import VLTokenizer

// Shared machinery of the prompt-tuning methods (TuneVLSeg): where prompt tokens go in the text and
// vision sequences, the options they share, and how their tensors are initialised.

// MARK: - Sequence assembly (one differentiable copy)

/// A run of rows of one source sequence: rows `start ..< start + count` of `sources[source]`.
struct SequencePiece {
    let source: Int
    let start: Int
    let count: Int
}

/// Builds [B, T, D] by concatenating, along the sequence axis, runs of rows taken from the sources
/// ([B, Ts, D] each, or [1, Ts, D], which is shared by every batch item).
///
/// One copy forward and one scatter backward: what a slice + concat (+ expand) chain would do in
/// three copies. Rows of a source that no piece takes get a zero gradient (replaced prompt slots).
func assembleSequence(_ sources: [Tensor], _ pieces: [SequencePiece], batch: Int) -> Tensor {
    precondition(!sources.isEmpty && sources.allSatisfy { $0.rank == 3 }, "assembleSequence: sources must be [B, T, D]")
    let d = sources[0].shape[2]
    for s in sources {
        precondition(
            s.shape[2] == d && (s.shape[0] == batch || s.shape[0] == 1),
            "assembleSequence: source \(s.shape) for batch \(batch), width \(d)")
    }
    for p in pieces {
        precondition(
            p.count >= 0 && p.start >= 0 && p.start + p.count <= sources[p.source].shape[1],
            "assembleSequence: rows \(p.start)..<\(p.start + p.count) of \(sources[p.source].shape)")
    }
    let total = pieces.reduce(0) { $0 + $1.count }
    let out = Tensor(uninitialized: [batch, total, d])
    out.withUnsafeMutablePointer { po in
        for b in 0..<batch {
            var t = 0
            for p in pieces where p.count > 0 {
                let s = sources[p.source]
                let sb = s.shape[0] == 1 ? 0 : b
                s.withUnsafePointer { ps in
                    (po + (b * total + t) * d).update(from: ps + (sb * s.shape[1] + p.start) * d, count: p.count * d)
                }
                t += p.count
            }
        }
    }
    let shapes = sources.map(\.shape)
    return Tensor.record(out, inputs: sources, name: "assemble_sequence") { g, needs in
        shapes.indices.map { i -> Tensor? in
            guard needs[i] else { return nil }
            let shape = shapes[i]
            let gi = Tensor(zeros: shape)
            withTensorPointers(writing: gi, reading: g) { dst, pg in
                for b in 0..<batch {
                    var t = 0
                    for p in pieces {
                        defer { t += p.count }
                        guard p.source == i, p.count > 0 else { continue }
                        let sb = shape[0] == 1 ? 0 : b
                        let o = dst + (sb * shape[1] + p.start) * d, src = pg + (b * total + t) * d
                        for k in 0..<(p.count * d) { o[k] += src[k] }
                    }
                }
            }
            return gi
        }
    }
}

/// Where the prompt tokens of TuneVLSeg's methods sit in the two towers' sequences.
public enum PromptPlacement {
    /// CoOp-style context after BOS: `[BOS][ctx (n)][tokens 1 ..< min(maxPositions - n, L) - 1][token L-1]`,
    /// i.e. the sequence grows by n and is cut to `maxPositions` keeping its last token. The attention
    /// mask becomes `cat(ones(n), mask)[:len]` and each pooling position moves by n, capped at the last
    /// position. `context` is [1, n, Dt] (shared) or [B, n, Dt] (per image).
    public static func insertTextContext(_ sequence: TextSequence, context: Tensor, maxPositions: Int) -> TextSequence {
        let x = sequence.tokens
        let b = x.shape[0], length = x.shape[1], n = context.shape[1]
        precondition(length >= 1, "empty text sequence")
        let midEnd = max(1, min(maxPositions - n, length) - 1)
        var pieces = [SequencePiece(source: 0, start: 0, count: 1), SequencePiece(source: 1, start: 0, count: n)]
        if length >= 2 {
            pieces.append(SequencePiece(source: 0, start: 1, count: midEnd - 1))
            pieces.append(SequencePiece(source: 0, start: length - 1, count: 1))
        }
        let tokens = assembleSequence([x, context], pieces, batch: b)
        let newLength = tokens.shape[1]
        let mask = sequence.attentionMask.map { row in Array((Array(repeating: 1, count: n) + row).prefix(newLength)) }
        let pooling = sequence.poolingPositions.map { min($0 + n, newLength - 1) }
        return TextSequence(tokens: tokens, attentionMask: mask, poolingPositions: pooling)
    }

    /// Deep text prompts: rows 1 ... n of the hidden state [B, T, Dt] replaced by `context` ([1 or B, n, Dt]).
    public static func replaceTextContext(_ x: Tensor, context: Tensor) -> Tensor {
        let t = x.shape[1], n = context.shape[1]
        precondition(t >= n + 1, "text sequence of \(t) tokens has no room for \(n) prompt tokens")
        return assembleSequence(
            [x, context],
            [
                SequencePiece(source: 0, start: 0, count: 1),
                SequencePiece(source: 1, start: 0, count: n),
                SequencePiece(source: 0, start: n + 1, count: t - n - 1),
            ], batch: x.shape[0])
    }

    /// VPT: prompts ([1 or B, n, Dv]) appended after the class and patch tokens [B, T, Dv].
    public static func appendVisionPrompts(_ x: Tensor, prompts: Tensor) -> Tensor {
        assembleSequence(
            [x, prompts],
            [
                SequencePiece(source: 0, start: 0, count: x.shape[1]),
                SequencePiece(source: 1, start: 0, count: prompts.shape[1]),
            ], batch: x.shape[0])
    }

    /// Deep vision prompts: the last n rows of [B, T, Dv] replaced by `prompts` ([1 or B, n, Dv]).
    public static func replaceVisionPrompts(_ x: Tensor, prompts: Tensor) -> Tensor {
        let t = x.shape[1], n = prompts.shape[1]
        precondition(t >= n, "vision sequence of \(t) tokens has no \(n) prompt slots")
        return assembleSequence(
            [x, prompts],
            [
                SequencePiece(source: 0, start: 0, count: t - n),
                SequencePiece(source: 1, start: 0, count: n),
            ], batch: x.shape[0])
    }
}

// MARK: - Options

/// The options every prompt method declares (each method's file lists the ones it takes), and reading
/// the phrase of `init`.
enum PromptOptions {
    static let depth = TuningOption(
        "depth", .int, default: 1, help: "prompt depth D: layers 0..D-1 get prompts (1 = shallow)", minimum: 1)
    /// At least 1 for every method: with no prompt tokens a prompt method trains nothing (that is
    /// `zero_shot`), and TuneVLSeg's deep vision prompts (`x[:, -n:]`) would replace the whole sequence at
    /// n = 0. The methods' initialisers still take n = 0, which the tests use as the identity of the
    /// placement code.
    static let contextLength = TuningOption(
        "n_ctx", .int, default: 4,
        help: "prompt (context) tokens per layer (with none a prompt method trains nothing: that is zero_shot)",
        minimum: 1)
    static let crisCompatIndexing = TuningOption(
        "cris_compat_indexing", .bool, default: false,
        help: "CRIS only: deep prompts as TuneVLSeg indexes them (its published numbers), not the intended rows")

    static let newLastLayer = TuningOption(
        "new_last_layer", .bool, default: false,
        help:
            "TuneVLSeg's additive decoder head: upsample + 5x5 conv of the decoder's last features, mixed with the logits by a learnable ratio"
    )

    static func initPhrase(default phrase: String) -> TuningOption {
        TuningOption(
            "init", .string, default: .string(phrase),
            help:
                "text context initialised from this phrase's token embeddings (its token count sets n_ctx), or none for N(0, 0.02)"
        )
    }

    /// depth and n_ctx, then init for the methods whose text context a phrase can initialise.
    static func shared(initPhrase phrase: String? = nil) -> [TuningOption] {
        [depth, contextLength] + (phrase.map { [initPhrase(default: $0)] } ?? []) + [newLastLayer]
    }

    /// Sets the options every prompt method reads the same way on a newly made method.
    static func configured<Method: PromptLearner>(_ method: Method, _ options: TuningOptionValues) throws -> Method {
        method.newLastLayer = try options.bool("new_last_layer")
        return method
    }

    /// `tuning.init`: the phrase, or nil for `none` (also `random` or blank) = random initialisation.
    static func phrase(_ options: TuningOptionValues) throws -> String? {
        let text = try options.string("init").trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty || ["none", "null", "random"].contains(text.lowercased()) ? nil : text
    }
}

// MARK: - Initialisation

/// Deterministic initial values of a learner's tensors: each tensor draws from its own generator,
/// keyed by (seed, name), so values do not depend on the order tensors are created in.
struct LearnerInit {
    let seed: UInt64

    func generator(_ name: String) -> SplitMix64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in "prompt-learner/\(name)".utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return SplitMix64(seed: seed ^ h)
    }

    func normal(_ name: String, _ shape: [Int], std: Float) -> Tensor {
        var g = generator(name)
        return Tensor.randomNormal(shape, std: std, generator: &g)
    }

    func uniform(_ name: String, _ shape: [Int], bound: Float) -> Tensor {
        var g = generator(name)
        return Tensor.randomUniform(shape, low: -bound, high: bound, generator: &g)
    }

    /// PyTorch's nn.Linear default for a weight [out, in] or its bias: U(±1/√in).
    func linearDefault(_ name: String, _ shape: [Int], fanIn: Int) -> Tensor {
        uniform(name, shape, bound: 1 / Float(max(fanIn, 1)).squareRoot())
    }

    /// kaiming_normal_(nonlinearity="relu"), fan_in: N(0, √(2/in)).
    func kaimingNormal(_ name: String, _ shape: [Int]) -> Tensor {
        normal(name, shape, std: (2 / Float(max(shape[1], 1))).squareRoot())
    }

    /// xavier_uniform_ for a weight [out, in]: U(±√(6/(in+out))).
    func xavierUniform(_ name: String, _ shape: [Int]) -> Tensor {
        uniform(name, shape, bound: (6 / Float(shape[0] + shape[1])).squareRoot())
    }
}

/// The CLIP vocabulary for `tuning.init` phrases: every CLIPSeg checkpoint uses the same CLIP BPE,
/// which VLSeg bundles.
enum PromptTokenizer {
    /// Loaded on first use (49k entries), then shared.
    private static let cached = Mutex<CLIPTokenizer?>(nil)

    static func ids(of phrase: String, method: String) throws -> [Int] {
        let tokenizer = try cached.withLock { slot -> CLIPTokenizer in
            if let loaded = slot { return loaded }
            guard let dir = BundledTokenizer.directory else {
                throw TuningError.invalidOption(
                    method: method, key: "init", reason: "the bundled CLIP tokenizer is missing")
            }
            let loaded = try CLIPTokenizer(directory: dir)
            slot = loaded
            return loaded
        }
        let ids: [Int] = tokenizer.encode(phrase)
        return ids
    }
}
