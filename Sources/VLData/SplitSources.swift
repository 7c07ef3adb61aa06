import Foundation

// MARK: - Which files make up a split
//
// A split is usually one annotation file of one dataset root (`ROOT/anns/val.json`). The papers' protocols
// need more: medvlsm validates CVC-300, CVC-ColonDB and ETIS on their `test.json` and tests them on
// `test.json` + `train.json` (they are test-only sets); its pooled polyp set trains on Kvasir, ClinicDB and
// BKAI together and tests on all six; TuneVLSeg's natural-image sets have `training`/`validation` folders and
// test on `validation`. `data.splits` says it in the config, one list of sources per split:
//
//   splits:
//     val:  [test]                                  # ROOT/anns/test.json
//     test: [kvasir_polyp/test, cvc300_polyp/train] # ROOT/kvasir_polyp/anns/test.json, ...
//
// A source is `[SUB/FOLDERS/]NAME`: the dataset root `ROOT/SUB/FOLDERS` and its split `NAME` (an annotation
// file, or a split folder of a class-directory dataset). A split not listed is its own single source.

/// How a dataset root stores its splits.
public enum DatasetFormat: String, Sendable, Equatable {
    /// medvlsm: `anns/<split>.json`, `images/`, `masks/`.
    case medvlsm
    /// medvlsm files plus a `classes.json`: class-index masks, one sample per (image, class).
    case multiClass = "multi-class"
    /// TuneVLSeg's binarised natural-image layout: `annotations/<split>/<class>/*.png` (see `ClassDirectoryDataset`).
    case classDirectories = "class-directories"

    public static func detect(root: URL, multiClass: MultiClassConfig = MultiClassConfig()) -> DatasetFormat {
        if MultiClassDataset.isMultiClass(root: root, config: multiClass) { return .multiClass }
        if ClassDirectoryDataset.matches(root: root) { return .classDirectories }
        return .medvlsm
    }

    /// The splits `root` holds, in this format.
    public static func availableSplits(root: URL) -> [String] {
        detect(root: root) == .classDirectories
            ? ClassDirectoryDataset.availableSplits(root: root) : DatasetIndex.availableSplits(root: root)
    }
}

/// One part of a split: a dataset root and the name of its split there.
public struct SplitSource: Sendable, Equatable, CustomStringConvertible {
    /// The dataset root this part lives in.
    public var root: URL
    /// The split's name in that root (annotation file without `.json`, or split folder).
    public var name: String
    /// The sub-folders from the configured root ("" for the root itself). Prefixed to the entries' image and
    /// mask names so that written predictions of a pooled set cannot collide (two datasets' `1.png`).
    public var prefix: String

    /// Parses `[SUB/FOLDERS/]NAME` relative to `root`. Refuses an empty name, `..` and absolute paths, so a
    /// config cannot reach outside the dataset root by accident.
    public init(spec: String, root: URL) throws {
        let parts = spec.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !spec.hasPrefix("/"), let last = parts.last, !last.isEmpty,
            !parts.contains(where: { $0.isEmpty || $0 == ".." || $0 == "." })
        else {
            throw DataError.layout(
                path: root.path,
                detail: "split source '\(spec)': expected [SUB/FOLDERS/]NAME relative to the dataset root")
        }
        prefix = parts.dropLast().joined(separator: "/")
        name = last
        self.root = prefix.isEmpty ? root : root.appendingPathComponent(prefix)
    }

    public var format: DatasetFormat { DatasetFormat.detect(root: root) }

    /// The annotation file (or split folder) that defines this part; what errors and reports name.
    public var definitionURL: URL {
        format == .classDirectories
            ? ClassDirectoryDataset.splitURL(root: root, split: name)
            : DatasetIndex.annotationsURL(root: root, split: name)
    }

    /// Whether the part exists (its annotation file or split folder is there).
    public var exists: Bool { DatasetFormat.availableSplits(root: root).contains(name) }

    public var description: String { prefix.isEmpty ? name : "\(prefix)/\(name)" }

    /// The samples of this part, read in its format; entry names carry `prefix`.
    public func samples(
        promptChoice: PromptChoice?, multiClass: MultiClassConfig = MultiClassConfig(), onError: OnErrorPolicy = .fail
    ) throws -> SampleSet {
        var set: SampleSet
        switch DatasetFormat.detect(root: root, multiClass: multiClass) {
        case .multiClass:
            set = try MultiClassDataset.load(root: root, split: name, config: multiClass, onError: onError)
        case .classDirectories:
            set = try ClassDirectoryDataset.load(root: root, split: name).sampleSet
        case .medvlsm:
            set = try DatasetIndex.load(root: root, split: name, promptChoice: promptChoice, onError: onError)
                .sampleSet
        }
        if !prefix.isEmpty {
            for i in set.samples.indices {
                set.samples[i].entry.imageName = prefix + "/" + set.samples[i].entry.imageName
                set.samples[i].entry.maskName = prefix + "/" + set.samples[i].entry.maskName
            }
        }
        return set
    }
}

/// The configured splits of a dataset root (`data.root` + `data.splits`).
public struct DatasetSplits: Sendable, Equatable {
    public var root: URL
    /// Split -> its sources; a split not listed is `[split]`.
    public var mapping: [String: [String]]

    public init(root: URL, mapping: [String: [String]] = [:]) {
        self.root = root
        self.mapping = mapping
    }

    /// The parts of `split`, in order. An empty list in the mapping is an error naming the split.
    public func sources(_ split: String) throws -> [SplitSource] {
        let specs = mapping[split] ?? [split]
        guard !specs.isEmpty else {
            throw DataError.layout(path: root.path, detail: "data.splits.\(split) is an empty list")
        }
        return try specs.map { try SplitSource(spec: $0, root: root) }
    }

    /// Whether every part of `split` exists.
    public func isAvailable(_ split: String) -> Bool {
        guard let parts = try? sources(split) else { return false }
        return parts.allSatisfy(\.exists)
    }

    /// The splits that can be used: the standard ones (mapped or found), then any other split the root has.
    public func availableSplits() -> [String] {
        let found = DatasetFormat.availableSplits(root: root)
        let named = DatasetIndex.standardSplits + mapping.keys.sorted() + found
        var seen = Set<String>()
        return named.filter { seen.insert($0).inserted && isAvailable($0) }
    }

    /// What names `split` in messages: its definition file, or the list of them.
    public func describe(_ split: String) -> String {
        guard let parts = try? sources(split) else { return root.path }
        return parts.map(\.definitionURL.path).joined(separator: " + ")
    }

    /// All samples of `split`, its parts one after another. Multi-class parts must share one class list.
    public func samples(
        _ split: String, promptChoice: PromptChoice?, multiClass: MultiClassConfig = MultiClassConfig(),
        onError: OnErrorPolicy = .fail
    ) throws -> SampleSet {
        var all = SampleSet(samples: [])
        for (i, part) in try sources(split).enumerated() {
            guard part.exists else {
                throw DataError.missingFile(
                    path: part.definitionURL.path, role: "annotations of split '\(split)' (source '\(part)')",
                    entry: nil)
            }
            let set = try part.samples(promptChoice: promptChoice, multiClass: multiClass, onError: onError)
            if i > 0, all.classes != set.classes {
                throw DataError.classes(
                    file: part.definitionURL.path, entry: nil,
                    detail: "split '\(split)' mixes datasets with different class lists")
            }
            all.classes = set.classes
            all.samples += set.samples
            all.problems += set.problems
        }
        return all
    }
}
