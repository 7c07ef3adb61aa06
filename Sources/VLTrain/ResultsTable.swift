import Foundation

/// Why `vlseg results` cannot tabulate the runs it was given; each names the directory at fault.
public enum ResultsError: Error, CustomStringConvertible {
    case notARun(directory: String, reason: String)
    case incomplete([(directory: String, reason: String)])
    case duplicateSeed(method: String, dataset: String, seed: Int, directories: [String])
    case mixedScoring(String)

    public var description: String {
        switch self {
        case let .notARun(dir, reason): return "\(dir): \(reason)"
        case let .incomplete(list):
            let lines = list.map { "  \($0.directory): \($0.reason)" }.joined(separator: "\n")
            return "\(list.count) run(s) cannot be tabulated yet:\n\(lines)"
        case let .duplicateSeed(method, dataset, seed, dirs):
            return
                "seed \(seed) of \(method) on \(dataset) appears twice: \(dirs.joined(separator: " and ")) (give each run once)"
        case let .mixedScoring(message): return message
        }
    }
}

/// The papers' results table built from what runs wrote: rows are tuning methods, columns datasets,
/// each cell the mean and standard deviation over seeds of a test score, from every run's `config.yaml`
/// (method, dataset, seed), `eval-<split>.json` (scores) and `training.json` (trainable parameters,
/// wall time). It only reads; a run without a test result is reported, not evaluated, because
/// evaluating means loading models, which a reporting command should not do behind the user's back.
public struct ResultsTable {
    /// Scores at the model's input size (TuneVLSeg's test step) or at each image's own (VLSM-Adapter's
    /// masks, written at the original size before scoring).
    public enum Resolution: String, CaseIterable, Sendable {
        case model, original
    }

    public struct Run {
        public var directory: URL
        public var method: String
        public var dataset: String
        public var seed: Int
        public var report: EvaluationReport
        public var record: TrainingRecord
    }

    /// The statistics of one cell: mean and sample standard deviation (n - 1; none for one seed).
    public struct Stat: Equatable {
        public var mean: Double
        public var std: Double?

