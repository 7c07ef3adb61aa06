import Foundation
import VLModels
import VLTensor

/// Vision features of frozen towers, computed once per sample and reused in later epochs.
///
/// Valid only when nothing trainable acts on the vision tower before the taps and the images do
/// not change between epochs (augmentation off): then a sample's taps are a fixed function of its
/// image, and reusing them changes no result. Storage is one flat float32 block with a slot per
/// sample, anonymous memory when it fits `budgetBytes`, otherwise a memory-mapped file (the OS
/// pages it in and out), so even large datasets cache without exhausting RAM.
public final class FeatureCache {
    private let count: Int
    private let budgetBytes: Int
    private let fileURL: URL
    private var base: UnsafeMutablePointer<Float>?
    private var mappedBytes = 0
    private var slotFloats = 0
    private var shapes: [[Int]] = []
    private var grid = (0, 0)
    private var filled: [Bool]
    public private(set) var hits = 0
    public private(set) var misses = 0
    public private(set) var isFileBacked = false

    /// - Parameters:
    ///   - count: samples in the set (slots are indexed by sample index).
    ///   - directory: where the file goes when the cache exceeds `budgetBytes`.
    public init(count: Int, budgetBytes: Int, directory: URL, name: String) {
        self.count = count
        self.budgetBytes = budgetBytes
        fileURL = directory.appendingPathComponent("feature-cache-\(name)-\(getpid()).bin")
        filled = [Bool](repeating: false, count: count)
    }

    deinit {
        if let base { munmap(base, mappedBytes) }
        if isFileBacked { try? FileManager.default.removeItem(at: fileURL) }
    }

    /// Bytes the cache needs (known after the first insert).
    public var totalBytes: Int { slotFloats * 4 * count }

    private func allocate(perSample: [[Int]]) throws {
        shapes = perSample
        slotFloats = perSample.reduce(0) { $0 + $1.reduce(1, *) }
        mappedBytes = max(slotFloats * 4 * count, 4)
        if mappedBytes <= budgetBytes {
            let p = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else {
                throw SetupError(message: "feature cache: cannot allocate \(mappedBytes) bytes")
            }
            base = p.assumingMemoryBound(to: Float.self)
        } else {
            try FileManager.default.createDirectory(
                at: fileURL.deletingLastPathComponent(), withIntermediateDirectories: true)
            let fd = open(fileURL.path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0 else { throw SetupError(message: "\(fileURL.path): cannot create the feature cache file") }
            defer { close(fd) }
            // Reserved, not sparse: a store into a mapping whose page the disk cannot hold is a SIGBUS,
            // so a full disk must be found here, as an error, rather than mid-epoch.
            let reserved = posix_fallocate(fd, 0, off_t(mappedBytes))
            guard reserved == 0 else {
                unlink(fileURL.path)
                throw SetupError(
                    message:
                        "\(fileURL.path): cannot reserve \(mappedBytes) bytes for the feature cache: \(String(cString: strerror(reserved))) (a larger trainer.cache_mb keeps it in memory, or trainer.feature_cache=off)"
                )
            }
            let p = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else {
                throw SetupError(message: "\(fileURL.path): cannot map the feature cache")
            }
            base = p.assumingMemoryBound(to: Float.self)
            isFileBacked = true
        }
    }

    /// The batch's features: from the cache when every sample is cached, otherwise computed by
    /// `compute` (all samples of the batch at once) and stored.
    ///
    /// Computing a partial batch would be cheaper but is not bit-identical: BLAS sums in an order
    /// that depends on the number of rows, so a sample's features from a batch of 3 can differ in
    /// the last bit from the same sample in a batch of 4, and exact resume would no longer hold.
    /// Each rank caches the samples of its own shards, so with several ranks a batch is fully
    /// cached only once its rank has seen every one of its samples.
    public func features(samples: [Int], compute: () -> FrozenFeatures) throws -> FrozenFeatures {
        if let base, samples.allSatisfy({ filled[$0] }) {
            hits += samples.count
            let b = samples.count
            var activations: [Tensor] = []
            var offset = 0
            for shape in shapes {
                let per = shape.reduce(1, *)
                let t = Tensor(uninitialized: [b] + shape)
                t.withUnsafeMutablePointer { pt in
                    for (i, s) in samples.enumerated() {
                        (pt + i * per).update(from: base + s * slotFloats + offset, count: per)
                    }
                }
                activations.append(t)
                offset += per
            }
            return FrozenFeatures(activations: activations, gridHeight: grid.0, gridWidth: grid.1)
        }
        let f = GradMode.withoutGradients { compute() }
        misses += samples.count
        if base == nil {
            grid = (f.gridHeight, f.gridWidth)
            try allocate(perSample: f.activations.map { Array($0.shape.dropFirst()) })
        }
        guard f.activations.map({ Array($0.shape.dropFirst()) }) == shapes else {
            throw SetupError(message: "feature cache: feature shapes changed between batches (different image sizes?)")
        }
        guard let base else { throw SetupError(message: "feature cache: no memory for the features") }
        var offset = 0
        for a in f.activations {
            let per = a.count / samples.count
            a.withUnsafePointer { pa in
                for (i, s) in samples.enumerated() {
                    (base + s * slotFloats + offset).update(from: pa + i * per, count: per)
                }
            }
            offset += per
        }
        for s in samples { filled[s] = true }
        return f
    }
}
