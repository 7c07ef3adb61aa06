import Foundation
import VLTrain

/// Faults the crash-safety tests inject into a real `vlseg train` run, read from the environment
/// because the tests drive separate processes (under mpirun too). Only the rank named by
/// `VLSEG_FAULT_RANK` (default 0) acts:
/// - `VLSEG_FAULT_KILL_AT_STEP=N`: SIGKILL itself at the start of step N;
/// - `VLSEG_FAULT_KILL_IN_SAVE=N`: SIGKILL itself inside the save of step N's checkpoint, after its
///   files are written but before the directory is renamed into place (rank 0);
/// - `VLSEG_FAULT_SIGNAL_AT_STEP=N` with `VLSEG_FAULT_SIGNAL=TERM|INT|USR1`: send itself that signal at
///   the start of step N (the stop-with-a-checkpoint path);
/// - `VLSEG_FAULT_SEED=S`: only in the run of seed S (`trainer.seeds`);
/// - `VLSEG_FAULT_TRIAL=N`: only in trial N of a sweep (its Optuna number, from 0).
final class FaultInjection: TrainingObserver {
    let killAtStep: Int?
    let killInSaveAtStep: Int?
    let signalAtStep: Int?
    let signal: Int32

    /// The injection this rank's environment asks for, or nil.
    static func fromEnvironment(rank: Int, _ environment: [String: String] = ProcessInfo.processInfo.environment)
        -> FaultInjection?
    {
        guard (environment["VLSEG_FAULT_RANK"].flatMap { Int($0) } ?? 0) == rank else { return nil }
        let injection = FaultInjection(
            killAtStep: environment["VLSEG_FAULT_KILL_AT_STEP"].flatMap { Int($0) },
            killInSaveAtStep: environment["VLSEG_FAULT_KILL_IN_SAVE"].flatMap { Int($0) },
            signalAtStep: environment["VLSEG_FAULT_SIGNAL_AT_STEP"].flatMap { Int($0) },
            signal: ["INT": SIGINT, "USR1": SIGUSR1][environment["VLSEG_FAULT_SIGNAL"] ?? ""] ?? SIGTERM)
        let active = injection.killAtStep != nil || injection.killInSaveAtStep != nil || injection.signalAtStep != nil
        return active ? injection : nil
    }

    /// The sweep trial training now (set by `SweepRunner`), for `VLSEG_FAULT_TRIAL`.
    nonisolated(unsafe) static var currentTrial: Int? = nil

    /// With `VLSEG_FAULT_SEED=S`, faults act only in the run of seed S of a multi-seed launch; with
    /// `VLSEG_FAULT_TRIAL=N`, only in trial N of a sweep.
    static func appliesTo(seed: Int, _ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        let seedApplies = environment["VLSEG_FAULT_SEED"].flatMap { Int($0) }.map { $0 == seed } ?? true
        let trialApplies = environment["VLSEG_FAULT_TRIAL"].flatMap { Int($0) }.map { $0 == currentTrial } ?? true
        return seedApplies && trialApplies
    }

    init(killAtStep: Int?, killInSaveAtStep: Int?, signalAtStep: Int?, signal: Int32) {
        self.killAtStep = killAtStep
        self.killInSaveAtStep = killInSaveAtStep
        self.signalAtStep = signalAtStep
        self.signal = signal
    }

    func willStartStep(_ step: Int, rank: Int) {
        if killAtStep == step {
            printError("vlseg: fault injection: rank \(rank) kills itself in step \(step)")
            kill(getpid(), SIGKILL)
        }
        if signalAtStep == step {
            printError("vlseg: fault injection: rank \(rank) sends itself \(StopRequest.name(signal)) in step \(step)")
            kill(getpid(), signal)
        }
    }

    func willCommitCheckpoint(_ step: Int) {
        guard killInSaveAtStep == step else { return }
        printError("vlseg: fault injection: killed during the save of step \(step)")
        kill(getpid(), SIGKILL)
    }
}
