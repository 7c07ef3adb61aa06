import ArgumentParser
import Foundation
import VLTrain

extension ResultsTable.Resolution: ExpressibleByArgument {}

/// `vlseg results`: the papers' table from finished runs.
struct ResultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results",
        abstract: "Tabulate finished runs as the papers do: rows methods, columns datasets, mean ± std over seeds.",
        discussion: """
            Each RUN_DIR is a run directory, or a trainer.seeds launch directory standing for its seed-<n> runs. \
            Method, dataset and seed come from each run's config.yaml, the scores from its eval-<split>.json \
            (written by trainer.test.at_end=true or `vlseg evaluate --run RUN`), trainable parameters and \
            training wall time from its training.json. Prints markdown tables of Dice and IoU, each as the mean \
            over images and pooled over the split, and wall time; --out PREFIX also writes PREFIX.md and \
            PREFIX.csv. It only reads: a run without a result is an error naming it and the command that makes it.
            """)

    @Argument(help: "Run directories, or trainer.seeds launch directories.")
    var runDirs: [String]

    @Option(help: ArgumentHelp("Write PREFIX.md and PREFIX.csv.", valueName: "prefix"))
    var out: String?

    @Option(help: "The split whose results to tabulate.")
    var split: String = "test"

    @Option(
        help:
            "Scores at the images' own size (original: as VLSM-Adapter's written masks) or at the model's input size (model: as TuneVLSeg's test step)."
    )
    var resolution: ResultsTable.Resolution = .original

    func run() throws {
        try reportingErrors {
            let table = try ResultsTable.load(runDirs, split: split, resolution: resolution)
            let markdown = table.markdown
            print(markdown, terminator: "")
            if let out {
                for (ext, text) in [("md", markdown), ("csv", table.csv)] {
                    let url = URL(fileURLWithPath: out + "." + ext)
                    do {
                        try text.write(to: url, atomically: true, encoding: .utf8)
                    } catch {
                        throw SetupError(message: "\(url.path): cannot write the results: \(MetricsLog.reason(error))")
                    }
                    printError("wrote \(url.path)")
                }
            }
        }
    }
}
