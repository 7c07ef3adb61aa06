import ArgumentParser
import Foundation
import VLTensor

/// Forward and backward time of one op implementation, for the op benches' report.
private struct OpTiming {
    let label: String
    let forward: Double, backward: Double
    let forwardFlops: Double, backwardFlops: Double

    init(
        label: String, forwardFlops: Double, backwardFlops: Double, seconds: Double,
        forward: () -> Void, forwardAndBackward: () -> Void
    ) {
        self.label = label
        self.forwardFlops = forwardFlops
        self.backwardFlops = backwardFlops
        self.forward = GEMMBenchmark.bestSeconds(minSeconds: seconds, forward)
        backward = max(GEMMBenchmark.bestSeconds(minSeconds: seconds, forwardAndBackward) - self.forward, 1e-12)
    }

    func print() {
        Swift.print("  \(label)")
        Swift.print(
            String(format: "    forward   %8.3f ms  %7.1f GFLOP/s", forward * 1e3, forwardFlops / forward / 1e9))
        Swift.print(
            String(format: "    backward  %8.3f ms  %7.1f GFLOP/s", backward * 1e3, backwardFlops / backward / 1e9))
    }

    var json: [String: Any] {
        [
            "forward_ms": forward * 1e3, "backward_ms": backward * 1e3,
            "forward_gflops_per_s": forwardFlops / forward / 1e9,
            "backward_gflops_per_s": backwardFlops / backward / 1e9,
        ]
    }
}

/// The options every op bench takes (`bench attention`, `mlp`, `linear`).
struct OpBenchOptions: ParsableArguments {
    @Option(help: "Seconds to time each of forward and forward+backward.") var seconds = 1.0
    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Print one JSON object as the last line.") var json = false
    @OptionGroup var precisionOption: PrecisionOption

    /// Sets the thread count and the products' precision for the timed op.
    func apply() throws {
        threadOptions.apply()
        try precisionOption.apply()
    }
}

/// `vlseg bench attention`: multi-head attention alone, both implementations in one run.
struct BenchAttentionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Time multi-head attention (forward, backward) at one shape, sgemm per head and fused kernel.",
        discussion: """
            FLOPs count the products the op performs: forward 2 per head (scores, values), backward 5 \
            (recomputed scores, dV, dP, dQ, dK), each 2*Tq*Tk*dh. Defaults are CLIPSeg's decoder (width 64, \
            4 heads of 16) over 485 tokens at batch 4; --width 768 --heads 12 is a ViT-B/16 layer.
            """)

    @Option(help: "Batch size.") var batch = 4
    @Option(help: "Tokens (queries = keys).") var tokens = 485
    @Option(help: "Model width (heads x head size).") var width = 64
    @Option(help: "Heads.") var heads = 4
    @Flag(help: "Causal mask (as CLIP's text encoder).") var causal = false
    @OptionGroup var options: OpBenchOptions

    func run() throws {
        guard batch >= 1, tokens >= 1, heads >= 1, width >= heads, width % heads == 0 else {
            throw ValidationError("--batch, --tokens, --heads must be >= 1 and --width a multiple of --heads")
        }
        try options.apply()
        var rng = SplitMix64(seed: 3)
        let shape = [batch, tokens, width]
        let q = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let k = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let v = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let seed = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let perProduct = 2 * Double(batch) * Double(tokens) * Double(tokens) * Double(width)
        print(
            "attention \(batch) x \(tokens) tokens, width \(width), \(heads) heads of \(width / heads)\(causal ? ", causal" : ""), \(ComputeThreads.count) thread(s)"
        )
        let saved = MultiHeadAttentionKernel.current
        defer { MultiHeadAttentionKernel.current = saved }
        var report: [String: Any] = [:]
        for kernel in [MultiHeadAttentionKernel.blas, .fused] {
            MultiHeadAttentionKernel.current = kernel
            let ran = MultiHeadAttentionKernel.choice(headSize: width / heads)
            guard ran == kernel else {
                print("  \(kernel): not available for heads of \(width / heads) on this CPU")
                continue
            }
            let timing = OpTiming(
                label: "\(kernel)", forwardFlops: 2 * perProduct, backwardFlops: 5 * perProduct,
                seconds: options.seconds,
                forward: { _ = multiHeadAttention(query: q, key: k, value: v, heads: heads, causal: causal) },
                forwardAndBackward: {
                    multiHeadAttention(
                        query: q.requiringGrad(), key: k.requiringGrad(), value: v.requiringGrad(),
                        heads: heads, causal: causal
                    ).backward(seed: seed)
                })
            timing.print()
            report[kernel.rawValue] = timing.json
        }
        if options.json { try printJSONLine(report) }
    }
}

