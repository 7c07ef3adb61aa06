import Foundation
import VLTestSupport
import VLTrain
import XCTest

/// `vlseg sweep` end to end on the demo (a tiny model, a few steps per trial): trials on 2 real MPI ranks
/// recorded in Optuna's storage (read back through Optuna itself), the best trial retrained, a killed
/// sweep resumed, failing trials recorded, two launches sharing one study (PostgreSQL started here, or
/// SQLite where it cannot start), and search spaces refused before any trial.
final class SweepTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-sweep-\(getpid())")
    var scratch: [URL] = []

    override func tearDown() { for u in scratch { try? FileManager.default.removeItem(at: u) } }

    func newDirectory(_ name: String) -> URL {
        let url = Self.work.appendingPathComponent("\(name)-\(UUID().uuidString)")
        scratch.append(url)
        return url
    }

    /// The demo with CoOp (a prompt method with an integer option to search), shrunk to seconds per trial.
    func overrides(sweepDir: URL, steps: Int = 4, extra: [String] = []) -> [String] {
        [
            "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path, "experiment=demo",
            "tuning=coop",
            "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=40", "data.demo.size=64",
            "model.path=\(Self.work.appendingPathComponent("model").path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=4", "data.eval_batch_size=8", "trainer.global_batch_size=0", "data.workers=1",
            "trainer.threads=1", "trainer.max_steps=\(steps)", "trainer.max_epochs=0", "trainer.eval_every=2",
            "trainer.checkpoint_every=2", "trainer.schedule.warmup_steps=0", "trainer.log_every=2",
            "run.tensorboard_images=0",
            "sweep=demo", "sweep.dir=\(sweepDir.path)",
        ] + extra
    }

    func vlseg(ranks: Int = 1, _ args: [String], environment: [String: String] = [:], timeout: Double = 240) throws
        -> ProcessRunner.Result
    {
        try ProcessRunner.vlseg(
            ranks: ranks, args, environment: environment.merging(try Self.python()) { a, _ in a }, timeout: timeout)
    }

    /// VLSEG_PYTHON: the interpreter the tests' `python3` is (the one launch/test installed Optuna into).
    /// mpirun started by its absolute path puts its own prefix (/usr/bin) first on the ranks' PATH, where
    /// another python3 may live.
    static func python() throws -> [String: String] {
        let path = try PythonReference.run("import sys; print(sys.executable)").trimmingCharacters(
            in: .whitespacesAndNewlines)
        return ["VLSEG_PYTHON": path]
    }

    struct StudyTrial: Decodable {
        var number: Int
        var state: String
        var value: Double?
        var params: [String: Double]
        var error: String?
    }

    /// The study's trials as Optuna reads them from the storage (not through VLSeg).
    func optunaTrials(storage: String, study: String) throws -> [StudyTrial] {
        let script = """
            import json, sys, optuna
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            s = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])
            print(json.dumps([{"number": t.number, "state": t.state.name, "value": t.value,
                               "params": t.params, "error": t.user_attrs.get("error")} for t in s.trials]))
            """
        let out = try PythonReference.run(script, arguments: [storage, study])
        return try JSONDecoder().decode([StudyTrial].self, from: Data(out.utf8))
    }

    /// The validations in a run's metrics.jsonl: (step, val_loss).
    func validations(_ run: URL) throws -> [(Int, Double)] {
        let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                o["kind"] as? String == "val", let step = o["step"] as? Int, let loss = o["val_loss"] as? Double
            else { return nil }
            return (step, loss)
        }
    }

    /// A value of the run's resolved config.yaml (`trainer.lr`), as text.
    func configValue(_ run: URL, _ key: String) throws -> String? {
        let yaml = try String(contentsOf: run.appendingPathComponent("config.yaml"), encoding: .utf8)
        return try ConfigLoader.decode(yaml: yaml, source: run.path, environment: ["HOME": "/root"]).text(at: key)
    }

    func sweepJSON(_ dir: URL) throws -> [String: Any] {
        try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("sweep.json")))
                as? [String: Any])
    }

    /// Acceptance: 6 trials over the learning rate and a CoOp option on 2 ranks; the study holds 6 complete
    /// trials whose params are the values the runs used; the best trial's file retrains to its value.
    func testSixTrialsOnTwoRanksAndTheBestRetrains() throws {
        let dir = newDirectory("sweep")
        let r = try vlseg(ranks: 2, ["sweep"] + overrides(sweepDir: dir), timeout: 400)
        XCTAssertEqual(r.status, 0, r.output)
        for n in 1...6 { XCTAssertTrue(r.output.contains("trial \(n)/6: val_loss "), r.output) }
        XCTAssertTrue(r.output.contains("best so far"), r.output)
        // CoOp leaves the vision tower frozen: its features are computed in the first trial only.
        let computed = try (1...6).map { n -> Int in
            let pattern = try NSRegularExpression(
                pattern: "sweep: trial \(n): frozen features of (\\d+) sample\\(s\\) computed, (\\d+) reused")
            let text = r.output as NSString
            let match = try XCTUnwrap(
                pattern.firstMatch(in: r.output, range: NSRange(location: 0, length: text.length)), "trial \(n)")
            return Int(text.substring(with: match.range(at: 1))) ?? -1
        }
        XCTAssertGreaterThan(computed[0], 0, r.output)
        XCTAssertEqual(Array(computed.dropFirst()), [0, 0, 0, 0, 0], r.output)
        let storage = "sqlite:///" + dir.appendingPathComponent("optuna.db").path
        let trials = try optunaTrials(storage: storage, study: "demo")
        XCTAssertEqual(trials.count, 6)
        XCTAssertEqual(trials.map(\.state), Array(repeating: "COMPLETE", count: 6))
        XCTAssertEqual(Set(trials.map { $0.params["tuning.n_ctx"] ?? -1 }).count > 1, true, "\(trials)")
        for t in trials {
            let run = dir.appendingPathComponent(String(format: "trial-%04d", t.number))
            let lr = try XCTUnwrap(try configValue(run, "trainer.lr").flatMap(Double.init))
            XCTAssertEqual(lr, try XCTUnwrap(t.params["trainer.lr"]), accuracy: 0, "trial \(t.number)")
            XCTAssertEqual(try configValue(run, "tuning.n_ctx"), t.params["tuning.n_ctx"].map { "\(Int($0))" })
            let best = try validations(run).map(\.1).min()
            XCTAssertEqual(try XCTUnwrap(t.value), try XCTUnwrap(best), accuracy: 0, "trial \(t.number)")
        }
        // sweep.json (the report's contract) agrees with the study.
        let summary = try sweepJSON(dir)
        XCTAssertEqual(summary["format"] as? String, "vlseg-sweep/1")
        XCTAssertEqual(summary["trials_target"] as? Int, 6)
        let bestTrial = try XCTUnwrap(trials.filter { $0.value != nil }.min { $0.value! < $1.value! })
        XCTAssertEqual(summary["best_trial"] as? Int, bestTrial.number)
        let listed = try XCTUnwrap(summary["trials"] as? [[String: Any]])
        XCTAssertEqual(listed.map { $0["run_dir"] as? String }, trials.map { String(format: "trial-%04d", $0.number) })
        XCTAssertEqual(listed.map { $0["value"] as? Double }, trials.map(\.value))
        // The sweep's report: the trials table with every trial and the parameters chart.
        let report = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["report", dir.path, "--worst", "0"], timeout: 120)
        XCTAssertEqual(report.status, 0, report.output)
        let page = try String(contentsOf: dir.appendingPathComponent("report.html"), encoding: .utf8)
        for t in trials { XCTAssertTrue(page.contains(String(format: "trial-%04d", t.number)), "trial \(t.number)") }
        XCTAssertTrue(page.contains("<svg"), "the parameters chart")
        // Retrain the best trial from its file: the same validation value.
        let bestFile = dir.appendingPathComponent("best.yaml")
        XCTAssertTrue(r.output.contains("+sweep_best=\(bestFile.path)"), r.output)
        let retrain = newDirectory("retrain")
        let t = try vlseg(
            ranks: 2,
            [
                "train", "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path,
                "experiment=demo",
                "+sweep_best=\(bestFile.path)", "run.dir=\(retrain.path)", "trainer.threads=1",
            ], timeout: 200)
        XCTAssertEqual(t.status, 0, t.output)
        XCTAssertEqual(
            try XCTUnwrap(try validations(retrain).map(\.1).min()), try XCTUnwrap(bestTrial.value), accuracy: 0)
    }

    /// Acceptance: a sweep killed during trial 3 and started again keeps trials 1-2, continues trial 3 from
    /// its checkpoint, and ends with 6 trials. Trial 5 fails on purpose and is recorded as FAIL.
    func testAKilledSweepResumesItsTrialAndFailuresAreRecorded() throws {
        let dir = newDirectory("killed")
        let args = ["sweep"] + overrides(sweepDir: dir, steps: 6)
        let killed = try vlseg(
            args, environment: ["VLSEG_FAULT_TRIAL": "2", "VLSEG_FAULT_KILL_AT_STEP": "5"], timeout: 200)
        XCTAssertNotEqual(killed.status, 0, killed.output)
        XCTAssertTrue(killed.output.contains("trial 2/6: val_loss"), killed.output)
        XCTAssertFalse(killed.output.contains("trial 3/6: val_loss"), killed.output)
        let storage = "sqlite:///" + dir.appendingPathComponent("optuna.db").path
        let before = try optunaTrials(storage: storage, study: "demo")
        XCTAssertEqual(before.map(\.state), ["COMPLETE", "COMPLETE", "RUNNING"])
        let kept = try [0, 1].map { try validations(dir.appendingPathComponent(String(format: "trial-%04d", $0))) }

        let again = try vlseg(args, environment: ["VLSEG_FAULT_SWEEP_FAIL_TRIAL": "4"], timeout: 300)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("trial 3/6 (resumed from its checkpoint)"), again.output)
        XCTAssertTrue(again.output.contains("at step 4"), again.output)
        XCTAssertFalse(again.output.contains("trial 1/6"), again.output)
        XCTAssertFalse(again.output.contains("trial 2/6"), again.output)
        XCTAssertTrue(again.output.contains("trial 5/6: FAIL: fault injection"), again.output)
        let after = try optunaTrials(storage: storage, study: "demo")
        XCTAssertEqual(after.map(\.state), ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"])
        XCTAssertEqual(after[0].value, before[0].value)
        XCTAssertEqual(after[1].value, before[1].value)
        XCTAssertTrue(after[4].error?.contains("VLSEG_FAULT_SWEEP_FAIL_TRIAL") ?? false, "\(after[4])")
        for n in [0, 1] {
            let now = try validations(dir.appendingPathComponent(String(format: "trial-%04d", n)))
            XCTAssertEqual(now.map(\.0), kept[n].map(\.0))
            XCTAssertEqual(now.map(\.1), kept[n].map(\.1))
        }
        let summary = try sweepJSON(dir)
        let failed = try XCTUnwrap((summary["trials"] as? [[String: Any]])?.first { $0["number"] as? Int == 4 })
        XCTAssertEqual(failed["state"] as? String, "FAIL")
        XCTAssertTrue((failed["error"] as? String)?.contains("fault injection") ?? false, "\(failed)")
    }

    /// Acceptance: search spaces refused before any trial with one line naming the key.
    func testInvalidSpacesAreRefusedBeforeAnyTrial() throws {
        let cases: [(String, String, String)] = [
            (
                "params:\n  trainer.lrate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n", "trainer.lrate",
                "did you mean 'trainer.lr'"
            ),
            (
                "params:\n  trainer.lr: {type: float, low: -1.0e-4, high: 1.0e-2, log: true}\n", "trainer.lr",
                "positive low bound"
            ),
            ("params:\n  tuning.n_ctx: {type: int, low: 0, high: 6}\n", "tuning.n_ctx", "minimum 1"),
        ]
        for (text, key, words) in cases {
            let dir = newDirectory("refused")
            let space = newDirectory("space").appendingPathExtension("yaml")
            try FileManager.default.createDirectory(
                at: space.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: space, atomically: true, encoding: .utf8)
            let r = try vlseg(["sweep"] + overrides(sweepDir: dir) + ["sweep=\(space.path)"], timeout: 60)
            XCTAssertEqual(r.status, 1, r.output)
            let lines = r.output.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, r.output)
            XCTAssertTrue(r.output.contains("\(key): "), r.output)
            XCTAssertTrue(r.output.contains(words), r.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path), "a refused sweep wrote \(dir.path)")
        }
    }

    /// Acceptance: two launches sharing one study run distinct trials and together reach the count. The
    /// study lives in a PostgreSQL server this test starts (password from the environment, never shown);
    /// where no server can start, the two launches share one SQLite study.
    func testTwoLaunchesShareOneStudy() throws {
        let password = "pw-\(UUID().uuidString.prefix(8))"
        let server = try? PostgresServer.start(password: password, under: newDirectory("postgres"))
        defer { server?.stop() }
        let dirs = [newDirectory("launch-a"), newDirectory("launch-b")]
        var storageArgs: [String] = []
        var environment: [String: String] = [:]
        let storage: String
        if let server {
            storageArgs = ["sweep.storage=postgresql://vlseg@127.0.0.1:\(server.port)/sweeps"]
            environment[SweepStoragePassword.variable] = password
            storage = "postgresql://vlseg:\(password)@127.0.0.1:\(server.port)/sweeps"
        } else {
            // Without PostgreSQL, both launches share the first one's SQLite study (as on a shared disk).
            try FileManager.default.createDirectory(at: dirs[0], withIntermediateDirectories: true)
            storage = "sqlite:///" + dirs[0].appendingPathComponent("optuna.db").path
            storageArgs = ["sweep.storage=\(storage)"]
        }
        print(
            "testTwoLaunchesShareOneStudy: \(server.map { "PostgreSQL on port \($0.port)" } ?? "one SQLite study (PostgreSQL could not start)")"
        )
        let launches = try dirs.map { dir in
            try RunningProcess(
                ProcessRunner.vlsegPath,
                ["sweep"] + overrides(sweepDir: dir) + storageArgs + ["sweep.trials=4", "sweep.study=shared"],
                environment: ProcessRunner.cleanEnvironment(environment.merging(try Self.python()) { a, _ in a }))
        }
        let results = launches.map { $0.finish(timeout: 300).result }
        for r in results { XCTAssertEqual(r.status, 0, r.output) }
        let trials = try optunaTrials(storage: storage, study: "shared")
        XCTAssertEqual(trials.map(\.number), [0, 1, 2, 3])
        XCTAssertEqual(trials.map(\.state), Array(repeating: "COMPLETE", count: 4))
        // Each trial ran in exactly one launch, and each launch's lines name only its own trials.
        var ranBy: [Int: Int] = [:]
        for (i, dir) in dirs.enumerated() {
            for t in trials
            where FileManager.default.fileExists(
                atPath: dir.appendingPathComponent(String(format: "trial-%04d/metrics.jsonl", t.number)).path)
            {
                XCTAssertNil(ranBy[t.number], "trial \(t.number) ran in both launches")
                ranBy[t.number] = i
                XCTAssertTrue(results[i].output.contains("trial \(t.number + 1)/4: val_loss"), results[i].output)
                XCTAssertFalse(results[1 - i].output.contains("trial \(t.number + 1)/4: val_loss"))
            }
        }
        XCTAssertEqual(ranBy.count, 4, "\(ranBy)")
        if server != nil {
            // The password is in no output and no file either launch wrote.
            for (r, dir) in zip(results, dirs) {
                XCTAssertFalse(r.output.contains(password), r.output)
                XCTAssertTrue(r.output.contains("postgresql://vlseg:***@127.0.0.1"), r.output)
                let files = FileManager.default.enumerator(atPath: dir.path)?.compactMap { $0 as? String } ?? []
                for f in files {
                    let data = (try? Data(contentsOf: dir.appendingPathComponent(f))) ?? Data()
                    XCTAssertNil(data.range(of: Data(password.utf8)), "\(f) holds the password")
                }
            }
        }
    }

    /// sweep.pruner=median: trials report every validation to Optuna's MedianPruner; a pruned trial stops
    /// at that validation (fewer steps than the budget) and is PRUNED in the study, its value at that step
    /// worse than the median of the trials finished before it.
    func testMedianPrunerStopsTrials() throws {
        let dir = newDirectory("pruned")
        let r = try vlseg(
            ["sweep"]
                + overrides(
                    sweepDir: dir, steps: 6,
                    extra: ["sweep.trials=6", "sweep.pruner=median", "sweep.pruner.n_startup_trials=1"]),
            timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let storage = "sqlite:///" + dir.appendingPathComponent("optuna.db").path
        let script = """
            import json, sys, optuna
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            s = optuna.load_study(study_name="demo", storage=sys.argv[1])
            print(json.dumps([{"number": t.number, "state": t.state.name,
                               "intermediate": {str(k): v for k, v in t.intermediate_values.items()}} for t in s.trials]))
            """
        struct Trial: Decodable {
            var number: Int
            var state: String
            var intermediate: [String: Double]
        }
        let trials = try JSONDecoder().decode(
            [Trial].self, from: Data(try PythonReference.run(script, arguments: [storage]).utf8))
        XCTAssertEqual(trials.count, 6)
        let pruned = trials.filter { $0.state == "PRUNED" }
        XCTAssertFalse(pruned.isEmpty, "no trial was pruned: \(trials)")
        for t in pruned {
            let run = dir.appendingPathComponent(String(format: "trial-%04d", t.number))
            let steps = try validations(run).map(\.0)
            let last = try XCTUnwrap(steps.max())
            XCTAssertLessThan(last, 6, "trial \(t.number) was pruned but trained on")
            XCTAssertTrue(r.output.contains("trial \(t.number + 1)/6: PRUNED at step \(last)"), r.output)
            // Worse than the median of the earlier finished trials' values at that step.
            let earlier = trials.filter { $0.number < t.number && $0.state == "COMPLETE" }
                .compactMap { $0.intermediate["\(last)"] }.sorted()
            XCTAssertFalse(earlier.isEmpty)
            let median =
                earlier.count % 2 == 1
                ? earlier[earlier.count / 2] : (earlier[earlier.count / 2 - 1] + earlier[earlier.count / 2]) / 2
            XCTAssertGreaterThan(try XCTUnwrap(t.intermediate["\(last)"]), median, "trial \(t.number)")
        }
        for t in trials where t.state == "COMPLETE" {
            XCTAssertEqual(t.intermediate.keys.sorted(), ["2", "4", "6"], "trial \(t.number)")
        }
    }

    /// launch/sweep installs Optuna and runs `vlseg sweep` under mpirun with launch/train's flags,
    /// dividing the cores among the ranks as for training.
    func testLaunchSweepCommandLine() throws {
        guard ProcessRunner.which("mpirun") != nil else { throw XCTSkip("mpirun not installed") }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let r = try ProcessRunner.script(
            "launch/sweep", ["-n", "2", "--print", "--", "experiment=demo", "sweep=demo"],
            environment: ["VLSEG_BIN": ProcessRunner.vlsegPath], timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("Optuna for vlseg sweep: optuna==4.5.0"), r.output)
        XCTAssertTrue(
            r.output.contains(
                "\(ProcessRunner.vlsegPath) sweep experiment=demo sweep=demo trainer.threads=\(max(1, cores / 2))"),
            r.output)
    }

    /// A storage that refuses the password: one line, exit 1, the password masked.
    func testAStorageErrorNeverShowsThePassword() throws {
        let password = "pw-\(UUID().uuidString.prefix(8))"
        guard let server = try? PostgresServer.start(password: password, under: newDirectory("postgres")) else {
            throw XCTSkip("no PostgreSQL server could start here")
        }
        defer { server.stop() }
        let wrong = "wrong-\(UUID().uuidString.prefix(8))"
        let dir = newDirectory("refused-storage")
        let r = try vlseg(
            ["sweep"] + overrides(sweepDir: dir) + ["sweep.storage=postgresql://vlseg@127.0.0.1:\(server.port)/sweeps"],
            environment: [SweepStoragePassword.variable: wrong], timeout: 120)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("password authentication failed"), r.output)
        XCTAssertFalse(r.output.contains(wrong), r.output)
        XCTAssertEqual(r.output.split(separator: "\n").filter { $0.contains("error") }.count, 1, r.output)
    }
}

