import Foundation
import VLModels
import VLTensor

/// Errors reading or writing checkpoints; each names the checkpoint and the file at fault.
public enum CheckpointError: Error, CustomStringConvertible {
    case invalid(path: String, reason: String)
    case notFound(path: String)
    case incompatible(path: String, reason: String)
    case writeFailed(path: String, reason: String)
    case noneValid(directory: String, problems: [String])

    public var description: String {
        switch self {
        case let .invalid(path, reason): return "\(path): invalid checkpoint: \(reason)"
        case let .notFound(path): return "\(path): no such checkpoint"
        case let .incompatible(path, reason): return "\(path): checkpoint does not fit this run: \(reason)"
        case let .writeFailed(path, reason): return "\(path): could not save checkpoint: \(reason)"
        case let .noneValid(directory, problems):
            let shown = problems.prefix(5).joined(separator: "; ")
            let more = problems.count > 5 ? "; and \(problems.count - 5) more" : ""
            return
                "\(directory): \(problems.count) checkpoint(s), none valid: \(shown)\(more) (repair or remove them, or start over with resume=none run.overwrite=true)"
        }
    }
}

/// Everything beyond tensors that a run needs to continue exactly.
public struct TrainerState: Codable, Sendable, Equatable {
    public var step: Int = 0
    public var epoch: Int = 0
    /// Global samples consumed inside `epoch` (the sampler cursor, independent of world size).
    public var samplesIntoEpoch: Int = 0
    public var optimizer: AdamW
    public var schedule: LearningRateSchedule
    public var earlyStopping: EarlyStopping
    public var bestDice: Double?
    public var bestStep: Int?
    public var worldSize: Int
    public var batchSize: Int
    public var accumulate: Int
    public var method: String
    public var configHash: String
    public var layoutHash: String
    public var stopped: Bool = false
    /// Training time up to this checkpoint, summed over resumed segments (optional: older checkpoints lack it).
    public var wallSeconds: Double?
    /// File name -> FNV-64 of its bytes (filled when saving).
    public var checksums: [String: String] = [:]

    public init(
        optimizer: AdamW, schedule: LearningRateSchedule, earlyStopping: EarlyStopping, worldSize: Int,
        batchSize: Int, accumulate: Int, method: String, configHash: String, layoutHash: String
    ) {
        self.optimizer = optimizer
        self.schedule = schedule
        self.earlyStopping = earlyStopping
        self.worldSize = worldSize
        self.batchSize = batchSize
        self.accumulate = accumulate
        self.method = method
        self.configHash = configHash
        self.layoutHash = layoutHash
    }

    public var globalBatch: Int { worldSize * batchSize * accumulate }
}

/// Crash-safe checkpoints in `<run>/checkpoints/`.
///
/// A checkpoint is written into a temporary directory, every file fsync'd and checksummed, the
/// directory renamed into place and the parent fsync'd; only then does the `latest` pointer
/// move (itself written to a temporary file and renamed). A crash at any moment leaves the
/// previous checkpoint and pointer intact; half-written directories never carry a final name.
public struct CheckpointStore {
    public static let trainableFile = "trainable.safetensors"
    public static let optimizerFile = "optimizer.safetensors"
    public static let stateFile = "trainer.json"
    public static let configFile = "config.yaml"

    public let directory: URL

    public init(runDirectory: URL) {
        directory = runDirectory.appendingPathComponent("checkpoints")
    }

    public static func name(forStep step: Int) -> String { String(format: "step-%07d", step) }

    // MARK: Saving

