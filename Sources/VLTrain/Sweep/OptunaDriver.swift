import Foundation
import VLTuning

/// One trial as the study records it (Optuna's `FrozenTrial`, the fields a sweep needs).
public struct OptunaTrial: Codable, Sendable, Equatable {
    public var number: Int
    /// Optuna's state name: COMPLETE, FAIL, PRUNED, RUNNING, WAITING.
    public var state: String
    public var value: Double?
    public var params: [String: ConfigValue]
    public var userAttrs: [String: ConfigValue]
    public var seconds: Double?
    /// Intermediate values reported for pruning, by step.
    public var intermediate: [String: Double?]

    enum CodingKeys: String, CodingKey {
        case number, state, value, params, userAttrs = "user_attrs", seconds, intermediate
    }

    public init(
        number: Int, state: String, value: Double? = nil, params: [String: ConfigValue] = [:],
        userAttrs: [String: ConfigValue] = [:], seconds: Double? = nil, intermediate: [String: Double?] = [:]
    ) {
        self.number = number
        self.state = state
        self.value = value
        self.params = params
        self.userAttrs = userAttrs
        self.seconds = seconds
        self.intermediate = intermediate
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        number = try c.decode(Int.self, forKey: .number)
        state = try c.decode(String.self, forKey: .state)
        value = try c.decodeIfPresent(Double.self, forKey: .value)
        params = try c.decodeIfPresent([String: ConfigValue].self, forKey: .params) ?? [:]
        userAttrs = try c.decodeIfPresent([String: ConfigValue].self, forKey: .userAttrs) ?? [:]
        seconds = try c.decodeIfPresent(Double.self, forKey: .seconds)
        intermediate = try c.decodeIfPresent([String: Double?].self, forKey: .intermediate) ?? [:]
    }
}

/// Drives an Optuna study through Optuna's own Python interface: one driver process (`OptunaDriverScript`)
/// per launch, one JSON request per line on its standard input, so the storage URL (password included)
/// never appears on a command line, and Optuna is imported and the storage opened once rather than per
/// operation. Rank 0 alone runs it; it ends when this object does (its standard input closes).
public final class OptunaDriver {
    /// The Optuna release VLSeg is tested with (launch/common.sh installs the same).
    public static let optunaRequirement = "optuna==4.5.0"

    public let python: String
    public let script: URL
    public let storage: SweepStorage
    public let study: String
    /// Longest an operation may take (a database that does not answer).
    public var timeoutSeconds: Double = 600
    private var process: DriverProcess?

    /// Writes the script into `<sweepDirectory>/.vlseg/optuna_driver.py`.
    public init(
        sweepDirectory: URL, storage: SweepStorage, study: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        python = environment["VLSEG_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
        let dir = sweepDirectory.appendingPathComponent(".vlseg")
        script = dir.appendingPathComponent("optuna_driver.py")
        self.storage = storage
        self.study = study
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try SweepFiles.writeAtomically(Data(OptunaDriverScript.source.utf8), to: script)
        } catch {
            throw SweepError.io(
                path: script.path, reason: "cannot write the Optuna driver: \(MetricsLog.reason(error))")
        }
    }

    /// Creates the study (or opens it when it exists) and checks it optimises what this sweep does.
    public func open(objective: SweepObjective) throws -> [OptunaTrial] {
        struct Reply: Decodable { var trials: [OptunaTrial]?; var mismatch: String? }
        let r: Reply = try call(
            "open", ["direction": objective.direction.rawValue, "metric": objective.metric])
        if let mismatch = r.mismatch { throw SweepError.studyMismatch(mismatch) }
        return r.trials ?? []
    }

    public func trials() throws -> [OptunaTrial] {
        struct Reply: Decodable { var trials: [OptunaTrial] }
        let r: Reply = try call("list", [:])
        return r.trials
    }

    /// A new trial with parameters sampled from `space`, or nil when the study already holds `target` trials.
    public func ask(
        space: [SweepParameter], target: Int, sampler: SamplerSettings, attributes: [String: String]
    ) throws -> (number: Int, params: [String: ConfigValue])? {
        struct Asked: Decodable { var number: Int; var params: [String: ConfigValue] }
        struct Reply: Decodable { var trial: Asked? }
        var dists: [String: Any] = [:]
        for p in space { dists[p.key] = p.distribution.json }
        let r: Reply = try call(
            "ask",
            [
                "space": dists, "target": target, "attrs": attributes,
                "sampler": [
                    "seed": sampler.seed, "multivariate": sampler.multivariate,
                    "n_startup_trials": sampler.startupTrials,
                ],
            ])
        guard let t = r.trial else { return nil }
        var params: [String: ConfigValue] = [:]
        for p in space { if let v = t.params[p.key] { params[p.key] = v.typed(by: p.distribution) } }
        return (t.number, params)
    }

    public enum Outcome: String { case complete, fail, pruned }

    public func tell(_ number: Int, _ outcome: Outcome, value: Double? = nil, error: String? = nil) throws {
        struct Reply: Decodable {}
        var request: [String: Any] = ["number": number, "state": outcome.rawValue]
        if let value { request["value"] = value }
        if let error { request["error"] = storage.mask(error) }
        let _: Reply = try call("tell", request)
    }

