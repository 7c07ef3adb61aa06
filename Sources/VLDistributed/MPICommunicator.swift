import CMPI
import Foundation

/// Open MPI over MPI_COMM_WORLD.
///
/// Every collective is issued non-blocking and completed by polling `MPI_Test` from the calling
/// thread, so the watchdog needs no extra thread (MPI is initialised FUNNELED: only the main
/// thread calls it) and can call `MPI_Abort` itself when a deadline passes.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    public var timeout: Double
    public let stopDeadline = StopDeadline()
    private var finalized = false
    /// When the wait loop last looked for a failure notice from a peer.
    fileprivate var lastNoticeCheck: UInt64 = 0

    /// The tag of the one-message notices a failing rank sends its peers before aborting the job
    /// (below 32767, the smallest tag bound MPI guarantees; no other message uses point-to-point).
    static let failureTag: Int32 = 0x5E6F
    /// Tags of the watchdog's roll call: "which collective are you in?" and its answer.
    static let rollCallTag: Int32 = 0x5E70
    static let answerTag: Int32 = 0x5E71
    /// The collective this rank is waiting in (answered to a peer's roll call).
    fileprivate var waitingIn = ""

    public init(timeout: Double = 300) {
        var provided: Int32 = 0
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        MPI_Init_thread(&argc, &argv, vlseg_mpi_thread_funneled(), &provided)
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(vlseg_mpi_comm_world(), &r)
        MPI_Comm_size(vlseg_mpi_comm_world(), &s)
        rank = Int(r)
        size = Int(s)
        let placement = LaunchPlacement.fromEnvironment()
        localRank = placement.localRank
        localSize = placement.localSize
        self.timeout = timeout
    }

    deinit { finalize() }

    final class Request: PendingCollective {
        var request: MPI_Request?
        let owner: MPICommunicator
        let label: String
        let started = DispatchTime.now().uptimeNanoseconds
        var done = false

        init(_ request: MPI_Request?, owner: MPICommunicator, label: String) {
            self.request = request
            self.owner = owner
            self.label = label
        }

        func test() -> Bool {
            if done { return true }
            var flag: Int32 = 0
            let rc = MPI_Test(&request, &flag, vlseg_mpi_status_ignore())
            if rc != vlseg_mpi_success() {
                owner.abort(code: 3, message: "rank \(owner.rank): MPI \(label) failed (error \(rc))")
            }
            done = flag != 0
            return done
        }

        func wait() { wait(sleepingMicroseconds: 0) }

        /// Polls until complete; with `sleepingMicroseconds` > 0 it sleeps that long between polls
        /// instead of spinning.
        func wait(sleepingMicroseconds: UInt32) {
            var spins = 0
            while !test() {
                spins += 1
                if sleepingMicroseconds > 0 {
                    usleep(sleepingMicroseconds)
                } else if spins % 64 == 0 {
                    sched_yield()
                } else {
                    continue
                }
                let now = DispatchTime.now().uptimeNanoseconds
                owner.waitingIn = label
                owner.servicePeers(now: now)
                let elapsed = Double(now - started) * 1e-9
                if owner.stopDeadline.hasPassed(now: now) {
                    owner.abort(
                        code: 1,
                        message:
                            "rank \(owner.rank) (\(ProcessIdentity.hostName)): the job is stopping, but collective '\(label)' still waits after \(String(format: "%.0f", elapsed)) s, longer than any step so far took (\(String(format: "%.0f", owner.stopDeadline.patienceSeconds)) s allowed): a rank died or hangs — aborting the job without a final checkpoint"
                    )
                }
                if elapsed > owner.timeout {
                    let absent = owner.rollCall()
                    owner.abort(
                        code: 4,
                        message:
                            "rank \(owner.rank) (\(ProcessIdentity.hostName)): watchdog: collective '\(label)' did not complete within \(Int(owner.timeout)) s (comm.timeout_s): \(absent) — aborting the job"
                    )
                }
            }
        }
    }

    private func check(_ rc: Int32, _ op: String) {
        if rc != vlseg_mpi_success() { abort(code: 3, message: "rank \(rank): MPI \(op) failed (error \(rc))") }
    }

    private func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: MPI_Datatype, label: String) -> Request
    {
        var req = vlseg_mpi_request_null()
        check(
            MPI_Iallreduce(
                vlseg_mpi_in_place(), buffer, Int32(count), type, vlseg_mpi_sum(), vlseg_mpi_comm_world(), &req),
            "allreduce \(label)")
        return Request(req, owner: self, label: "allreduce \(label)")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) {
        allReduce(buffer, count: count, type: vlseg_mpi_float(), label: label).wait()
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, label: String) {
        allReduce(buffer, count: count, type: vlseg_mpi_double(), label: label).wait()
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int, label: String) {
        allReduce(buffer, count: count, type: vlseg_mpi_int64(), label: label).wait()
    }

    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, label: String) -> PendingCollective
    {
        allReduce(buffer, count: count, type: vlseg_mpi_float(), label: label)
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int, label: String) {
        var req = vlseg_mpi_request_null()
        check(
            MPI_Ibcast(buffer, Int32(bytes), vlseg_mpi_byte(), Int32(root), vlseg_mpi_comm_world(), &req),
            "broadcast \(label)")
        Request(req, owner: self, label: "broadcast \(label)").wait()
    }

    public func barrier(label: String) {
        var req = vlseg_mpi_request_null()
        check(MPI_Ibarrier(vlseg_mpi_comm_world(), &req), "barrier \(label)")
        Request(req, owner: self, label: "barrier \(label)").wait()
    }

    public func idleBarrier(label: String) {
        var req = vlseg_mpi_request_null()
        check(MPI_Ibarrier(vlseg_mpi_comm_world(), &req), "barrier \(label)")
        Request(req, owner: self, label: "barrier \(label)").wait(sleepingMicroseconds: 1000)
    }

    public func allGather(_ value: [UInt8], label: String) -> [[UInt8]] {
        let n = value.count
        var out = [UInt8](repeating: 0, count: n * size)
        var req = vlseg_mpi_request_null()
        value.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                check(
                    MPI_Iallgather(
                        src.baseAddress, Int32(n), vlseg_mpi_byte(), dst.baseAddress, Int32(n), vlseg_mpi_byte(),
                        vlseg_mpi_comm_world(), &req), "allgather \(label)")
                Request(req, owner: self, label: "allgather \(label)").wait()
            }
        }
        return (0..<size).map { Array(out[$0 * n..<($0 + 1) * n]) }
    }

    public func abort(code: Int32, message: String) -> Never {
        FileHandle.standardError.write(Data("vlseg: \(message)\n".utf8))
        fflush(nil)  // every C stream (naming `stdout` is a shared global to Swift 6)
        MPI_Abort(vlseg_mpi_comm_world(), code)
        _exit(code)
    }

    public func fail(message: String) -> Never {
        FileHandle.standardError.write(
            Data("vlseg: error: rank \(rank) (\(ProcessIdentity.hostName)): \(message)\n".utf8))
        fflush(nil)  // every C stream (naming `stdout` is a shared global to Swift 6)
        // A small message goes out eagerly: peers blocked in a collective see it at their next poll
        // and leave at once, rather than when mpirun's kill reaches them.
        let notice = Array("rank \(rank) (\(ProcessIdentity.hostName))".utf8.prefix(200))
        var requests = [MPI_Request?](repeating: vlseg_mpi_request_null(), count: size)
        notice.withUnsafeBytes { bytes in
            for peer in 0..<size where peer != rank {
                MPI_Isend(
                    bytes.baseAddress, Int32(bytes.count), vlseg_mpi_byte(), Int32(peer), Self.failureTag,
                    vlseg_mpi_comm_world(), &requests[peer])
            }
            let start = DispatchTime.now().uptimeNanoseconds
            var all: Int32 = 0
            while all == 0 && DispatchTime.now().uptimeNanoseconds - start < 1_000_000_000 {
                MPI_Testall(Int32(size), &requests, &all, nil)
                if all == 0 { usleep(1000) }
            }
        }
        MPI_Abort(vlseg_mpi_comm_world(), 1)
        _exit(1)
    }

    /// What a waiting rank does for its peers, at most every 20 ms: leave when one announced its
    /// failure, and answer a watchdog's roll call with the collective it waits in.
    fileprivate func servicePeers(now: UInt64) {
        guard now - lastNoticeCheck > 20_000_000 else { return }
        lastNoticeCheck = now
        answerRollCalls()
        leaveIfAPeerFailed()
    }

    /// Answers every pending roll call with the label of the collective this rank waits in.
    private func answerRollCalls() {
        while true {
            var flag: Int32 = 0
            var status = MPI_Status()
            MPI_Iprobe(vlseg_mpi_any_source(), Self.rollCallTag, vlseg_mpi_comm_world(), &flag, &status)
            guard flag != 0 else { return }
            var byte: UInt8 = 0
            MPI_Recv(
                &byte, 1, vlseg_mpi_byte(), status.MPI_SOURCE, Self.rollCallTag, vlseg_mpi_comm_world(),
                vlseg_mpi_status_ignore())
            let answer = Array(waitingIn.utf8.prefix(200))
            // Small enough to go out eagerly: the send returns without the asker's receive.
            answer.withUnsafeBytes { bytes in
                _ = MPI_Send(
                    bytes.baseAddress, Int32(bytes.count), vlseg_mpi_byte(), status.MPI_SOURCE, Self.answerTag,
                    vlseg_mpi_comm_world())
            }
        }
    }

    /// For the watchdog's message: asks every peer which collective it waits in (2 s for answers).
    /// A rank that does not answer is computing outside any collective, stuck, or dead.
    func rollCall() -> String {
        guard size > 1 else { return "no peer" }
        var question: UInt8 = 1
        var requests = [MPI_Request?](repeating: vlseg_mpi_request_null(), count: size)
        for peer in 0..<size where peer != rank {
            MPI_Isend(
                &question, 1, vlseg_mpi_byte(), Int32(peer), Self.rollCallTag, vlseg_mpi_comm_world(), &requests[peer])
        }
        var answers: [Int: String] = [:]
        let start = DispatchTime.now().uptimeNanoseconds
        while answers.count < size - 1 && DispatchTime.now().uptimeNanoseconds - start < 2_000_000_000 {
            answerRollCalls()
            var flag: Int32 = 0
            var status = MPI_Status()
            MPI_Iprobe(vlseg_mpi_any_source(), Self.answerTag, vlseg_mpi_comm_world(), &flag, &status)
            guard flag != 0 else { usleep(1000); continue }
            var count: Int32 = 0
            MPI_Get_count(&status, vlseg_mpi_byte(), &count)
            var bytes = [UInt8](repeating: 0, count: Int(max(count, 0)))
            MPI_Recv(
                &bytes, count, vlseg_mpi_byte(), status.MPI_SOURCE, Self.answerTag, vlseg_mpi_comm_world(),
                vlseg_mpi_status_ignore())
            answers[Int(status.MPI_SOURCE)] = String(decoding: bytes, as: UTF8.self)
        }
        let silent = (0..<size).filter { $0 != rank && answers[$0] == nil }
        var parts: [String] = []
        if !silent.isEmpty {
            parts.append(
                "rank(s) \(silent.map(String.init).joined(separator: ", ")) did not arrive (stuck outside any collective, or dead)"
            )
        }
        let elsewhere = answers.filter { $0.value != waitingIn }.sorted { $0.key < $1.key }
        if !elsewhere.isEmpty {
            parts.append(elsewhere.map { "rank \($0.key) waits in '\($0.value)'" }.joined(separator: ", "))
        }
        return parts.isEmpty
            ? "every rank waits in it, yet it did not complete (a network fault?)" : parts.joined(separator: "; ")
    }

    /// Leaves quietly (status 1) when a peer has announced its failure: its own line says why, and
    /// mpirun is ending the job.
    private func leaveIfAPeerFailed() {
        var flag: Int32 = 0
        var status = MPI_Status()
        MPI_Iprobe(vlseg_mpi_any_source(), Self.failureTag, vlseg_mpi_comm_world(), &flag, &status)
        guard flag != 0 else { return }
        var count: Int32 = 0
        MPI_Get_count(&status, vlseg_mpi_byte(), &count)
        var bytes = [UInt8](repeating: 0, count: Int(max(count, 0)))
        MPI_Recv(
            &bytes, count, vlseg_mpi_byte(), status.MPI_SOURCE, Self.failureTag, vlseg_mpi_comm_world(),
            vlseg_mpi_status_ignore())
        let who = String(decoding: bytes, as: UTF8.self)
        FileHandle.standardError.write(
            Data(
                "vlseg: rank \(rank) (\(ProcessIdentity.hostName)): stopping: \(who) failed (its error is above)\n".utf8
            ))
        fflush(nil)  // every C stream (naming `stdout` is a shared global to Swift 6)
        _exit(1)
    }

    public func finalize() {
        if finalized { return }
        finalized = true
        MPI_Finalize()
    }
}
