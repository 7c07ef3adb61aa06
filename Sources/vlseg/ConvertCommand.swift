import ArgumentParser
import Foundation
import VLModels
import VLTensor
import VLTokenizer
import VLTrain
import VLTuning

/// `vlseg convert`: PyTorch checkpoints (`.pth`, `.pt`, Lightning `.ckpt`) to VLSeg's safetensors.
///
/// Published CRIS weights and the seeds' trained adapters exist only as `torch.save` files. Loading
/// those with PyTorch runs whatever their pickle names; this command interprets the pickle with an
/// allow-list instead (`TorchCheckpoint`), so converting an untrusted file runs nothing: anything but
/// dicts, lists, numbers, strings and tensors ends the command with one line naming what was refused.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a PyTorch checkpoint (.pth, .ckpt) to safetensors without running any of its code.",
        discussion: """
            A model checkpoint (a state dict, or a dict holding one under state_dict; a `module.` prefix on every name \
            is dropped) becomes a model directory: model.safetensors (float tensors as F32, integer ones such as \
            BatchNorm's num_batches_tracked as I64), config.json (from --config) and the CLIP tokenizer files.

            A Lightning checkpoint of the seeds (state_dict names under net.) becomes trainable.safetensors under VLSeg's \
            tensor names; --trainable asks for this with any file. With --config, the frozen CLIPSeg the checkpoint \
            also holds is written as the model, so the directory is complete. Tensors with no VLSeg name are listed.

            --to must be a new or empty directory; nothing is left behind when conversion fails.
            """)

    @Option(help: "The PyTorch checkpoint (.pth, .pt, .ckpt; zip or legacy format).")
    var from: String

    @Option(help: "The output directory to create.")
    var to: String

    @Option(help: "The model's config.json, copied to the output directory.")
    var config: String?

    @Option(
        help:
            "Keep only tensors whose names start with this prefix, and strip it (a Lightning checkpoint's net. by default)."
    )
    var prefix: String?

    @Option(
        help:
            "The top-level key holding the state dict (default: the first of \(TorchCheckpoint.stateDictKeys.joined(separator: ", ")) that holds tensors, else the top level)."
    )
    var entry: String?

    @Flag(help: "Write trainable.safetensors (a tuning method's tensors under VLSeg names) instead of a model.")
    var trainable = false

    @Option(
        help:
            "With trainable output: the expected trainable names, one per line, or a .safetensors file whose names and shapes are expected (e.g. a VLSeg checkpoint's trainable.safetensors). Names found in it are kept as they are."
    )
    var expect: String?

    @Option(
        name: .customLong("inert-global"), parsing: .singleValue,
        help:
            "Accept the global module.name as an inert name in the pickle (recorded, never called); repeatable. For metadata objects outside the state dict."
    )
    var inertGlobals: [String] = []

    func validate() throws {
        if let bad = inertGlobals.first(where: { !$0.contains(".") || $0.hasPrefix(".") || $0.hasSuffix(".") }) {
            throw ValidationError("--inert-global '\(bad)': expected module.name")
        }
    }

    func run() throws {
        try reportingErrors {
            let fm = FileManager.default
            let source = URL(fileURLWithPath: from).standardizedFileURL
            let outDir = URL(fileURLWithPath: to).standardizedFileURL
            guard fm.fileExists(atPath: source.path) else {
                throw SetupError(message: "\(source.path): file not found")
            }
            if fm.fileExists(atPath: outDir.path) {
                let contents = (try? fm.contentsOfDirectory(atPath: outDir.path)) ?? ["(a file)"]
                guard contents.isEmpty else {
                    throw SetupError(message: "\(outDir.path): already exists and is not empty; give a new directory")
                }
            }
            let configURL = config.map { URL(fileURLWithPath: $0).standardizedFileURL }
            let configData = try configURL.map { try Self.readConfig($0) }

            var options = TorchCheckpoint.Options()
            // Lightning checkpoints name their optimizer factories in hyper_parameters (inert names);
            // model files get the strict list.
            if !inertGlobals.isEmpty {
                var allow =
                    source.pathExtension.lowercased() == "ckpt"
                    ? PickleAllowList.lightningCheckpoint : PickleAllowList()
                for name in inertGlobals { allow.inertGlobals.insert(name) }
                options.allowList = allow
            }
            let checkpoint = try TorchCheckpoint(url: source, options: options)
            let formatText: String
            switch checkpoint.format {
            case let .zip(archive, version):
                formatText = "zip archive '\(archive)'" + (version.map { ", format version \($0)" } ?? "")
            case .legacy: formatText = "legacy (pre-1.6) format"
            }

            // A Lightning checkpoint keeps its model as LightningModule.net: state-dict names start with net.
            let keys = Set(checkpoint.topLevelKeys)
            let isLightning =
                keys.contains("state_dict")
                && !keys.isDisjoint(with: ["epoch", "global_step", "pytorch-lightning_version"])
            let (entryKey, dict) = try checkpoint.stateDictValues(entry: entry)
            let names = dict.keys.compactMap { if case let .string(s) = $0 { return s } else { return nil } }
            let netNames = !names.isEmpty && names.allSatisfy { $0.hasPrefix("net.") }
            let trainableMode = trainable || (isLightning && netNames)
            let selectedPrefix = prefix ?? (trainableMode && netNames ? "net." : nil)
            if expect != nil && !trainableMode {
                throw SetupError(
                    message:
                        "--expect applies to trainable output: a Lightning checkpoint with net. names, or --trainable")
            }
            let sd = try checkpoint.stateDict(entry: entryKey, prefix: selectedPrefix)

            var header = "read \(source.lastPathComponent) (\(formatText))"
            if isLightning {
                let progress = [
                    checkpoint.topLevelInt("epoch").map { "epoch \($0)" },
                    checkpoint.topLevelInt("global_step").map { "global step \($0)" },
                ]
                header += ": Lightning checkpoint" + progress.compactMap { $0.map { ", " + $0 } }.joined()
            }
            print(header)
            print(
                "state dict: \(sd.entry.map { "'\($0)'" } ?? "the top level"), \(sd.tensors.count) tensors"
                    + (sd.strippedPrefixes.isEmpty
                        ? "" : ", prefix \(sd.strippedPrefixes.map { "'\($0)'" }.joined(separator: " then ")) stripped")
            )
            if !sd.droppedNames.isEmpty {
                print(
                    "\(Self.count(sd.droppedNames.count, "tensor without the prefix '\(selectedPrefix ?? "")' was", "tensors without the prefix '\(selectedPrefix ?? "")' were")) left out: \(Self.list(sd.droppedNames))"
                )
            }
            if !sd.nonTensorNames.isEmpty {
                print(
                    "\(Self.count(sd.nonTensorNames.count, "entry is not a tensor and was", "entries are not tensors and were")) skipped: \(Self.list(sd.nonTensorNames))"
                )
            }

            try Self.staged(outDir) { staging in
                guard trainableMode else {
                    try Self.writeModel(
                        sd.tensors, configData: configData, configURL: configURL, source: source, into: staging,
                        outDir: outDir)
                    return
                }
                let conversion = SeedCheckpointNames.convert(sd.tensors)
                if !trainable, expect == nil, conversion.trainable.isEmpty, !conversion.base.isEmpty,
                    conversion.unmapped.isEmpty
                {
                    // medvlsm's end-to-end runs: the trained tensors are CLIPSeg's own, so the result is a model.
                    print("no tuning-method tensors: the checkpoint fine-tunes CLIPSeg itself, written as a model")
                    try Self.writeModel(
                        conversion.base, configData: configData, configURL: configURL, source: source, into: staging,
                        outDir: outDir)
                } else {
                    try writeTrainable(
                        sd, conversion: conversion, configData: configData, into: staging, outDir: outDir)
                }
            }
        }
    }

    /// The trainable tensors under VLSeg's names: the seeds' mapping table (`SeedCheckpointNames`),
    /// or the generic path with --expect (names kept when the expected list has them).
    private func writeTrainable(
        _ sd: TorchStateDict, conversion: SeedCheckpointNames.Conversion, configData: Data?,
        into staging: URL, outDir: URL
    ) throws {
        var selected = conversion.trainable
        var unmapped = conversion.unmapped
        var baseLeftOut = conversion.base
        var methods = conversion.methods
        if let expect {
            let expected = try Self.expectedNames(URL(fileURLWithPath: expect))
            let unmappedNames = Set(conversion.unmapped)
            let all = conversion.trainable + conversion.base + sd.tensors.filter { unmappedNames.contains($0.name) }
            let wanted = Set(expected.names)
            selected = all.filter { wanted.contains($0.name) }
            for (name, t) in selected {
                if let shape = expected.shapes[name], shape != t.shape {
                    throw SetupError(message: "\(from): '\(name)' has shape \(t.shape), \(expect) expects \(shape)")
                }
            }
            let chosen = Set(selected.map(\.name))
            let missing = expected.names.filter { !chosen.contains($0) }
            if !missing.isEmpty {
                throw SetupError(
                    message: "\(from): \(missing.count) expected tensor(s) not in the checkpoint: \(Self.list(missing))"
                )
            }
            unmapped = unmapped.filter { !chosen.contains($0) }
            baseLeftOut = baseLeftOut.filter { !chosen.contains($0.name) }
            methods = ["names from \(URL(fileURLWithPath: expect).lastPathComponent)"]
        }
        guard !selected.isEmpty else {
            if !baseLeftOut.isEmpty && unmapped.isEmpty {
                throw SetupError(
                    message:
                        "\(from): the checkpoint holds only CLIPSeg's own weights (\(baseLeftOut.count) tensors, end-to-end or decoder fine-tuning), no tuning-method tensors; convert it without --trainable to get a model directory"
                )
            }
            throw SetupError(
                message:
                    "\(from): no tensor maps to a VLSeg tuning-method name (\(unmapped.count) unmapped: \(Self.list(unmapped))); pass --expect with the expected names"
            )
        }
        var writer = SafeTensorsWriter()
        writer.metadata = [
            "format": "pt", "vlseg_converted_from": URL(fileURLWithPath: from).lastPathComponent,
            "vlseg_method": methods.joined(separator: ", "),
        ]
        for (name, t) in selected { writer.add(name, t) }
        try writer.write(to: staging.appendingPathComponent(CheckpointStore.trainableFile))
        let values = selected.reduce(0) { $0 + $1.tensor.elementCount }
        print(
            "wrote \(selected.count) tensors (\(values.grouped) parameters; \(methods.joined(separator: ", "))) to \(outDir.appendingPathComponent(CheckpointStore.trainableFile).path)"
        )
        if !conversion.aliases.isEmpty {
            print(
                "\(Self.count(conversion.aliases.count, "tensor repeats another under an alias and was", "tensors repeat others under an alias and were")) dropped (e.g. \(conversion.aliases[0]))"
            )
        }
        if configData != nil, !conversion.base.isEmpty {
            // The whole CLIPSeg the checkpoint holds (trained parts included): a complete model directory.
            try Self.writeModel(
                conversion.base, configData: configData, configURL: config.map { URL(fileURLWithPath: $0) },
                source: URL(fileURLWithPath: from), into: staging, outDir: outDir)
        } else if !baseLeftOut.isEmpty {
            print(
                "\(Self.count(baseLeftOut.count, "tensor of the frozen CLIPSeg was", "tensors of the frozen CLIPSeg were")) not written (pass --config to write them as the model)"
            )
        }
        if !unmapped.isEmpty {
            print("\(Self.count(unmapped.count, "tensor has", "tensors have")) no VLSeg name: \(Self.list(unmapped))")
        }
    }

    /// What a model directory carries besides weights and config: the image processor's settings
    /// (without them a model runs at its vision config's size with default statistics) and the tokenizer.
    static let companionFiles = [
        "preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json",
        "vocab.json", "merges.txt", "tokenizer.json",
    ]

    /// Copies the companion files found beside the config or the checkpoint (the config's directory
    /// first); the bundled CLIP tokenizer stands in when no vocabulary is found. Returns what was copied.
    static func copyCompanions(from directories: [URL], to staging: URL) throws -> [String] {
        let fm = FileManager.default
        var copied: [String] = []
        for name in companionFiles {
            guard
                let source = directories.map({ $0.appendingPathComponent(name) }).first(where: {
                    fm.fileExists(atPath: $0.path)
                })
            else { continue }
            try fm.copyItem(at: source.resolvingSymlinksInPath(), to: staging.appendingPathComponent(name))
            copied.append(name)
        }
        if !(copied.contains("vocab.json") && copied.contains("merges.txt")) {
            try BundledTokenizer.copy(to: staging)
        }
        return copied
    }

    /// model.safetensors, config.json, the image processor's settings and the tokenizer files: a
    /// complete model directory.
    private static func writeModel(
        _ tensors: [(name: String, tensor: TorchTensorData)], configData: Data?, configURL: URL?,
        source: URL, into staging: URL, outDir: URL
    ) throws {
        var writer = SafeTensorsWriter()
        writer.metadata = ["format": "pt", "vlseg_converted_from": source.lastPathComponent]
        var floats = 0, integers = 0
        for (name, t) in tensors {
            writer.add(name, t)
            if t.floats != nil { floats += t.elementCount } else { integers += t.elementCount }
        }
        let file = staging.appendingPathComponent("model.safetensors")
        try writer.write(to: file)
        if let configData {
            try configData.write(to: staging.appendingPathComponent("config.json"))
        }
        var directories: [URL] = []
        for dir in [configURL?.deletingLastPathComponent(), source.standardizedFileURL.deletingLastPathComponent()]
            .compactMap({ $0 })
        where !directories.contains(dir) { directories.append(dir) }
        let copied = try copyCompanions(from: directories, to: staging)
        if !copied.isEmpty {
            print(
                "copied \(copied.joined(separator: ", ")) from beside the \(configURL == nil ? "checkpoint" : "config or checkpoint")"
            )
        }
        if configData != nil && !copied.contains("preprocessor_config.json") {
            print(
                "note: no preprocessor_config.json beside the config or checkpoint: the model will take inputs at its vision config's image_size with CLIPSeg's default statistics; copy the original's file into \(outDir.path) if it has one"
            )
        }
        if configData != nil { try validateConvertedModel(at: staging) }
        print(
            "wrote \(tensors.count) tensors (\((floats + integers).grouped) parameters: \(floats.grouped) float, \(integers.grouped) integer) to \(outDir.appendingPathComponent("model.safetensors").path)"
        )
        if configData == nil {
            print("no --config given: add config.json to \(outDir.path) to make it a complete model directory")
        }
    }

    /// Loads the written directory as the model its config describes (CRIS or CLIPSeg): every
    /// expected weight present with its shape, nothing unexpected. It runs on the staging directory
    /// before it is moved into place, so a checkpoint that does not fit its config leaves nothing behind.
    private static func validateConvertedModel(at directory: URL) throws {
        let model = try ModelDirectory.load(directory)
        print("loads as \(model.architectureName): \(model.learnableParameterCount.grouped) parameters")
    }

    /// Runs `body` on a temporary sibling of `outDir` and moves it into place only when it succeeds.
    private static func staged(_ outDir: URL, _ body: (URL) throws -> Void) throws {
        let fm = FileManager.default
        let staging = outDir.deletingLastPathComponent().appendingPathComponent(
            ".\(outDir.lastPathComponent).tmp-\(getpid())")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        do {
            try body(staging)
            if fm.fileExists(atPath: outDir.path) { try fm.removeItem(at: outDir) }  // empty, checked before
            try fm.moveItem(at: staging, to: outDir)
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }

    /// The config file's bytes, after checking it is a JSON object.
    private static func readConfig(_ url: URL) throws -> Data {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw SetupError(message: "\(url.path): file not found")
        }
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw SetupError(message: "\(url.path): not a JSON object (expected a model's config.json)")
        }
        return data
    }

    /// Expected names from a text file (one per line, `#` comments) or a safetensors file (names and shapes).
    private static func expectedNames(_ url: URL) throws -> (names: [String], shapes: [String: [Int]]) {
        if url.pathExtension == "safetensors" {
            let file = try SafeTensorsFile(url: url)
            return (file.names, Dictionary(uniqueKeysWithValues: file.entries.map { ($0.key, $0.value.shape) }))
        }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw SetupError(message: "\(url.path): file not found")
        }
        let names = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !names.isEmpty else { throw SetupError(message: "\(url.path): lists no names") }
        return (names, [:])
    }

    /// "1 tensor has" / "3 tensors have".
    static func count(_ n: Int, _ one: String, _ many: String) -> String { "\(n) \(n == 1 ? one : many)" }

    /// Up to eight names, then a count.
    static func list(_ names: [String]) -> String {
        names.count <= 8
            ? names.joined(separator: ", ") : names.prefix(8).joined(separator: ", ") + ", ... (\(names.count) in all)"
    }
}
