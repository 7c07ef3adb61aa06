import Foundation

/// Frozen-feature caches kept across the runs of one launch (a sweep's trials), each under a key that
/// names everything its features depend on: the model's weights and config, the data and its
/// preprocessing, the precision, and the batches they were computed in (seed, batch sizes, ranks), so a
/// later run reads exactly the features it would have computed itself. A changed key is a new cache.
public final class FeatureCacheShelf: @unchecked Sendable {
    /// Where caches too large for memory keep their files.
    public let directory: URL
    private var caches: [String: FeatureCache] = [:]
    private var group = ""
    private var retired = (hits: 0, misses: 0)

    public init(directory: URL) { self.directory = directory }

    /// The cache `name` (`train-rank0`) of the features keyed `group`, or a new one from `make`, kept for
    /// the next run. A new group drops the caches of the old one: memory holds one set of features, so a
    /// search over a key the features depend on (the batch size) recomputes rather than piling caches up.
    public func cache(group: String, name: String, make: (URL) -> FeatureCache) -> FeatureCache {
        if group != self.group {
            retired = (hits, misses)
            caches.removeAll()
            self.group = group
        }
        if let cache = caches[name] { return cache }
        let cache = make(directory)
        caches[name] = cache
        return cache
    }

    /// Samples served from the caches and computed into them, over every cache and run so far.
    public var hits: Int { retired.hits + caches.values.reduce(0) { $0 + $1.hits } }
    public var misses: Int { retired.misses + caches.values.reduce(0) { $0 + $1.misses } }
}
