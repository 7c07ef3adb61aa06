import Foundation
import VLTrain
import XCTest

/// `trainer.seeds` (several seeds under one launch, resumable after a kill) and `vlseg results` (the
/// table of their test scores), end to end on the demo with tiny budgets, on 1 and 2 real MPI ranks.
final class SeedsResultsTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-seeds-\(getpid())")
    var runs: [URL] = []

    override func tearDown() { for r in runs { try? FileManager.default.removeItem(at: r) } }

    func newRun() -> URL {
        let url = Self.work.appendingPathComponent("run-\(UUID().uuidString)")
        runs.append(url)
        return url
    }

    /// The demo experiment shrunk to seconds: a tiny model (64-pixel input) on 60 images of 80 pixels (so
    /// the original resolution differs from the model's), a few steps. After so few steps the model
    /// predicts nothing at probability 0.5; at 0.45 its masks are partial and differ between seeds.
    func overrides(run: URL, steps: Int = 4, extra: [String] = []) -> [String] {
        [
            "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path, "experiment=demo",
            "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=60", "data.demo.size=80",
            "model.path=\(Self.work.appendingPathComponent("model").path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=4", "data.eval_batch_size=8", "trainer.global_batch_size=0", "data.workers=1",
            "trainer.threads=1",
            "trainer.max_steps=\(steps)", "trainer.max_epochs=0", "trainer.eval_every=2", "trainer.checkpoint_every=2",
            "trainer.schedule.warmup_steps=0", "trainer.log_every=2", "trainer.test.at_end=true",
            "trainer.test.threshold=0.45", "run.dir=\(run.path)",
        ] + extra
    }

    func vlseg(ranks: Int = 1, _ args: [String], environment: [String: String] = [:], timeout: Double = 240) throws
        -> ProcessRunner.Result
    {
        try ProcessRunner.vlseg(ranks: ranks, args, environment: environment, timeout: timeout)
    }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any], url.path)
    }

    /// Three seeds of two methods, tabulated: every number of the CSV is the mean (or sample standard
    /// deviation) of the runs' own files, and the metrics files' test records agree with eval-test.json.
    func testResultsTableEqualsTheRunsFiles() throws {
        let methods = ["decoder", "vlsm_dense_vl"]
        var launches: [URL] = []
        for method in methods {
            let run = newRun()
            launches.append(run)
            let r = try vlseg(
                ["train"]
                    + overrides(
                        run: run, extra: ["tuning=\(method)", "trainer.seeds=[3,1,2]", "trainer.test.resize=nearest"]))
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("seed 3 (1 of 3): \(run.path)/seed-3"), r.output)
            XCTAssertTrue(r.output.contains("seeds 3, 1, 2 done"), r.output)
        }
        let prefix = Self.work.appendingPathComponent("table-\(UUID().uuidString)")
        runs.append(prefix.appendingPathExtension("md"))
        runs.append(prefix.appendingPathExtension("csv"))
        let r = try vlseg(["results"] + launches.map(\.path) + ["--out", prefix.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("### IoU (pooled over the split)"), r.output)
        XCTAssertTrue(r.output.contains("| vlsm_dense_vl |"), r.output)
        let markdown = try String(contentsOf: prefix.appendingPathExtension("md"), encoding: .utf8)
        XCTAssertTrue(r.output.contains(markdown), r.output)
        let lines = try String(contentsOf: prefix.appendingPathExtension("csv"), encoding: .utf8).split(separator: "\n")
            .map(String.init)
        XCTAssertEqual(lines.first, ResultsTable.csvHeader)
        XCTAssertEqual(lines.count, 3, lines.joined(separator: "\n"))
        let header = ResultsTable.csvHeader.split(separator: ",").map(String.init)
        for (method, launch) in zip(methods, launches) {
            guard let line = lines.first(where: { $0.hasPrefix(method + ",demo,") }) else {
                return XCTFail("no row for \(method): \(lines)")
            }
            let fields = Dictionary(
                uniqueKeysWithValues: zip(
                    header, line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
            XCTAssertEqual(fields["seeds"], "1 2 3")
            XCTAssertEqual(fields["n"], "3")
            XCTAssertEqual(fields["resize"], "nearest")
            XCTAssertEqual(fields["threshold"], "0.45")
            var scores: [String: [Double]] = [:]
            var params: Set<Int> = []
            for seed in 1...3 {
                let dir = launch.appendingPathComponent("seed-\(seed)")
                let eval = try json(dir.appendingPathComponent("eval-test.json"))
                let record = try json(dir.appendingPathComponent("training.json"))
                for (column, key) in [
                    ("dice", "dice_original"), ("iou", "iou_original"), ("dice_pooled", "dice_original_pooled"),
                    ("iou_pooled", "iou_original_pooled"),
                ] {
                    scores[column, default: []].append(try XCTUnwrap(eval[key] as? Double, key))
                }
                scores["wall_s", default: []].append(try XCTUnwrap(record["wall_seconds"] as? Double))
                params.insert(try XCTUnwrap(record["trainable_parameters"] as? Int))
                XCTAssertEqual(record["seed"] as? Int, seed)
                // The metrics files carry the same test scores (model resolution) as eval-test.json.
                let jsonl = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
                let test = try XCTUnwrap(
                    jsonl.split(separator: "\n").compactMap {
                        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                    }.first { $0["kind"] as? String == "test" }, jsonl)
                for (mine, theirs) in [
                    ("test_dice", "dice"), ("test_iou", "iou"), ("test_dice_pooled", "dice_pooled"),
                    ("test_iou_pooled", "iou_pooled"),
                    ("test_dice_original", "dice_original"), ("test_iou_original", "iou_original"),
                    ("test_dice_original_pooled", "dice_original_pooled"),
                    ("test_iou_original_pooled", "iou_original_pooled"),
                ] {
                    XCTAssertEqual(test[mine] as? Double, eval[theirs] as? Double, mine)
                }
                XCTAssertTrue(jsonl.contains("\"val_dice_pooled\""), jsonl)
                let csv = try String(contentsOf: dir.appendingPathComponent("metrics.csv"), encoding: .utf8)
                XCTAssertTrue(csv.hasPrefix(MetricsLog.columns.joined(separator: ",")), csv)
                XCTAssertTrue(csv.contains("\ntest,"), csv)
            }
            XCTAssertEqual(params.count, 1)
            XCTAssertEqual(fields["trainable_parameters"], params.first.map(String.init))
            for (column, values) in scores {
                let mean = values.reduce(0, +) / 3
                let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2).squareRoot()
                XCTAssertGreaterThan(
                    std, 0, "\(method) \(column): the seeds scored alike, so the table proves little: \(values)")
                XCTAssertGreaterThan(mean, 0, "\(method) \(column)")
                XCTAssertEqual(
                    Double(fields[column + "_mean"] ?? "") ?? .nan, mean, accuracy: 1e-6, "\(method) \(column)")
                XCTAssertEqual(
                    Double(fields[column + "_std"] ?? "") ?? .nan, std, accuracy: 1e-6, "\(method) \(column)")
            }
        }
        // At the model's resolution the cells are the mean of the model-resolution scores.
        let modelPrefix = Self.work.appendingPathComponent("table-model-\(UUID().uuidString)")
        runs += [modelPrefix.appendingPathExtension("md"), modelPrefix.appendingPathExtension("csv")]
        let m = try vlseg(["results", launches[0].path, "--resolution", "model", "--out", modelPrefix.path])
        XCTAssertEqual(m.status, 0, m.output)
        XCTAssertTrue(m.output.contains("model resolution"), m.output)
        let modelRow = try String(contentsOf: modelPrefix.appendingPathExtension("csv"), encoding: .utf8).split(
            separator: "\n")[1]
        let modelFields = Dictionary(
            uniqueKeysWithValues: zip(
                header, modelRow.split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
        let modelDice = try (1...3).map {
            try XCTUnwrap(
                json(launches[0].appendingPathComponent("seed-\($0)/eval-test.json"))["dice_pooled"] as? Double)
        }
        XCTAssertEqual(
            Double(modelFields["dice_pooled_mean"] ?? "") ?? .nan, modelDice.reduce(0, +) / 3, accuracy: 1e-6)

        // A run without its test result is named, with the command that makes it; the table is not printed.
        let seed2 = launches[1].appendingPathComponent("seed-2")
        let moved = seed2.appendingPathComponent("eval-test.json.moved")
        try FileManager.default.moveItem(at: seed2.appendingPathComponent("eval-test.json"), to: moved)
        let missing = try vlseg(["results"] + launches.map(\.path))
        XCTAssertEqual(missing.status, 1, missing.output)
        XCTAssertTrue(
            missing.output.contains(
                "\(seed2.path): no test result (eval-test.json): run `vlseg evaluate --run \(seed2.path) --split test`"),
            missing.output)
        XCTAssertFalse(missing.output.contains("###"), missing.output)
        // ... and `vlseg evaluate --run` makes it again, with the same numbers.
        let evaluated = try vlseg(["evaluate", "--run", seed2.path, "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.output)
        XCTAssertTrue(evaluated.output.contains("wrote \(seed2.path)/eval-test.json"), evaluated.output)
        let before = try json(moved), after = try json(seed2.appendingPathComponent("eval-test.json"))
        for key in ["dice", "iou", "dice_pooled", "iou_pooled", "dice_original", "iou_original_pooled"] {
            XCTAssertEqual(before[key] as? Double, after[key] as? Double, key)
        }
        // A directory that is no run at all.
        let empty = newRun()
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let notARun = try vlseg(["results", empty.path])
        XCTAssertEqual(notARun.status, 1, notARun.output)
        XCTAssertTrue(notARun.output.contains("vlseg: error: \(empty.path): not a run directory"), notARun.output)
    }

    /// Killed during seed 2 and started again with the same command: seed 1 is kept as it was, seed 2
    /// continues from its checkpoint, seed 3 runs.
    func checkSeedsResumeAfterAKill(ranks: Int) throws {
        let run = newRun()
        // A higher learning rate, so that validation at 0.5 finds some foreground by step 6.
        let args =
            ["train"]
            + overrides(run: run, steps: 6, extra: ["trainer.seeds=[1,2,3]", "resume=auto", "trainer.lr=0.01"])
        let killed = try vlseg(
            ranks: ranks, args, environment: ["VLSEG_FAULT_SEED": "2", "VLSEG_FAULT_KILL_AT_STEP": "5"])
        XCTAssertNotEqual(killed.status, 0, killed.output)
        XCTAssertTrue(killed.output.contains("fault injection: rank 0 kills itself in step 5"), killed.output)
        let seed1 = run.appendingPathComponent("seed-1"), seed2 = run.appendingPathComponent("seed-2"),
            seed3 = run.appendingPathComponent("seed-3")
        let fm = FileManager.default
        XCTAssertTrue(fm.fileExists(atPath: seed1.appendingPathComponent("training.json").path), killed.output)
        XCTAssertTrue(
            fm.fileExists(atPath: seed2.appendingPathComponent("checkpoints/step-0000004").path), killed.output)
        XCTAssertFalse(fm.fileExists(atPath: seed2.appendingPathComponent("training.json").path))
        XCTAssertFalse(fm.fileExists(atPath: seed3.path))
        let record1 = try Data(contentsOf: seed1.appendingPathComponent("training.json"))
        let eval1 = try Data(contentsOf: seed1.appendingPathComponent("eval-test.json"))
        let checkpoints1 = try fm.contentsOfDirectory(atPath: seed1.appendingPathComponent("checkpoints").path).sorted()

        // A fresh launch (resume=none) into it refuses before training anything, naming the seed's directory.
        let fresh = try vlseg(ranks: ranks, ["train"] + overrides(run: run, steps: 6, extra: ["trainer.seeds=[1,2,3]"]))
        XCTAssertEqual(fresh.status, 1, fresh.output)
        XCTAssertTrue(fresh.output.contains("\(seed1.path) already holds a run"), fresh.output)

        if ranks == 1 {
            // Nor does a single run (no trainer.seeds) start beside the seeds' runs.
            let single = try vlseg(["train"] + overrides(run: run, steps: 6, extra: ["resume=auto"]))
            XCTAssertEqual(single.status, 1, single.output)
            XCTAssertTrue(
                single.output.contains("\(run.path) holds the runs of a trainer.seeds launch (seed-1, seed-2)"),
                single.output)
        }

        let resumed = try vlseg(ranks: ranks, args)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(
            resumed.output.contains("seed 1 (1 of 3): already trained in \(seed1.path) (training.json): kept"),
            resumed.output)
        XCTAssertTrue(resumed.output.contains("resumed from \(seed2.path)/checkpoints/step-0000004"), resumed.output)
        XCTAssertTrue(resumed.output.contains("seed 3 (3 of 3): \(seed3.path)"), resumed.output)
        XCTAssertTrue(resumed.output.contains("seeds 1, 2, 3 done (1 kept from before)"), resumed.output)
        XCTAssertEqual(try Data(contentsOf: seed1.appendingPathComponent("training.json")), record1)
        XCTAssertEqual(try Data(contentsOf: seed1.appendingPathComponent("eval-test.json")), eval1)
        XCTAssertEqual(
            try fm.contentsOfDirectory(atPath: seed1.appendingPathComponent("checkpoints").path).sorted(), checkpoints1)
        for dir in [seed2, seed3] {
            let record = try json(dir.appendingPathComponent("training.json"))
            XCTAssertEqual(record["steps"] as? Int, 6, dir.path)
            XCTAssertEqual(record["ranks"] as? Int, ranks, dir.path)
            XCTAssertTrue(fm.fileExists(atPath: dir.appendingPathComponent("eval-test.json").path), dir.path)
        }
        // The seeds differ: their runs are not copies of one another.
        XCTAssertNotEqual(
            try Data(contentsOf: seed2.appendingPathComponent("checkpoints/step-0000006/trainable.safetensors")),
            try Data(contentsOf: seed3.appendingPathComponent("checkpoints/step-0000006/trainable.safetensors")))
        if ranks == 2 {
            // Validation on 2 ranks reduced pixel counts: its pooled scores of the last step are the ones one
            // rank finds for that step's checkpoint.
            let jsonl = try String(contentsOf: seed3.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            let last = try XCTUnwrap(
                jsonl.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }.last { $0["kind"] as? String == "val" }, jsonl)
            XCTAssertEqual(last["step"] as? Int, 6)
            let one = try vlseg([
                "evaluate", "--run", seed3.path, "--checkpoint", "latest", "--split", "val", "--threshold", "0.5",
            ])
            XCTAssertEqual(one.status, 0, one.output)
            let eval = try json(seed3.appendingPathComponent("eval-val.json"))
            XCTAssertGreaterThan(
                try XCTUnwrap(last["val_dice_pooled"] as? Double), 0, "nothing predicted: the comparison proves little")
            for (mine, theirs) in [
                ("val_dice_pooled", "dice_pooled"), ("val_iou_pooled", "iou_pooled"), ("val_dice", "dice"),
                ("val_iou", "iou"),
            ] {
                XCTAssertEqual(
                    try XCTUnwrap(last[mine] as? Double), try XCTUnwrap(eval[theirs] as? Double), accuracy: 1e-9, mine)
            }
        }
        // Run once more: nothing left to do.
        let again = try vlseg(ranks: ranks, args)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("seeds 1, 2, 3 done (3 kept from before)"), again.output)
    }

    func testSeedsResumeAfterAKillOneRank() throws { try checkSeedsResumeAfterAKill(ranks: 1) }
    func testSeedsResumeAfterAKillTwoRanks() throws { try checkSeedsResumeAfterAKill(ranks: 2) }

    /// Mistakes in the seeds list are one line naming the key.
    func testSeedListMistakes() throws {
        let twice = try vlseg(["train"] + overrides(run: newRun(), extra: ["trainer.seeds=[4,4]"]))
        XCTAssertEqual(twice.status, 1, twice.output)
        XCTAssertTrue(twice.output.contains("trainer.seeds: lists a seed twice"), twice.output)
        let path = try vlseg(
            ["train"] + overrides(run: newRun(), extra: ["trainer.seeds=[4,5]", "resume=/tmp/some-checkpoint"]))
        XCTAssertEqual(path.status, 1, path.output)
        XCTAssertTrue(path.output.contains("a checkpoint path cannot resume several seeds"), path.output)
        let threshold = try vlseg(["evaluate"] + overrides(run: newRun()) + ["--threshold", "1.5"])
        XCTAssertNotEqual(threshold.status, 0, threshold.output)
        XCTAssertTrue(
            threshold.output.contains("--threshold must be a probability strictly between 0 and 1, got 1.5"),
            threshold.output)
    }
}
