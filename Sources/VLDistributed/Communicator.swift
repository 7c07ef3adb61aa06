import CMPI
import Foundation

/// Errors of collective communication.
public enum CommunicatorError: Error, CustomStringConvertible {
    case mpi(operation: String, code: Int32)
    case mismatch(what: String, detail: String)

    public var description: String {
        switch self {
        case let .mpi(op, code): return "MPI \(op) failed with error code \(code)"
        case let .mismatch(what, detail): return "ranks disagree on \(what): \(detail)"
        }
    }
}

/// A request started by a non-blocking collective; `wait` completes it (or aborts on timeout).
public protocol PendingCollective: AnyObject {
    /// Makes progress without blocking; true once complete.
    func test() -> Bool
    /// Blocks until complete, under the communicator's watchdog.
    func wait()
}

/// Collective communication among the ranks of a job.
///
/// Every collective must be entered by every rank in the same order: code paths that only rank 0
/// runs (saving, logging) never call one. Every blocking call is guarded by a watchdog: a
/// collective that does not complete within `timeout` seconds (a rank is missing, stuck or dead)
/// aborts the whole job with a message naming the operation, instead of hanging forever.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    var localRank: Int { get }
    var localSize: Int { get }
    /// Seconds a collective may take before the watchdog aborts the job.
    var timeout: Double { get set }

    /// In-place sum over ranks.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String)
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, label: String)
    func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int, label: String)
    /// Starts an in-place float sum; the buffer must stay untouched until the request completes.
    func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) -> PendingCollective
    /// Copies `bytes` bytes from `root` into every rank's buffer.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int, label: String)
    func barrier(label: String)
    /// A barrier for ranks that have nothing to do until the others arrive: it sleeps between polls
    /// (about a millisecond each), leaving the core to whatever else runs on it, where `barrier`
    /// spins for the lowest latency.
    func idleBarrier(label: String)
    /// Every rank's contribution, in rank order; every rank must pass the same length (small
    /// messages only; `allGatherVariable` takes any lengths).
    func allGather(_ value: [UInt8], label: String) -> [[UInt8]]
    /// Ends every rank of the job with `code` after printing `message`.
    func abort(code: Int32, message: String) -> Never
    /// Ends the whole job because of an error on this rank: prints it once, prefixed with the rank
    /// and host when there are several, tells the peers (so ranks blocked in a collective leave at
    /// once) and aborts the job with status 1. It never enters a collective: the peers may never
    /// reach it.
    func fail(message: String) -> Never
    /// Bounds collective waits once the job is stopping (see `StopDeadline`).
    var stopDeadline: StopDeadline { get }
    /// Shuts communication down cleanly (call once at the end).
    func finalize()
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func allReduceSum(_ values: inout [Double], label: String) {
        values.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: $0.count, label: label) }
    }

    public func allReduceSum(_ values: inout [Float], label: String) {
        values.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: $0.count, label: label) }
    }

    /// Rank 0's value of a Codable decision, everywhere (rank 0 decides, all act together).
    public func broadcast<T: Codable>(_ value: T?, root: Int = 0, label: String) -> T {
        var payload = [UInt8]()
        if rank == root {
            payload = Array((try? JSONEncoder().encode(value)) ?? Data())
        }
        var length = Int64(payload.count)
        withUnsafeMutableBytes(of: &length) {
            broadcast($0.baseAddress!, bytes: 8, root: root, label: label + " (length)")
        }
        if rank != root { payload = [UInt8](repeating: 0, count: Int(length)) }
        if length > 0 {
            payload.withUnsafeMutableBytes { broadcast($0.baseAddress!, bytes: Int(length), root: root, label: label) }
        }
        guard let decoded = try? JSONDecoder().decode(T.self, from: Data(payload)) else {
            abort(code: 2, message: "rank \(rank): could not decode the broadcast '\(label)'")
        }
        return decoded
    }

    /// Every rank's contribution, in rank order, whatever its length: the lengths are gathered first,
    /// then every contribution padded to the longest.
    public func allGatherVariable(_ value: [UInt8], label: String) -> [[UInt8]] {
        guard size > 1 else { return [value] }
        var length = Int64(value.count)
        let lengths = allGather(withUnsafeBytes(of: &length) { Array($0) }, label: label + " (lengths)").map { bytes in
            bytes.withUnsafeBytes { Int($0.loadUnaligned(as: Int64.self)) }
        }
        let longest = lengths.max() ?? 0
        let padded = value + [UInt8](repeating: 0, count: longest - value.count)
        return zip(allGather(padded, label: label), lengths).map { Array($0.prefix($1)) }
    }

    /// Checks that every rank holds the same value of `fingerprint` (e.g. a hash of the frozen
    /// weights or of the trainable layout); otherwise throws naming the ranks that differ.
    public func verifySame(_ what: String, fingerprint: String) throws {
        var bytes = Array(fingerprint.utf8.prefix(64))
        bytes += [UInt8](repeating: 0, count: 64 - bytes.count)
        let all = allGather(bytes, label: "verify \(what)")
        let strings = all.map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let differing = strings.enumerated().filter { $0.element != strings[0] }.map(\.offset)
        if !differing.isEmpty {
            throw CommunicatorError.mismatch(
                what: what,
                detail: "rank 0 has \(strings[0]), "
                    + differing.map { "rank \($0) has \(strings[$0])" }.joined(separator: ", "))
        }
    }
}

/// Chooses MPI under a launcher with more than one rank, and a plain single process otherwise.
public enum Communicators {
    /// The communicator `make` created for this process, kept alive until `finishCurrent`: the error
    /// path needs it to end the job (and releasing an MPI communicator would finalize it, a collective
    /// the peers of a failed rank never reach).
    // nonisolated(unsafe): set and read only by the thread that runs the command (MPI itself is
    // initialised FUNNELED: that thread alone may call it), so no other thread ever sees it.
    nonisolated(unsafe) public private(set) static var current: Communicator?

    public static func make(timeout: Double = 300) -> Communicator {
        let placement = LaunchPlacement.fromEnvironment()
        let comm: Communicator =
            placement.underLauncher && placement.size > 1
            ? MPICommunicator(timeout: timeout) : SingleProcessCommunicator(timeout: timeout)
        current = comm
        return comm
    }

    /// Finalizes the current communicator after a clean end (every rank gets here together).
    public static func finishCurrent() {
        current?.finalize()
        current = nil
    }
}

/// One process, no MPI: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    public let rank = 0, size = 1, localRank = 0, localSize = 1
    public var timeout: Double

    public init(timeout: Double = 300) { self.timeout = timeout }

    final class Done: PendingCollective {
        func test() -> Bool { true }
        func wait() {}
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, label: String) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int, label: String) {}
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) -> PendingCollective
    { Done() }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int, label: String) {}
    public func barrier(label: String) {}
    public func idleBarrier(label: String) {}
    public func allGather(_ value: [UInt8], label: String) -> [[UInt8]] { [value] }
    public let stopDeadline = StopDeadline()
    public func abort(code: Int32, message: String) -> Never {
        FileHandle.standardError.write(Data("vlseg: \(message)\n".utf8))
        exit(code)
    }
    public func fail(message: String) -> Never {
        let prefix = ProcessIdentity.rankLabel.map { "\($0): " } ?? ""
        FileHandle.standardError.write(Data("vlseg: error: \(prefix)\(message)\n".utf8))
        exit(1)
    }
    public func finalize() {}
}
