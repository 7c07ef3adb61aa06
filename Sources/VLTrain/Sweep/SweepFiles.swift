import Foundation
import VLTuning

/// The sweep directory's layout and its atomic writes.
///
/// ```
/// <sweep dir>/sweep.json           the study's trials (SweepSummary), rewritten after every state change
/// <sweep dir>/optuna.db            the default storage (SQLite)
/// <sweep dir>/best.yaml            the best trial's overrides (`vlseg train ... +sweep_best=FILE`)
/// <sweep dir>/trial-0000/          one training run per trial (config.yaml, metrics.jsonl, checkpoints/)
/// <sweep dir>/trial-0000/trial.json        which study and trial the run belongs to
/// <sweep dir>/trial-0000/.vlseg-trial.lock the launch running the trial (a POSIX lock: gone with it)
/// <sweep dir>/.vlseg/ask.lock      serialises "resume or ask" between launches sharing the directory
/// <sweep dir>/optuna.db.vlseg-ask.lock  the driver's lock around counting and asking (SQLite; in
///                                  PostgreSQL an advisory lock), so launches stop together at the count
/// <sweep dir>/.vlseg/optuna_driver.py  the Optuna driver this launch ran
/// ```
public enum SweepFiles {
    public static func trialDirectoryName(_ number: Int) -> String { String(format: "trial-%04d", number) }
    public static let trialRecordName = "trial.json"
    public static let trialLockName = ".vlseg-trial.lock"
    public static let askLockName = ".vlseg/ask.lock"
    public static let bestName = "best.yaml"

    /// Writes `data` to a temporary file beside `url`, syncs it and renames it into place.
    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: data) else {
            throw SweepError.io(path: temporary.path, reason: "cannot write")
        }
        let fd = open(temporary.path, O_RDONLY)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw SweepError.io(path: url.path, reason: "cannot rename into place: \(reason)")
        }
    }
}

/// Which study and trial a trial's run directory belongs to, so a sweep directory reused for another
/// study never resumes a stranger's run.
public struct TrialRecord: Codable, Sendable, Equatable {
    public var study: String
    public var number: Int
    public var params: [String: ConfigValue]

    public init(study: String, number: Int, params: [String: ConfigValue]) {
        self.study = study
        self.number = number
        self.params = params
    }

    public static func read(_ directory: URL) -> TrialRecord? {
        guard
            let data = FileManager.default.contents(
                atPath: directory.appendingPathComponent(SweepFiles.trialRecordName).path)
        else { return nil }
        return try? JSONDecoder().decode(TrialRecord.self, from: data)
    }

    public func write(_ directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try SweepFiles.writeAtomically(
            try encoder.encode(self), to: directory.appendingPathComponent(SweepFiles.trialRecordName))
    }
}
