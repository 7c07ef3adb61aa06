import Foundation

/// A trial's objective: the best value of the objective's metric over the run's validations
/// (`metrics.jsonl`, records of kind `val`), as the papers' searches take the best epoch of each trial.
public enum TrialObjective {
    public enum Outcome: Equatable, Sendable {
        case value(Double, step: Int)
        /// No validation ran (no val split, or fewer steps than `trainer.eval_every`).
        case noValidation
        /// A validation produced no finite value: the run diverged.
        case diverged(step: Int)
    }

    public static func read(runDirectory: URL, objective: SweepObjective) -> Outcome {
        let url = runDirectory.appendingPathComponent("metrics.jsonl")
        guard let data = FileManager.default.contents(atPath: url.path) else { return .noValidation }
        var values: [(step: Int, value: Double?)] = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                object["kind"] as? String == "val"
            else { continue }
            let step = (object["step"] as? NSNumber)?.intValue ?? 0
            let value = (object[objective.metric] as? NSNumber)?.doubleValue
            values.append((step, value.flatMap { $0.isFinite ? $0 : nil }))
        }
        return best(values, objective: objective)
    }

    /// The best of `values`; the first step whose value is missing or not finite makes the trial diverged.
    public static func best(_ values: [(step: Int, value: Double?)], objective: SweepObjective) -> Outcome {
        guard !values.isEmpty else { return .noValidation }
        var best: (Double, Int)? = nil
        for (step, value) in values {
            guard let value else { return .diverged(step: step) }
            if let b = best, !objective.better(value, than: b.0) { continue }
            best = (value, step)
        }
        guard let best else { return .noValidation }
        return .value(best.0, step: best.1)
    }
}

/// A lock every launch sharing a sweep directory takes around "resume or ask", so two launches never
/// pick the same interrupted trial and the trial count is never overshot by a race between them.
/// A POSIX record lock: the kernel drops it when the process ends, however it ends.
public final class SweepAskLock {
    private let fd: Int32

    public static func acquire(sweepDirectory: URL) throws -> SweepAskLock {
        let url = sweepDirectory.appendingPathComponent(SweepFiles.askLockName)
        try? FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SweepError.io(path: url.path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        while fcntl(fd, F_SETLKW, &lock) != 0 {
            let err = errno
            if err == EINTR { continue }
            // A filesystem without POSIX locks: launches sharing it must not ask at the same moment.
            if err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS { break }
            close(fd)
            throw SweepError.io(path: url.path, reason: "cannot lock: \(String(cString: strerror(err)))")
        }
        return SweepAskLock(fd: fd)
    }

    private init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}
