import ArgumentParser
import Foundation
import VLDistributed
import VLTensor

/// `vlseg bench allreduce`: gradient all-reduce time and correctness across the job's ranks.
struct BenchAllReduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time an in-place float32 sum all-reduce across ranks (run under mpirun) and verify its result.")

    @Option(help: "Megabytes per all-reduce (12 MB = 3M floats, a VLSM-Adapter's gradients).")
    var mb: Double = 12

    @Option(help: "Timed repetitions.")
    var iterations: Int = 10

    @Option(help: "Watchdog: seconds a collective may take before the job is aborted.")
    var timeout: Double = 60

    @Option(help: "Fault injection for testing the watchdog: this rank sleeps instead of joining the first all-reduce.")
    var holdRank: Int?

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    func run() throws {
        let comm = Communicators.make(timeout: timeout)
        defer { comm.finalize() }
        let count = max(1, Int(mb * 1_048_576 / 4))
        let buffer = Tensor(uninitialized: [count])
        try buffer.withUnsafeMutablePointer { p in
            func fill() { for i in 0..<count { p[i] = Float(comm.rank + 1) + Float(i % 7) } }
            if let holdRank, holdRank == comm.rank {
                printError("rank \(comm.rank): holding out of the all-reduce (fault injection)")
                sleep(UInt32(timeout * 4 + 30))
            }
            fill()
            comm.allReduceSum(p, count: count, label: "warm-up")
            // Expected: sum over ranks r of (r + 1 + i % 7).
            let n = Float(comm.size)
            var wrong = 0
            for i in 0..<count where p[i] != n * (n + 1) / 2 + n * Float(i % 7) { wrong += 1 }
            var times: [Double] = []
            for _ in 0..<iterations {
                fill()
                comm.barrier(label: "bench")
                let t0 = DispatchTime.now().uptimeNanoseconds
                comm.allReduceSum(p, count: count, label: "bench")
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-6)
            }
            var worstWrong = [Double(wrong)]
            comm.allReduceSum(&worstWrong, label: "verify")
            times.sort()
            let median = times.isEmpty ? 0 : times[times.count / 2]
            if comm.isRoot {
                let status = worstWrong[0] == 0 ? "verified" : "WRONG (\(Int(worstWrong[0])) elements)"
                print(
                    "all-reduce \(String(format: "%.1f", mb)) MB over \(comm.size) rank(s): median \(String(format: "%.2f", median)) ms, min \(String(format: "%.2f", times.first ?? 0)) ms; result \(status)"
                )
                if json {
                    print(
                        "{\"ranks\": \(comm.size), \"mb\": \(mb), \"median_ms\": \(median), \"verified\": \(worstWrong[0] == 0)}"
                    )
                }
            }
            if worstWrong[0] != 0 { throw ExitCode(1) }
        }
    }
}
