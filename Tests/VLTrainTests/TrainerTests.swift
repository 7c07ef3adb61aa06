import Foundation
import VLTokenizer
import VLTuning
import XCTest

@testable import VLData
@testable import VLDistributed
@testable import VLModels
@testable import VLTensor
@testable import VLTrain

/// The training loop in one process: equivalences, resume and evaluation.
final class TrainerTests: XCTestCase {
    static let dataRoot: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-trainer-data-\(getpid())")
        if !FileManager.default.fileExists(atPath: url.appendingPathComponent("anns/train.json").path) {
            _ = try! DemoDataset.write(options: .init(count: 40, width: 64, height: 64, seed: 3), to: url)
        }
        return url
    }()

    var runs: [URL] = []
    override func tearDown() { for r in runs { try? FileManager.default.removeItem(at: r) } }

    func newRun() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-run-\(UUID().uuidString)")
        runs.append(url)
        return url
    }

    func loaders(batch: Int, comm: Communicator) throws -> (DataLoader, DataLoader) {
        let tokenizer = try CLIPTokenizer(directory: BundledTokenizer.requireDirectory())
        let train = try DatasetIndex.load(root: Self.dataRoot, split: "train", promptChoice: .random).sampleSet
        let val = try DatasetIndex.load(root: Self.dataRoot, split: "val", promptChoice: .key("p1")).sampleSet
        let cfg = DataLoaderConfig(
            imageSize: 64, workers: 1, seed: 7, promptChoice: .random, textPadding: .longest(max: 77))
        var vcfg = cfg
        vcfg.promptChoice = .key("p1")
        return (
            try DataLoader(
                samples: train,
                sampler: try ShardedSampler(
                    count: train.count, rank: comm.rank, worldSize: comm.size, batchSize: batch, seed: 7),
                tokenizer: tokenizer, config: cfg),
            try DataLoader(
                samples: val,
                sampler: try ShardedSampler(
                    count: val.count, rank: comm.rank, worldSize: comm.size, batchSize: 4, seed: 7, mode: .evaluation),
                tokenizer: tokenizer, config: vcfg)
        )
    }

    func train(
        steps: Int, batch: Int, accumulate: Int, run: URL, resume: ResumeSetting = .none, checkpointEvery: Int = 0,
        evalEvery: Int = 0, featureCache: Bool = false
    ) throws -> (Trainer, TrainingSummary) {
        let comm = SingleProcessCommunicator()
        let model = CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 1)
        let names = try DecoderOnlyTuning().prepare(model, seed: 0)
        let (t, v) = try loaders(batch: batch, comm: comm)
        var o = TrainingOptions(runDirectory: run)
        o.maxSteps = steps
        o.batchSize = batch
        o.accumulate = accumulate
        o.lr = 1e-3
        o.weightDecay = 1e-3
        o.clipGradNorm = 0.5
        o.checkpointEvery = checkpointEvery
        o.evalEvery = evalEvery
        o.resume = resume
        o.logEvery = 1
        o.featureCache = featureCache
        o.configYAML = "seed: 0\n"
        let trainer = try Trainer(model: model, trainableNames: names, trainData: t, valData: v, comm: comm, options: o)
        return (trainer, try trainer.run())
    }

    /// ||a - b|| / ||b|| over all trainable weights. (Element-wise ratios are meaningless for
    /// tensors whose gradient is mathematically zero, such as attention key biases: Adam turns
    /// their rounding noise into O(lr) steps.)
    func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        var d = 0.0, n = 0.0
        for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
        return (d / max(n, 1e-30)).squareRoot()
    }

    func testAccumulationMatchesTheLargerBatch() throws {
        let (big, _) = try train(steps: 10, batch: 4, accumulate: 1, run: newRun())
        let (accumulated, _) = try train(steps: 10, batch: 2, accumulate: 2, run: newRun())
        XCTAssertLessThan(relativeDifference(accumulated.arena.values.scalars, big.arena.values.scalars), 1e-5)
        // And training moved the weights.
        let initial = CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 1)
        let w0 = initial.parameters["decoder.film_mul.weight"].scalars
        XCTAssertNotEqual(big.model.parameters["decoder.film_mul.weight"].scalars, w0)
    }

    func testResumeIsBitIdentical() throws {
        let straight = newRun()
        let (a, _) = try train(steps: 12, batch: 4, accumulate: 1, run: straight, checkpointEvery: 6, evalEvery: 4)
        let split = newRun()
        _ = try train(steps: 6, batch: 4, accumulate: 1, run: split, checkpointEvery: 6, evalEvery: 4)
        let (b, summary) = try train(
            steps: 12, batch: 4, accumulate: 1, run: split, resume: .auto, checkpointEvery: 6, evalEvery: 4)
        XCTAssertNotNil(summary.resumedFrom)
        XCTAssertEqual(b.arena.values.scalars, a.arena.values.scalars)
        let fa = try Data(contentsOf: straight.appendingPathComponent("checkpoints/step-0000012/trainable.safetensors"))
        let fb = try Data(contentsOf: split.appendingPathComponent("checkpoints/step-0000012/trainable.safetensors"))
        XCTAssertEqual(fa, fb)
        XCTAssertEqual(b.state.step, 12)
    }

    func testValidationAndOutputs() throws {
        let run = newRun()
        let (_, summary) = try train(steps: 8, batch: 4, accumulate: 1, run: run, evalEvery: 4)
        XCTAssertNotNil(summary.bestDice)
        XCTAssertNotNil(summary.bestCheckpoint)
        let jsonl = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        XCTAssertTrue(jsonl.contains("\"val_dice\""), jsonl)
        let csv = try String(contentsOf: run.appendingPathComponent("metrics.csv"), encoding: .utf8)
        XCTAssertTrue(csv.hasPrefix("kind,step,epoch,loss"), csv)
        XCTAssertEqual(CheckpointStore(runDirectory: run).pointer("latest"), "step-0000008")
    }

    /// The feature cache is invisible in results: the same loss sequence and weights on and off.
    func testFeatureCacheChangesNothing() throws {
        let off = newRun(), on = newRun()
        let (a, _) = try train(steps: 20, batch: 4, accumulate: 1, run: off, evalEvery: 7)
        let (b, _) = try train(steps: 20, batch: 4, accumulate: 1, run: on, evalEvery: 7, featureCache: true)
        XCTAssertEqual(b.arena.values.scalars, a.arena.values.scalars)
        let la = try String(contentsOf: off.appendingPathComponent("metrics.csv"), encoding: .utf8)
        let lb = try String(contentsOf: on.appendingPathComponent("metrics.csv"), encoding: .utf8)
        func losses(_ csv: String) -> [String] {
            csv.split(separator: "\n").dropFirst().map {
                $0.split(separator: ",", omittingEmptySubsequences: false).prefix(4).joined(separator: ",")
                    + ($0.split(separator: ",", omittingEmptySubsequences: false).dropFirst(6).prefix(3).joined(
                        separator: ","))
            }
        }
        XCTAssertEqual(losses(lb), losses(la))
        XCTAssertGreaterThan(b.trainCacheHits, 0)
    }
}

