import Foundation
import VLTensor
import XCTest

/// `vlseg bench step/infer` run end to end on the tiny preset and report the JSON fields.
final class BenchStepTests: XCTestCase {
    func runJSON(_ args: [String]) throws -> [String: Any] {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-bench-cache").path
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, args + ["--json"],
            environment: ProcessRunner.cleanEnvironment(["VLSEG_CACHE": cache]), timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let last = r.output.split(separator: "\n").last.map(String.init) ?? ""
        return (try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]) ?? [:]
    }

    /// `--profile` adds the per-op table; for inference (nothing records a node) the frozen ops
    /// still appear under their own names.
    func testProfileTablesNameTheOps() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-bench-cache").path
        for args in [["bench", "step", "--tuning", "decoder"], ["bench", "infer"]] {
            let r = try ProcessRunner.run(
                ProcessRunner.vlsegPath,
                args + ["--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "1", "--profile"],
                environment: ProcessRunner.cleanEnvironment(["VLSEG_CACHE": cache]), timeout: 300)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("time per op (rank 0):"), r.output)
            for op in ["linear", "attention", "layer_norm"] {
                XCTAssertNotNil(r.output.range(of: "\n  \(op) ", options: []), "\(args): no row for \(op)\n\(r.output)")
            }
        }
    }

    func testStepInferAndCachedStepReportTheirFigures() throws {
        for args in [
            [
                "bench", "step", "--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "1", "--tuning",
                "decoder",
            ],
            [
                "bench", "step", "--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "1", "--tuning",
                "decoder", "--cached",
            ],
            ["bench", "infer", "--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "1"],
        ] {
            let obj = try runJSON(args)
            for key in [
                "images_per_s", "gflops_per_s", "sgemm_gflops_per_s", "fma_peak_gflops_per_s", "mfu", "peak_rss_mb",
                "pss_mb",
            ] {
                XCTAssertGreaterThan(obj[key] as? Double ?? 0, 0, "\(args.joined(separator: " ")): \(key) in \(obj)")
            }
            let gflops = obj["gflops_per_s"] as? Double ?? 0, peak = obj["fma_peak_gflops_per_s"] as? Double ?? 0
            XCTAssertEqual(obj["mfu"] as? Double ?? 0, gflops / peak, accuracy: 1e-9, "mfu is achieved / peak")
        }
        if BF16GEMM.available {
            let bf16 = try runJSON([
                "bench", "step", "--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "1",
                "--tuning", "vlsm_dense_vl", "--precision", "bf16",
            ])
            XCTAssertEqual(bf16["precision"] as? String, "bf16", "\(bf16)")
            XCTAssertGreaterThan(bf16["images_per_s"] as? Double ?? 0, 0, "\(bf16)")
        }
        let refused = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "bench", "step", "--preset", "tiny", "--size", "64",
                "--tuning", "vlsm_dense_vl", "--cached",
            ], timeout: 120)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("cannot be cached"), refused.output)
    }

    /// Under mpirun the bench reports every rank's compute and wait, so an imbalance between ranks
    /// can be told from slow communication; `step_s` holds rank 0's timed steps. `--scaling` adds
    /// rank 0 alone, round by round, and the efficiency made of the two.
    func testTwoRanksReportEachRanksComputeAndWaitAndScaling() throws {
        guard let mpirun = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-bench-cache").path
        let r = try ProcessRunner.run(
            mpirun,
            ProcessRunner.mpirunFlags + [
                "-np", "2", ProcessRunner.vlsegPath, "bench", "step",
                "--preset", "tiny", "--size", "64", "--batch", "2", "--steps", "3", "--tuning", "decoder", "--threads",
                "1",
                "--scaling", "--rounds", "2", "--json",
            ],
            environment: ProcessRunner.cleanEnvironment(["VLSEG_CACHE": cache]), timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("per step, compute + all-reduce wait: rank 0 "), r.output)
        XCTAssertTrue(r.output.contains(", rank 1 "), r.output)
        let last = r.output.split(separator: "\n").last.map(String.init) ?? ""
        let obj = (try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]) ?? [:]
        let compute = obj["rank_compute_s"] as? [Double] ?? [], wait = obj["rank_wait_s"] as? [Double] ?? []
        let steps = obj["step_s"] as? [Double] ?? []
        XCTAssertEqual(compute.count, 2, "\(obj)")
        XCTAssertEqual(wait.count, 2, "\(obj)")
        XCTAssertEqual(steps.count, 6, "two rounds of 3 steps together: \(obj)")
        XCTAssertTrue(compute.allSatisfy { $0 > 0 } && wait.allSatisfy { $0 >= 0 }, "\(obj)")
        // Rank 0's entries are the figures the summary is made of.
        let summary =
            (obj["forward_s"] as? Double ?? 0) + (obj["backward_s"] as? Double ?? 0)
            + (obj["optimizer_s"] as? Double ?? 0)
        XCTAssertEqual(compute.first ?? 0, summary, accuracy: 1e-9)
        XCTAssertEqual(wait.first ?? 0, obj["allreduce_wait_s"] as? Double ?? -1, accuracy: 1e-9)
        XCTAssertEqual(steps.reduce(0, +), summary + (wait.first ?? 0), accuracy: 1e-6)

        XCTAssertTrue(r.output.contains("weak scaling: rank 0 alone "), r.output)
        let aloneRounds = obj["alone_round_images_per_s"] as? [Double] ?? [],
            togetherRounds = obj["together_round_images_per_s"] as? [Double] ?? []
        XCTAssertEqual(aloneRounds.count, 2, "\(obj)")
        XCTAssertEqual(togetherRounds.count, 2, "\(obj)")
        let alone = obj["alone_images_per_s"] as? Double ?? 0, perRank = obj["images_per_s"] as? Double ?? 0
        XCTAssertGreaterThan(alone, 0, "\(obj)")
        XCTAssertEqual(obj["scaling_efficiency"] as? Double ?? 0, perRank / alone, accuracy: 1e-9, "\(obj)")
        // Images over time, so the whole lies between the rounds' extremes.
        XCTAssertGreaterThanOrEqual(alone, (aloneRounds.min() ?? 0) * (1 - 1e-9), "\(obj)")
        XCTAssertLessThanOrEqual(alone, (aloneRounds.max() ?? 0) * (1 + 1e-9), "\(obj)")
        XCTAssertGreaterThanOrEqual(perRank, (togetherRounds.min() ?? 0) * (1 - 1e-9), "\(obj)")
        XCTAssertLessThanOrEqual(perRank, (togetherRounds.max() ?? 0) * (1 + 1e-9), "\(obj)")

        let single = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            ["bench", "step", "--preset", "tiny", "--size", "64", "--tuning", "decoder", "--scaling"],
            environment: ProcessRunner.cleanEnvironment(["VLSEG_CACHE": cache]), timeout: 120)
        XCTAssertNotEqual(single.status, 0)
        XCTAssertTrue(single.output.contains("run it under mpirun with at least 2 ranks"), single.output)
    }

    /// The op benches run at small shapes and report positive times for each implementation.
    func testOpBenchesReportForwardAndBackwardTimes() throws {
        let linear = try runJSON(["bench", "linear", "--rows", "64", "--in", "32", "--out", "16", "--seconds", "0.02"])
        let frozen = try runJSON([
            "bench", "linear", "--rows", "64", "--in", "32", "--out", "16", "--relu", "--frozen-input", "--seconds",
            "0.02",
        ])
        for report in [linear, frozen] {
            XCTAssertGreaterThan(report["forward_ms"] as? Double ?? 0, 0, "\(report)")
            XCTAssertGreaterThan(report["backward_gflops_per_s"] as? Double ?? 0, 0, "\(report)")
        }
        let mlp = try runJSON(["bench", "mlp", "--rows", "64", "--width", "8", "--hidden", "32", "--seconds", "0.02"])
        XCTAssertGreaterThan((mlp["blocked"] as? [String: Any])?["backward_ms"] as? Double ?? 0, 0, "\(mlp)")
        let attention = try runJSON([
            "bench", "attention", "--batch", "1", "--tokens", "20", "--width", "16", "--heads", "2", "--seconds",
            "0.02",
        ])
        XCTAssertGreaterThan((attention["blas"] as? [String: Any])?["forward_ms"] as? Double ?? 0, 0, "\(attention)")
    }
}
