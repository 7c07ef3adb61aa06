import Foundation
import Synchronization
import VLDistributed

/// Stop-with-a-checkpoint on a signal, so a preempted or interrupted run loses no steps.
///
/// SIGTERM (a scheduler's or Kubernetes' notice before the kill), SIGINT (Ctrl-C) and SIGUSR1
/// (which `mpirun` forwards to every rank without ending the job, and which Slurm's
/// `--signal=B:USR1@SECONDS` sends ahead of a time limit) ask the trainer to finish the current
/// optimiser step, save a checkpoint and exit with status 128 + the signal's number. Ranks agree at
/// every step boundary (one small all-reduce), so all of them stop after the same step even when the
/// signal reached only one. A second signal of the same kind ends the process at once (status
/// 128 + the signal's number, no checkpoint).
// @unchecked Sendable: what signal handlers and the loop share is atomic (`received`, the deadline);
// the sources are installed and removed by the thread that runs the command.
public final class StopRequest: @unchecked Sendable {
    /// The signals handled, in the order their names are reported when several arrive.
    public static let signals: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

    /// Bit i set: `signals[i]` has arrived (written by the signal sources, read by the loop).
    private let received = Atomic<Int>(0)
    private var sources: [DispatchSourceSignal] = []
    private let log: @Sendable (String) -> Void
    /// Armed by the first signal: from then on a rank waits for a peer only about as long as a
    /// step takes (a peer that does not come is dead or stuck).
    private let deadline: StopDeadline?

    /// `log` reports each first arrival (from a dispatch queue, not from a signal handler).
    public init(deadline: StopDeadline? = nil, log: @escaping @Sendable (String) -> Void) {
        self.deadline = deadline
        self.log = log
    }

    /// Starts handling the signals, and returns once the handlers are in place (a source registers
    /// asynchronously, and a signal arriving before that would be ignored). The process's
    /// dispositions become "ignore" so that dispatch sources see them; `uninstall` restores the defaults.
    public func install() {
        guard sources.isEmpty else { return }
        let registered = DispatchSemaphore(value: 0)
        for (slot, sig) in Self.signals.enumerated() {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setRegistrationHandler { registered.signal() }
            source.setEventHandler { [weak self] in
                guard let self else { return }
                if self.received.bitwiseOr(1 << slot, ordering: .relaxed).oldValue & (1 << slot) != 0 {
                    // The signal may be blocked and read from a descriptor by the dispatch source, so
                    // restoring the default action and re-sending it would not end the process.
                    self.log("received \(Self.name(sig)) again: stopping now, without a checkpoint")
                    _exit(128 + sig)
                } else {
                    self.deadline?.arm()
                    self.log(
                        "received \(Self.name(sig)): stopping after this step with a checkpoint (send it again to stop at once)"
                    )
                }
            }
            source.resume()
            sources.append(source)
        }
        for _ in sources { _ = registered.wait(timeout: .now() + 5) }
    }

    public func uninstall() {
        for source in sources { source.cancel() }
        sources.removeAll()
        for sig in Self.signals { signal(sig, SIG_DFL) }
    }

    deinit { uninstall() }

    /// Marks `sig` as received, as its arrival would (tests; a watchdog could use it too).
    public func request(_ sig: Int32) {
        if let slot = Self.signals.firstIndex(of: sig) { received.bitwiseOr(1 << slot, ordering: .relaxed) }
        deadline?.arm()
    }

    /// The signal this rank has received, if any.
    public var localSignal: Int32? {
        let bits = received.load(ordering: .relaxed)
        return Self.signals.indices.first { bits & (1 << $0) != 0 }.map { Self.signals[$0] }
    }

    /// The signal any rank has received, the same answer on every rank: one all-reduce of a flag per
    /// signal kind (nothing to exchange in a single-process run).
    public func agreedSignal(_ comm: Communicator) -> Int32? {
        guard comm.size > 1 else { return localSignal }
        let bits = received.load(ordering: .relaxed)
        var flags = Self.signals.indices.map { Int64(bits >> $0 & 1) }
        flags.withUnsafeMutableBufferPointer {
            comm.allReduceSum($0.baseAddress!, count: $0.count, label: "stop request")
        }
        return Self.signals.indices.first { flags[$0] > 0 }.map { Self.signals[$0] }
    }

    public static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(sig)"
        }
    }
}
