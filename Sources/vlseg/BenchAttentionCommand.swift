import ArgumentParser
import Foundation
import VLDistributed
import VLTensor

/// `vlseg bench attention`: the fused multi-head attention op alone, forward and forward+backward,
/// at a chosen shape (default: one CLIPSeg decoder layer at batch 4, 352x352).
struct BenchAttentionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Time multi-head attention (forward, and forward+backward) at one shape.",
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
    @Option(help: "Seconds to time each of forward and forward+backward.") var seconds = 1.0
    @Option(help: "Threads (default: cores on this machine).") var threads: Int?
    @Flag(help: "Print one JSON object as the last line.") var json = false

    func run() throws {
        guard batch >= 1, tokens >= 1, heads >= 1, width >= heads, width % heads == 0 else {
            throw ValidationError("--batch, --tokens, --heads must be >= 1 and --width a multiple of --heads")
        }
        let placement = LaunchPlacement.fromEnvironment()
        ComputeThreads.set(threads ?? ComputeThreads.defaultCount(for: placement.localSize))
        var rng = SplitMix64(seed: 3)
        let shape = [batch, tokens, width]
        let q = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let k = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let v = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let seed = Tensor.randomUniform(shape, low: -1, high: 1, generator: &rng)
        let perProduct = 2 * Double(batch) * Double(tokens) * Double(tokens) * Double(width)

        func time(_ body: () -> Void) -> Double {
            body()
            var best = Double.infinity, total = 0.0, reps = 0
            while total < seconds || reps < 3 {
                let t0 = DispatchTime.now().uptimeNanoseconds
                body()
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                best = min(best, dt)
                total += dt
                reps += 1
            }
            return best
        }
        let forward = time { _ = multiHeadAttention(query: q, key: k, value: v, heads: heads, causal: causal) }
        let both = time {
            let out = multiHeadAttention(query: q.requiringGrad(), key: k.requiringGrad(), value: v.requiringGrad(),
                                         heads: heads, causal: causal)
            out.backward(seed: seed)
        }
        let backward = max(both - forward, 1e-12)
        print("attention \(batch) x \(tokens) tokens, width \(width), \(heads) heads of \(width / heads)\(causal ? ", causal" : ""), \(ComputeThreads.count) thread(s), \(MultiHeadAttentionKernel.current)")
        print(String(format: "  forward   %8.3f ms  %7.1f GFLOP/s", forward * 1e3, 2 * perProduct / forward / 1e9))
        print(String(format: "  backward  %8.3f ms  %7.1f GFLOP/s", backward * 1e3, 5 * perProduct / backward / 1e9))
        if json {
            let obj: [String: Any] = ["forward_ms": forward * 1e3, "backward_ms": backward * 1e3,
                                      "forward_gflops_per_s": 2 * perProduct / forward / 1e9,
                                      "backward_gflops_per_s": 5 * perProduct / backward / 1e9,
                                      "kernel": "\(MultiHeadAttentionKernel.current)"]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