/// The name of the environment variable that carries the storage password (`SweepStorage.passwordVariable`).
enum SweepStoragePassword {
    static let variable = "VLSEG_SWEEP_STORAGE_PASSWORD"
}

/// A throw-away PostgreSQL server (Debian's `postgresql` package): initdb and pg_ctl as the `postgres`
/// user in a temporary directory, on a free port, password authentication for user `vlseg`, database
/// `sweeps`.
struct PostgresServer {
    let directory: URL
    let port: Int
    let bin: URL

    /// Runs a server tool (as `postgres` when root: the server refuses root) with its output in a file,
    /// never a pipe (the server it starts would hold a pipe open), spawned and reaped here directly:
    /// Foundation's Process was seen never to notice `runuser` end.
    static func tool(_ arguments: [String], in root: URL, environment: [String: String] = [:], timeout: Double = 60)
        -> (status: Int32, output: String)
    {
        let log = root.appendingPathComponent("tool-\(UUID().uuidString).log")
        let argv = ["/usr/bin/env"] + (getuid() == 0 ? ["runuser", "-u", "postgres", "--"] : []) + arguments
        let env = ProcessRunner.cleanEnvironment(environment).map { "\($0.key)=\($0.value)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer { for p in cArgs + cEnv { free(p) } }
        guard posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv) == 0 else { return (-1, "cannot spawn") }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return (-1, "timed out")
            }
            usleep(50_000)
        }
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exitStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    static func start(password: String, under root: URL) throws -> PostgresServer {
        let fm = FileManager.default
        let versions = (try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.sorted() ?? []
        guard let version = versions.last else { throw XCTSkip("postgresql is not installed") }
        let bin = URL(fileURLWithPath: "/usr/lib/postgresql/\(version)/bin")
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        let pwfile = root.appendingPathComponent("pw")
        try password.write(to: pwfile, atomically: true, encoding: .utf8)
        if getuid() == 0 {
            // The server refuses to run as root: its directory belongs to postgres.
            guard chown(root.path, postgresUser.uid, postgresUser.gid) == 0,
                chown(pwfile.path, postgresUser.uid, postgresUser.gid) == 0
            else { throw XCTSkip("no postgres user to own \(root.path)") }
            chmod(root.deletingLastPathComponent().path, 0o755)
        }
        let data = root.appendingPathComponent("data")
        let initdb = tool(
            [
                bin.appendingPathComponent("initdb").path, "-D", data.path, "--auth=scram-sha-256", "--username=vlseg",
                "--pwfile=\(pwfile.path)", "-E", "UTF8",
            ], in: root)
        guard initdb.status == 0 else { throw XCTSkip("initdb failed: \(initdb.output)") }
        let port = try freePort()
        let server = PostgresServer(directory: root, port: port, bin: bin)
        let start = tool(
            [
                bin.appendingPathComponent("pg_ctl").path, "-D", data.path, "-l",
                root.appendingPathComponent("log").path,
                "-o", "-p \(port) -k \(root.path) -c listen_addresses=127.0.0.1", "-w", "start",
            ], in: root)
        guard start.status == 0 else {
            server.stop()
            throw XCTSkip("pg_ctl start failed: \(start.output)")
        }
        let create = tool(
            [bin.appendingPathComponent("createdb").path, "-h", "127.0.0.1", "-p", "\(port)", "-U", "vlseg", "sweeps"],
            in: root, environment: ["PGPASSWORD": password])
        guard create.status == 0 else {
            server.stop()
            throw XCTSkip("createdb failed: \(create.output)")
        }
        return server
    }

    static var postgresUser: (uid: uid_t, gid: gid_t) {
        guard let pw = getpwnam("postgres") else { return (0, 0) }
        return (pw.pointee.pw_uid, pw.pointee.pw_gid)
    }

    func stop() {
        _ = Self.tool(
            [
                bin.appendingPathComponent("pg_ctl").path, "-D", directory.appendingPathComponent("data").path, "-m",
                "immediate", "stop",
            ], in: directory)
    }

    /// A TCP port nothing listens on now (bound to port 0, read back, closed).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("no socket") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard bound else { throw XCTSkip("cannot bind a port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
