import Foundation
import COpenBLAS

/// The one threading knob of a rank: OpenBLAS threads and the engine's own parallel loops.
public enum ComputeThreads {
    nonisolated(unsafe) private static var current = 1

    /// Threads used per rank. Defaults to 1 until `set` is called.
    public static var count: Int { current }

    /// Sets the thread count for OpenBLAS and for `parallelFor`.
    public static func set(_ n: Int) {
        current = max(1, n)
        openblas_set_num_threads(Int32(current))
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
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = c * per, hi = min(count, lo + per)
            if lo < hi { fn(lo..<hi) }
        }
    }
}

/// Sums over fixed blocks of `block` elements of 0..<n, computed in parallel: `body(range, out)`
/// writes `width` partial sums of one block, and the blocks are added in block order, so the
/// result is the same for any thread count (losses, gradient norms).
public func fixedBlockSums(_ n: Int, block: Int = 16384, width: Int,
                           _ body: (Range<Int>, UnsafeMutablePointer<Double>) -> Void) -> [Double] {
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
