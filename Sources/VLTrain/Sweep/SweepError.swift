import Foundation

/// A sweep that cannot go on, as one line naming what is at fault. Passwords never appear: every message
/// that can hold a storage URL is masked by `SweepStorage.mask` before it becomes one of these.
public enum SweepError: Error, CustomStringConvertible, Equatable {
    /// No Python interpreter at the path or name the driver runs.
    case pythonMissing(python: String)
    /// Python runs but cannot import Optuna.
    case optunaMissing(python: String, detail: String)
    /// The storage cannot be opened or written (a bad URL, a database that refuses the connection).
    case storage(String)
    /// An Optuna operation failed for another reason.
    case driver(operation: String, message: String)
    /// The study in the storage does not fit this sweep (another direction or objective).
    case studyMismatch(String)
    /// The sweep directory cannot be written.
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .pythonMissing(python):
            return
                "sweep: cannot run \(python) (Python 3 with Optuna drives the study): install python3 or set VLSEG_PYTHON to one"
        case let .optunaMissing(python, detail):
            return
                "sweep: \(python) cannot import optuna (\(detail)): install it with `\(python) -m pip install \(OptunaDriver.optunaRequirement)` (launch/sweep does this)"
        case let .storage(message): return "sweep: storage: \(message)"
        case let .driver(operation, message): return "sweep: Optuna \(operation): \(message)"
        case let .studyMismatch(message): return "sweep: \(message)"
        case let .io(path, reason): return "sweep: \(path): \(reason)"
        }
    }
}
