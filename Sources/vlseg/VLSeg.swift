import ArgumentParser

/// The `vlseg` command line.
struct VLSeg: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "vlseg",
        abstract: "Parameter-efficient, data-parallel fine-tuning of vision-language segmentation models.",
        version: version,
        subcommands: [TrainCommand.self, EvaluateCommand.self, PredictCommand.self, CheckpointCommand.self, ForwardCommand.self, LoRACommand.self, TokenizeCommand.self, InitModelCommand.self, ConvertCommand.self, EnvCommand.self, BenchCommand.self, DataCommand.self, DemoDataCommand.self, ExportCommand.self, ConfigCommand.self]
    )
}
