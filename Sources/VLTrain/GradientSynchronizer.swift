import Foundation
import VLDistributed
import VLTensor

/// Averages the arena's gradients over ranks with as few, as early all-reduces as possible.
///
/// The arena is cut into buckets of about `bucketBytes`, walking the slots from the last
/// registered to the first (backward finishes the last layers' gradients first). During the
/// final backward of an optimiser step each bucket's all-reduce starts, non-blocking, as soon as
/// every parameter in it reports its gradient final, and the rest of backward runs meanwhile.
/// `comm.overlap=false` instead reduces everything after backward. With gradient accumulation
/// only the last micro-step communicates, so there is exactly one all-reduce family per step.
public final class GradientSynchronizer {
    struct Bucket {
        let range: Range<Int>
        let slotIndices: [Int]
    }

    let arena: ParameterArena
    let comm: Communicator
    let overlap: Bool
    let buckets: [Bucket]
    private var bucketOfSlot: [Int] = []
    private var slotOfNode: [ObjectIdentifier: Int] = [:]
    private var pendingInBucket: [Int] = []
    private var requests: [PendingCollective?] = []
    private var communicating = false
    /// Seconds spent waiting for all-reduces to finish in `finish()` (communication not hidden).
    public private(set) var lastWaitSeconds: Double = 0

    public init(arena: ParameterArena, comm: Communicator, bucketBytes: Int, overlap: Bool, nodes: [String: GradNode]) {
        self.arena = arena
        self.comm = comm
        self.overlap = overlap
        var buckets: [Bucket] = []
        var current: [Int] = []
        var lo = Int.max, hi = 0
        let limit = max(bucketBytes / 4, 1)
        for index in arena.slots.indices.reversed() {
            let slot = arena.slots[index]
            current.append(index)
            lo = min(lo, slot.offset)
            hi = max(hi, slot.offset + slot.count)
            if hi - lo >= limit {
                buckets.append(Bucket(range: lo..<hi, slotIndices: current))
                current = []
                lo = .max
                hi = 0
            }
        }
        if !current.isEmpty { buckets.append(Bucket(range: lo..<hi, slotIndices: current)) }
        self.buckets = buckets
        bucketOfSlot = [Int](repeating: 0, count: arena.slots.count)
        for (b, bucket) in buckets.enumerated() { for s in bucket.slotIndices { bucketOfSlot[s] = b } }
        for (i, slot) in arena.slots.enumerated() {
            if let node = nodes[slot.name] { slotOfNode[ObjectIdentifier(node)] = i }
        }
    }

    /// Call before the backward pass that completes an optimiser step.
    public func beginFinalBackward() {
        communicating = comm.size > 1
        pendingInBucket = buckets.map(\.slotIndices.count)
        requests = [PendingCollective?](repeating: nil, count: buckets.count)
    }

    /// The autodiff hook: a leaf's gradient is final.
    public func leafReady(_ node: GradNode) {
        guard communicating, overlap, let slot = slotOfNode[ObjectIdentifier(node)] else { return }
        let b = bucketOfSlot[slot]
        pendingInBucket[b] -= 1
        if pendingInBucket[b] == 0 { start(b) }
        // Let MPI progress the reductions already in flight.
        for case let r? in requests { _ = r.test() }
    }

    private func start(_ b: Int) {
        guard requests[b] == nil else { return }
        let range = buckets[b].range
        // The one pointer that outlives its scope: MPI writes the sums into the bucket until the
        // request completes. The gradients stay allocated meanwhile because this synchronizer holds
        // the arena (whose tensors own them) as well as the request, and `finish` waits for every
        // request before the step reads the gradients.
        requests[b] = arena.gradients.withUnsafeMutablePointer { g in
            comm.startAllReduceSum(g + range.lowerBound, count: range.count, label: "gradients bucket \(b)")
        }
    }

    /// Completes every bucket's all-reduce and turns sums into averages over `ranks x microSteps`.
    public func finish(microSteps: Int) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        if communicating {
            for b in buckets.indices where requests[b] == nil { start(b) }
            for case let r? in requests { r.wait() }
        }
        lastWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        communicating = false
        let scale = 1 / Float(comm.size * max(microSteps, 1))
        if scale != 1 {
            arena.gradients.withUnsafeMutablePointer { g in
                parallelFor(arena.count, grain: 65536) { range in for i in range { g[i] *= scale } }
            }
        }
    }
}
