import Foundation
import VLDistributed

/// Why a run directory cannot be used by this job.
public enum RunDirectoryError: Error, CustomStringConvertible {
    case inUse(directory: String, holder: String)
    case holdsEarlierRun(directory: String, contents: String)
    case holdsSingleRun(directory: String, contents: String)
    case holdsSeedRuns(directory: String, seeds: [String])
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .inUse(dir, holder):
            return
                "\(dir) is in use by another job (\(holder)): wait for it to end or stop it, or choose another run.dir"
        case let .holdsEarlierRun(dir, contents):
            return
                "\(dir) already holds a run (\(contents)): resume=auto continues it, run.overwrite=true deletes it and starts over, or choose another run.dir"
        case let .holdsSingleRun(dir, contents):
            return
                "\(dir) holds a single run (\(contents)), not seed-<seed> runs: choose another run.dir for trainer.seeds, or run.overwrite=true with resume=none to delete it"
        case let .holdsSeedRuns(dir, seeds):
            return
                "\(dir) holds the runs of a trainer.seeds launch (\(seeds.joined(separator: ", "))): train with trainer.seeds to continue them, or choose another run.dir"
        case let .io(path, reason):
            return "\(path): \(reason)"
        }
    }
}

/// The one job allowed to write a run directory, for as long as this object lives.
///
/// Rank 0 takes an exclusive POSIX record lock (`fcntl(F_SETLK)`) on `<run>/.vlseg.lock` and writes
/// who holds it (host, pid, start time, command) into that file. The kernel (or, on NFS, the lock
/// manager) drops the lock when the holder dies, however it dies, so a lock can never be left behind
/// by a crash: a file that still names a holder while the lock is free was left by a dead job, and
/// is taken over with a warning. On a shared filesystem the lock works across machines wherever the
/// filesystem supports POSIX locks (NFSv4, or NFSv3 with lockd; Lustre and BeeGFS mounted with
/// `flock`). Where it does not (`ENOLCK`), the file alone decides: a holder on this host whose pid
/// no longer runs is taken over; a holder on another host is refused, and the message says which
/// file to remove once that job is known to be gone.
public final class RunDirectoryLock {
    public static let fileName = ".vlseg.lock"
    public let url: URL
    private let fd: Int32

    /// Holder details, one `key: value` per line.
    struct Holder: Equatable {
        var host: String
        var pid: Int32
        var started: String
        var command: String

        var text: String { "host: \(host)\npid: \(pid)\nstarted: \(started)\ncommand: \(command)\n" }
        var summary: String { "pid \(pid) on \(host), started \(started): \(command)" }

        static func parse(_ text: String) -> Holder? {
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            guard let host = fields["host"], let pid = fields["pid"].flatMap({ Int32($0) }) else { return nil }
            return Holder(host: host, pid: pid, started: fields["started"] ?? "?", command: fields["command"] ?? "?")
        }
    }

