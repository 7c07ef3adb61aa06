import Foundation
import XCTest

/// The `vlseg` executable: help, environment report, BLAS kernel correction, and under mpirun.
final class EnvCommandTests: XCTestCase {
    func testHelpListsCommands() throws {
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["--help"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("env"), r.output)
        XCTAssertTrue(r.output.contains("bench"), r.output)
    }

    /// `--version` names the release and the commit the binary was built from.
    func testVersionNamesTheCommit() throws {
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["--version"])
        XCTAssertEqual(r.status, 0, r.output)
        let git = try ProcessRunner.run(
            "/usr/bin/env", ["git", "-C", ProcessRunner.repoRoot.path, "rev-parse", "--short=12", "HEAD"])
        guard git.status == 0 else { throw XCTSkip("not a git checkout: \(git.output)") }
        let head = git.output.trimmingCharacters(in: .whitespacesAndNewlines)
        // The binary was built from HEAD, possibly with local changes ("-modified").
        XCTAssertTrue(r.output.hasPrefix("0.1.0 (commit \(head)"), "\(r.output) vs HEAD \(head)")
    }

    func testEnvReportsFastKernelsFromACleanEnvironment() throws {
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["env"])
        XCTAssertEqual(r.status, 0, r.output)
        for key in ["vlseg", "blas core", "threads", "mpi", "rank", "cpu features"] {
            XCTAssertTrue(r.output.contains(key), "missing '\(key)' in:\n\(r.output)")
        }
        XCTAssertTrue(r.output.contains("Open MPI"), r.output)
        // vlseg re-executed itself so that idle OpenBLAS threads sleep instead of spinning.
        XCTAssertTrue(
            r.output.contains("blas thread timeout  4 (set by vlseg")
                || r.output.contains("4 (set by vlseg: idle OpenBLAS threads sleep"), r.output)
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        if cpuinfo.contains(" avx2 ") {
            XCTAssertFalse(r.output.contains("Prescott"), "slow kernels with a clean environment:\n\(r.output)")
        }
        // The narrow-product kernel follows the CPU, and VLSEG_PANEL_GEMM=off is reported as such.
        let avx512 = cpuinfo.contains(" avx512f ")
        XCTAssertTrue(r.output.contains(avx512 ? "AVX-512 panel kernel" : "no AVX-512 on this CPU"), r.output)
        // The bf16 kernel follows the CPU's AVX512_BF16 flag.
        XCTAssertTrue(
            r.output.contains(
                cpuinfo.contains(" avx512_bf16 ")
                    ? "bf16 products        AVX512_BF16 kernel" : "need a CPU with AVX512_BF16"), r.output)
        let hidden = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["env"], environment: ProcessRunner.cleanEnvironment(["VLSEG_BF16": "off"]))
        // Switched off where the CPU has the kernel; where it has not, that reason comes first.
        XCTAssertTrue(
            hidden.output.contains(
                cpuinfo.contains(" avx512_bf16 ")
                    ? "bf16 products        unavailable: bf16 matrix products are switched off here"
                    : "need a CPU with AVX512_BF16"), hidden.output)
        let off = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["env"], environment: ProcessRunner.cleanEnvironment(["VLSEG_PANEL_GEMM": "off"]))
        XCTAssertTrue(
            off.output.contains(avx512 ? "OpenBLAS (VLSEG_PANEL_GEMM=off)" : "no AVX-512 on this CPU"), off.output)
    }

    /// Simulates OpenBLAS misdetecting the CPU: vlseg must re-execute itself with a fitting core.
    func testMisdetectedCoreIsCorrectedByReexec() throws {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        try XCTSkipUnless(cpuinfo.contains(" avx2 "), "needs an AVX2 CPU to have a better core than Prescott")
        let env = ProcessRunner.cleanEnvironment(["VLSEG_BLAS_ASSUME_DETECTED": "Prescott"])
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["env"], environment: env)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("(set by vlseg (OpenBLAS detected a weaker core))"), r.output)
        XCTAssertFalse(r.output.contains("Prescott"), r.output)
    }

    /// A user's explicit choice is respected.
    func testExplicitCoretypeIsRespected() throws {
        let env = ProcessRunner.cleanEnvironment(["OPENBLAS_CORETYPE": "Haswell"])
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["env"], environment: env)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("Haswell (OPENBLAS_CORETYPE=Haswell from the environment)"), r.output)
        // A timeout given by the user is respected too.
        let r2 = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["env"],
            environment: ProcessRunner.cleanEnvironment(["OPENBLAS_THREAD_TIMEOUT": "20"]))
        XCTAssertTrue(r2.output.contains("20 (from the environment)"), r2.output)
    }

    func testEnvUnderMpirunReportsEachRank() throws {
        guard let mpirun = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        let r = try ProcessRunner.run(
            mpirun, ProcessRunner.mpirunFlags + ["-np", "2", ProcessRunner.vlsegPath, "env"],
            timeout: 60)
        XCTAssertFalse(r.timedOut, "mpirun timed out:\n\(r.output)")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains(" 0 of 2 (local"), r.output)
        XCTAssertTrue(r.output.contains(" 1 of 2 (local"), r.output)
        XCTAssertFalse(r.output.contains("Prescott"), r.output)
    }

    func testBenchGemmPrintsEveryShape() throws {
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["bench", "gemm", "--seconds", "0.01", "--json"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        for label in [
            "485x768 * 768x768", "485x768 * 768x3072", "485x3072 * 3072x768", "12 x 485x64 * 64x485", "1024^3",
        ] {
            XCTAssertTrue(r.output.contains(label), "missing \(label):\n\(r.output)")
        }
        let last = r.output.split(separator: "\n").last.map(String.init) ?? ""
        let obj = try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]
        let gflops = obj?["sgemm_gflops_per_s"] as? Double ?? 0
        XCTAssertGreaterThan(gflops, 1, last)
        XCTAssertGreaterThan(obj?["fma_peak_gflops_per_s"] as? Double ?? 0, 1, last)
        XCTAssertTrue(r.output.contains("% of peak"), r.output)
    }
}
