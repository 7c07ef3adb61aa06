import ArgumentParser

/// The `vlseg` command line.
struct VLSeg: ParsableCommand {
    static let version = "0.1.0"
    /// What `--version` prints: the release and the commit built (`-modified` when tracked files
    /// differed from it), so a log or bug report names the exact code.
    static let versionLine = "\(version) (commit \(buildCommit))"

    static let configuration = CommandConfiguration(
        commandName: "vlseg",
        abstract: "Parameter-efficient, data-parallel fine-tuning of vision-language segmentation models.",
        version: versionLine,
        subcommands: [
            TrainCommand.self, SweepCommand.self, EvaluateCommand.self, PredictCommand.self, ResultsCommand.self,
            ReportCommand.self,
            CheckpointCommand.self,
            ForwardCommand.self, LoRACommand.self, TokenizeCommand.self, InitModelCommand.self, ConvertCommand.self,
            EnvCommand.self, BenchCommand.self, DataCommand.self, DemoDataCommand.self, ExportCommand.self,
            ConfigCommand.self,
        ]
    )
}
