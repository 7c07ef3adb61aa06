import Foundation
import XCTest

/// Runs the built `vlseg` (and mpirun) as child processes with a hard timeout.
enum ProcessRunner {
    struct Result {
        let status: Int32
        let output: String
        let timedOut: Bool
    }

    /// The directory holding the test bundle also holds the `vlseg` executable of the same build.
    static var vlsegPath: String {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [
            bundleDir.appendingPathComponent("vlseg").path,
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("vlseg").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    /// A clean environment: what a user's shell would have, minus BLAS and vlseg settings.
    static func cleanEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment.filter { key, _ in
            !key.hasPrefix("OPENBLAS_") && !key.hasPrefix("VLSEG_") && !key.hasPrefix("OMPI_")
                && !key.hasPrefix("PMIX_")
        }
        for (k, v) in extra { env[k] = v }
        return env
    }

    /// Runs `executable args`, killing the whole process group after `timeout` seconds.
    static func run(
        _ executable: String, _ args: [String], environment: [String: String]? = nil,
        timeout: TimeInterval = 60, currentDirectory: URL? = nil
    ) throws -> Result {
        try RunningProcess(
            executable, args, environment: environment ?? cleanEnvironment(), currentDirectory: currentDirectory
        )
        .finish(timeout: timeout).result
    }

    /// The repository checkout this test bundle was built from.
    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// Runs a repository script with bash (`launch/train`, `cluster/netns/run.sh`, ...) from the repository root.
    static func script(
        _ relativePath: String, _ args: [String], environment: [String: String] = [:],
        timeout: TimeInterval = 60
    ) throws -> Result {
        var env = cleanEnvironment(environment)
        env["PWD"] = repoRoot.path
        return try run(
            "/bin/bash", [repoRoot.appendingPathComponent(relativePath).path] + args, environment: env,
            timeout: timeout, currentDirectory: repoRoot)
    }

    /// Path of a program on PATH, or nil.
    /// `vlseg ARGS` on `ranks` processes: directly for one, under real `mpirun` (the environment's keys
    /// passed with `-x`, oversubscribed when there are more ranks than cores) for several.
    static func vlseg(ranks: Int, _ args: [String], environment: [String: String] = [:], timeout: Double) throws
        -> Result
    {
        let env = cleanEnvironment(environment)
        if ranks == 1 { return try run(vlsegPath, args, environment: env, timeout: timeout) }
        guard let mpirun = which("mpirun") else { throw XCTSkip("mpirun not installed") }
        var flags = mpirunFlags
        for key in environment.keys.sorted() { flags += ["-x", key] }
        if ranks > ProcessInfo.processInfo.activeProcessorCount {
            flags += ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]
        }
        return try run(mpirun, flags + ["-np", "\(ranks)", vlsegPath] + args, environment: env, timeout: timeout)
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// mpirun flags for tests: root permission, no binding, fast abort.
    static var mpirunFlags: [String] {
        var flags = ["--bind-to", "none", "--mca", "odls_base_sigkill_timeout", "0"]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        if ProcessInfo.processInfo.activeProcessorCount < 2 { flags += ["--oversubscribe"] }
        return flags
    }
}

final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}

/// A child process running in the background (its own process group), whose output can be watched
/// while it runs: for tests that signal a job at a chosen moment, or run two jobs at once.
final class RunningProcess {
    let process = Process()
    private let collected = OutputCollector()
    private let pipe = Pipe()
    let started = Date()

    init(_ executable: String, _ args: [String], environment: [String: String], currentDirectory: URL? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.environment = environment
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [collected] h in collected.append(h.availableData) }
        try process.run()
    }

    var output: String { collected.text }
    var pid: Int32 { process.processIdentifier }

    /// Waits until the output contains `text` (true) or `timeout` passes or the process ends (false).
    func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            usleep(20_000)
        }
        return false
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits for the end (killing everything it started after `timeout`); status, all output, and
    /// seconds since start.
    func finish(timeout: TimeInterval) -> (result: ProcessRunner.Result, seconds: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                kill(-process.processIdentifier, SIGKILL)
                process.terminate()
                kill(process.processIdentifier, SIGKILL)
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(started)
        pipe.fileHandleForReading.readabilityHandler = nil
        collected.append(pipe.fileHandleForReading.readDataToEndOfFile())
        return (ProcessRunner.Result(status: process.terminationStatus, output: output, timedOut: timedOut), seconds)
    }
}
