import Foundation
import VLModels
import VLTrain
import XCTest

/// The faults users meet, each on real processes (1 rank, and 2 ranks under real mpirun): what is
/// printed, the exit status, how long it took, and that no checkpoint was lost or damaged.
///
/// mpirun runs with the flags `launch/train` uses (`odls_base_sigkill_timeout 2`: a signal sent to
/// mpirun leaves the ranks 2 s to save their step; an aborted job ends within about twice that).
final class FaultMatrixTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-faults-\(getpid())")
    static var data: URL { work.appendingPathComponent("data") }
    static var model: URL { work.appendingPathComponent("model") }
    /// The wall-time bound for a fault to reach the user and end the job (issue: within 10 s).
    static let faultSeconds = 10.0

    override class func setUp() {
        super.setUp()
        // The tiny model and the demo data, made once by a one-step run.
        let fm = FileManager.default
        guard !fm.fileExists(atPath: data.appendingPathComponent("anns/train.json").path) else { return }
        _ = try? ProcessRunner.run(
            ProcessRunner.vlsegPath, ["train"] + common(run: work.appendingPathComponent("warm-up"), steps: 1),
            timeout: 120)
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: work)
        super.tearDown()
    }

    static func common(run: URL, steps: Int, batch: Int = 4, data: URL? = nil) -> [String] {
        [
            "--config-dir", ProcessRunner.repoRoot.appendingPathComponent("configs").path,
            "data.name=demo", "data.root=\((data ?? Self.data).path)", "data.demo.count=48", "data.demo.size=64",
            "model.path=\(model.path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=\(batch)", "trainer.global_batch_size=0", "data.workers=1", "trainer.threads=1",
            "trainer.max_steps=\(steps)", "trainer.max_epochs=0", "trainer.log_every=1", "trainer.eval_every=0",
            "trainer.checkpoint_every=0", "trainer.early_stopping.patience=0", "run.dir=\(run.path)", "seed=7",
        ]
    }

    func newDir(_ name: String) -> URL {
        Self.work.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8))")
    }

    /// A private copy of the demo data, to damage.
    func dataCopy() throws -> URL {
        let copy = newDir("data")
        try FileManager.default.copyItem(at: Self.data, to: copy)
        return copy
    }

    func entries(_ data: URL, split: String) throws -> [[String: Any]] {
        let json = try JSONSerialization.jsonObject(
            with: Data(contentsOf: data.appendingPathComponent("anns/\(split).json")))
        return json as? [[String: Any]] ?? []
    }

    func file(_ data: URL, split: String, entry: Int, kind: String) throws -> URL {
        let e = try entries(data, split: split)[entry]
        let name = e[kind == "image" ? "img_name" : "mask_name"] as? String ?? ""
        return data.appendingPathComponent(kind == "image" ? "images" : "masks").appendingPathComponent(name)
    }

    static var mpirunFlags: [String] {
        var flags = [
            "--bind-to", "none", "--mca", "orte_abort_on_non_zero_status", "1", "--mca", "odls_base_sigkill_timeout",
            "2",
        ]
        if getuid() == 0 { flags.append("--allow-run-as-root") }
        if ProcessInfo.processInfo.activeProcessorCount < 2 {
            flags += ["--oversubscribe", "--mca", "mpi_yield_when_idle", "1"]
        }
        return flags
    }

    func mpirun() throws -> String {
        guard let m = ProcessRunner.which("mpirun") else { throw XCTSkip("mpirun not installed") }
        return m
    }

    /// `vlseg train` on `ranks` ranks, to the end; the result and its wall time.
    func train(
        ranks: Int, _ args: [String], environment: [String: String] = [:],
        timeout: Double = 120
    ) throws -> (result: ProcessRunner.Result, seconds: Double) {
        let start = Date()
        let env = ProcessRunner.cleanEnvironment(environment)
        let r: ProcessRunner.Result
        if ranks == 1 {
            r = try ProcessRunner.run(ProcessRunner.vlsegPath, ["train"] + args, environment: env, timeout: timeout)
        } else {
            let exports = environment.keys.sorted().flatMap { ["-x", $0] }
            r = try ProcessRunner.run(
                try mpirun(),
                Self.mpirunFlags + exports + ["-np", "\(ranks)", ProcessRunner.vlsegPath, "train"] + args,
                environment: env, timeout: timeout)
        }
        return (r, Date().timeIntervalSince(start))
    }

    /// `vlseg train` started in the background.
    func start(ranks: Int, _ args: [String]) throws -> RunningProcess {
        if ranks == 1 {
            return try RunningProcess(
                ProcessRunner.vlsegPath, ["train"] + args, environment: ProcessRunner.cleanEnvironment())
        }
        return try RunningProcess(
            try mpirun(), Self.mpirunFlags + ["-np", "\(ranks)", ProcessRunner.vlsegPath, "train"] + args,
            environment: ProcessRunner.cleanEnvironment())
    }

    /// No trap, no backtrace, no hang: what every failure must look like.
    func assertCleanFailure(
        _ r: ProcessRunner.Result, _ context: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertFalse(r.timedOut, "\(context): hung\n\(r.output)", file: file, line: line)
        XCTAssertNotEqual(r.status, 0, "\(context): exit 0\n\(r.output)", file: file, line: line)
        for marker in ["Fatal error", "Stack dump", "backtrace", "did not complete within"] {
            XCTAssertFalse(r.output.contains(marker), "\(context): '\(marker)' in\n\(r.output)", file: file, line: line)
        }
    }

    /// The step directories of a run, and that each one loads (checksums, tensors).
    func validCheckpoints(_ run: URL, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let store = CheckpointStore(runDirectory: run)
        let dirs = store.stepDirectories()
        for dir in dirs {
            XCTAssertNoThrow(try CheckpointStore.load(dir), dir.lastPathComponent, file: file, line: line)
        }
        return dirs.map(\.lastPathComponent).sorted()
    }

    // MARK: - Bad files

    /// A corrupt mask and a zero-byte image: the job fails before step 1 naming the entry and the file,
    /// on 1 and 2 ranks, and writes nothing into the run directory.
    func testBadFilesFailBeforeTheFirstStep() throws {
        for ranks in [1, 2] {
            let data = try dataCopy()
            let mask = try file(data, split: "train", entry: 3, kind: "mask")
            try Data("not a png".utf8).write(to: mask)
            let image = try file(data, split: "val", entry: 1, kind: "image")
            try Data().write(to: image)
            let run = newDir("run")
            let (r, seconds) = try train(ranks: ranks, Self.common(run: run, steps: 20, data: data))
            assertCleanFailure(r, "\(ranks) rank(s)")
            XCTAssertEqual(r.status, 1, r.output)
            XCTAssertTrue(r.output.contains("2 sample(s) of \(data.path) have unusable files"), r.output)
            XCTAssertTrue(
                r.output.contains("train.json entry 3") && r.output.contains("cannot read mask \(mask.path)"), r.output)
            XCTAssertTrue(
                r.output.contains("val.json entry 1")
                    && r.output.contains("cannot read image \(image.path): corrupt or truncated: empty file"), r.output)
            XCTAssertFalse(r.output.contains("step 1/"), "trained before failing:\n\(r.output)")
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: run.path), "the run directory was written")
            // data.on_error=skip leaves them out with one warning and trains.
            let skipped = try train(ranks: ranks, Self.common(run: run, steps: 2, data: data) + ["data.on_error=skip"])
                .result
            XCTAssertEqual(skipped.status, 0, skipped.output)
            XCTAssertTrue(
                skipped.output.contains("warning: leaving out 2 sample(s) with unusable files"), skipped.output)
        }
    }

    /// A file missing on one machine only (rank 1 reads another copy of the data): named by the rank
    /// that checked it, and the job ends at once.
    func testImageMissingOnOneRankOnly() throws {
        let mpirun = try mpirun()
        let data = try dataCopy()
        let missing = try file(data, split: "train", entry: 5, kind: "image")  // odd: rank 1's share
        try FileManager.default.removeItem(at: missing)
        let run = newDir("run")
        let start = Date()
        let rank0 = [ProcessRunner.vlsegPath, "train"] + Self.common(run: run, steps: 20)
        let rank1 = [ProcessRunner.vlsegPath, "train"] + Self.common(run: run, steps: 20, data: data)
        let r = try ProcessRunner.run(
            mpirun, Self.mpirunFlags + ["-np", "1"] + rank0 + [":", "-np", "1"] + rank1, timeout: 120)
        let seconds = Date().timeIntervalSince(start)
        assertCleanFailure(r, "missing on rank 1")
        XCTAssertTrue(r.output.contains("image file not found: \(missing.path)"), r.output)
        XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
    }

    /// A file whose header is intact but whose pixel data is corrupt passes the start-up check and
    /// fails mid-run on whichever rank reads it: that rank's own message (rank and host), the job
    /// ends within seconds, and the last checkpoint stays valid.
    func testFileFailingMidRunEndsTheJobWithItsError() throws {
        for ranks in [1, 2] {
            let data = try dataCopy()
            let mask = try file(data, split: "train", entry: 2, kind: "mask")
            var bytes = [UInt8](try Data(contentsOf: mask))
            guard let idat = (0..<(bytes.count - 4)).first(where: { bytes[$0..<$0 + 4] == [0x49, 0x44, 0x41, 0x54] })
            else {
                return XCTFail("no IDAT chunk in \(mask.path)")
            }
            for i in (idat + 4)..<min(idat + 24, bytes.count - 12) { bytes[i] ^= 0x5A }
            try Data(bytes).write(to: mask)
            let run = newDir("run")
            let (r, seconds) = try train(
                ranks: ranks, Self.common(run: run, steps: 200, data: data) + ["trainer.checkpoint_every=2"])
            assertCleanFailure(r, "\(ranks) rank(s)")
            XCTAssertTrue(r.output.contains("cannot read mask \(mask.path)"), r.output)
            if ranks == 2 {
                XCTAssertTrue(
                    r.output.range(of: #"vlseg: error: rank [01] \(.+\): "#, options: .regularExpression) != nil,
                    r.output)
            }
            XCTAssertEqual(
                r.output.components(separatedBy: "cannot read mask").count - 1, 1,
                "printed more than once:\n\(r.output)")
            // The file is read in the first epoch (12 steps of 4): the failure comes early, and fast.
            XCTAssertLessThan(seconds, 20, r.output)
            _ = validCheckpoints(run)
        }
    }

    // MARK: - Dying ranks

    /// A rank killed outright: the job ends within seconds and the checkpoints before it stay valid.
    func testAKilledRankEndsTheJobAndKeepsTheCheckpoints() throws {
        let run = newDir("run")
        let (r, seconds) = try train(
            ranks: 2, Self.common(run: run, steps: 200, batch: 2) + ["trainer.checkpoint_every=3"],
            environment: ["VLSEG_FAULT_RANK": "1", "VLSEG_FAULT_KILL_AT_STEP": "8"])
        assertCleanFailure(r, "killed rank")
        XCTAssertTrue(r.output.contains("rank 1 kills itself in step 8"), r.output)
        XCTAssertTrue(r.output.contains("signal 9"), r.output)
        XCTAssertLessThan(seconds, 20, r.output)
        XCTAssertEqual(validCheckpoints(run), ["step-0000003", "step-0000006"])
    }

    // MARK: - Stops

    /// The checkpoint a stopped run names as its latest, after checking it is the step it stopped at.
    func stoppedStep(
        _ r: ProcessRunner.Result, run: URL, signal: String, file: StaticString = #filePath, line: UInt = #line
    ) -> Int? {
        // The trainer's stderr line, or rank 0's stdout line with the same step: the output merges both
        // streams, and a stderr line that mpirun read in two pieces can have stdout's line between them.
        let markers = ["stopped by \(signal) after step ", "interrupted by \(signal) after step "]
        guard
            let text = markers.lazy.compactMap({ r.output.components(separatedBy: $0).dropFirst().first }).first,
            let step = Int(text.prefix { $0.isNumber })
        else {
            XCTFail("no 'stopped by' line:\n\(r.output)", file: file, line: line)
            return nil
        }
        let latest = (try? String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)) ?? ""
        XCTAssertEqual(
            latest.trimmingCharacters(in: .whitespacesAndNewlines), String(format: "step-%07d", step), r.output,
            file: file, line: line)
        XCTAssertNoThrow(
            try CheckpointStore.load(run.appendingPathComponent(String(format: "checkpoints/step-%07d", step))),
            file: file, line: line)
        return step
    }

    /// Waits for training to be under way (a few steps logged).
    func waitForSteps(_ job: RunningProcess, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(job.waitFor("  epoch ", timeout: 60), "never started:\n\(job.output)", file: file, line: line)
        usleep(500_000)
    }

    /// Nothing the job started is left running (ranks and mpirun carry the run directory in their arguments).
    func assertNothingLeft(_ run: URL, file: StaticString = #filePath, line: UInt = #line) {
        usleep(300_000)
        let r = try? ProcessRunner.run("/usr/bin/pgrep", ["-f", run.path], timeout: 10)
        XCTAssertEqual(
            r?.output.trimmingCharacters(in: .whitespacesAndNewlines) ?? "", "", "left running", file: file, line: line)
    }

    /// Training steps of `run`'s checkpoint `step`, as bytes.
    func trainableBytes(_ run: URL, step: Int) throws -> Data {
        try Data(
            contentsOf: run.appendingPathComponent(String(format: "checkpoints/step-%07d/trainable.safetensors", step)))
    }

    /// A stopped run continued to a later step ends bit-identical to a run that went there directly.
    func assertContinuationIsExact(_ run: URL, stoppedAt step: Int, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let end = step + 6
        let direct = newDir("direct")
        XCTAssertEqual(
            try train(ranks: 2, Self.common(run: direct, steps: end, batch: 2)).result.status, 0, file: file, line: line
        )
        let resumed = try train(ranks: 2, Self.common(run: run, steps: end, batch: 2) + ["resume=auto"]).result
        XCTAssertEqual(resumed.status, 0, resumed.output, file: file, line: line)
        XCTAssertTrue(
            resumed.output.contains(
                String(
                    format: "resumed from %@ at step %d",
                    run.appendingPathComponent(String(format: "checkpoints/step-%07d", step)).path, step)),
            resumed.output, file: file, line: line)
        XCTAssertEqual(
            try trainableBytes(run, step: end), try trainableBytes(direct, step: end),
            "the stopped and resumed run differs from the uninterrupted one", file: file, line: line)
    }

    /// SIGTERM and SIGINT sent to mpirun itself: every rank stops after the same step with its
    /// checkpoint (mpirun passes both on as SIGTERM); the SIGTERM run then continues bit-identical to an
    /// uninterrupted run.
    func testSignalsToMpirunStopWithACheckpoint() throws {
        for (name, number) in [("SIGTERM", SIGTERM), ("SIGINT", SIGINT)] {
            let run = newDir("run")
            // Open MPI passes a signal sent to mpirun on as SIGCONT, then SIGTERM 2 s later
            // (odls_base_sigkill_timeout), then SIGKILL when ranks are still there up to 2 s after;
            // it reads no output meanwhile, so rank 0 logs only every 20 steps here.
            let job = try start(ranks: 2, Self.common(run: run, steps: 100_000, batch: 2) + ["trainer.log_every=20"])
            waitForSteps(job)
            let sent = Date()
            job.signal(number)
            let (r, _) = job.finish(timeout: 60)
            let seconds = Date().timeIntervalSince(sent)
            XCTAssertFalse(r.timedOut, r.output)
            XCTAssertNotEqual(r.status, 0, r.output)  // mpirun reports a signalled job as failed (its own status)
            XCTAssertTrue(
                r.output.contains("rank 0: received SIGTERM") && r.output.contains("rank 1: received SIGTERM"), r.output
            )
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            guard let step = stoppedStep(r, run: run, signal: "SIGTERM") else { continue }
            assertNothingLeft(run)
            if number == SIGTERM { try assertContinuationIsExact(run, stoppedAt: step) }
            _ = name
        }
    }

    /// `launch/train` started in the background (its own process, as a shell would start it).
    func launch(_ args: [String]) throws -> RunningProcess {
        _ = try mpirun()
        var env = ProcessRunner.cleanEnvironment(["VLSEG_BIN": ProcessRunner.vlsegPath])
        env["PWD"] = ProcessRunner.repoRoot.path
        return try RunningProcess(
            "/bin/bash", [ProcessRunner.repoRoot.appendingPathComponent("launch/train").path] + args,
            environment: env, currentDirectory: ProcessRunner.repoRoot)
    }

    /// SIGTERM and SIGINT to `launch/train`, and its --timeout: every rank stops at the same step with
    /// a checkpoint of it, the script exits 143, 130 and 124, and nothing is left running; the timed-out
    /// run resumes bit-identical to an uninterrupted one.
    func testLaunchTrainStopsGracefully() throws {
        for (name, number, status) in [("SIGTERM", SIGTERM, Int32(143)), ("SIGINT", SIGINT, Int32(130))] {
            let run = newDir("run")
            let job = try launch(["-n", "2", "--"] + Self.common(run: run, steps: 100_000, batch: 2))
            waitForSteps(job)
            let sent = Date()
            job.signal(number)
            let (r, _) = job.finish(timeout: 90)
            XCTAssertFalse(r.timedOut, r.output)
            XCTAssertEqual(r.status, status, r.output)
            XCTAssertTrue(
                r.output.contains("\(name): stopping every rank after its current step with a checkpoint"), r.output)
            XCTAssertLessThan(Date().timeIntervalSince(sent), Self.faultSeconds, r.output)
            _ = stoppedStep(r, run: run, signal: "SIGUSR1")
            assertNothingLeft(run)
        }
        let run = newDir("run")
        let job = try launch(["-n", "2", "--timeout", "4", "--"] + Self.common(run: run, steps: 100_000, batch: 2))
        let (r, seconds) = job.finish(timeout: 90)
        XCTAssertEqual(r.status, 124, r.output)
        XCTAssertTrue(r.output.contains("job stopped after its time limit of 4s"), r.output)
        XCTAssertLessThan(seconds, 4 + Self.faultSeconds + 5, r.output)  // start-up, then the stop
        assertNothingLeft(run)
        guard let step = stoppedStep(r, run: run, signal: "SIGUSR1") else { return }
        try assertContinuationIsExact(run, stoppedAt: step)
    }

    // MARK: - Run directories

    /// A second job on a run directory in use refuses at once naming the holder; the first job is
    /// unharmed. A holder that died is taken over with a warning.
    func testTwoJobsOnOneRunDirectory() throws {
        let run = newDir("run")
        let first = try start(ranks: 1, Self.common(run: run, steps: 100_000))
        waitForSteps(first)
        for ranks in [1, 2] {
            let (r, seconds) = try train(ranks: ranks, Self.common(run: run, steps: 5) + ["resume=auto"])
            assertCleanFailure(r, "second job, \(ranks) rank(s)")
            XCTAssertTrue(r.output.contains("\(run.path) is in use by another job (pid \(first.pid) on "), r.output)
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
        }
        XCTAssertTrue(first.process.isRunning, first.output)
        first.signal(SIGTERM)
        let (r, _) = first.finish(timeout: 60)
        XCTAssertEqual(r.status, 128 + SIGTERM, r.output)
        guard let step = stoppedStep(r, run: run, signal: "SIGTERM") else { return }
        // Every metrics row is the first job's: steps 1, 2, ... without a gap or a repeat.
        let rows = try String(contentsOf: run.appendingPathComponent("metrics.csv"), encoding: .utf8).split(
            separator: "\n"
        ).dropFirst()
        let steps = rows.filter { $0.hasPrefix("train,") }.compactMap { Int($0.split(separator: ",")[1]) }
        XCTAssertEqual(steps, Array(1...step))
        // A holder that was killed leaves its record; the next job takes over and says so.
        let killed = try start(ranks: 1, Self.common(run: run, steps: 100_000) + ["resume=auto"])
        waitForSteps(killed)
        killed.signal(SIGKILL)
        _ = killed.finish(timeout: 30)
        let next = try train(ranks: 1, Self.common(run: run, steps: step + 2) + ["resume=auto"]).result
        XCTAssertEqual(next.status, 0, next.output)
        XCTAssertTrue(
            next.output.contains("taking over the lock left by a job that no longer runs (pid \(killed.pid)"),
            next.output)
    }

    /// A fresh run into a directory holding a run refuses with the way out; run.overwrite=true deletes
    /// the old run first. Nothing of the old run is touched by the refusal.
    func testFreshRunIntoAUsedRunDirectory() throws {
        for ranks in [1, 2] {
            let run = newDir("run")
            XCTAssertEqual(try train(ranks: ranks, Self.common(run: run, steps: 3, batch: 4 / ranks)).result.status, 0)
            let before = try Data(contentsOf: run.appendingPathComponent("metrics.jsonl"))
            let (r, seconds) = try train(ranks: ranks, Self.common(run: run, steps: 2, batch: 4 / ranks))
            assertCleanFailure(r, "fresh run, \(ranks) rank(s)")
            XCTAssertEqual(r.status, 1, r.output)
            XCTAssertTrue(
                r.output.contains(
                    "\(run.path) already holds a run (checkpoint step-0000003, metrics.jsonl, metrics.csv): resume=auto continues it, run.overwrite=true deletes it and starts over"
                ), r.output)
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("metrics.jsonl")), before)
            XCTAssertEqual(validCheckpoints(run), ["step-0000003"])
            let over = try train(
                ranks: ranks, Self.common(run: run, steps: 2, batch: 4 / ranks) + ["run.overwrite=true"]
            ).result
            XCTAssertEqual(over.status, 0, over.output)
            XCTAssertTrue(
                over.output.contains(
                    "run.overwrite=true: removed the earlier run's checkpoints, metrics.jsonl, metrics.csv"),
                over.output)
            XCTAssertEqual(validCheckpoints(run), ["step-0000002"])
        }
    }

    /// Every checkpoint damaged: resume=auto names them and stops, leaving them as they were.
    func testAllCheckpointsDamagedIsAnErrorNotARestart() throws {
        let run = newDir("run")
        XCTAssertEqual(
            try train(ranks: 2, Self.common(run: run, steps: 6, batch: 2) + ["trainer.checkpoint_every=3"]).result
                .status, 0)
        for step in ["step-0000003", "step-0000006"] {
            try Data("{".utf8).write(to: run.appendingPathComponent("checkpoints/\(step)/trainer.json"))
        }
        let listing = try FileManager.default.subpathsOfDirectory(
            atPath: run.appendingPathComponent("checkpoints").path
        ).sorted()
        let (r, seconds) = try train(ranks: 2, Self.common(run: run, steps: 9, batch: 2) + ["resume=auto"])
        assertCleanFailure(r, "all damaged")
        XCTAssertTrue(r.output.contains("2 checkpoint(s), none valid"), r.output)
        XCTAssertTrue(r.output.contains("step-0000003") && r.output.contains("step-0000006"), r.output)
        XCTAssertFalse(r.output.contains("step 1/"), r.output)
        XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
        XCTAssertEqual(
            try FileManager.default.subpathsOfDirectory(atPath: run.appendingPathComponent("checkpoints").path)
                .sorted(), listing)
        XCTAssertEqual(
            try String(
                contentsOf: run.appendingPathComponent("checkpoints/step-0000003/trainer.json"), encoding: .utf8), "{")
    }

    // MARK: - Disk full

    /// Metrics that cannot be written (a disk that is full: /dev/full answers every write with ENOSPC)
    /// end the run with one line naming the file; the checkpoint before stays valid.
    func testDiskFullDuringMetrics() throws {
        for ranks in [1, 2] {
            let run = newDir("run")
            XCTAssertEqual(try train(ranks: ranks, Self.common(run: run, steps: 2, batch: 4 / ranks)).result.status, 0)
            let metrics = run.appendingPathComponent("metrics.jsonl")
            try FileManager.default.removeItem(at: metrics)
            try FileManager.default.createSymbolicLink(atPath: metrics.path, withDestinationPath: "/dev/full")
            let (r, seconds) = try train(
                ranks: ranks, Self.common(run: run, steps: 6, batch: 4 / ranks) + ["resume=auto"])
            assertCleanFailure(r, "metrics, \(ranks) rank(s)")
            XCTAssertTrue(
                r.output.contains("\(metrics.path): cannot write the metrics: No space left on device"), r.output)
            XCTAssertEqual(r.output.components(separatedBy: "cannot write the metrics").count - 1, 1, r.output)
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            XCTAssertEqual(validCheckpoints(run), ["step-0000002"])
        }
    }

    /// A checkpoint that does not fit on the disk (a tmpfs sized to hold one of this model's
    /// checkpoints and a half): one line, every rank stops, the previous checkpoint stays valid and
    /// `latest` names it.
    func testDiskFullDuringACheckpoint() throws {
        let probe = newDir("probe")
        XCTAssertEqual(try train(ranks: 1, Self.common(run: probe, steps: 1)).result.status, 0)
        let checkpoint = probe.appendingPathComponent("checkpoints/step-0000001")
        let pages = try FileManager.default.contentsOfDirectory(atPath: checkpoint.path).reduce(0) { total, name in
            let size =
                (try FileManager.default.attributesOfItem(atPath: checkpoint.appendingPathComponent(name).path)[.size]
                    as? Int) ?? 0
            return total + (size + 4095) / 4096
        }
        // One and a half checkpoints, and a page each for config.yaml, the metrics, the lock and the pointers.
        let kilobytes = pages * 4 * 3 / 2 + 48
        let mountPoint = try tmpfs(kilobytes: kilobytes)
        defer { unmount(mountPoint) }
        for ranks in [1, 2] {
            let run = mountPoint.appendingPathComponent("run\(ranks)")
            let (r, seconds) = try train(
                ranks: ranks, Self.common(run: run, steps: 12, batch: 4 / ranks) + ["trainer.checkpoint_every=3"])
            assertCleanFailure(r, "checkpoint, \(ranks) rank(s)")
            XCTAssertTrue(
                r.output.contains("could not save checkpoint") && r.output.contains("No space left on device"), r.output
            )
            XCTAssertEqual(r.output.components(separatedBy: "could not save checkpoint").count - 1, 1, r.output)
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            XCTAssertEqual(validCheckpoints(run), ["step-0000003"])
            XCTAssertEqual(CheckpointStore(runDirectory: run).pointer("latest"), "step-0000003")
            let leftovers = try FileManager.default.contentsOfDirectory(
                atPath: run.appendingPathComponent("checkpoints").path
            ).filter { $0.contains(".tmp-") }
            XCTAssertEqual(leftovers, [])
            try FileManager.default.removeItem(at: run)
        }
    }

    /// A small tmpfs (a disk that fills up), mounted for the test; needs root.
    func tmpfs(kilobytes: Int) throws -> URL {
        let mountPoint = newDir("tmpfs")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        let mount = try ProcessRunner.run(
            "/bin/mount", ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", mountPoint.path], timeout: 20)
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs here (\(mount.output)); needs root") }
        return mountPoint
    }

    func unmount(_ mountPoint: URL) { _ = try? ProcessRunner.run("/bin/umount", [mountPoint.path], timeout: 20) }

    /// A feature cache too large for memory (trainer.cache_mb) and for the disk: the file's space is
    /// reserved up front, so the run stops with one line instead of a SIGBUS mid-epoch.
    func testDiskFullForTheFeatureCache() throws {
        let mountPoint = try tmpfs(kilobytes: 64)
        defer { unmount(mountPoint) }
        for ranks in [1, 2] {
            let run = mountPoint.appendingPathComponent("run\(ranks)")
            let (r, seconds) = try train(
                ranks: ranks, Self.common(run: run, steps: 6, batch: 4 / ranks) + ["trainer.cache_mb=0.001"])
            assertCleanFailure(r, "cache, \(ranks) rank(s)")
            XCTAssertTrue(r.output.contains("for the feature cache: No space left on device"), r.output)
            XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            try FileManager.default.removeItem(at: run)
        }
    }

    // MARK: - Empty splits, schedules, configs

    /// Empty training, validation and test splits are errors naming the split and its file.
    func testEmptySplitsAreErrors() throws {
        for split in ["train", "val"] {
            for ranks in [1, 2] {
                let data = try dataCopy()
                try Data("[]".utf8).write(to: data.appendingPathComponent("anns/\(split).json"))
                let (r, seconds) = try train(
                    ranks: ranks, Self.common(run: newDir("run"), steps: 3, batch: 4 / ranks, data: data))
                assertCleanFailure(r, "\(split), \(ranks) rank(s)")
                XCTAssertTrue(
                    r.output.contains(
                        "\(data.path)/anns/\(split).json: the '\(split)' split has no usable samples (the list is empty)"
                    ), r.output)
                XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            }
        }
        let data = try dataCopy()
        try Data("[]".utf8).write(to: data.appendingPathComponent("anns/test.json"))
        for command in ["evaluate", "predict"] {
            let r = try ProcessRunner.run(
                ProcessRunner.vlsegPath,
                [command] + Self.common(run: newDir("run"), steps: 3, data: data) + ["--split", "test"])
            assertCleanFailure(r, command)
            XCTAssertTrue(r.output.contains("anns/test.json: the 'test' split has no usable samples"), r.output)
        }
    }

    /// Resuming a cosine run under a longer max_steps says what that does to the learning rate.
    func testScheduleHorizonChangeIsReported() throws {
        let run = newDir("run")
        let cosine = ["trainer.schedule.name=cosine", "trainer.schedule.warmup_steps=0"]
        XCTAssertEqual(try train(ranks: 1, Self.common(run: run, steps: 6) + cosine).result.status, 0)
        let r = try train(ranks: 1, Self.common(run: run, steps: 12) + cosine + ["resume=auto"]).result
        XCTAssertEqual(r.status, 0, r.output)
        // lr at step 7: 1e-3 * (1 + cos(pi * 6/12)) / 2 = 5e-4 now; the old 6-step schedule had ended (0).
        XCTAssertTrue(
            r.output.contains(
                "resuming under a new schedule horizon: the cosine decay now spans 12 steps instead of 6"), r.output)
        XCTAssertTrue(r.output.contains("the learning rate of step 7 is 0.0005 instead of 0"), r.output)
    }

    /// Model configs with absurd or negative sizes: one line naming the key, before anything is
    /// allocated, on 1 and 2 ranks.
    func testAbsurdModelConfigsAreRefusedByKey() throws {
        let config =
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.model.appendingPathComponent("config.json")))
            as? [String: Any] ?? [:]
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            (
                "layers",
                { c in
                    var t = c["text_config"] as? [String: Any] ?? [:]; t["num_hidden_layers"] = 1e12;
                    c["text_config"] = t
                },
                "'text_config.num_hidden_layers': the model needs"
            ),
            (
                "width",
                { c in
                    var v = c["vision_config"] as? [String: Any] ?? [:]; v["hidden_size"] = 4e6; c["vision_config"] = v
                },
                "'vision_config.hidden_size': the model needs"
            ),
            (
                "negative",
                { c in
                    var t = c["text_config"] as? [String: Any] ?? [:]; t["hidden_size"] = -48; c["text_config"] = t
                },
                "'text_config.hidden_size': must be a positive whole number, got -48"
            ),
        ]
        for (name, mutate, expected) in cases {
            let dir = newDir("model-\(name)")
            try FileManager.default.copyItem(at: Self.model, to: dir)
            var c = config
            mutate(&c)
            try JSONSerialization.data(withJSONObject: c).write(to: dir.appendingPathComponent("config.json"))
            for ranks in [1, 2] {
                let (r, seconds) = try train(
                    ranks: ranks,
                    Self.common(run: newDir("run"), steps: 3, batch: 4 / ranks) + ["model.path=\(dir.path)"])
                assertCleanFailure(r, "\(name), \(ranks) rank(s)")
                XCTAssertTrue(r.output.contains(expected), r.output)
                XCTAssertLessThan(seconds, Self.faultSeconds, r.output)
            }
        }
    }
}
