import Foundation
import VLModels
import VLTensor
import VLTrain
import XCTest

/// `vlseg train` end to end, on 1 and 2 real MPI ranks: equivalence, exact resume after SIGKILL,
/// crash during a save, and a dying rank.
final class TrainingTests: XCTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-train-\(getpid())")
    var runs: [URL] = []

    override func tearDown() { for r in runs { try? FileManager.default.removeItem(at: r) } }

    func newRun() -> URL {
        let url = Self.work.appendingPathComponent("run-\(UUID().uuidString)")
        runs.append(url)
        return url
    }

    /// A tiny model and a small demo dataset, made by `vlseg train` itself on first use.
    func overrides(run: URL, batch: Int, steps: Int, extra: [String] = []) -> [String] {
        [
            "--config-dir", Self.packageRoot.appendingPathComponent("configs").path,
            "data.name=demo", "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=60",
            "data.demo.size=64",
            "model.path=\(Self.work.appendingPathComponent("model").path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=\(batch)", "trainer.global_batch_size=0", "data.workers=1", "trainer.threads=1",
            "trainer.max_steps=\(steps)", "trainer.max_epochs=0", "trainer.log_every=3", "run.dir=\(run.path)",
            "seed=5",
        ] + extra
    }

    func train(ranks: Int, _ args: [String], environment: [String: String] = [:], timeout: Double = 180) throws
        -> ProcessRunner.Result
    {
        try ProcessRunner.vlseg(ranks: ranks, ["train"] + args, environment: environment, timeout: timeout)
    }

    func trainable(_ run: URL, step: Int) throws -> [Float] {
        let file = try SafeTensorsFile(
            url: run.appendingPathComponent(String(format: "checkpoints/step-%07d/trainable.safetensors", step)))
        return try file.names.sorted().flatMap { try file.tensor($0).scalars }
    }

    func testTwoRanksOfTwoMatchOneRankOfFour() throws {
        let one = newRun(), two = newRun()
        let r1 = try train(ranks: 1, overrides(run: one, batch: 4, steps: 10))
        XCTAssertEqual(r1.status, 0, r1.output)
        let r2 = try train(ranks: 2, overrides(run: two, batch: 2, steps: 10))
        XCTAssertEqual(r2.status, 0, r2.output)
        XCTAssertTrue(r2.output.contains("2 rank(s) x batch 2"), r2.output)
        let a = try trainable(one, step: 10), b = try trainable(two, step: 10)
        var d = 0.0, n = 0.0
        for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
        XCTAssertLessThan((d / n).squareRoot(), 1e-5)
        XCTAssertEqual(a.count, b.count)
    }

    /// trainer.precision=bf16 trains to weights near the float32 run's (not equal: the products' inputs
    /// are rounded), and a bf16 run repeats bit for bit, on 2 ranks as on 1.
    func testBF16PrecisionTrainsNearFloat32AndRepeatsExactly() throws {
        // Without the kernel (no AVX512_BF16, or hidden by VLSEG_BF16=off) asking for bf16 is a one-line error.
        let refused = try train(
            ranks: 1, overrides(run: newRun(), batch: 4, steps: 2, extra: ["trainer.precision=bf16"]),
            environment: ["VLSEG_BF16": "off"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("bf16 matrix products"), refused.output)
        XCTAssertFalse(refused.output.contains("Fatal error"), refused.output)
        guard BF16GEMM.available else { return }
        let fp32 = newRun(), first = newRun(), second = newRun(), twoRanks = newRun()
        let f = try train(ranks: 1, overrides(run: fp32, batch: 4, steps: 8))
        XCTAssertEqual(f.status, 0, f.output)
        for run in [first, second] {
            let r = try train(ranks: 1, overrides(run: run, batch: 4, steps: 8, extra: ["trainer.precision=bf16"]))
            XCTAssertEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("precision bf16: bfloat16 inputs"), r.output)
        }
        let t = try train(ranks: 2, overrides(run: twoRanks, batch: 2, steps: 8, extra: ["trainer.precision=bf16"]))
        XCTAssertEqual(t.status, 0, t.output)
        let a = try trainable(fp32, step: 8), b = try trainable(first, step: 8), c = try trainable(second, step: 8)
        let d = try trainable(twoRanks, step: 8)
        XCTAssertEqual(b, c, "two bf16 runs of the same config differ")
        func relativeDistance(_ x: [Float], _ y: [Float]) -> Double {
            var num = 0.0, den = 0.0
            for (u, v) in zip(x, y) { num += Double(u - v) * Double(u - v); den += Double(v) * Double(v) }
            return (num / den).squareRoot()
        }
        let fromFP32 = relativeDistance(b, a)
        XCTAssertGreaterThan(fromFP32, 0, "bf16 gave float32's exact weights: its kernel did not run")
        XCTAssertLessThan(fromFP32, 0.02, "bf16 weights far from float32's")
        XCTAssertLessThan(relativeDistance(d, b), 0.02, "2 ranks x 2 vs 1 rank x 4 under bf16")
    }

    func checkExactResume(ranks: Int) throws {
        let batch = 4 / ranks
        let straight = newRun(), killed = newRun()
        let extra = ["trainer.checkpoint_every=6"]
        let s = try train(ranks: ranks, overrides(run: straight, batch: batch, steps: 12, extra: extra))
        XCTAssertEqual(s.status, 0, s.output)
        let k = try train(
            ranks: ranks, overrides(run: killed, batch: batch, steps: 12, extra: extra),
            environment: ["VLSEG_FAULT_KILL_AT_STEP": "9"])
        XCTAssertNotEqual(k.status, 0, "the job should have died in step 9:\n\(k.output)")
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: killed.appendingPathComponent("checkpoints/step-0000012").path))
        let r = try train(ranks: ranks, overrides(run: killed, batch: batch, steps: 12, extra: extra + ["resume=auto"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("resumed from"), r.output)
        XCTAssertFalse(r.output.contains("under other training settings"), r.output)
        let a = try Data(contentsOf: straight.appendingPathComponent("checkpoints/step-0000012/trainable.safetensors"))
        let b = try Data(contentsOf: killed.appendingPathComponent("checkpoints/step-0000012/trainable.safetensors"))
        XCTAssertEqual(a, b, "resumed run differs from the uninterrupted one (\(ranks) rank(s))")
    }

    func testExactResumeAfterSIGKILLOneRank() throws { try checkExactResume(ranks: 1) }
    func testExactResumeAfterSIGKILLTwoRanks() throws { try checkExactResume(ranks: 2) }

    /// A signal stops every rank after the same step with a checkpoint of it, and `resume=auto` then
    /// ends bit-identical to an uninterrupted run.
    func checkStopOnSignal(ranks: Int, signalRank: Int, signal: String, number: Int32) throws {
        let batch = 4 / ranks, steps = 24
        let straight = newRun(), stopped = newRun()
        let s = try train(ranks: ranks, overrides(run: straight, batch: batch, steps: steps))
        XCTAssertEqual(s.status, 0, s.output)
        let k = try train(
            ranks: ranks, overrides(run: stopped, batch: batch, steps: steps),
            environment: [
                "VLSEG_FAULT_RANK": "\(signalRank)", "VLSEG_FAULT_SIGNAL_AT_STEP": "6", "VLSEG_FAULT_SIGNAL": signal,
            ])
        XCTAssertFalse(k.timedOut, k.output)
        if ranks == 1 {
            XCTAssertEqual(k.status, 128 + number, k.output)
        } else {
            XCTAssertNotEqual(k.status, 0, k.output)
        }
        XCTAssertTrue(
            k.output.contains("rank \(signalRank): received SIG\(signal): stopping after this step"), k.output)
        // "interrupted by SIGTERM after step N: ..." names the step; its checkpoint is the newest.
        let marker = "interrupted by SIG\(signal) after step "
        guard let line = k.output.split(separator: "\n").first(where: { $0.hasPrefix(marker) }),
            let step = Int(line.dropFirst(marker.count).prefix { $0.isNumber })
        else {
            return XCTFail("no interruption line:\n\(k.output)")
        }
        XCTAssertTrue((6..<steps).contains(step), k.output)
        let name = String(format: "step-%07d", step)
        let latest = try String(contentsOf: stopped.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
        XCTAssertEqual(latest.trimmingCharacters(in: .whitespacesAndNewlines), name)
        XCTAssertFalse(
            FileManager.default.fileExists(
                atPath: stopped.appendingPathComponent(String(format: "checkpoints/step-%07d", steps)).path))
        let r = try train(ranks: ranks, overrides(run: stopped, batch: batch, steps: steps, extra: ["resume=auto"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("resumed from") && r.output.contains(name), r.output)
        let path = String(format: "checkpoints/step-%07d/trainable.safetensors", steps)
        XCTAssertEqual(
            try Data(contentsOf: straight.appendingPathComponent(path)),
            try Data(contentsOf: stopped.appendingPathComponent(path)),
            "the run stopped by SIG\(signal) and resumed differs from the uninterrupted one")
    }

    func testSIGINTStopsWithACheckpointOneRank() throws {
        try checkStopOnSignal(ranks: 1, signalRank: 0, signal: "INT", number: SIGINT)
    }
    func testSIGTERMOnOneRankStopsBothRanksAtTheSameStep() throws {
        try checkStopOnSignal(ranks: 2, signalRank: 1, signal: "TERM", number: SIGTERM)
    }

    /// `evaluate --per-image` writes one row per test image, in sample order, whose mean Dice is the
    /// reported one; 1 and 2 ranks write the same file.
    func testPerImageScoresAreTheSameOnOneAndTwoRanks() throws {
        let run = newRun()
        XCTAssertEqual(try train(ranks: 1, overrides(run: run, batch: 4, steps: 40)).status, 0)
        var files: [String] = []
        for ranks in [1, 2] {
            let csv = run.appendingPathComponent("scores-\(ranks).csv")
            let args =
                ["evaluate"] + overrides(run: run, batch: 3, steps: 40) + ["--split", "test", "--per-image", csv.path]
            let r: ProcessRunner.Result
            if ranks == 1 {
                r = try ProcessRunner.run(ProcessRunner.vlsegPath, args, timeout: 120)
            } else {
                guard let mpirun = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
                r = try ProcessRunner.run(
                    mpirun, ProcessRunner.mpirunFlags + ["-np", "2", ProcessRunner.vlsegPath] + args, timeout: 120)
            }
            XCTAssertEqual(r.status, 0, r.output)
            let text = try String(contentsOf: csv, encoding: .utf8)
            let lines = text.split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.first, Inference.ImageScore.csvHeader)
            let rows = lines.dropFirst().map(Self.csvFields)
            // "split test: N images; loss L; Dice D, ..." names the count and the mean.
            guard let summary = r.output.split(separator: "\n").first(where: { $0.hasPrefix("split test: ") }),
                let count = Int(summary.dropFirst("split test: ".count).prefix { $0.isNumber }),
                let diceText = summary.components(separatedBy: "Dice ").last?.prefix(while: { $0 != "," }),
                let dice = Double(diceText)
            else { return XCTFail(r.output) }
            XCTAssertEqual(rows.count, count, text)
            XCTAssertEqual(rows.map { Int($0[0])! }, (0..<count).map { $0 }, "rows are not in sample order")
            XCTAssertTrue(rows.allSatisfy { $0.count == 9 && $0[1].hasSuffix(".png") && !$0[7].isEmpty }, text)
            let mean = rows.map { Double($0[5])! }.reduce(0, +) / Double(count)
            XCTAssertEqual(mean, dice, accuracy: 1e-4, text)
            XCTAssertTrue(r.output.contains("per-image scores: \(csv.path) (\(count) rows); lowest Dice: "), r.output)
            files.append(text)
        }
        XCTAssertEqual(files[0], files[1])
    }

    /// The fields of one RFC 4180 CSV line (quoted fields may hold commas and doubled quotes).
    static func csvFields(_ line: String) -> [String] {
        var fields: [String] = [], field = "", quoted = false
        var chars = Array(line)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false }
                } else {
                    field.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "," {
                fields.append(field)
                field = ""
            } else {
                field.append(c)
            }
        }
        return fields + [field]
    }

    func testKillDuringSaveKeepsThePreviousCheckpoint() throws {
        let run = newRun()
        let k = try train(
            ranks: 1, overrides(run: run, batch: 4, steps: 12, extra: ["trainer.checkpoint_every=6"]),
            environment: ["VLSEG_FAULT_KILL_IN_SAVE": "12"])
        XCTAssertNotEqual(k.status, 0, k.output)
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
        XCTAssertNotEqual(latest.trimmingCharacters(in: .whitespacesAndNewlines), "step-0000012")
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoints/step-0000012").path))
        let r = try train(
            ranks: 1, overrides(run: run, batch: 4, steps: 12, extra: ["trainer.checkpoint_every=6", "resume=auto"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(
            FileManager.default.fileExists(
                atPath: run.appendingPathComponent("checkpoints/step-0000012/trainable.safetensors").path))
    }

    /// Resuming under changed training settings works, and names what changed; a longer run
    /// (`trainer.max_steps`) is not a change of settings.
    func testResumeUnderOtherSettingsNamesThem() throws {
        let run = newRun()
        XCTAssertEqual(
            try train(ranks: 1, overrides(run: run, batch: 4, steps: 6, extra: ["trainer.checkpoint_every=6"])).status,
            0)
        let longer = try train(
            ranks: 1, overrides(run: run, batch: 4, steps: 8, extra: ["trainer.checkpoint_every=8", "resume=auto"]))
        XCTAssertEqual(longer.status, 0, longer.output)
        XCTAssertFalse(longer.output.contains("under other training settings"), longer.output)
        let changed = try train(
            ranks: 1,
            overrides(
                run: run, batch: 4, steps: 10,
                extra: ["resume=auto", "trainer.lr=0.000123", "trainer.weight_decay=0.5"]))
        XCTAssertEqual(changed.status, 0, changed.output)
        let line =
            changed.output.split(separator: "\n").first { $0.contains("under other training settings") }.map(
                String.init) ?? ""
        XCTAssertTrue(line.contains("resuming step-0000008"), changed.output)
        XCTAssertTrue(line.contains("-> 0.000123"), changed.output)
        XCTAssertTrue(line.contains("trainer.lr ") && line.contains("trainer.weight_decay "), changed.output)
        XCTAssertFalse(line.contains("max_steps"), changed.output)
    }

    func testCorruptCheckpointIsRefusedByPath() throws {
        let run = newRun()
        XCTAssertEqual(
            try train(ranks: 1, overrides(run: run, batch: 4, steps: 6, extra: ["trainer.checkpoint_every=6"])).status,
            0)
        let ckpt = run.appendingPathComponent("checkpoints/step-0000006")
        try Data("garbage".utf8).write(to: ckpt.appendingPathComponent("optimizer.safetensors"))
        let r = try train(ranks: 1, overrides(run: newRun(), batch: 4, steps: 8, extra: ["resume=\(ckpt.path)"]))
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("corrupt") && r.output.contains("step-0000006"), r.output)
        // resume=auto never restarts silently over checkpoints it cannot use: it names them and stops.
        let auto = try train(ranks: 1, overrides(run: run, batch: 4, steps: 8, extra: ["resume=auto"]))
        XCTAssertEqual(auto.status, 1, auto.output)
        XCTAssertTrue(
            auto.output.contains("1 checkpoint(s), none valid") && auto.output.contains("step-0000006"), auto.output)
    }

    func testADyingRankEndsTheJob() throws {
        let start = Date()
        let r = try train(
            ranks: 2, overrides(run: newRun(), batch: 2, steps: 100000),
            environment: ["VLSEG_FAULT_RANK": "1", "VLSEG_FAULT_KILL_AT_STEP": "3"], timeout: 60)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30, r.output)
    }

    /// Same global batch on another world size: the run continues, and says so.
    func testElasticResumeFromTwoRanksToOne() throws {
        let run = newRun()
        XCTAssertEqual(
            try train(ranks: 2, overrides(run: run, batch: 2, steps: 6, extra: ["trainer.checkpoint_every=6"])).status,
            0)
        let r = try train(ranks: 1, overrides(run: run, batch: 4, steps: 9, extra: ["resume=auto"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(
            r.output.contains("elastic: 2 rank(s) x batch 2") && r.output.contains("global batch 4 -> 4"), r.output)
        let inspect = try ProcessRunner.run(ProcessRunner.vlsegPath, ["checkpoint", "inspect", run.path])
        XCTAssertEqual(inspect.status, 0, inspect.output)
        XCTAssertTrue(inspect.output.contains("step 9") && inspect.output.contains("method decoder"), inspect.output)
    }

    /// `init-model --config` builds any CLIPSeg config.json: here sizes no preset has (patch 8, 3-head
    /// 36-wide vision, gelu text tower, non-argmax pooling, extract layers [1,3,4], conditional layer 2,
    /// the simple transposed convolution), which then trains dense VLC adapters on two ranks. A config
    /// that cannot be built is refused with its key named.
    func testInitModelFromAConfigFileTrainsAnOddArchitecture() throws {
        let model = Self.work.appendingPathComponent("odd-model-\(UUID().uuidString)")
        runs.append(model)
        try FileManager.default.createDirectory(at: Self.work, withIntermediateDirectories: true)
        func configJSON(visionHeads: Int) -> String {
            """
            {"model_type": "clipseg", "projection_dim": 20, "reduce_dim": 12, "extract_layers": [1, 3, 4],
             "conditional_layer": 2, "decoder_num_attention_heads": 3, "decoder_intermediate_size": 20,
             "use_complex_transposed_convolution": false,
             "text_config": {"hidden_size": 24, "intermediate_size": 40, "num_attention_heads": 3, "num_hidden_layers": 3,
                             "hidden_act": "gelu", "vocab_size": 49408, "max_position_embeddings": 77, "eos_token_id": 49407},
             "vision_config": {"hidden_size": 36, "intermediate_size": 60, "num_attention_heads": \(visionHeads), "num_hidden_layers": 5,
                               "image_size": 56, "patch_size": 8}}
            """
        }
        let config = Self.work.appendingPathComponent("odd-config.json")
        try configJSON(visionHeads: 3).write(to: config, atomically: true, encoding: .utf8)
        let make = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["init-model", "--config", config.path, "--out", model.path, "--seed", "4"])
        XCTAssertEqual(make.status, 0, make.output)
        XCTAssertTrue(make.output.contains("wrote CLIPSeg from"), make.output)
        let written = try CLIPSegConfig.load(from: model.appendingPathComponent("config.json"))
        XCTAssertEqual(written.visionConfig.patchSize, 8)
        XCTAssertEqual(written.extractLayers, [1, 3, 4])
        XCTAssertEqual(written.textConfig.hiddenAct, "gelu")
        XCTAssertFalse(written.useComplexTransposedConvolution)

        let run = newRun()
        var args = overrides(
            run: run, batch: 2, steps: 4,
            extra: ["tuning=vlsm_dense_vlc", "trainer.checkpoint_every=4", "trainer.eval_every=0"])
        args = args.map {
            $0.hasPrefix("model.path=")
                ? "model.path=\(model.path)" : $0.hasPrefix("model.preset=") ? "model.preset=" : $0
        }
        let r = try train(ranks: 2, args + ["model.image_size=48"])
        XCTAssertEqual(r.status, 0, r.output)
        let trained = try SafeTensorsFile(
            url: run.appendingPathComponent("checkpoints/step-0000004/trainable.safetensors"))
        XCTAssertTrue(
            trained.names.contains("v_attn_adapters.3.fc1.weight") && trained.names.contains("cond_adapter.fc1.weight"),
            "\(trained.names.sorted())")
        XCTAssertEqual(try trained.tensor("v_attn_adapters.0.fc1.weight").shape, [64, 36])

        try configJSON(visionHeads: 5).write(to: config, atomically: true, encoding: .utf8)
        let bad = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["init-model", "--config", config.path, "--out", model.path + "-bad"])
        XCTAssertEqual(bad.status, 1, bad.output)
        XCTAssertTrue(
            bad.output.contains("vision_config.num_attention_heads") && bad.output.contains("odd-config.json"),
            bad.output)
    }

    /// A damaged model file ends in one line naming the file, and a non-zero exit.
    func testCorruptModelFileIsAOneLineError() throws {
        let model = Self.work.appendingPathComponent("corrupt-model")
        defer { try? FileManager.default.removeItem(at: model) }
        let make = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["init-model", "--preset", "tiny", "--out", model.path])
        XCTAssertEqual(make.status, 0, make.output)
        let weights = model.appendingPathComponent("model.safetensors")
        let bytes = try Data(contentsOf: weights)
        try bytes.prefix(bytes.count / 2).write(to: weights)
        let r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["tokenize", "--model", model.path, "x"])
        XCTAssertEqual(r.status, 0, r.output)  // the tokenizer does not need the weights
        let inputs = Self.work.appendingPathComponent("none.safetensors").path
        let f = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["forward", "--model", model.path, "--inputs", inputs, "--out", "/tmp/x"])
        XCTAssertEqual(f.status, 1, f.output)
        let lines = f.output.split(separator: "\n").filter { !$0.isEmpty }
        XCTAssertEqual(lines.count, 1, f.output)
        XCTAssertTrue(
            f.output.contains("model.safetensors") && f.output.contains("run past the data section"), f.output)
    }
}
