import Foundation
import Synchronization

/// An error that every rank raised at the same point, from one decision rank 0 broadcast (a failed
/// resume, a failed checkpoint save, a failed input preparation). Every rank is still in step, so the
/// job can end cleanly: rank 0 prints the message once, and all ranks finalize and exit together.
public struct AgreedFailure: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where this process is, for error lines that must say which of many ranks failed.
public enum ProcessIdentity {
    /// The host name, from `gethostname` (no name service lookup, which can stall).
    public static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }()

    /// "rank R (host)" under a launcher with several ranks, nil for a single process.
    public static var rankLabel: String? {
        let placement = LaunchPlacement.fromEnvironment()
        guard placement.underLauncher && placement.size > 1 else { return nil }
        return "rank \(placement.rank) (\(hostName))"
    }
}

/// How long a collective may keep a rank waiting once the job is stopping.
///
/// After a stop signal every live rank reaches the next step boundary within about one step, so a
/// collective that waits much longer than the slowest step so far is waiting for a rank that died or
/// hangs: the wait then ends the job instead of running into mpirun's kill, or the full watchdog.
/// The trainer keeps `patience` current; the signal handler arms the deadline (both atomics: the
/// handler runs on another thread).
public final class StopDeadline: Sendable {
    private let patienceNanos = Atomic<UInt64>(30_000_000_000)
    private let deadlineNanos = Atomic<UInt64>(0)

    public init() {}

    /// The longest a healthy peer may keep others waiting while the job stops.
    public func setPatience(seconds: Double) {
        patienceNanos.store(UInt64(max(seconds, 0) * 1e9), ordering: .relaxed)
    }

    public var patienceSeconds: Double { Double(patienceNanos.load(ordering: .relaxed)) * 1e-9 }

    /// Starts the countdown (the first call only).
    public func arm() {
        let now = DispatchTime.now().uptimeNanoseconds
        _ = deadlineNanos.compareExchange(
            expected: 0, desired: now + patienceNanos.load(ordering: .relaxed), ordering: .relaxed)
    }

    /// True once armed and past.
    public func hasPassed(now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> Bool {
        let d = deadlineNanos.load(ordering: .relaxed)
        return d != 0 && now > d
    }
}

/// What rank 0 sends when it decides for everyone: its value, or its error.
struct RootOutcome<Value: Codable>: Codable {
    var value: Value?
    var error: String?
}

/// The empty result of a decision that only succeeds or fails.
struct Done: Codable {}

extension Communicator {
    /// Rank 0 runs `work` (the others never do) and every rank gets its result; rank 0's error is
    /// thrown on every rank at the same point as an `AgreedFailure`, so all ranks stop together and
    /// the error is printed once.
    public func rootDecides<Value: Codable>(_ label: String, _ work: () throws -> Value) throws -> Value {
        var outcome: RootOutcome<Value>? = nil
        if isRoot {
            do { outcome = RootOutcome(value: try work(), error: nil) } catch {
                outcome = RootOutcome(value: nil, error: "\(error)")
            }
        }
        let agreed = broadcast(outcome, label: label)
        if let error = agreed.error { throw AgreedFailure(error) }
        guard let value = agreed.value else { throw AgreedFailure("\(label): rank 0 sent no result") }
        return value
    }

    /// `rootDecides` for work that only succeeds or fails.
    public func rootDecides(_ label: String, _ work: () throws -> Void) throws {
        _ = try rootDecides(label) { () throws -> Done in
            try work(); return Done()
        }
    }
}