        public init(_ values: [Double]) {
            let n = Double(values.count)
            mean = values.reduce(0, +) / max(n, 1)
            std =
                values.count > 1 ? (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)).squareRoot() : nil
        }
    }

    public struct Cell {
        public var method: String
        public var dataset: String
        public var runs: [Run]
        public var dice: Stat, iou: Stat, dicePooled: Stat, iouPooled: Stat, wallSeconds: Stat
        public var trainableParameters: Int
    }

    public let split: String
    public let resolution: Resolution
    public let methods: [String]
    public let datasets: [String]
    public let cells: [Cell]

    /// The run directories behind `paths`: a directory holding `seed-<n>` runs (a `trainer.seeds` launch)
    /// stands for them, in seed order; any other directory is one run.
    public static func runDirectories(_ paths: [String]) throws -> [URL] {
        let fm = FileManager.default
        var out: [URL] = []
        for path in paths {
            let url = URL(fileURLWithPath: path)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                throw ResultsError.notARun(directory: url.path, reason: "no such directory")
            }
            let seeds = ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).compactMap { name -> (Int, URL)? in
                guard name.hasPrefix("seed-"), let n = Int(name.dropFirst(5)) else { return nil }
                let child = url.appendingPathComponent(name)
                var d: ObjCBool = false
                return fm.fileExists(atPath: child.path, isDirectory: &d) && d.boolValue ? (n, child) : nil
            }
            out += seeds.isEmpty ? [url] : seeds.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return out
    }

    /// Reads every run; all runs that lack a result are reported together.
    public static func load(_ paths: [String], split: String, resolution: Resolution) throws -> ResultsTable {
        var runs: [Run] = [], missing: [(directory: String, reason: String)] = []
        for dir in try runDirectories(paths) {
            let configURL = dir.appendingPathComponent("config.yaml")
            guard let text = try? String(contentsOf: configURL, encoding: .utf8) else {
                throw ResultsError.notARun(
                    directory: dir.path, reason: "not a run directory (no readable config.yaml, no seed-<n> runs)")
            }
            let config: VLSegConfig
            do {
                config = try ConfigLoader.decode(yaml: text, source: configURL.path).config
            } catch {
                throw ResultsError.notARun(
                    directory: dir.path, reason: "config.yaml does not read as a run's config: \(error)")
            }
            let evalURL = dir.appendingPathComponent(EvaluationReport.fileName(split: split))
            var report: EvaluationReport? = nil
            if FileManager.default.fileExists(atPath: evalURL.path) {
                do {
                    report = try JSONDecoder().decode(EvaluationReport.self, from: Data(contentsOf: evalURL))
                } catch {
                    throw ResultsError.notARun(
                        directory: dir.path,
                        reason: "\(evalURL.lastPathComponent) is not an evaluation result: \(error)")
                }
            } else {
                missing.append(
                    (
                        dir.path,
                        "no \(split) result (\(evalURL.lastPathComponent)): run `vlseg evaluate --run \(dir.path) --split \(split)`"
                            + (split == "test" ? ", or train with trainer.test.at_end=true" : "")
                    ))
            }
            let record: TrainingRecord?
            do { record = try TrainingRecord.read(runDirectory: dir) } catch {
                throw ResultsError.notARun(directory: dir.path, reason: "\(error)")
            }
            if record == nil {
                missing.append(
                    (
                        dir.path,
                        "no \(TrainingRecord.fileName): training has not finished (continue it with resume=auto)"
                    ))
            }
            if let report, let record {
                if resolution == .original && report.diceOriginal == nil {
                    missing.append(
                        (
                            dir.path,
                            "\(evalURL.lastPathComponent) has no original-resolution scores (use --resolution model)"
                        ))
                    continue
                }
                runs.append(
                    Run(
                        directory: dir, method: config.tuning.method, dataset: config.data.name, seed: config.seed,
                        report: report, record: record))
            }
        }
        guard missing.isEmpty else { throw ResultsError.incomplete(missing) }
        guard !runs.isEmpty else {
            throw ResultsError.notARun(directory: paths.joined(separator: " "), reason: "no runs")
        }
        // One table, one way of scoring: a cell must not average runs scored differently.
        let settings = Dictionary(grouping: runs) { run -> String in
            resolution == .original
                ? "threshold \(run.report.threshold), resize \(run.report.resize)" : "threshold \(run.report.threshold)"
        }
        if settings.count > 1 {
            let parts = settings.keys.sorted().map {
                "\($0): \(settings[$0, default: []].map(\.directory.path).joined(separator: ", "))"
            }
            throw ResultsError.mixedScoring(
                "the runs were scored differently (evaluate them again with the same --threshold/--resize):\n  "
                    + parts.joined(separator: "\n  "))
        }
        return try ResultsTable(runs: runs, split: split, resolution: resolution)
    }

    public init(runs: [Run], split: String, resolution: Resolution) throws {
        self.split = split
        self.resolution = resolution
        var methods: [String] = [], datasets: [String] = []
        for r in runs {
            if !methods.contains(r.method) { methods.append(r.method) }
            if !datasets.contains(r.dataset) { datasets.append(r.dataset) }
        }
        self.methods = methods
        self.datasets = datasets
        var cells: [Cell] = []
        for m in methods {
            for d in datasets {
                let group = runs.filter { $0.method == m && $0.dataset == d }.sorted { $0.seed < $1.seed }
                guard !group.isEmpty else { continue }
                for (a, b) in zip(group, group.dropFirst()) where a.seed == b.seed {
                    throw ResultsError.duplicateSeed(
                        method: m, dataset: d, seed: a.seed, directories: [a.directory.path, b.directory.path])
                }
                func stat(_ f: (EvaluationReport) -> Double?) -> Stat { Stat(group.compactMap { f($0.report) }) }
                let original = resolution == .original
                cells.append(
                    Cell(
                        method: m, dataset: d, runs: group,
                        dice: stat { original ? $0.diceOriginal : $0.dice },
                        iou: stat { original ? $0.iouOriginal : $0.iou },
                        dicePooled: stat { original ? $0.diceOriginalPooled : $0.dicePooled },
                        iouPooled: stat { original ? $0.iouOriginalPooled : $0.iouPooled },
                        wallSeconds: Stat(group.map(\.record.wallSeconds)),
                        trainableParameters: group[0].record.trainableParameters))
            }
        }
        self.cells = cells
    }

    func cell(_ method: String, _ dataset: String) -> Cell? {
        cells.first { $0.method == method && $0.dataset == dataset }
    }

    static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }

    /// Markdown: one table per score (rows methods, columns datasets), then wall time.
    public var markdown: String {
        let first = cells.first?.runs.first?.report
        var scoring = "threshold \(first.map { String($0.threshold) } ?? "?")"
        if resolution == .original { scoring += ", resize \(first?.resize ?? "?")" }
        var out = [
            "Test results (split `\(split)`, \(resolution == .original ? "original resolution" : "model resolution"), \(scoring)): "
                + "mean ± standard deviation over seeds, (n) seeds."
        ]
        func table(_ title: String, digits: Int, _ value: (Cell) -> Stat) {
            out.append("")
            out.append("### \(title)")
            out.append("")
            out.append("| method | trainable parameters | " + datasets.joined(separator: " | ") + " |")
            out.append("|---|---:|" + String(repeating: "---:|", count: datasets.count))
            for m in methods {
                let params = Set(cells.filter { $0.method == m }.map(\.trainableParameters)).sorted()
                let paramText = params.map(Self.grouped).joined(separator: " / ")
                let row = datasets.map { d -> String in
                    guard let c = cell(m, d) else { return "-" }
                    let s = value(c)
                    let mean = String(format: "%.\(digits)f", s.mean)
                    return (s.std.map { mean + " ± " + String(format: "%.\(digits)f", $0) } ?? mean)
                        + " (\(c.runs.count))"
                }
                out.append("| \(m) | \(paramText) | " + row.joined(separator: " | ") + " |")
            }
        }
        table("Dice (mean over images)", digits: 4) { $0.dice }
        table("IoU (mean over images)", digits: 4) { $0.iou }
        table("Dice (pooled over the split)", digits: 4) { $0.dicePooled }
        table("IoU (pooled over the split)", digits: 4) { $0.iouPooled }
        table("Training wall time (s)", digits: 1) { $0.wallSeconds }
        return out.joined(separator: "\n") + "\n"
    }

    public static let csvHeader =
        "method,dataset,seeds,n,trainable_parameters,dice_mean,dice_std,iou_mean,iou_std,"
        + "dice_pooled_mean,dice_pooled_std,iou_pooled_mean,iou_pooled_std,wall_s_mean,wall_s_std,split,resolution,threshold,resize"

    /// CSV, one row per (method, dataset) cell; an empty std means a single seed.
    public var csv: String {
        func text(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
                ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        func pair(_ s: Stat) -> String {
            String(format: "%.6f", s.mean) + "," + (s.std.map { String(format: "%.6f", $0) } ?? "")
        }
        var lines = [Self.csvHeader]
        for c in cells {
            let r = c.runs[0].report
            lines.append(
                [
                    text(c.method), text(c.dataset), c.runs.map { String($0.seed) }.joined(separator: " "),
                    String(c.runs.count),
                    String(c.trainableParameters), pair(c.dice), pair(c.iou), pair(c.dicePooled), pair(c.iouPooled),
                    pair(c.wallSeconds), text(split), resolution.rawValue, String(r.threshold),
                    resolution == .original ? r.resize : "",
                ].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
