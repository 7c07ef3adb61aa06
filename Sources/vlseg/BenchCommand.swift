import ArgumentParser
import Foundation
import VLDistributed
import VLTensor

/// `vlseg bench ...`: performance measurements that live in the project, not in timed tests.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure performance.",
        subcommands: [
            BenchStepCommand.self, BenchInferCommand.self, GEMMBench.self, BenchAttentionCommand.self,
            BenchMLPCommand.self, BenchLinearCommand.self, BenchAllReduceCommand.self, BenchDataCommand.self,
        ])
}

struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "sgemm GFLOP/s for the shapes a ViT-B/16 at 352x352 runs (or CLIPSeg's decoder), and 1024^3.")

    enum ShapeSet: String, ExpressibleByArgument, CaseIterable {
        case vit, decoder
        var shapes: [GEMMBenchmark.Shape] { self == .vit ? GEMMBenchmark.vitShapes : GEMMBenchmark.decoderShapes }
    }

    @Option(
        help:
            "Which shapes: vit (one ViT-B/16 layer) or decoder (one CLIPSeg decoder layer, batch 4, forward and backward)."
    )
    var shapes: ShapeSet = .vit

    @Option(help: "Threads per rank (default: cores / ranks on this machine).")
    var threads: Int?

    @Option(help: "Seconds to time each shape.")
    var seconds: Double = 0.3

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    func run() throws {
        let placement = LaunchPlacement.fromEnvironment()
        ComputeThreads.set(threads ?? ComputeThreads.defaultCount(for: placement.localSize))
        let peak = FMAPeak.measure(threads: ComputeThreads.count, minSeconds: seconds)
        print(
            "OpenBLAS core \(BLAS.coreName), \(ComputeThreads.count) thread(s); "
                + String(format: "FMA peak %.1f GFLOP/s (%d-lane FMA loop)", peak, FMAPeak.lanes))
        var results: [String: Double] = [:]
        for shape in shapes.shapes {
            let g = GEMMBenchmark.measure(shape, minSeconds: seconds)
            results[shape.label] = g
            print(
                "\(shape.label.padding(toLength: 42, withPad: " ", startingAt: 0)) "
                    + String(format: "%8.1f GFLOP/s %5.0f%% of peak", g, 100 * g / max(peak, 1e-9)))
        }
        if json {
            let square = results["square 1024^3"] ?? 0
            let obj: [String: Any] = [
                "core": BLAS.coreName, "threads": ComputeThreads.count,
                "sgemm_gflops_per_s": square, "fma_peak_gflops_per_s": peak, "shapes": results,
            ]
            try printJSONLine(obj)
        }
    }
}
