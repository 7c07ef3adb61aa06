import ArgumentParser
import Foundation
import VLData
import VLTrain

/// `vlseg data ...`: dataset tools.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Dataset tools.", subcommands: [DataCheckCommand.self])
}

/// `vlseg data check ROOT` or `vlseg data check data=NAME [overrides]`: validates a dataset before a run
/// depends on it.
struct DataCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a dataset: annotation files, every image and mask, sizes, prompts, classes.",
        discussion: """
            With a ROOT folder: a medvlsm dataset (anns/{train,val,test}.json, images/, masks/; a classes.json \
            makes it multi-class) or a binarised natural-image dataset as TuneVLSeg prepares it \
            (images/<split>/, annotations/<split>/<class>/*.png; the class name is the prompt). \
            With config overrides instead (e.g. `data=polyp data_root=/datasets/medvlsm`): every part of the \
            configured train, val and test splits (data.splits), each in its own dataset root. \
            Every image and mask is decoded. Prints entries per split, image sizes, foreground ratio, prompt \
            keys present and every problem with its file and entry; exits with status 1 if any problem was found.
            """)

    @Argument(help: "A dataset root, or config overrides (KEY=VALUE, e.g. data=kvasir data_root=DIR).")
    var target: [String]

    @Option(name: .customLong("split"), help: "Check only this split (repeatable; default: every split found).")
    var splits: [String] = []

    @Option(help: "Directory of the YAML config groups (default: the checkout's configs/), with overrides.")
    var configDir: String?

    @Flag(help: "Print the report as one JSON object per dataset root instead of text.")
    var json = false

    func run() throws {
        var problems = false
        try reportingErrors {
            for (root, options) in try checks() {
                let report = try DatasetCheck.run(root: root, options: options)
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(report), as: UTF8.self))
                } else {
                    print(report.text)
                }
                problems = problems || !report.ok
            }
        }
        if problems { throw ExitCode(1) }
    }

    /// The dataset roots to check and, for each, which of its splits.
    func checks() throws -> [(URL, DatasetCheckOptions)] {
        let requested = splits.isEmpty ? nil : splits
        if target.count == 1, !target[0].contains("=") {
            return [(URL(fileURLWithPath: target[0]), DatasetCheckOptions(splits: requested))]
        }
        if let bad = target.first(where: { !$0.contains("=") }) {
            throw ValidationError(
                "expected one dataset root or KEY=VALUE config overrides; '\(bad)' is neither among several arguments")
        }
        let config = try ConfigLoader(configDir: configDir).load(overrides: target).config
        let datasetSplits = config.data.datasetSplits
        // One check per dataset root, in order of first use, with the splits it contributes.
        var order: [URL] = []
        var names: [URL: [String]] = [:]
        for split in requested ?? DatasetIndex.standardSplits {
            for part in try datasetSplits.sources(split) {
                if names[part.root] == nil { order.append(part.root) }
                if !(names[part.root] ?? []).contains(part.name) { names[part.root, default: []].append(part.name) }
            }
        }
        return order.map { ($0, DatasetCheckOptions(splits: names[$0])) }
    }
}