    /// Takes the lock of `directory` (created when missing), or throws naming the job that holds it.
    /// `lockFile` names another lock in the same directory (a sweep's claim on a trial's run directory,
    /// held beside the run's own lock).
    public static func acquire(
        _ directory: URL, lockFile: String = fileName, command: String, warn: (String) -> Void
    ) throws -> RunDirectoryLock {
        let fm = FileManager.default
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw RunDirectoryError.io(
                path: directory.path, reason: "cannot create the run directory: \(MetricsLog.reason(error))")
        }
        let url = directory.appendingPathComponent(lockFile)
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw RunDirectoryError.io(
                path: url.path, reason: "cannot open the lock file: \(String(cString: strerror(errno)))")
        }
        let previous = Holder.parse(readAll(fd))
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 0
        lock.l_len = 0
        if fcntl(fd, F_SETLK, &lock) != 0 {
            let err = errno
            if err == EACCES || err == EAGAIN {
                close(fd)
                throw RunDirectoryError.inUse(
                    directory: directory.path, holder: previous?.summary ?? "its lock file names no holder yet")
            }
            guard err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS else {
                close(fd)
                throw RunDirectoryError.io(path: url.path, reason: "cannot lock: \(String(cString: strerror(err)))")
            }
            // No POSIX locks on this filesystem: the holder's record decides.
            if let previous, previous.pid != getpid() || previous.host != ProcessIdentity.hostName {
                guard previous.host == ProcessIdentity.hostName else {
                    close(fd)
                    throw RunDirectoryError.inUse(
                        directory: directory.path,
                        holder: previous.summary
                            + "; this filesystem has no locks, so if that job is gone remove \(url.path)")
                }
                if kill(previous.pid, 0) == 0 || errno == EPERM {
                    close(fd)
                    throw RunDirectoryError.inUse(directory: directory.path, holder: previous.summary)
                }
            }
        }
        if let previous, previous.pid != getpid() || previous.host != ProcessIdentity.hostName {
            warn(
                "vlseg: warning: \(directory.path): taking over the lock left by a job that no longer runs (\(previous.summary))"
            )
        }
        let formatter = ISO8601DateFormatter()
        let me = Holder(
            host: ProcessIdentity.hostName, pid: getpid(), started: formatter.string(from: Date()), command: command)
        let bytes = Array(me.text.utf8)
        guard ftruncate(fd, 0) == 0, pwrite(fd, bytes, bytes.count, 0) == bytes.count else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RunDirectoryError.io(path: url.path, reason: "cannot record the lock's holder: \(reason)")
        }
        _ = fsync(fd)
        return RunDirectoryLock(url: url, fd: fd)
    }

    private init(url: URL, fd: Int32) {
        self.url = url
        self.fd = fd
    }

    /// Empties the record (a clean end leaves no holder to report) and drops the lock.
    deinit {
        _ = ftruncate(fd, 0)
        close(fd)
    }

    private static func readAll(_ fd: Int32) -> String {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = pread(fd, &bytes, bytes.count, 0)
        return n > 0 ? String(decoding: bytes.prefix(n), as: UTF8.self) : ""
    }
}

/// What a run directory holds of earlier runs, and the rule for a fresh run into it.
public enum RunDirectoryState {
    /// The earlier run's state a fresh run would mix with: checkpoints and non-empty metrics files.
    public static func earlierRun(in directory: URL) -> [String] {
        let fm = FileManager.default
        var found: [String] = []
        let steps = CheckpointStore(runDirectory: directory).stepDirectories().map(\.lastPathComponent).sorted()
        if let first = steps.first, let last = steps.last {
            found.append(steps.count == 1 ? "checkpoint \(first)" : "\(steps.count) checkpoints, \(first) to \(last)")
        }
        for name in ["metrics.jsonl", "metrics.csv"] {
            let url = directory.appendingPathComponent(name)
            guard let size = (try? fm.attributesOfItem(atPath: url.path))?[.size] as? Int, size > 0 else { continue }
            // A csv holding only its header row has no records.
            if name == "metrics.csv", let text = try? String(contentsOf: url, encoding: .utf8),
                text.split(separator: "\n").count <= 1
            {
                continue
            }
            found.append(name)
        }
        return found
    }

    /// The `seed-<n>` subdirectories holding a run (a `trainer.seeds` launch), by name.
    public static func seedRuns(in directory: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter {
            $0.hasPrefix("seed-") && Int($0.dropFirst(5)) != nil
                && !earlierRun(in: directory.appendingPathComponent($0)).isEmpty
        }
        .sorted { (Int($0.dropFirst(5)) ?? 0) < (Int($1.dropFirst(5)) ?? 0) }
    }

    /// Files and folders `run.overwrite=true` removes: everything an earlier run wrote, not the lock.
    static let runState = [
        "checkpoints", "metrics.jsonl", "metrics.csv", "config.yaml", "cache", "predictions",
        TensorBoardWriter.directoryName, TrainingRecord.fileName,
        EvaluationReport.fileName(split: "test"), EvaluationReport.fileName(split: "val"),
    ]

    /// Makes `directory` ready for a fresh run: refuses when it holds an earlier run, unless
    /// `overwrite`, which deletes that run's state first. Returns what it deleted.
    @discardableResult
    public static func prepareFreshRun(_ directory: URL, overwrite: Bool) throws -> [String] {
        let earlier = earlierRun(in: directory)
        guard !earlier.isEmpty else { return [] }
        guard overwrite else {
            throw RunDirectoryError.holdsEarlierRun(
                directory: directory.path, contents: earlier.joined(separator: ", "))
        }
        var removed: [String] = []
        for name in runState {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            do { try FileManager.default.removeItem(at: url) } catch {
                throw RunDirectoryError.io(
                    path: url.path, reason: "cannot remove the earlier run's \(name): \(MetricsLog.reason(error))")
            }
            removed.append(name)
        }
        return removed
    }
}