/// The per-image CSV rows of `vlseg evaluate --per-image`.
final class ImageScoreCSVTests: XCTestCase {
    func testFieldsAreQuotedOnlyWhenNeeded() {
        var row = Inference.ImageScore(
            sampleIndex: 7, image: "a.png", mask: "a_mask.png", prompt: "a polyp", classID: nil,
            dice: 0.5, iou: 1.0 / 3)
        XCTAssertEqual(row.csvRow, "7,a.png,a_mask.png,a polyp,,0.500000,0.333333,,")
        row.prompt = "a \"small\", round polyp"
        row.classID = 2
        row.diceOriginal = 0.25
        row.iouOriginal = 0.125
        XCTAssertEqual(
            row.csvRow, "7,a.png,a_mask.png,\"a \"\"small\"\", round polyp\",2,0.500000,0.333333,0.250000,0.125000")
        XCTAssertEqual(Inference.ImageScore.csvHeader.split(separator: ",").count, 9)
    }
}

/// Stop requests: a real signal reaches the flag through the dispatch source; the agreed signal of a
/// single process is its own.
final class StopRequestTests: XCTestCase {
    func testASignalSetsTheRequestAndUninstallRestoresTheDefault() throws {
        let lines = LockedLines()
        let stop = StopRequest(log: { lines.append($0) })
        XCTAssertNil(stop.localSignal)
        stop.install()
        kill(getpid(), SIGUSR1)
        let deadline = Date().addingTimeInterval(5)
        while stop.localSignal == nil && Date() < deadline { usleep(1000) }
        XCTAssertEqual(stop.localSignal, SIGUSR1)
        XCTAssertEqual(stop.agreedSignal(SingleProcessCommunicator()), SIGUSR1)
        while lines.all.isEmpty && Date() < deadline { usleep(1000) }
        XCTAssertEqual(
            lines.all, ["received SIGUSR1: stopping after this step with a checkpoint (send it again to stop at once)"])
        stop.uninstall()
        var action = sigaction()
        sigaction(SIGUSR1, nil, &action)
        XCTAssertEqual(
            unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self), unsafeBitCast(SIG_DFL, to: Int.self))
    }

    func testSeveralSignalsReportTheFirstKindInTheListOrder() {
        let stop = StopRequest(log: { _ in })
        stop.request(SIGUSR1)
        XCTAssertEqual(stop.localSignal, SIGUSR1)
        stop.request(SIGTERM)
        XCTAssertEqual(stop.localSignal, SIGTERM)
        stop.request(SIGHUP)  // not handled: no change
        XCTAssertEqual(stop.localSignal, SIGTERM)
        XCTAssertEqual(StopRequest.name(SIGINT), "SIGINT")
    }
}

private final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
