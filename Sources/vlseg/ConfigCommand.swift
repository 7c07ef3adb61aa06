import ArgumentParser
import Foundation
import VLTrain
import VLTuning

/// Where configs come from and the overrides to apply: shared by every command that takes a config
/// (`config show`, `config validate`, `train`, ...).
struct ConfigArguments: ParsableArguments {
    @Option(
        name: .customLong("config-dir"),
        help:
            "The configs/ directory (default: $VLSEG_CONFIG_DIR, else configs/ found above the current directory or the vlseg executable)."
    )
    var configDir: String?

    @Argument(
        help: ArgumentHelp(
            "Overrides: group=option (tuning=vlsm_dense_vl, experiment=demo) and key=value (trainer.lr=3e-4, data.prompt=[p1,p2]).",
            valueName: "override"))
    var overrides: [String] = []

    /// Composes configs/ with the overrides: one call, every mistake a `ConfigError`.
    func load() throws -> ResolvedConfig {
        try ConfigLoader(configDir: configDir).load(overrides: overrides)
    }
}

/// `vlseg config ...`: inspect and check configurations without running anything.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show, check and list configurations (configs/ composed with command-line overrides).",
        discussion: """
            Configs are YAML groups under configs/ (model/, tuning/, data/, trainer/, experiment/) composed \
            through the defaults: list of configs/config.yaml, as Hydra does. On the command line, \
            group=option picks another option of a group (tuning=coop, data=busi, experiment=demo, \
            experiment=kvasir/vlsm_dense_vl) and key.path=value sets one value (trainer.max_epochs=20, \
            data.prompt=[p1,p2], resume=auto). Unknown keys and wrong types are errors naming the key, the \
            file or override it came from, and the nearest valid key.

            Tuning methods (tuning=NAME; `vlseg config list` shows each one's tuning.* options): \(TuningMethodReference.names()).
            """,
        subcommands: [ConfigShowCommand.self, ConfigValidateCommand.self, ConfigListCommand.self])
}

struct ConfigShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract:
            "Print the resolved config as YAML (what train --print-config prints and a run keeps as config.yaml).",
        discussion:
            "Every key appears with its value; --sources adds, per value, the file and line or the override that set it."
    )

    @OptionGroup var config: ConfigArguments

    @Flag(help: "Annotate each value with the file:line or override it came from.")
    var sources = false

    @Option(
        help: "Print only this key's value (a dotted path such as model.path; a section prints as YAML), for scripts.")
    var key: String?

    func run() throws {
        try reportingErrors {
            let resolved = try config.load()
            if let key {
                guard let text = resolved.text(at: key) else {
                    throw SetupError(message: "config show --key: no key '\(key)' in the resolved config")
                }
                print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
                return
            }
            print(sources ? resolved.annotatedYAML : resolved.yaml, terminator: "")
        }
    }
}

struct ConfigValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a configuration; print a one-line summary and its hash, or the first mistake (exit status 1).")

    @OptionGroup var config: ConfigArguments

    func run() throws {
        try reportingErrors {
            let r = try config.load()
            let c = r.config
            let tuning =
                c.tuning.family == c.tuning.method ? c.tuning.method : "\(c.tuning.method) (\(c.tuning.family))"
            print(
                "config OK: \(c.name): tuning \(tuning), model \(c.model.name) at \(c.model.path), "
                    + "data \(c.data.name) at \(c.data.root), run \(c.run.dir)")
            print("config hash \(r.configHash)")
        }
    }
}

struct ConfigListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the config groups with their options, and the tuning methods with their options.",
        discussion: "Tuning methods: \(TuningMethodReference.names()).")

    @Option(name: .customLong("config-dir"), help: "The configs/ directory (default: found as for show).")
    var configDir: String?

    @Flag(help: "Print only the tuning methods and their options, as the Markdown tables embedded in docs/methods.md.")
    var markdown = false

    func run() throws {
        try reportingErrors {
            if markdown {
                print(TuningMethodReference.markdown(), terminator: "")
                return
            }
            let loader = try ConfigLoader(configDir: configDir)
            print("configs: \(loader.configDir.path)")
            for group in loader.groups() {
                print("\(group):")
                let options = loader.options(of: group)
                // Experiments by directory, so the papers' grid stays readable.
                var byDir: [String: [String]] = [:]
                for o in options {
                    let parts = o.split(separator: "/", maxSplits: 1).map(String.init)
                    if parts.count == 2 {
                        byDir[parts[0], default: []].append(parts[1])
                    } else {
                        byDir["", default: []].append(o)
                    }
                }
                if let top = byDir[""] { print("  " + top.joined(separator: ", ")) }
                for dir in byDir.keys.sorted() where !dir.isEmpty {
                    print("  \(dir)/: " + byDir[dir]!.joined(separator: ", "))
                }
            }
            print("tuning methods (tuning.method, with their tuning.* options):")
            for line in TuningMethodReference.listing() { print("  " + line) }
        }
    }
}