    /// Writes a complete checkpoint and returns its directory.
    @discardableResult
    public func save(
        arena: ParameterArena, state: TrainerState, configYAML: String, markBest: Bool,
        keepLast: Int, beforeCommit: (() -> Void)? = nil
    ) throws -> URL {
        let fm = FileManager.default
        let finalURL = directory.appendingPathComponent(Self.name(forStep: state.step))
        let tmpURL = directory.appendingPathComponent(".tmp-\(Self.name(forStep: state.step))-\(getpid())")
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            removeStaleTemporaries()
            try fm.createDirectory(at: tmpURL, withIntermediateDirectories: true)

            var trainable = SafeTensorsWriter()
            var optimizer = SafeTensorsWriter()
            trainable.metadata = ["format": "pt", "vlseg_method": state.method, "vlseg_step": "\(state.step)"]
            optimizer.metadata = ["vlseg_step": "\(state.step)"]
            for slot in arena.slots {
                trainable.add(slot.name, arena.view(arena.values, slot))
                optimizer.add("exp_avg.\(slot.name)", arena.view(arena.firstMoment, slot))
                optimizer.add("exp_avg_sq.\(slot.name)", arena.view(arena.secondMoment, slot))
            }
            var files: [String: Data] = [
                Self.trainableFile: try trainable.serialized(),
                Self.optimizerFile: try optimizer.serialized(),
                Self.configFile: Data(configYAML.utf8),
            ]
            var s = state
            s.checksums = files.mapValues(Self.checksum)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            files[Self.stateFile] = try encoder.encode(s)
            for (name, data) in files { try Self.writeSynced(data, to: tmpURL.appendingPathComponent(name)) }
            try Self.syncDirectory(tmpURL)
            beforeCommit?()
            if fm.fileExists(atPath: finalURL.path) { try fm.removeItem(at: finalURL) }
            try fm.moveItem(at: tmpURL, to: finalURL)
            try Self.syncDirectory(directory)
            try movePointer("latest", to: finalURL.lastPathComponent)
            if markBest { try movePointer("best", to: finalURL.lastPathComponent) }
            try prune(keepLast: keepLast)
        } catch let error as CheckpointError {
            try? fm.removeItem(at: tmpURL)
            throw error
        } catch {
            try? fm.removeItem(at: tmpURL)
            throw CheckpointError.writeFailed(path: finalURL.path, reason: "\(error)")
        }
        return finalURL
    }

    /// Atomically points `name` (a one-line file) at a checkpoint directory name.
    func movePointer(_ name: String, to target: String) throws {
        let tmp = directory.appendingPathComponent(".\(name).tmp-\(getpid())")
        try Self.writeSynced(Data((target + "\n").utf8), to: tmp)
        if rename(tmp.path, directory.appendingPathComponent(name).path) != 0 {
            throw CheckpointError.writeFailed(
                path: directory.appendingPathComponent(name).path, reason: String(cString: strerror(errno)))
        }
        try Self.syncDirectory(directory)
    }

    /// Removes half-written checkpoint directories and pointer files left by a crash (only one
    /// process, rank 0 of one job, ever writes here).
    func removeStaleTemporaries() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix(".tmp-") || name.contains(".tmp-") {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    /// Deletes all but the newest `keepLast` checkpoints, never the one `best` names.
    func prune(keepLast: Int) throws {
        guard keepLast > 0 else { return }
        let best = pointer("best")
        let steps = stepDirectories()
        for dir in steps.dropFirst(keepLast) where dir.lastPathComponent != best {
            try? FileManager.default.removeItem(at: dir)
        }
    }

    static func checksum(_ data: Data) -> String {
        var h = FNV64()
        data.withUnsafeBytes { h.add($0) }
        return h.hex
    }

    static func writeSynced(_ data: Data, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw CheckpointError.writeFailed(path: url.path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CheckpointError.writeFailed(path: url.path, reason: String(cString: strerror(errno)))
                }
                done += n
            }
        }
        guard fsync(fd) == 0 else {
            throw CheckpointError.writeFailed(path: url.path, reason: "fsync: \(String(cString: strerror(errno)))")
        }
    }

    static func syncDirectory(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = fsync(fd)
    }

    // MARK: Finding and loading

    /// The directory name a pointer file names, if any.
    public func pointer(_ name: String) -> String? {
        guard let text = try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8) else {
            return nil
        }
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// Complete-looking checkpoint directories, newest step first.
    public func stepDirectories() -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasPrefix("step-") }.sorted(by: >).map { directory.appendingPathComponent($0) }
    }

    /// Reads and verifies a checkpoint: every file present, checksums matching, tensors readable.
    public static func load(_ url: URL) throws -> LoadedCheckpoint {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw CheckpointError.notFound(path: url.path)
        }
        let stateURL = url.appendingPathComponent(stateFile)
        guard let stateData = fm.contents(atPath: stateURL.path) else {
            throw CheckpointError.invalid(path: url.path, reason: "\(stateFile) is missing")
        }
        let state: TrainerState
        do { state = try JSONDecoder().decode(TrainerState.self, from: stateData) } catch {
            throw CheckpointError.invalid(path: url.path, reason: "\(stateFile) is unreadable (\(error))")
        }
        for name in [trainableFile, optimizerFile, configFile] {
            guard let data = fm.contents(atPath: url.appendingPathComponent(name).path) else {
                throw CheckpointError.invalid(path: url.path, reason: "\(name) is missing")
            }
            guard let expected = state.checksums[name] else {
                throw CheckpointError.invalid(path: url.path, reason: "no checksum recorded for \(name)")
            }
            let actual = checksum(data)
            guard actual == expected else {
                throw CheckpointError.invalid(
                    path: url.path, reason: "\(name) is corrupt (checksum \(actual), recorded \(expected))")
            }
        }
        do {
            let trainable = try SafeTensorsFile(url: url.appendingPathComponent(trainableFile))
            let optimizer = try SafeTensorsFile(url: url.appendingPathComponent(optimizerFile))
            let config = String(
                decoding: fm.contents(atPath: url.appendingPathComponent(configFile).path) ?? Data(), as: UTF8.self)
            return LoadedCheckpoint(
                url: url, state: state, trainable: trainable, optimizer: optimizer, configYAML: config)
        } catch {
            throw CheckpointError.invalid(path: url.path, reason: "\(error)")
        }
    }

    /// The checkpoint `resume=auto` continues from: the one `latest` names when it is valid, else the
    /// newest valid one (each invalid one is reported through `warn`); nil when there is none at all.
    /// Checkpoints that exist but are all invalid are an error naming them: continuing from step 0
    /// would silently discard the run, and later saves would overwrite what could still be repaired.
    public func resumable(warn: (String) -> Void) throws -> LoadedCheckpoint? {
        var candidates = stepDirectories()
        if let latest = pointer("latest"), let i = candidates.firstIndex(where: { $0.lastPathComponent == latest }) {
            candidates.insert(candidates.remove(at: i), at: 0)
        }
        var problems: [String] = []
        for dir in candidates {
            do { return try Self.load(dir) } catch {
                problems.append("\(error)")
                warn("skipping \(error)")
            }
        }
        guard problems.isEmpty else {
            throw CheckpointError.noneValid(directory: directory.path, problems: problems)
        }
        return nil
    }
}

