import Foundation
import VLData
import VLTrain
import XCTest

/// `vlseg report` end to end: a short training on a demo dataset whose test file names and prompts
/// hold markup and script text, the report of that run and of a sweep around it, each opened in
/// headless Chromium (Debian's `chromium`): no console message, the curves and images in the DOM,
/// the hostile text shown as text with no script element, and a screenshot that is not blank.
final class ReportTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-cli-report-\(getpid())")
    /// Markup in names and prompts: a script, quotes, an entity and the end of the page's style sheet.
    static let hostile = "<script>alert(1)</script> \"quotes\" &amp; </style>"
    static let demoCount = 72
    /// The demo's split rule gives this many test images: more than the ten worst shown (checked below).
    static let testImages = DemoDataset.splitSizes(count: demoCount, trainFraction: 0.7, valFraction: 0.15).test
    /// The one trained run, shared by the tests of this class (trained by the first that needs it).
    nonisolated(unsafe) static var trainedRun: URL?

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    // MARK: Fixtures

    /// The demo data with the test split's images and masks renamed to hostile names (their `/`
    /// make subfolders) and every test prompt holding the hostile text.
    static func makeDataset(_ root: URL) throws {
        try DemoDataset.write(options: DemoDataset.Options(count: demoCount, width: 72, height: 72, seed: 5), to: root)
        let anns = root.appendingPathComponent("anns/test.json")
        var entries = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: anns)) as? [[String: Any]])
        XCTAssertEqual(entries.count, testImages)
        XCTAssertGreaterThan(testImages, 10, "the page must choose ten of them")
        let fm = FileManager.default
        for k in entries.indices {
            for (key, folder, label) in [("img_name", "images", "case"), ("mask_name", "masks", "mask")] {
                let old = try XCTUnwrap(entries[k][key] as? String)
                let new = "\(label) \(k) \(hostile).png"
                let to = root.appendingPathComponent(folder).appendingPathComponent(new)
                try fm.createDirectory(at: to.deletingLastPathComponent(), withIntermediateDirectories: true)
                try fm.moveItem(at: root.appendingPathComponent(folder).appendingPathComponent(old), to: to)
                entries[k][key] = new
            }
            entries[k]["prompts"] = [
                "p0": "", "p1": "lesion \(hostile)", "p2": ["a \(hostile) polyp", "\(hostile) \(k)"],
            ]
        }
        try JSONSerialization.data(withJSONObject: entries, options: [.prettyPrinted, .sortedKeys]).write(to: anns)
    }

    static func overrides(run: URL) -> [String] {
        [
            "--config-dir", TrainingTests.packageRoot.appendingPathComponent("configs").path, "experiment=demo",
            "data.root=\(work.appendingPathComponent("data").path)",
            "model.path=\(work.appendingPathComponent("model").path)", "model.preset=tiny", "model.image_size=64",
            "data.batch_size=4", "data.eval_batch_size=8", "trainer.global_batch_size=0", "data.workers=1",
            "trainer.threads=1", "trainer.max_steps=6", "trainer.max_epochs=0", "trainer.eval_every=2",
            "trainer.checkpoint_every=2", "trainer.schedule.warmup_steps=0", "trainer.log_every=1",
            "trainer.test.at_end=true", "trainer.test.threshold=0.45", "run.dir=\(run.path)",
        ]
    }

    /// A run trained on the hostile dataset, at `<work>/sweep/trial-0000` so the sweep test can use it.
    func trained() throws -> URL {
        if let run = Self.trainedRun { return run }
        try Self.makeDataset(Self.work.appendingPathComponent("data"))
        let run = Self.work.appendingPathComponent("sweep/trial-0000")
        let r = try ProcessRunner.vlseg(ranks: 1, ["train"] + Self.overrides(run: run), timeout: 300)
        guard r.status == 0 else {
            XCTFail("training failed: \(r.output)")
            throw CocoaError(.executableLoad)
        }
        Self.trainedRun = run
        return run
    }

    func vlseg(_ args: [String], timeout: Double = 240) throws -> ProcessRunner.Result {
        try ProcessRunner.vlseg(ranks: 1, args, timeout: timeout)
    }

    // MARK: Chromium

    struct Rendering {
        var dom: String
        var console: [String]
        var screenshot: RGBImage
    }

    static func chromium() throws -> String {
        guard let path = ProcessRunner.which("chromium") else {
            throw XCTSkip("chromium is not installed (the Debian package chromium; launch/common.sh installs it)")
        }
        return path
    }

    /// The console messages in Chromium's log (`--enable-logging=stderr`): lines whose
    /// `[pid:tid:time:LEVEL:CONSOLE:line]` prefix says CONSOLE, whatever the level (a page's
    /// `console.log`, an uncaught exception, a Content-Security-Policy violation all log there).
    static func consoleMessages(_ log: String) -> [String] {
        log.split(separator: "\n").map(String.init).filter { line in
            guard line.hasPrefix("["), let end = line.firstIndex(of: "]") else { return false }
            return line[..<end].contains(":CONSOLE")
        }
    }

    /// Opens `page` twice in headless Chromium, each bounded by a timeout: once for a 1200x2000
    /// screenshot, once for the DOM after load. Returns the DOM, the console messages of both, and
    /// the screenshot decoded.
    func render(_ page: URL) throws -> Rendering {
        let chromium = try Self.chromium()
        let dir = page.deletingLastPathComponent().appendingPathComponent("chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let shot = dir.appendingPathComponent("screenshot.png")
        let common = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            "--no-first-run", "--user-data-dir=\(dir.appendingPathComponent("profile").path)",
        ]
        var logs = ""
        var dom = ""
        for (k, mode) in [["--screenshot=\(shot.path)", "--window-size=1200,2000"], ["--dump-dom"]].enumerated() {
            let out = dir.appendingPathComponent("out-\(k).txt"), err = dir.appendingPathComponent("err-\(k).txt")
            // sh only routes Chromium's two streams to files: the DOM on stdout, the log on stderr.
            let r = try ProcessRunner.run(
                "/bin/sh",
                ["-c", "out=$1; err=$2; shift 2; exec \"$@\" >\"$out\" 2>\"$err\"", "sh", out.path, err.path, chromium]
                    + common + mode + [page.absoluteString], timeout: 90)
            let log = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
            XCTAssertFalse(r.timedOut, "chromium timed out: \(log.suffix(2000))")
            XCTAssertEqual(r.status, 0, "chromium failed: \(r.output) \(log.suffix(2000))")
            logs += log
            if k == 1 { dom = (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
        }
        let image = try PNGCodec.decodeImage(contentsOf: shot)
        if let keep = ProcessInfo.processInfo.environment["VLSEG_REPORT_SCREENSHOT_COPY"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(at: shot, to: URL(fileURLWithPath: keep))
        }
        return Rendering(dom: dom, console: Self.consoleMessages(logs), screenshot: image)
    }

    /// Pixels that are not white (any channel below 245) and distinct colours of a screenshot.
    static func ink(_ image: RGBImage) -> (nonWhite: Int, colours: Int) {
        var nonWhite = 0
        var colours = Set<UInt32>()
        let p = image.pixels
        for i in 0..<(image.width * image.height) {
            let r = p[3 * i], g = p[3 * i + 1], b = p[3 * i + 2]
            if min(r, g, b) < 245 { nonWhite += 1 }
            colours.insert(UInt32(r) << 16 | UInt32(g) << 8 | UInt32(b))
        }
        return (nonWhite, colours.count)
    }

    /// The check above can fail: a page whose script throws is caught by its console message.
    func testConsoleCheckCatchesAPageWithAScriptError() throws {
        _ = try Self.chromium()
        let dir = Self.work.appendingPathComponent("broken-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let page = dir.appendingPathComponent("broken.html")
        try
            "<!DOCTYPE html><html><body><h1>broken</h1><script>throw new Error('deliberate failure')</script></body></html>"
            .write(to: page, atomically: true, encoding: .utf8)
        let r = try render(page)
        XCTAssertEqual(r.console.count, 2, "one per load (screenshot, DOM): \(r.console)")
        XCTAssertTrue(r.console.allSatisfy { $0.contains("\"Uncaught Error: deliberate failure\"") }, "\(r.console)")
        XCTAssertTrue(r.dom.contains("<h1>broken</h1>"), r.dom)
    }

    // MARK: Reports

    func testRunReportRendersInChromiumWithHostileNamesAsText() throws {
        let run = try trained()
        let out = Self.work.appendingPathComponent("run-report.html")
        let r = try vlseg(["report", run.path, "--output", out.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("wrote \(out.path) ("), r.output)
        let perImage = try PerImageScores.read(run.appendingPathComponent("per-image-test.csv"))
        XCTAssertEqual(perImage.count, Self.testImages)
        XCTAssertTrue(perImage.allSatisfy { $0.prompt.contains(Self.hostile) && $0.image.contains(Self.hostile) })

        let html = try String(contentsOf: out, encoding: .utf8)
        XCTAssertFalse(html.lowercased().contains("<script"), "no script element in the file")
        XCTAssertTrue(html.contains(HTML.escape(Self.hostile)))

        let page = try render(out)
        XCTAssertEqual(page.console, [], "console messages:\n" + page.console.joined(separator: "\n"))
        let dom = page.dom
        XCTAssertFalse(dom.lowercased().contains("<script"), "no script element in the DOM")
        // Chromium serialises text with &, < and > escaped: the hostile text is there as text.
        XCTAssertTrue(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt; \"quotes\" &amp;amp; &lt;/style&gt;"), dom)
        XCTAssertEqual(dom.components(separatedBy: "class=\"chart line-chart\"").count - 1, 2, "loss and Dice curves")
        XCTAssertEqual(dom.components(separatedBy: "<polyline").count - 1, 4, "train/val loss, Dice mean/pooled")
        XCTAssertTrue(dom.contains("class=\"chart histogram\""))
        XCTAssertEqual(
            dom.components(separatedBy: "src=\"data:image/png;base64,").count - 1, 3 * min(10, Self.testImages),
            "image, target and prediction of the ten worst")
        XCTAssertTrue(dom.contains("<pre id=\"config\">"))
        let best = try String(contentsOf: run.appendingPathComponent("checkpoints/best"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(dom.contains("<td>best</td><td>\(best)</td>"), "the best checkpoint is named")

        let s = page.screenshot
        XCTAssertEqual([s.width, s.height], [1200, 2000])
        let ink = Self.ink(s)
        print("run report screenshot: \(s.width)x\(s.height), \(ink.nonWhite) non-white pixels, \(ink.colours) colours")
        XCTAssertGreaterThan(ink.nonWhite, s.width * s.height / 50, "at least 2% of the page drawn")
        XCTAssertGreaterThan(ink.colours, 100, "the pictures bring many colours")

        // A second report reads the kept scores instead of evaluating again.
        let again = try vlseg(["report", run.path, "--output", out.path])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertFalse(again.output.contains("evaluating"), again.output)
        XCTAssertTrue(
            try String(contentsOf: out, encoding: .utf8).contains("scores from \(run.path)/per-image-test.csv"))
    }

    func testSweepReportShowsTrialsAndTheBestRun() throws {
        let run = try trained()
        let sweep = run.deletingLastPathComponent()
        let sweepJSON = """
            {"format": "vlseg-sweep/1", "study": "demo \(Self.hostile.replacingOccurrences(of: "\"", with: "\\\""))",
             "experiment": "demo", "objective": {"metric": "val_loss", "direction": "minimize"}, "trials_target": 5,
             "trials": [
              {"number": 2, "state": "PRUNED", "value": 0.9, "params": {"trainer.lr": 0.00001, "tuning.depth": 1, "tuning.init": "a photo of a"}, "run_dir": "trial-0002", "seconds": 10.5, "error": null},
              {"number": 0, "state": "COMPLETE", "value": 0.41, "params": {"trainer.lr": 0.01, "tuning.depth": 3, "tuning.init": "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"}, "run_dir": "trial-0000", "seconds": 123.4, "error": null},
              {"number": 1, "state": "FAIL", "value": null, "params": {"trainer.lr": 0.001, "tuning.depth": 2, "tuning.init": "x"}, "run_dir": "trial-0001", "seconds": 3.0, "error": "</td><script>alert(2)</script>"},
              {"number": 3, "state": "RUNNING", "value": null, "params": {"trainer.lr": 0.0001}, "run_dir": "trial-0003", "seconds": null, "error": null}
             ],
             "best_trial": 0}
            """
        try sweepJSON.write(to: sweep.appendingPathComponent("sweep.json"), atomically: true, encoding: .utf8)
        let r = try vlseg(["report", sweep.path])
        XCTAssertEqual(r.status, 0, r.output)
        let out = sweep.appendingPathComponent("report.html")
        XCTAssertTrue(r.output.contains("wrote \(out.path) ("), r.output)

        let page = try render(out)
        XCTAssertEqual(page.console, [], page.console.joined(separator: "\n"))
        let dom = page.dom
        XCTAssertFalse(dom.lowercased().contains("<script"))
        XCTAssertTrue(dom.contains("&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;"), "the error shows as text")
        // Rows sorted by number, the best highlighted.
        let table = try XCTUnwrap(dom.range(of: "id=\"trials-table\"")).upperBound
        let rows = dom[table...].components(separatedBy: "<tr").dropFirst(2).prefix(4)
        XCTAssertEqual(
            rows.map { $0.components(separatedBy: "<td class=\"num\">").dropFirst().first?.prefix(1) ?? "" },
            ["0", "1", "2", "3"])
        XCTAssertTrue(rows.first?.hasPrefix(" class=\"best\"") ?? false, "\(rows.first ?? "")")
        XCTAssertTrue(dom.contains("class=\"chart parallel-coordinates\""))
        XCTAssertTrue(dom.contains(">trainer.lr (log)<"), "1e-5 to 1e-2 spans three decades")
        XCTAssertEqual(dom.components(separatedBy: "class=\"trial best\"").count - 1, 1)
        XCTAssertTrue(dom.contains("<section id=\"best-run\">"))
        XCTAssertEqual(dom.components(separatedBy: "class=\"chart line-chart\"").count - 1, 2, "the best run's curves")
        XCTAssertEqual(
            dom.components(separatedBy: "src=\"data:image/png;base64,").count - 1, 3 * min(10, Self.testImages))
        let ink = Self.ink(page.screenshot)
        print(
            "sweep report screenshot: \(page.screenshot.width)x\(page.screenshot.height), \(ink.nonWhite) non-white pixels"
        )
        XCTAssertGreaterThan(ink.nonWhite, page.screenshot.width * page.screenshot.height / 50)
    }

    // MARK: What is missing, and mistakes

    /// A run without checkpoints or without a test split still gets a page that says so.
    func testRunsWithoutCheckpointsOrTestSplitStillGetAPage() throws {
        let run = try trained()
        let fm = FileManager.default
        let bare = Self.work.appendingPathComponent("bare-\(UUID().uuidString)")
        try fm.createDirectory(at: bare, withIntermediateDirectories: true)
        for name in ["config.yaml", "metrics.jsonl"] {
            try fm.copyItem(at: run.appendingPathComponent(name), to: bare.appendingPathComponent(name))
        }
        var r = try vlseg(["report", bare.path])
        XCTAssertEqual(r.status, 0, r.output)
        var html = try String(contentsOf: bare.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("the run saved no checkpoint"))
        XCTAssertTrue(html.contains("no checkpoint to evaluate"))
        XCTAssertTrue(html.contains("no eval-test.json: the run was not tested"))
        XCTAssertTrue(html.contains("class=\"chart line-chart\""), "the curves are still drawn")

        // The same run on a copy of its dataset without a test split.
        let data = Self.work.appendingPathComponent("data")
        let noTest = Self.work.appendingPathComponent("data-no-test-\(UUID().uuidString)")
        try fm.createDirectory(at: noTest.appendingPathComponent("anns"), withIntermediateDirectories: true)
        for name in ["anns/train.json", "anns/val.json"] {
            try fm.copyItem(at: data.appendingPathComponent(name), to: noTest.appendingPathComponent(name))
        }
        for name in ["images", "masks"] {
            try fm.createSymbolicLink(
                at: noTest.appendingPathComponent(name), withDestinationURL: data.appendingPathComponent(name))
        }
        let moved = Self.work.appendingPathComponent("no-test-run-\(UUID().uuidString)")
        try fm.copyItem(at: run, to: moved)
        // Scores kept by an earlier report of the run (when another test made one) would be read instead.
        try? fm.removeItem(at: moved.appendingPathComponent("per-image-test.csv"))
        let config = try String(contentsOf: moved.appendingPathComponent("config.yaml"), encoding: .utf8)
        XCTAssertTrue(config.contains(data.path))
        try config.replacingOccurrences(of: data.path, with: noTest.path).write(
            to: moved.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        r = try vlseg(["report", moved.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(
            r.output.contains(
                "vlseg: warning: no per-image test scores: \(noTest.path)/anns/test.json: no split 'test'"), r.output)
        html = try String(contentsOf: moved.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("not available: \(noTest.path)/anns/test.json: no split &#39;test&#39;"), html)
    }

    func testMistakesAreOneLineErrorsNamingTheFile() throws {
        let fm = FileManager.default
        let empty = Self.work.appendingPathComponent("empty-\(UUID().uuidString)")
        try fm.createDirectory(at: empty, withIntermediateDirectories: true)
        var r = try vlseg(["report", empty.path])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertEqual(
            r.output.trimmingCharacters(in: .whitespacesAndNewlines),
            "vlseg: error: \(empty.path) is neither a run directory (config.yaml, metrics.jsonl or checkpoints/) nor a sweep directory (sweep.json)"
        )
        let gone = empty.appendingPathComponent("gone")
        r = try vlseg(["report", gone.path])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("vlseg: error: \(gone.path): no such directory"), r.output)

        try "{\"format\": \"vlseg-sweep/1\"}".write(
            to: empty.appendingPathComponent("sweep.json"), atomically: true, encoding: .utf8)
        r = try vlseg(["report", empty.path])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(
            r.output.contains("vlseg: error: \(empty.path)/sweep.json: not a sweep summary: missing key 'study'"),
            r.output)

        r = try vlseg(["report", empty.path, "--worst=-1"])
        XCTAssertEqual(r.status, 64, r.output)
        XCTAssertTrue(r.output.contains("--worst must be 0 or more, got -1"), r.output)

        let run = try trained()
        let blocked = run.appendingPathComponent("config.yaml/r.html")
        r = try vlseg(["report", run.path, "--worst", "0", "--output", blocked.path])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(
            r.output.contains(
                "vlseg: error: \(blocked.path): cannot write the report: cannot create folder \(run.path)/config.yaml"),
            r.output)
        // A new folder for the page is made.
        let nested = empty.appendingPathComponent("new/folder/r.html")
        r = try vlseg(["report", run.path, "--worst", "0", "--output", nested.path])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(fm.fileExists(atPath: nested.path))

        // A per-image file newer than the checkpoint is read, so a corrupt one is an error naming it.
        let copy = Self.work.appendingPathComponent("corrupt-\(UUID().uuidString)")
        try fm.copyItem(at: run, to: copy)
        let file = copy.appendingPathComponent("per-image-test.csv")
        try (Inference.ImageScore.csvHeader + "\n0,a.png,a.png,p,,bad,0,,\n").write(
            to: file, atomically: true, encoding: .utf8)
        r = try vlseg(["report", copy.path])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("vlseg: error: \(file.path): line 2: dice 'bad' is not a number"), r.output)
    }
}
