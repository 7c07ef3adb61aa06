import Foundation

/// How a training epoch treats the samples that do not fill a whole global batch (batch x ranks).
///
/// Every rank must run the same number of steps, because each step ends in an all-reduce that all ranks
/// enter: `drop` leaves the last partial global batch out of this epoch (a different remainder each epoch,
/// since the permutation changes); `wrap` fills it up with samples from the start of the permutation.
public enum RemainderPolicy: String, Sendable, Codable, CaseIterable {
    case drop, wrap
}

/// Training shards are equal-sized batches; evaluation shards partition the samples exactly.
public enum SamplerMode: Sendable, Equatable {
    case training(RemainderPolicy)
    case evaluation
}

/// Where a rank is in its stream of batches: `position` batches of `epoch` have been consumed.
///
/// A checkpoint stores the cursor of the last batch the optimiser stepped on; resuming from it yields the
/// rest of that epoch in the same order, and every later epoch as an uninterrupted run would (the order
/// depends only on seed and epoch). Exact resume needs the same world size and batch size; the trainer
/// checks those against its own record.
public struct SamplerCursor: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var epoch: Int
    public var position: Int

    public init(epoch: Int = 0, position: Int = 0) {
        self.epoch = epoch
        self.position = position
    }

    public var description: String { "epoch \(epoch), batch \(position)" }
}

/// A cursor that does not fit the sampler it is given to.
public struct SamplerError: Error, Sendable, CustomStringConvertible, LocalizedError {
    public var detail: String
    public var description: String { "sampler: \(detail)" }
    public var errorDescription: String? { description }
}

/// Splits each epoch's samples among ranks.
///
/// Per epoch the order is a permutation drawn from `CounterRandom(seed, epoch, 0, .permutation)` (or the
/// identity without shuffling) and is the same on every rank, so the shards of one epoch never overlap.
///
/// Training: the permutation is cut to a multiple of `batchSize * worldSize` (`drop`) or extended to one by
/// wrapping around (`wrap`); rank r takes every `worldSize`-th sample starting at r, so global step k
/// consumes positions `k*B*W ..< (k+1)*B*W` of the order whatever the world size, and every rank gets the
/// same number of full batches.
///
/// Evaluation: rank r takes a contiguous block of the (unshuffled) order, the first `count % worldSize`
/// ranks one sample more; each sample is seen exactly once and never padded, so metrics are not biased by
/// duplicates. Ranks may then hold different numbers of batches (the last one may be partial), which the
/// evaluation loop must allow for by reducing only after its loop.
public struct ShardedSampler: Sendable, Equatable {
    public let count: Int
    public let rank: Int
    public let worldSize: Int
    public let batchSize: Int
    public let seed: UInt64
    public let mode: SamplerMode
    public let shuffle: Bool

    /// - Parameter shuffle: defaults to true in training and false in evaluation.
    public init(
        count: Int, rank: Int = 0, worldSize: Int = 1, batchSize: Int, seed: UInt64 = 0,
        mode: SamplerMode = .training(.drop), shuffle: Bool? = nil
    ) throws {
        guard count >= 0 else { throw SamplerError(detail: "negative sample count \(count)") }
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw SamplerError(detail: "rank \(rank) is not in a world of \(worldSize)")
        }
        guard batchSize >= 1 else { throw SamplerError(detail: "batch size must be at least 1, got \(batchSize)") }
        self.count = count
        self.rank = rank
        self.worldSize = worldSize
        self.batchSize = batchSize
        self.seed = seed
        self.mode = mode
        if let shuffle {
            self.shuffle = shuffle
        } else if case .training = mode {
            self.shuffle = true
        } else {
            self.shuffle = false
        }
    }

    /// The epoch's order of all sample indices (identical on every rank).
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<count)
        guard shuffle, count > 1 else { return order }
        var rng = CounterRandom(seed: seed, epoch: UInt64(epoch), index: 0, purpose: .permutation)
        // Fisher-Yates, drawing with the sampler's own reproducible bounded draw.
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = rng.drawIndex(below: i + 1)
            if i != j { order.swapAt(i, j) }
        }
        return order
    }

    /// Samples per rank in one epoch (training: the same on every rank; evaluation: this rank's).
    public var samplesPerEpoch: Int {
        switch mode {
        case let .training(policy):
            let global = batchSize * worldSize
            let steps = policy == .drop ? count / global : (count + global - 1) / global
            return steps * batchSize
        case .evaluation:
            return evaluationRange.count
        }
    }

    /// Batches this rank runs per epoch.
    public var batchesPerEpoch: Int {
        switch mode {
        case .training: return samplesPerEpoch / batchSize
        case .evaluation: return (samplesPerEpoch + batchSize - 1) / batchSize
        }
    }

    /// This rank's block of positions in evaluation.
    var evaluationRange: Range<Int> {
        let base = count / worldSize, extra = count % worldSize
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// This rank's sample indices for `epoch`, in the order it consumes them.
    public func shard(epoch: Int) -> [Int] {
        let order = order(epoch: epoch)
        switch mode {
        case .training:
            let n = samplesPerEpoch
            guard n > 0, count > 0 else { return [] }
            var out: [Int] = []
            out.reserveCapacity(n)
            for k in 0..<n {
                out.append(order[(k * worldSize + rank) % count])
            }
            return out
        case .evaluation:
            return Array(order[evaluationRange])
        }
    }

    /// This rank's batches for `epoch`.
    public func batches(epoch: Int) -> [[Int]] {
        let s = shard(epoch: epoch)
        return stride(from: 0, to: s.count, by: batchSize).map { Array(s[$0..<min($0 + batchSize, s.count)]) }
    }

    /// The batches still to come from `cursor` on within its epoch.
    public func remainingBatches(from cursor: SamplerCursor) throws -> [[Int]] {
        try check(cursor)
        return Array(batches(epoch: cursor.epoch).dropFirst(cursor.position))
    }

    /// The cursor after consuming one more batch; at the end of an epoch it moves to the next one.
    public func advanced(_ cursor: SamplerCursor) -> SamplerCursor {
        let next = SamplerCursor(epoch: cursor.epoch, position: cursor.position + 1)
        return next.position >= batchesPerEpoch ? SamplerCursor(epoch: cursor.epoch + 1, position: 0) : next
    }

    func check(_ cursor: SamplerCursor) throws {
        guard cursor.epoch >= 0 else { throw SamplerError(detail: "negative epoch in cursor (\(cursor))") }
        guard (0...batchesPerEpoch).contains(cursor.position) else {
            throw SamplerError(
                detail:
                    "cursor (\(cursor)) is past the \(batchesPerEpoch) batches this rank has per epoch; was the checkpoint made with another world size or batch size?"
            )
        }
    }
}