    /// Reports an intermediate value and returns Optuna's pruning decision.
    public func report(_ number: Int, step: Int, value: Double, pruner: PrunerSettings) throws -> Bool {
        struct Reply: Decodable { var should_prune: Bool }
        let r: Reply = try call(
            "report",
            [
                "number": number, "step": step, "value": value,
                "pruner": [
                    "kind": pruner.kind.rawValue, "n_startup_trials": pruner.startupTrials,
                    "n_warmup_steps": pruner.warmupSteps,
                ],
            ])
        return r.should_prune
    }

    // MARK: Talking to the script

    struct Failure: Decodable { var ok: Bool; var kind: String?; var message: String? }

    func call<Reply: Decodable>(_ operation: String, _ fields: [String: Any]) throws -> Reply {
        var request = fields
        request["op"] = operation
        request["storage"] = storage.url
        request["study"] = study
        let input = try JSONSerialization.data(withJSONObject: request) + Data("\n".utf8)
        if process == nil { process = try DriverProcess(python: python, script: script) }
        guard let process else { throw SweepError.pythonMissing(python: python) }
        let out: Data
        do { out = try process.exchange(input, timeout: timeoutSeconds) } catch let ended as DriverProcess.Ended {
            self.process = nil
            let detail = ended.stderr.split(separator: "\n").last.map(String.init) ?? ""
            if ended.status == 127 { throw SweepError.pythonMissing(python: python) }
            throw SweepError.driver(
                operation: operation,
                message: storage.mask(
                    "the driver (\(python) \(script.path)) \(ended.reason)\(detail.isEmpty ? "" : ": \(detail)")"))
        }
        guard let failure = try? JSONDecoder().decode(Failure.self, from: out) else {
            throw SweepError.driver(
                operation: operation,
                message: storage.mask("unexpected reply: \(String(decoding: out.prefix(200), as: UTF8.self))"))
        }
        guard failure.ok else {
            let message = storage.mask(failure.message ?? "no message")
            switch failure.kind {
            case "optuna_missing": throw SweepError.optunaMissing(python: python, detail: message)
            case "storage": throw SweepError.storage("\(storage.masked): \(message)")
            default: throw SweepError.driver(operation: operation, message: message)
            }
        }
        do { return try JSONDecoder().decode(Reply.self, from: out) } catch {
            throw SweepError.driver(
                operation: operation,
                message: storage.mask("unexpected reply \(String(decoding: out.prefix(200), as: UTF8.self)): \(error)"))
        }
    }
}

/// The driver script running as a child process: a request line in, a reply line out.
final class DriverProcess {
    struct Ended: Error {
        var status: Int32
        var reason: String
        var stderr: String
    }

    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private let lines = LineBuffer()
    private let errorText = LineBuffer()

    init(python: String, script: URL) throws {
        // A driver that died must be an error on the next write (EPIPE), not a signal that ends the rank.
        signal(SIGPIPE, SIG_IGN)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, script.path]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        do { try process.run() } catch { throw SweepError.pythonMissing(python: python) }
        output.fileHandleForReading.readabilityHandler = { [lines] h in lines.append(h.availableData) }
        errors.fileHandleForReading.readabilityHandler = { [errorText] h in errorText.append(h.availableData) }
    }

    /// Closing its input ends the script's loop; it exits by itself.
    deinit {
        try? input.fileHandleForWriting.close()
        output.fileHandleForReading.readabilityHandler = nil
        errors.fileHandleForReading.readabilityHandler = nil
    }

    /// Sends one request line and waits for one reply line.
    func exchange(_ request: Data, timeout: Double) throws -> Data {
        guard process.isRunning else { throw ended("ended") }
        do { try input.fileHandleForWriting.write(contentsOf: request) } catch { throw ended("stopped reading") }
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let line = lines.takeLine() { return line }
            if !process.isRunning {
                // Its last words may still be in the pipe.
                usleep(50_000)
                if let line = lines.takeLine() { return line }
                throw ended("ended with status \(process.terminationStatus) without a reply")
            }
            if Date() > deadline {
                process.terminate()
                throw ended("gave no reply within \(Int(timeout)) s")
            }
            lines.wait(seconds: 0.05)
        }
    }

    private func ended(_ reason: String) -> Ended {
        Ended(
            status: process.isRunning ? 0 : process.terminationStatus, reason: reason,
            stderr: String(decoding: errorText.all, as: UTF8.self))
    }
}

/// Bytes from a reading thread, taken a line at a time.
final class LineBuffer: @unchecked Sendable {
    private let condition = NSCondition()
    private var data = Data()

    func append(_ d: Data) {
        condition.lock()
        data.append(d)
        condition.broadcast()
        condition.unlock()
    }

    func takeLine() -> Data? {
        condition.lock()
        defer { condition.unlock() }
        guard let newline = data.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = data[data.startIndex..<newline]
        data = Data(data[data.index(after: newline)...])
        return Data(line)
    }

    var all: Data {
        condition.lock()
        defer { condition.unlock() }
        return data
    }

    func wait(seconds: Double) {
        condition.lock()
        _ = condition.wait(until: Date().addingTimeInterval(seconds))
        condition.unlock()
    }
}
