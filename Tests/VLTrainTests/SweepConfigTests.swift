import Foundation
import VLTuning
import XCTest

@testable import VLTrain

/// The sweep's own config (search spaces in configs/sweep/), its checks against the experiment, the
/// storage URL's password handling, the objective read from a run's metrics, and `+sweep_best=FILE`.
final class SweepConfigTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let configDir = repoRoot.appendingPathComponent("configs")
    var scratch: [URL] = []

    override func tearDown() { for u in scratch { try? FileManager.default.removeItem(at: u) } }

    var loader: ConfigLoader { ConfigLoader(configDir: Self.configDir, environment: ["HOME": "/home/tester"]) }

    func file(_ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-space-\(UUID().uuidString).yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        scratch.append(url)
        return url
    }

    /// The space `text` checked against `overrides`: the error it raises, or nil.
    func problem(_ text: String, _ overrides: [String] = ["experiment=demo", "tuning=coop"]) throws -> ConfigError? {
        let url = try file(text)
        let resolved = try loader.load(overrides: overrides)
        do {
            let sweep = try SweepConfigReader.read(
                configDir: Self.configDir, arguments: ["sweep=\(url.path)"], defaultSpace: "none")
            try SweepSpaceCheck.check(sweep, resolved: resolved, loader: loader, overrides: overrides)
            return nil
        } catch let e as ConfigError {
            return e
        }
    }

    /// Every space in configs/sweep/ reads and passes its checks against the experiment it was made for.
    func testTheRepositorysSpacesCheck() throws {
        let cases: [(String, [String])] = [
            ("coop", ["experiment=kvasir/coop"]), ("cocoop", ["experiment=kvasir/cocoop"]),
            ("vpt", ["experiment=kvasir/vpt"]), ("maple", ["experiment=kvasir/maple"]),
            ("shared_attention", ["experiment=kvasir/shared_attention"]),
            ("shared_separate", ["experiment=kvasir/shared_separate"]),
            ("vlsm_adapter", ["experiment=kvasir/vlsm_dense_vl"]), ("demo", ["experiment=demo", "tuning=coop"]),
        ]
        for (space, overrides) in cases {
            let resolved = try loader.load(overrides: overrides)
            let sweep = try SweepConfigReader.read(
                configDir: Self.configDir, arguments: ["sweep=\(space)"], defaultSpace: "none")
            XCTAssertNoThrow(
                try SweepSpaceCheck.check(sweep, resolved: resolved, loader: loader, overrides: overrides), space)
            XCTAssertEqual(sweep.space, space)
        }
        let coop = try SweepConfigReader.read(configDir: Self.configDir, arguments: [], defaultSpace: "coop")
        XCTAssertEqual(coop.trials, 20)
        XCTAssertEqual(coop.sampler, SamplerSettings(seed: 12345, multivariate: true, startupTrials: 10))
        XCTAssertEqual(coop.objective, SweepObjective(metric: "val_loss", direction: .minimize))
        XCTAssertEqual(
            coop.parameters.map(\.distribution),
            [
                .float(low: 1e-5, high: 5e-3, log: true, step: nil),
                .float(low: 1e-5, high: 1e-2, log: true, step: nil),
                .int(low: 1, high: 10, log: false, step: 1),
            ])
        let adapter = try SweepConfigReader.read(
            configDir: Self.configDir, arguments: ["sweep=vlsm_adapter", "sweep.trials=5", "sweep.pruner=median"],
            defaultSpace: "none")
        XCTAssertEqual(adapter.objective, SweepObjective(metric: "val_dice", direction: .maximize))
        XCTAssertEqual(adapter.trials, 5)
        XCTAssertEqual(adapter.pruner.kind, .median)
    }

    func testAKeyTheConfigLacksIsRefusedNamingIt() throws {
        let e = try XCTUnwrap(try problem("params:\n  trainer.lrr: {type: float, low: 1.0e-4, high: 1.0e-2}\n"))
        XCTAssertEqual(e.path, "trainer.lrr")
        XCTAssertEqual(e.suggestion, "trainer.lr")
        XCTAssertTrue(e.description.contains(".yaml:2: trainer.lrr: "), e.description)
        let t = try XCTUnwrap(try problem("params:\n  tuning.hiden: {type: int, low: 1, high: 4}\n"))
        XCTAssertEqual(t.path, "tuning.hiden")
    }

    func testBadRangesAreRefusedNamingTheKey() throws {
        let log = try XCTUnwrap(
            try problem("params:\n  trainer.lr: {type: float, low: -1.0e-4, high: 1.0e-2, log: true}\n"))
        XCTAssertEqual(log.path, "trainer.lr")
        XCTAssertTrue(log.message.contains("positive low bound"), log.message)
        let order = try XCTUnwrap(try problem("params:\n  trainer.lr: {type: float, low: 0.1, high: 0.01}\n"))
        XCTAssertTrue(order.message.contains("above high"), order.message)
        // The option's declared minimum (n_ctx >= 1) speaks for a tuning option's range.
        let minimum = try XCTUnwrap(try problem("params:\n  tuning.n_ctx: {type: int, low: 0, high: 4}\n"))
        XCTAssertEqual(minimum.path, "tuning.n_ctx")
        XCTAssertTrue(minimum.message.contains("minimum 1"), minimum.message)
        let type = try XCTUnwrap(try problem("params:\n  tuning.depth: {type: float, low: 1, high: 3}\n"))
        XCTAssertTrue(type.message.contains("is an integer"), type.message)
        // Any other key: the config's own checks on both ends of the range.
        let lr = try XCTUnwrap(try problem("params:\n  trainer.lr: {type: float, low: -1.0, high: 1.0e-2}\n"))
        XCTAssertEqual(lr.path, "trainer.lr")
        XCTAssertTrue(lr.message.contains("refuses"), lr.message)
        let unknownField = try XCTUnwrap(
            try problem("params:\n  trainer.lr: {type: float, low: 0.1, high: 1, lg: true}\n"))
        XCTAssertEqual(unknownField.suggestion, "sweep.params.trainer.lr.log")
        let metric = try XCTUnwrap(
            try problem("objective: {metric: val_dise}\nparams:\n  trainer.lr: {type: float, low: 0.1, high: 1}\n"))
        XCTAssertEqual(metric.path, "sweep.objective.metric")
        XCTAssertEqual(metric.suggestion, "val_dice")
        XCTAssertNil(try problem("params:\n  trainer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"))
    }

    func testAnUnknownSpaceListsTheAvailableOnes() throws {
        XCTAssertThrowsError(
            try SweepConfigReader.read(configDir: Self.configDir, arguments: ["sweep=cop"], defaultSpace: "none")
        ) { error in
            let e = error as? ConfigError
            XCTAssertEqual(e?.suggestion, "coop")
            XCTAssertTrue(e?.message.contains("vlsm_adapter") ?? false, "\(error)")
        }
    }

    func testTheStoragePasswordNeverShows() throws {
        let dir = URL(fileURLWithPath: "/tmp/sweep")
        var c = SweepConfig(space: "x")
        XCTAssertEqual(try SweepStorage.resolve(c, sweepDirectory: dir).url, "sqlite:////tmp/sweep/optuna.db")
        c.storage = "postgresql://alice@db.example:5432/sweeps"
        let fromEnv = try SweepStorage.resolve(
            c, sweepDirectory: dir, environment: [SweepStorage.passwordVariable: "p@ss:w/rd"])
        XCTAssertEqual(fromEnv.url, "postgresql://alice:p%40ss%3Aw%2Frd@db.example:5432/sweeps")
        XCTAssertEqual(fromEnv.masked, "postgresql://alice:***@db.example:5432/sweeps")
        let message = fromEnv.mask("could not connect to \(fromEnv.url) with password p@ss:w/rd or p%40ss%3Aw%2Frd")
        XCTAssertFalse(message.contains("p@ss") || message.contains("p%40ss"), message)
        let passwordFile = try file("hunter2\n")
        c.storagePasswordFile = passwordFile.path
        let fromFile = try SweepStorage.resolve(c, sweepDirectory: dir, environment: [:])
        XCTAssertEqual(fromFile.url, "postgresql://alice:hunter2@db.example:5432/sweeps")
        XCTAssertFalse(fromFile.masked.contains("hunter2"))
        c.storagePasswordFile = nil
        c.storage = "postgresql://alice:inline@db.example/sweeps"
        let inline = try SweepStorage.resolve(c, sweepDirectory: dir, environment: [:])
        XCTAssertEqual(inline.masked, "postgresql://alice:***@db.example/sweeps")
        XCTAssertEqual(inline.mask("FATAL: password inline refused"), "FATAL: password *** refused")
        XCTAssertThrowsError(
            try SweepStorage.resolve(c, sweepDirectory: dir, environment: [SweepStorage.passwordVariable: "x"])
        ) { error in
            XCTAssertFalse("\(error)".contains("inline"), "\(error)")
            XCTAssertTrue("\(error)".contains("no password of its own"), "\(error)")
        }
        c.storage = "db.example/sweeps"
        XCTAssertThrowsError(try SweepStorage.resolve(c, sweepDirectory: dir, environment: [:]))
    }

    func testTheObjectiveIsTheBestValidation() {
        let minimize = SweepObjective(metric: "val_loss", direction: .minimize)
        let maximize = SweepObjective(metric: "val_dice", direction: .maximize)
        let values: [(step: Int, value: Double?)] = [(2, 0.6), (4, 0.4), (6, 0.5)]
        XCTAssertEqual(TrialObjective.best(values, objective: minimize), .value(0.4, step: 4))
        XCTAssertEqual(TrialObjective.best(values, objective: maximize), .value(0.6, step: 2))
        XCTAssertEqual(TrialObjective.best([], objective: minimize), .noValidation)
        XCTAssertEqual(TrialObjective.best([(2, 0.6), (4, nil)], objective: minimize), .diverged(step: 4))
    }

    func testTheDriverJSONKeepsTypesByDistribution() {
        XCTAssertEqual(ConfigValue.int(3).typed(by: .float(low: 1, high: 5, log: false, step: nil)), .double(3))
        XCTAssertEqual(ConfigValue.double(4).typed(by: .int(low: 1, high: 5, log: false, step: 1)), .int(4))
        XCTAssertEqual(ConfigValue.double(1e-5).overrideText, "1e-05")
        XCTAssertEqual(ConfigValue.double(3).overrideText, "3.0")
        XCTAssertEqual(ConfigValue.string("a photo of").overrideText, "a photo of")
    }

    /// `+sweep_best=FILE` expands to the file's overrides in place; later overrides still win.
    func testSweepBestExpandsInPlace() throws {
        let best = try file("trainer.lr: 0.00123\ntuning: coop\ntuning.n_ctx: 6\ntrainer.max_steps: 7\n")
        let r = try loader.load(overrides: ["experiment=demo", "+sweep_best=\(best.path)", "trainer.max_steps=9"])
        XCTAssertEqual(r.config.trainer.lr, 0.00123)
        XCTAssertEqual(r.config.tuning.method, "coop")
        XCTAssertEqual(r.config.tuning.options["n_ctx"], .int(6))
        XCTAssertEqual(r.config.trainer.maxSteps, 9)
        XCTAssertThrowsError(try loader.load(overrides: ["sweep_best=/nonexistent/best.yaml"])) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/best.yaml"), "\(error)")
        }
    }
}