/// `vlseg bench mlp`: the two-layer ReLU MLP (CLIPSeg's decoder), composed and row-blocked.
struct BenchMLPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlp",
        abstract: "Time a two-layer ReLU MLP (forward, backward with all gradients), composed and row-blocked.",
        discussion: """
            Defaults are one CLIPSeg decoder MLP (64 -> 2048 -> 64) over 485 tokens at batch 4. FLOPs: \
            forward 2 products, backward 4 (input and weight gradients of both layers).
            """)

    @Option(help: "Rows (tokens x batch).") var rows = 4 * 485
    @Option(help: "Input and output width.") var width = 64
    @Option(help: "Hidden width.") var hidden = 2048
    @OptionGroup var options: OpBenchOptions

    func run() throws {
        guard rows >= 1, width >= 1, hidden >= 1 else {
            throw ValidationError("--rows, --width, --hidden must be >= 1")
        }
        try options.apply()
        var rng = SplitMix64(seed: 5)
        let x = Tensor.randomUniform([rows, width], low: -1, high: 1, generator: &rng)
        let w1 = Tensor.randomUniform([hidden, width], low: -0.1, high: 0.1, generator: &rng)
        let b1 = Tensor.randomUniform([hidden], low: -0.1, high: 0.1, generator: &rng)
        let w2 = Tensor.randomUniform([width, hidden], low: -0.1, high: 0.1, generator: &rng)
        let b2 = Tensor.randomUniform([width], low: -0.1, high: 0.1, generator: &rng)
        let seed = Tensor.randomUniform([rows, width], low: -1, high: 1, generator: &rng)
        let product = 2 * 2 * Double(rows) * Double(width) * Double(hidden)  // both layers
        print("MLP \(rows) rows, \(width) -> \(hidden) -> \(width), ReLU, \(ComputeThreads.count) thread(s)")
        let variants: [(String, ([Tensor]) -> Tensor)] = [
            (
                "composed (linearReLU, linear)",
                { t in linear(linearReLU(t[0], weight: t[1], bias: t[3]), weight: t[2], bias: t[4]) }
            ),
            (
                "row-blocked (mlpReLU)",
                { t in mlpReLU(t[0], fc1Weight: t[1], fc1Bias: t[3], fc2Weight: t[2], fc2Bias: t[4]) }
            ),
        ]
        var report: [String: Any] = [:]
        for (label, f) in variants {
            let inputs = [x, w1, w2, b1, b2]
            let timing = OpTiming(
                label: label, forwardFlops: product, backwardFlops: 2 * product, seconds: options.seconds,
                forward: { _ = f(inputs) },
                forwardAndBackward: { f(inputs.map { $0.requiringGrad() }).backward(seed: seed) })
            timing.print()
            report[label.hasPrefix("composed") ? "composed" : "blocked"] = timing.json
        }
        if options.json { try printJSONLine(report) }
    }
}

/// `vlseg bench linear`: one linear layer (optionally with ReLU), forward and backward.
struct BenchLinearCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linear",
        abstract: "Time one linear layer (forward, backward) at one shape.",
        discussion: """
            Defaults are a CLIPSeg decoder projection (64 -> 64 over 485 tokens at batch 4). Backward computes \
            the weight and bias gradients, and the input gradient unless --frozen-input (CLIPSeg's 768 -> 64 \
            reductions of cached vision features: --in 768 --frozen-input). FLOPs: 2 per multiply-add of \
            each product run.
            """)

    @Option(help: "Rows (tokens x batch).") var rows = 4 * 485
    @Option(name: .customLong("in"), help: "Input width.") var inWidth = 64
    @Option(name: .customLong("out"), help: "Output width.") var outWidth = 64
    @Flag(help: "Apply ReLU (the fused linear + ReLU).") var relu = false
    @Flag(help: "The input needs no gradient (features from a frozen model).") var frozenInput = false
    @OptionGroup var options: OpBenchOptions

    func run() throws {
        guard rows >= 1, inWidth >= 1, outWidth >= 1 else { throw ValidationError("--rows, --in, --out must be >= 1") }
        try options.apply()
        var rng = SplitMix64(seed: 9)
        let x = Tensor.randomUniform([rows, inWidth], low: -1, high: 1, generator: &rng)
        let w = Tensor.randomUniform([outWidth, inWidth], low: -0.1, high: 0.1, generator: &rng)
        let b = Tensor.randomUniform([outWidth], low: -0.1, high: 0.1, generator: &rng)
        let seed = Tensor.randomUniform([rows, outWidth], low: -1, high: 1, generator: &rng)
        let product = 2 * Double(rows) * Double(inWidth) * Double(outWidth)
        print(
            "linear\(relu ? " + ReLU" : "") \(rows) rows, \(inWidth) -> \(outWidth)\(frozenInput ? ", frozen input" : ""), \(ComputeThreads.count) thread(s)\(options.precisionOption.precision == .bf16 ? ", bf16 products" : "")"
        )
        let op: (Tensor, Tensor, Tensor) -> Tensor =
            relu ? { linearReLU($0, weight: $1, bias: $2) } : { linear($0, weight: $1, bias: $2) }
        let timing = OpTiming(
            label: relu ? "linearReLU" : "linear", forwardFlops: product,
            backwardFlops: (frozenInput ? 1 : 2) * product,
            seconds: options.seconds,
            forward: { _ = op(x, w, b) },
            forwardAndBackward: {
                op(frozenInput ? x : x.requiringGrad(), w.requiringGrad(), b.requiringGrad()).backward(seed: seed)
            })
        timing.print()
        if options.json { try printJSONLine(timing.json) }
    }
}
