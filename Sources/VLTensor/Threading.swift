import COpenBLAS
import Foundation
import Synchronization

/// The one threading knob of a rank: OpenBLAS threads and the engine's own parallel loops.
public enum ComputeThreads {
    /// Read by every parallel loop from any thread; set by a command before its work.
    private static let current = Atomic<Int>(1)

    /// Threads used per rank. Defaults to 1 until `set` is called.
    public static var count: Int { current.load(ordering: .relaxed) }

    /// Sets the thread count for OpenBLAS and for `parallelFor`.
    public static func set(_ n: Int) {
        current.store(max(1, n), ordering: .relaxed)
        openblas_set_num_threads(Int32(max(1, n)))
    }

    /// Processor cores this process may run on.
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }
}

/// Runs `body` over `0..<count` split into contiguous chunks, one per thread, when the work is
/// large enough to pay for the hand-off (`grain` = smallest chunk worth a thread).
@inlinable
public func parallelFor(_ count: Int, grain: Int = 16384, _ body: (Range<Int>) -> Void) {
    let threads = ComputeThreads.count
    if threads <= 1 || count < 2 * grain {
        if count > 0 { body(0..<count) }
        return
    }
    let chunks = min(threads, (count + grain - 1) / grain)
    let per = (count + chunks - 1) / chunks
    withoutActuallyEscaping(body) { fn in
        let shared = ParallelBody(fn)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per, hi = min(count, lo + per)
            if lo < hi { shared.call(lo..<hi) }
        }
    }
}

/// A loop body handed to the worker threads of one parallel loop, which returns only after every
/// call has ended. Safe to share because of the loops' contract, which the compiler cannot see:
/// each call works on its own part of the data (disjoint chunks or slots) and the body does not
/// outlive the loop.
@usableFromInline
struct ParallelBody<Argument>: @unchecked Sendable {
    @usableFromInline let body: (Argument) -> Void
    @usableFromInline init(_ body: @escaping (Argument) -> Void) { self.body = body }
    @inlinable func call(_ argument: Argument) { body(argument) }
}

/// Sums over fixed blocks of `block` elements of 0..<n, computed in parallel: `body(range, out)`
/// writes `width` partial sums of one block, and the blocks are added in block order, so the
/// result is the same for any thread count (losses, gradient norms).
public func fixedBlockSums(
    _ n: Int, block: Int = 16384, width: Int,
    _ body: (Range<Int>, UnsafeMutablePointer<Double>) -> Void
) -> [Double] {
    let blocks = (n + block - 1) / block
    var partial = [Double](repeating: 0, count: blocks * width)
    partial.withUnsafeMutableBufferPointer { buffer in
        let base = buffer.baseAddress!
        parallelFor(blocks, grain: 1) { range in
            for b in range { body((b * block)..<min(n, (b + 1) * block), base + b * width) }
        }
    }
    var total = [Double](repeating: 0, count: width)
    for b in 0..<blocks { for k in 0..<width { total[k] += partial[b * width + k] } }
    return total
}

extension ComputeThreads {
    /// A sensible default: the machine's cores divided among the ranks that share it.
    public static func defaultCount(for ranksOnThisMachine: Int) -> Int {
        max(1, availableCores / max(1, ranksOnThisMachine))
    }
}

/// Items 0..<count in a fixed number of slots (item i in slot i mod `slots`), each slot's items taken
/// in increasing order by one thread, the slots spread over the threads with single-threaded BLAS.
/// Per-slot partial sums (weight gradients) added in slot order then give the same bits for any
/// thread count: the grouping depends on the work's shape, never on how many threads run it.
struct SlotSchedule {
    let count: Int, slots: Int, workers: Int

    /// `workers` defaults to one per thread, at most one per slot.
    init(count: Int, slots: Int, workers: Int? = nil) {
        self.count = count
        self.slots = max(1, min(slots, count))
        self.workers = max(1, min(workers ?? ComputeThreads.count, self.slots))
    }

    /// Runs `body(item, slot, firstInSlot, worker)` for every item: worker w takes slots w,
    /// w + workers, ...
    func run(_ body: (_ item: Int, _ slot: Int, _ first: Bool, _ worker: Int) -> Void) {
        func work(_ worker: Int) {
            var slot = worker
            while slot < slots {
                var item = slot
                while item < count {
                    body(item, slot, item < slots, worker)
                    item += slots
                }
                slot += workers
            }
        }
        if workers == 1 { work(0); return }
        BLAS.setThreads(1)
        defer { BLAS.setThreads(ComputeThreads.count) }
        withoutActuallyEscaping(work) { fn in
            let shared = ParallelBody(fn)
            DispatchQueue.concurrentPerform(iterations: workers) { shared.call($0) }
        }
    }

    /// `parts` [slots, n] summed over the slots in slot order, as a tensor of `shape` (`parts`
    /// itself, reshaped, when there is one slot).
    func summedSlots(_ parts: Tensor, shape: [Int]) -> Tensor {
        if slots == 1 { return parts.reshaped(shape) }
        let n = parts.count / slots
        let out = Tensor(uninitialized: shape)
        withTensorPointers(writing: out, reading: parts) { po, pp in
            po.update(from: pp, count: n)
            for s in 1..<slots {
                let src = pp + s * n
                for i in 0..<n { po[i] += src[i] }
            }
        }
        return out
    }
}
