import ArgumentParser
import Foundation
import VLData

/// `vlseg data ...`: dataset tools.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Dataset tools.", subcommands: [DataCheckCommand.self])
}

/// `vlseg data check ROOT`: validates a medvlsm-layout (or multi-class) dataset before a run depends on it.
struct DataCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a dataset: annotation files, every image and mask, sizes, prompts, classes.",
        discussion: """
            ROOT holds anns/{train,val,test}.json, images/ and masks/ (a classes.json makes it a multi-class \
            dataset). Every image and mask is decoded. Prints entries per split, image sizes, foreground ratio, \
            prompt keys present and every problem with its file and entry; exits with status 1 if any problem \
            was found.
            """)

    @Argument(help: "Dataset root.")
    var root: String

    @Option(name: .customLong("split"), help: "Check only this split (repeatable; default: every split found).")
    var splits: [String] = []

    @Flag(help: "Print the report as one JSON object instead of text.")
    var json = false

    func run() throws {
        var problems = false
        try reportingErrors {
            let options = DatasetCheckOptions(splits: splits.isEmpty ? nil : splits)
            let report = try DatasetCheck.run(root: URL(fileURLWithPath: root), options: options)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.text)
            }
            problems = !report.ok
        }
        if problems { throw ExitCode(1) }
    }
}