/// A verified checkpoint on disk.
public struct LoadedCheckpoint {
    public let url: URL
    public let state: TrainerState
    public let trainable: SafeTensorsFile
    public let optimizer: SafeTensorsFile
    public let configYAML: String

    /// Copies weights and moments into an arena whose layout must match.
    public func restore(into arena: ParameterArena) throws {
        for slot in arena.slots {
            func copy(_ file: SafeTensorsFile, _ key: String, _ dst: Tensor) throws {
                guard file.contains(key) else {
                    throw CheckpointError.incompatible(
                        path: url.path, reason: "it has no tensor '\(key)' (different tuning method or model?)")
                }
                let t = try file.tensor(key)
                guard t.shape == slot.shape else {
                    throw CheckpointError.incompatible(
                        path: url.path, reason: "'\(key)' has shape \(t.shape), this run expects \(slot.shape)")
                }
                withTensorPointers(writing: dst, reading: t) { ($0 + slot.offset).update(from: $1, count: slot.count) }
            }
            try copy(trainable, slot.name, arena.values)
            try copy(optimizer, "exp_avg.\(slot.name)", arena.firstMoment)
            try copy(optimizer, "exp_avg_sq.\(slot.name)", arena.secondMoment)
        }
        let extra = Set(trainable.names).subtracting(arena.slots.map(\.name))
        if !extra.isEmpty {
            throw CheckpointError.incompatible(
                path: url.path,
                reason: "it trains tensors this run does not: \(extra.sorted().prefix(5).joined(separator: ", "))")
        }
    }
}
