import Foundation

/// Why `vlseg report` cannot report on a directory; each case names the file or directory at fault.
public enum ReportError: Error, CustomStringConvertible, Equatable {
    case notFound(path: String)
    case notARunOrSweep(directory: String)
    case corrupt(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .notFound(path):
            return "\(path): no such directory"
        case let .notARunOrSweep(dir):
            return
                "\(dir) is neither a run directory (config.yaml, metrics.jsonl or checkpoints/) nor a sweep directory (\(SweepSummary.fileName))"
        case let .corrupt(path, reason):
            return "\(path): \(reason)"
        case let .cannotWrite(path, reason):
            return "\(path): cannot write the report: \(reason)"
        }
    }
}

/// One line of `metrics.jsonl`: what kind of record (train, val, test), where, and its numbers.
public struct MetricsRecord: Sendable, Equatable {
    public var kind: String
    public var step: Int
    public var values: [String: Double]

    public init(kind: String, step: Int, values: [String: Double]) {
        self.kind = kind
        self.step = step
        self.values = values
    }
}

/// A test image the model does worst on: its scores and three small pictures (the image, the
/// target mask over it, the prediction over it) as PNG bytes.
public struct ReportImage: Sendable, Equatable {
    public var score: Inference.ImageScore
    public var image: [UInt8]
    public var truth: [UInt8]
    public var prediction: [UInt8]
    public var width: Int
    public var height: Int

    public init(
        score: Inference.ImageScore, image: [UInt8], truth: [UInt8], prediction: [UInt8], width: Int, height: Int
    ) {
        self.score = score
        self.image = image
        self.truth = truth
        self.prediction = prediction
        self.width = width
        self.height = height
    }
}

/// What the report shows of one run: everything read from its directory, plus the per-image test
/// scores and worst images when they could be computed. Each optional part that is nil comes with
/// the reason in `missing`, which the page prints in that part's place.
public struct RunReportData: Sendable {
    public var directory: String
    public var configText: String?
    public var records: [MetricsRecord] = []
    public var training: TrainingRecord?
    /// Checkpoint directory names: the `best` and `latest` pointers and every step directory.
    public var bestCheckpoint: String?
    public var latestCheckpoint: String?
    public var checkpoints: [String] = []
    public var evaluation: EvaluationReport?
    public var perImage: [Inference.ImageScore]?
    /// Where the per-image scores came from (a file read, or computed with a checkpoint).
    public var perImageSource: String?
    public var worst: [ReportImage] = []
    /// Why a part is absent, keyed by part: "config", "metrics", "checkpoints", "test", "per-image", "worst".
    public var missing: [String: String] = [:]

    public init(directory: String) { self.directory = directory }
}

/// A sweep: its summary file and, when the best trial's run directory can be read, that run.
public struct SweepReportData: Sendable {
    public var directory: String
    public var summary: SweepSummary
    public var bestRun: RunReportData?
    /// Why the best run is not shown.
    public var bestRunMissing: String?

    public init(directory: String, summary: SweepSummary, bestRun: RunReportData?, bestRunMissing: String?) {
        self.directory = directory
        self.summary = summary
        self.bestRun = bestRun
        self.bestRunMissing = bestRunMissing
    }
}
