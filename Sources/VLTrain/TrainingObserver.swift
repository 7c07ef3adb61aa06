import Foundation

/// Points of the training loop where code outside the trainer may look in (and act: tests kill
/// the process there to check crash safety). The trainer calls every installed observer; it does not
/// know what they do.
public protocol TrainingObserver: AnyObject {
    /// Before optimiser step `step` (1-based) starts.
    func willStartStep(_ step: Int, rank: Int)
    /// Rank 0, inside the save of `step`'s checkpoint: every file written and synced, the directory
    /// not yet renamed into place.
    func willCommitCheckpoint(_ step: Int)
    /// Every rank, after the validation of `step` (`metrics` reduced over the ranks: the same everywhere).
    /// Returning true stops the run after this step with a checkpoint, as early stopping does; every rank
    /// must return the same, so an observer that decides decides on rank 0 and broadcasts (a sweep's
    /// pruner).
    func didValidate(step: Int, metrics: SegmentationMetrics) throws -> Bool
}

extension TrainingObserver {
    public func willStartStep(_ step: Int, rank: Int) {}
    public func willCommitCheckpoint(_ step: Int) {}
    public func didValidate(step: Int, metrics: SegmentationMetrics) throws -> Bool { false }
}
