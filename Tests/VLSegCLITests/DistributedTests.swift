import Foundation
import XCTest

/// The communicator under real mpirun: results, and the watchdog turning a hang into an abort.
final class DistributedTests: XCTestCase {
    func mpirun() throws -> String {
        guard let m = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        return m
    }

    func testAllReduceIsCorrectOnTwoAndThreeRanks() throws {
        let m = try mpirun()
        for ranks in [2, 3] {
            let flags =
                ProcessRunner.mpirunFlags
                + (ranks > ProcessInfo.processInfo.activeProcessorCount
                    ? ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"] : [])
            let r = try ProcessRunner.run(
                m,
                flags + [
                    "-np", "\(ranks)", ProcessRunner.vlsegPath, "bench", "allreduce",
                    "--mb", "0.5", "--iterations", "2",
                ], timeout: 90)
            XCTAssertFalse(r.timedOut, r.output)
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("over \(ranks) rank(s)") && r.output.contains("verified"), r.output)
        }
    }

    func testSingleProcessNeedsNoMPI() throws {
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["bench", "allreduce", "--mb", "0.1", "--iterations", "1"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("over 1 rank(s)"), r.output)
    }

    /// A rank held out of a collective: the others' watchdog aborts the job within timeout + 5 s.
    func testWatchdogAbortsAHungCollective() throws {
        let m = try mpirun()
        let start = Date()
        let r = try ProcessRunner.run(
            m,
            ProcessRunner.mpirunFlags + [
                "-np", "2", ProcessRunner.vlsegPath, "bench", "allreduce",
                "--mb", "0.1", "--timeout", "3", "--hold-rank", "1",
            ], timeout: 60)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("watchdog"), r.output)
        // The roll call names the rank that never came (it sleeps outside any collective).
        XCTAssertTrue(r.output.contains("rank 0 (") && r.output.contains("rank(s) 1 did not arrive"), r.output)
        XCTAssertLessThan(elapsed, 3 + 2 + 5 + 2, "took \(elapsed) s")
    }
}
