import Foundation
import XCTest

@testable import VLTrain

/// The report's pieces without a model: escaping, the HTML builder, chart geometry, the sweep file,
/// the per-image CSV, the loaders' errors and the page's treatment of data strings.
final class ReportPageTests: XCTestCase {
    static let hostile = "<script>alert(1)</script> \"quotes\" 'single' &amp; </style>"
    var dirs: [URL] = []

    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(at: d) } }

    func tempDir() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        dirs.append(url)
        return url
    }

    // MARK: Escaping and the builder

    func testEscapeReplacesEveryMarkupCharacter() {
        XCTAssertEqual(
            HTML.escape(Self.hostile),
            "&lt;script&gt;alert(1)&lt;/script&gt; &quot;quotes&quot; &#39;single&#39; &amp;amp; &lt;/style&gt;")
        XCTAssertEqual(HTML.escape("a\u{0}b é 🙂"), "a\u{FFFD}b é 🙂")
        XCTAssertEqual(HTML.escape("plain text 1.5"), "plain text 1.5")
    }

    func testElementEscapesTextAndAttributeValues() {
        let html = HTML.element("a", [("title", "x\" onmouseover=\"alert(1)"), ("href", nil)], text: "<b>&")
        XCTAssertEqual(html.rendered, "<a title=\"x&quot; onmouseover=&quot;alert(1)\">&lt;b&gt;&amp;</a>")
        XCTAssertEqual(HTML.void("img", [("alt", "'")]).rendered, "<img alt=\"&#39;\">")
        let doc = HTML.document(lang: "en", head: [HTML.element("title", text: Self.hostile)], body: [])
        XCTAssertFalse(doc.lowercased().contains("<script"), doc)
        XCTAssertFalse(doc.lowercased().contains("</style"), doc)
    }

    // MARK: Charts

    func testScaleIsLogarithmicBeyondTwoDecades() {
        let wide = ChartScale(covering: [1e-5, 3e-4, 1e-2])
        XCTAssertTrue(wide.logarithmic)
        XCTAssertEqual(wide.ticks(), [1e-5, 1e-4, 1e-3, 1e-2])
        XCTAssertEqual(wide.position(1e-5), 0, accuracy: 1e-12)
        XCTAssertEqual(wide.position(1e-2), 1, accuracy: 1e-12)
        XCTAssertEqual(wide.position(pow(10, -3.5)), 0.5, accuracy: 1e-12)
        let narrow = ChartScale(covering: [1, 50])
        XCTAssertFalse(narrow.logarithmic)
        XCTAssertEqual(narrow.position(25.5), 0.5, accuracy: 1e-12)
        XCTAssertFalse(ChartScale(covering: [-1, 1000]).logarithmic, "a non-positive value rules out a log axis")
        XCTAssertEqual(ChartScale(lower: 0, upper: 1, logarithmic: false).ticks(), [0, 0.2, 0.4, 0.6, 0.8, 1])
        let single = ChartScale(covering: [3])
        XCTAssertLessThan(single.lower, 3)
        XCTAssertGreaterThan(single.upper, 3)
    }

    /// Every point becomes a vertex where the scales put it: the first step at the plot's left edge,
    /// the lowest value at its bottom.
    func testLineChartPlacesEveryPoint() throws {
        let series = Charts.Series(name: Self.hostile, points: [(0, 1.0), (10, 0.5), (20, 0.0), (30, .nan)])
        let svg = try XCTUnwrap(
            Charts.lineChart(title: "t", series: [series], xLabel: "step", yLabel: "loss", width: 500, height: 300)
        ).rendered
        let f = Charts.Frame(width: 500, height: 300)
        let expected = [(f.x(0), f.y(1)), (f.x(0.5), f.y(0.5)), (f.x(1), f.y(0))]
            .map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
        XCTAssertTrue(svg.contains("points=\"\(expected)\""), svg)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 3, "the NaN point is dropped")
        XCTAssertFalse(svg.contains("<script"), svg)
        XCTAssertTrue(svg.contains(HTML.escape(Self.hostile)))
        XCTAssertNil(
            Charts.lineChart(title: "t", series: [Charts.Series(name: "e", points: [])], xLabel: "", yLabel: ""))
    }

    func testHistogramCountsEachValueOnce() throws {
        let svg = try XCTUnwrap(
            Charts.histogram(title: "h", values: [0, 0.04, 0.5, 1.0, 1.0, .nan], bins: 20, xLabel: "Dice")
        ).rendered
        XCTAssertEqual(svg.components(separatedBy: "class=\"bar\"").count - 1, 3, svg)
        XCTAssertTrue(svg.contains("0 to 0.05: 2 image(s)"), svg)
        XCTAssertTrue(svg.contains("0.5 to 0.55: 1 image(s)"), svg)
        XCTAssertTrue(svg.contains("0.95 to 1: 2 image(s)"), svg)
        XCTAssertNil(Charts.histogram(title: "h", values: [.nan], xLabel: "Dice"))
    }

    func testParallelCoordinatesMarksLogAxesAndTheBestTrial() throws {
        func trial(
            _ n: Int, _ lr: Double, _ depth: Double, _ text: String, _ value: Double?, _ state: SweepSummary.TrialState
        )
            -> SweepSummary.Trial
        {
            SweepSummary.Trial(
                number: n, state: state, value: value,
                params: ["trainer.lr": .number(lr), "tuning.depth": .number(depth), "tuning.init": .text(text)],
                runDir: nil, seconds: 1, error: nil)
        }
        let trials = [
            trial(0, 1e-5, 1, "a photo of", 0.5, .complete), trial(1, 1e-2, 3, Self.hostile, 0.3, .complete),
            trial(2, 1e-3, 2, "x", nil, .fail), trial(3, 1e-4, 2, "x", 0.45, .pruned),
        ]
        let svg = try XCTUnwrap(
            Charts.parallelCoordinates(title: "p", trials: trials, objective: "val_loss", best: 1)
        ).rendered
        XCTAssertTrue(svg.contains(">trainer.lr (log)<"), svg)
        XCTAssertTrue(svg.contains(">tuning.depth<"), svg)
        XCTAssertEqual(svg.components(separatedBy: "class=\"trial best\"").count - 1, 1)
        XCTAssertEqual(svg.components(separatedBy: "class=\"trial\"").count - 1, 2, "the failed trial has no value")
        XCTAssertTrue(svg.contains(HTML.escape(Self.hostile)), "categories are labelled, escaped")
        XCTAssertFalse(svg.contains("<script"))
        XCTAssertNil(Charts.parallelCoordinates(title: "p", trials: [trials[2]], objective: "v", best: nil))
    }

    // MARK: Files

    static let sweepJSON = """
        {"format": "vlseg-sweep/1", "study": "kvasir-coop", "experiment": "kvasir/coop",
         "objective": {"metric": "val_loss", "direction": "minimize"}, "trials_target": 20,
         "trials": [{"number": 0, "state": "COMPLETE", "value": 0.4123, "params": {"trainer.lr": 0.00123, "tuning.depth": 3, "tuning.init": "a photo of a"},
                     "run_dir": "trial-0000", "seconds": 123.4, "error": null},
                    {"number": 1, "state": "FAIL", "value": null, "params": {"trainer.lr": 0.1},
                     "run_dir": "trial-0001", "seconds": 2.5, "error": "diverged"}],
         "best_trial": 0}
        """

    func testSweepSummaryReadsTheContractAndRoundTrips() throws {
        let dir = try tempDir()
        try Self.sweepJSON.write(to: dir.appendingPathComponent("sweep.json"), atomically: true, encoding: .utf8)
        let s = try SweepSummary.read(directory: dir)
        XCTAssertEqual(s.study, "kvasir-coop")
        XCTAssertEqual(s.objective.direction, .minimize)
        XCTAssertEqual(s.trials[0].params["tuning.depth"], .number(3))
        XCTAssertEqual(s.trials[0].params["tuning.init"], .text("a photo of a"))
        XCTAssertEqual(s.trials[1].state, .fail)
        XCTAssertNil(s.trials[1].value)
        XCTAssertEqual(s.runDirectory(of: s.trials[0], in: dir)?.path, dir.appendingPathComponent("trial-0000").path)
        try s.write(directory: dir)
        XCTAssertEqual(try SweepSummary.read(directory: dir), s)
    }

    func testSweepFileMistakesNameTheFile() throws {
        let dir = try tempDir()
        let url = dir.appendingPathComponent("sweep.json")
        func message(_ text: String) throws -> String {
            try text.write(to: url, atomically: true, encoding: .utf8)
            XCTAssertEqual(try ReportLoader.kind(of: dir), .sweep)
            do {
                _ = try ReportLoader.loadSweep(dir)
                XCTFail("accepted \(text)")
                return ""
            } catch let e as ReportError { return e.description }
        }
        XCTAssertEqual(
            try message(Self.sweepJSON.replacingOccurrences(of: "\"study\": \"kvasir-coop\",", with: "")),
            "\(url.path): not a sweep summary: missing key 'study' at top level")
        XCTAssertEqual(
            try message(Self.sweepJSON.replacingOccurrences(of: "vlseg-sweep/1", with: "vlseg-sweep/9")),
            "\(url.path): sweep format 'vlseg-sweep/9', this vlseg reads 'vlseg-sweep/1'")
        XCTAssertEqual(
            try message(Self.sweepJSON.replacingOccurrences(of: "\"best_trial\": 0", with: "\"best_trial\": 7")),
            "\(url.path): best_trial 7 is not among its trials")
        XCTAssertTrue(
            try message(Self.sweepJSON.replacingOccurrences(of: "COMPLETE", with: "DONE")).hasPrefix(
                "\(url.path): not a sweep summary: .trials[0].state"))
        XCTAssertTrue(try message("{").hasPrefix("\(url.path): not a sweep summary:"))
    }

    func testRunDirectoryMistakesNameTheFile() throws {
        let dir = try tempDir()
        XCTAssertThrowsError(try ReportLoader.kind(of: dir)) { e in
            XCTAssertEqual(
                "\(e)",
                "\(dir.path) is neither a run directory (config.yaml, metrics.jsonl or checkpoints/) nor a sweep directory (sweep.json)"
            )
        }
        let gone = dir.appendingPathComponent("gone")
        XCTAssertThrowsError(try ReportLoader.kind(of: gone)) {
            XCTAssertEqual("\($0)", "\(gone.path): no such directory")
        }

        let metrics = dir.appendingPathComponent("metrics.jsonl")
        try "{\"kind\":\"train\",\"step\":1,\"loss\":0.5}\nnot json\n{\"kind\":\"train\",\"step\":2}\n".write(
            to: metrics, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ReportLoader.kind(of: dir), .run)
        XCTAssertThrowsError(try ReportLoader.loadRun(dir)) {
            XCTAssertEqual("\($0)", "\(metrics.path): line 2 is not a JSON object")
        }
        try "{\"kind\":\"train\",\"loss\":0.5}\n".write(to: metrics, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ReportLoader.loadRun(dir)) {
            XCTAssertEqual("\($0)", "\(metrics.path): line 1 has no \"kind\" and \"step\"")
        }
        // A crash can cut the last record short: that one line is forgiven.
        try "{\"kind\":\"train\",\"step\":1,\"loss\":0.5}\n{\"kind\":\"val\",\"st".write(
            to: metrics, atomically: true, encoding: .utf8)
        let run = try ReportLoader.loadRun(dir)
        XCTAssertEqual(run.records, [MetricsRecord(kind: "train", step: 1, values: ["loss": 0.5])])

        let eval = dir.appendingPathComponent("eval-test.json")
        try "{\"split\":\"test\"}".write(to: eval, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ReportLoader.loadRun(dir)) {
            XCTAssertEqual("\($0)", "\(eval.path): not an evaluation report: missing key 'images' at top level")
        }
        try FileManager.default.removeItem(at: eval)
        let training = dir.appendingPathComponent("training.json")
        try "[]".write(to: training, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ReportLoader.loadRun(dir)) {
            XCTAssertTrue("\($0)".hasPrefix("\(training.path): not a training record: "), "\($0)")
        }
    }

    func testConfigThatIsNotTextNamesTheFile() throws {
        let dir = try tempDir()
        let config = dir.appendingPathComponent("config.yaml")
        try Data([0x66, 0xFF, 0xFE, 0x0A]).write(to: config)
        XCTAssertThrowsError(try ReportLoader.loadRun(dir)) {
            XCTAssertEqual("\($0)", "\(config.path): cannot read the config as UTF-8 text")
        }
    }

    /// A sweep whose best trial's run directory is gone still loads; the page says why the run is missing.
    func testSweepWithoutTheBestRunLoadsWithAReason() throws {
        let dir = try tempDir()
        try Self.sweepJSON.write(to: dir.appendingPathComponent("sweep.json"), atomically: true, encoding: .utf8)
        let sweep = try ReportLoader.loadSweep(dir)
        XCTAssertNil(sweep.bestRun)
        let runDir = dir.appendingPathComponent("trial-0000").path
        XCTAssertEqual(sweep.bestRunMissing, "trial 0's run directory \(runDir) holds no run")
        let page = ReportPage.render(sweep: sweep, generated: "now")
        XCTAssertTrue(page.contains("trial 0&#39;s run directory \(runDir) holds no run"))
    }

    func testPerImageFileRoundTripsAndNamesBadLines() throws {
        let dir = try tempDir()
        let url = dir.appendingPathComponent("per-image-test.csv")
        let scores = [
            Inference.ImageScore(
                sampleIndex: 0, image: "a,\"b\".png", mask: "m\nx.png", prompt: Self.hostile, classID: nil, dice: 0.25,
                iou: 0.125, diceOriginal: 0.5, iouOriginal: nil),
            Inference.ImageScore(
                sampleIndex: 1, image: "c.png", mask: "c.png", prompt: "p", classID: 3, dice: 1, iou: 1,
                diceOriginal: nil, iouOriginal: nil),
        ]
        try PerImageScores.write(scores, to: url)
        XCTAssertEqual(try PerImageScores.read(url), scores)
        XCTAssertEqual(WorstImages.lowest(scores, count: 1).map(\.sampleIndex), [0])

        try (Inference.ImageScore.csvHeader + "\n0,a.png,a.png,p,,zero,0,,\n").write(
            to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PerImageScores.read(url)) {
            XCTAssertEqual("\($0)", "\(url.path): line 2: dice 'zero' is not a number")
        }
        try (Inference.ImageScore.csvHeader + "\n0,a.png\n").write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PerImageScores.read(url)) {
            XCTAssertEqual("\($0)", "\(url.path): line 2: 2 fields, the header has 9")
        }
        try "image,dice\n".write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PerImageScores.read(url)) {
            XCTAssertTrue("\($0)".hasPrefix("\(url.path): not a per-image scores file"), "\($0)")
        }
        try (Inference.ImageScore.csvHeader + "\n0,\"a.png\n").write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PerImageScores.read(url)) {
            XCTAssertEqual("\($0)", "\(url.path): line 2: unterminated quoted field")
        }
    }

    // MARK: The page

    func testRunPageShowsDataStringsAsTextAndSaysWhatIsMissing() throws {
        var run = RunReportData(directory: "/runs/" + Self.hostile)
        run.configText = "data:\n  name: \(Self.hostile)\n"
        run.records = [
            MetricsRecord(kind: "train", step: 2, values: ["loss": 0.9]),
            MetricsRecord(kind: "train", step: 4, values: ["loss": 0.7]),
            MetricsRecord(kind: "val", step: 4, values: ["val_loss": 0.8, "val_dice": 0.3, "val_dice_pooled": 0.35]),
        ]
        run.missing["checkpoints"] = "the run saved no checkpoint"
        run.missing["test"] = "no eval-test.json"
        run.missing["per-image"] = "no checkpoint to evaluate"
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47]
        let score = Inference.ImageScore(
            sampleIndex: 0, image: Self.hostile + ".png", mask: "m.png", prompt: Self.hostile, classID: nil,
            dice: 0.1, iou: 0.05, diceOriginal: nil, iouOriginal: nil)
        run.perImage = [score]
        run.worst = [ReportImage(score: score, image: png, truth: png, prediction: png, width: 4, height: 3)]
        let page = ReportPage.render(run: run, generated: "now")
        XCTAssertFalse(page.lowercased().contains("<script"), "no script element at all")
        XCTAssertEqual(
            page.lowercased().components(separatedBy: "</style>").count - 1, 1, "only the page's own style ends")
        XCTAssertTrue(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;quotes&quot;"))
        XCTAssertTrue(page.contains("<q class=\"prompt\">" + HTML.escape(Self.hostile) + "</q>"))
        XCTAssertTrue(page.contains("alt=\"image of " + HTML.escape(Self.hostile) + ".png\""))
        XCTAssertEqual(page.components(separatedBy: "src=\"data:image/png;base64,iVBORw==\"").count - 1, 3)
        XCTAssertTrue(page.contains("class=\"chart line-chart\""))
        XCTAssertTrue(page.contains("class=\"chart histogram\""))
        XCTAssertTrue(page.contains("the run saved no checkpoint"))
        XCTAssertTrue(page.contains("no eval-test.json"))
        XCTAssertFalse(page.contains("src=\"http") || page.contains("href=\"http"), "nothing is fetched")
    }

    func testSweepPageHighlightsTheBestTrial() throws {
        let summary = try JSONDecoder().decode(SweepSummary.self, from: Data(Self.sweepJSON.utf8))
        let page = ReportPage.render(
            sweep: SweepReportData(directory: "/s", summary: summary, bestRun: nil, bestRunMissing: "gone"),
            generated: "now")
        XCTAssertTrue(page.contains("<tr class=\"best\"><td class=\"num\">0</td><td>COMPLETE</td>"), page)
        XCTAssertTrue(page.contains("<td>diverged</td>"))
        XCTAssertTrue(page.contains("class=\"chart parallel-coordinates\""))
        XCTAssertTrue(page.contains(">gone<"))
    }
}
