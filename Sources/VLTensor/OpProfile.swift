import Foundation
import Synchronization

/// Wall time per op over timed passes (`vlseg bench step --profile`, `bench infer --profile`): where
/// the time goes, by the names ops record themselves under ("linear", "attention", "mlp_relu", ...).
///
/// Backward time is measured around each node's backward function, including the accumulation of
/// the gradients it returns. Forward time is attributed when an op finishes, whether it records a
/// node or not (frozen-only ops report through `Tensor.unrecorded`): the time since the previous
/// op (or since `startForward`) goes to it, so glue between ops counts with the next op. Only the
/// thread that runs the step marks time; ops' own worker threads are inside their op's interval.
// @unchecked Sendable: filled only by the thread that runs the step (see above), read after it.
public final class OpProfile: @unchecked Sendable {
    /// The profile being filled, if any (one at a time, set by the bench around its timed steps).
    /// Every op asks, so the common answer (none) costs one relaxed atomic load, not a lock.
    public static var active: OpProfile? {
        get { profiling.load(ordering: .relaxed) ? activeProfile.withLock { $0 } : nil }
        set {
            activeProfile.withLock { $0 = newValue }
            profiling.store(newValue != nil, ordering: .relaxed)
        }
    }
    private static let activeProfile = Mutex<OpProfile?>(nil)
    private static let profiling = Atomic<Bool>(false)

    public struct Entry: Sendable {
        public var forwardSeconds = 0.0, backwardSeconds = 0.0
        public var forwardCalls = 0, backwardCalls = 0
        public var totalSeconds: Double { forwardSeconds + backwardSeconds }
    }

    public private(set) var entries: [String: Entry] = [:]
    private var lastMark: UInt64 = DispatchTime.now().uptimeNanoseconds
    private var inBackward = false

    public init() {}

    /// Starts a forward pass: time before this belongs to no op.
    public func startForward() { lastMark = DispatchTime.now().uptimeNanoseconds }

    func forwardRecorded(_ name: String) {
        guard !inBackward else { return }  // ops called inside a backward function belong to it
        let t = DispatchTime.now().uptimeNanoseconds
        entries[name, default: Entry()].forwardSeconds += Double(t - lastMark) * 1e-9
        entries[name, default: Entry()].forwardCalls += 1
        lastMark = t
    }

    func measureBackward<T>(_ name: String, _ body: () -> T) -> T {
        inBackward = true
        let t0 = DispatchTime.now().uptimeNanoseconds
        let result = body()
        entries[name, default: Entry()].backwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        entries[name, default: Entry()].backwardCalls += 1
        inBackward = false
        return result
    }

    /// A table of the ops by total time: calls, forward and backward milliseconds per step, and
    /// the share of `stepSeconds` (the measured steps' total).
    public func report(steps: Int, stepSeconds: Double) -> String {
        let perStep = 1e3 / Double(max(steps, 1))
        var lines = ["  op                         calls   forward ms   backward ms   share of step"]
        for (name, e) in entries.sorted(by: { $0.value.totalSeconds > $1.value.totalSeconds }) {
            lines.append(
                String(
                    format: "  %@ %6d %12.2f %13.2f %14.1f%%",
                    name.padding(toLength: 24, withPad: " ", startingAt: 0),
                    max(e.forwardCalls, e.backwardCalls) / max(steps, 1),
                    e.forwardSeconds * perStep, e.backwardSeconds * perStep,
                    100 * e.totalSeconds / max(stepSeconds, 1e-12)))
        }
        let covered = entries.values.reduce(0) { $0 + $1.totalSeconds }
        lines.append(
            String(
                format: "  (ops cover %.1f%% of the step; the rest is all-reduce, optimiser and loop overhead)",
                100 * covered / max(stepSeconds, 1e-12)))
        return lines.joined(separator: "\n")
    }
}
