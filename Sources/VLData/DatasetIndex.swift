import Foundation

// MARK: - Errors

/// Which annotation entry a problem belongs to: the JSON file, the entry's position in it and its names.
///
/// Every data error carries one of these so that a user with thousands of entries can find the one at
/// fault without a debugger: "anns/train.json entry 41 (img_name "a.png", mask_name "a_m.png")".
public struct EntryReference: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The annotation file (full path).
    public var file: String
    /// Zero-based position of the entry in the file's list.
    public var index: Int
    public var imageName: String?
    public var maskName: String?

    public init(file: String, index: Int, imageName: String? = nil, maskName: String? = nil) {
        self.file = file
        self.index = index
        self.imageName = imageName
        self.maskName = maskName
    }

    public var description: String {
        var names: [String] = []
        if let imageName { names.append("img_name \"\(imageName)\"") }
        if let maskName { names.append("mask_name \"\(maskName)\"") }
        return "\(file) entry \(index)" + (names.isEmpty ? "" : " (\(names.joined(separator: ", ")))")
    }
}

/// What to do with an entry that cannot be used (missing or corrupt file, size mismatch, no prompt).
///
/// `fail` (the default) stops at the first such entry with an error naming it: silently training on
/// less data than the user thinks is worse than stopping. `skip` logs each skipped entry once on stderr
/// and reports the count, for large scraped datasets where a few broken files are expected.
public enum OnErrorPolicy: String, Sendable, Codable, CaseIterable {
    case fail, skip
}

/// A problem with a dataset, always naming the file and, where there is one, the entry.
public enum DataError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    /// The annotation file is not valid JSON, or not a list of objects.
    case malformedJSON(file: String, detail: String)
    /// A file the dataset refers to does not exist. `role` is "image", "mask", "annotations" or "class list".
    case missingFile(path: String, role: String, entry: EntryReference?)
    /// An entry lacks `img_name`/`mask_name` or has values of the wrong type.
    case malformedEntry(EntryReference, detail: String)
    /// An entry has no non-empty prompt usable with the configured prompt choice.
    case noUsablePrompt(EntryReference, detail: String)
    /// The image or mask file exists but cannot be decoded.
    case unreadableFile(path: String, role: String, entry: EntryReference?, detail: String)
    /// Mask and image differ in size.
    case sizeMismatch(EntryReference, imageWidth: Int, imageHeight: Int, maskWidth: Int, maskHeight: Int)
    /// A multi-class problem: bad class list, class id out of range, unusable label map.
    case classes(file: String, entry: EntryReference?, detail: String)
    /// A configuration that cannot yield any batch (e.g. fewer samples than one global batch with drop).
    case emptyEpoch(detail: String)
    /// A split with no usable sample: its scores would be meaningless ("Dice 0 on 0 images").
    case emptySplit(file: String, split: String, skipped: Int)
    /// A dataset folder that is not laid out as its format requires (e.g. a split folder with no class folders).
    case layout(path: String, detail: String)

    public var description: String {
        switch self {
        case let .malformedJSON(file, detail):
            return "\(file): malformed annotation JSON: \(detail)"
        case let .missingFile(path, role, entry):
            return (entry.map { "\($0): " } ?? "") + "\(role) file not found: \(path)"
        case let .malformedEntry(entry, detail):
            return "\(entry): malformed entry: \(detail)"
        case let .noUsablePrompt(entry, detail):
            return "\(entry): no usable prompt: \(detail)"
        case let .unreadableFile(path, role, entry, detail):
            return (entry.map { "\($0): " } ?? "") + "cannot read \(role) \(path): \(detail)"
        case let .sizeMismatch(entry, iw, ih, mw, mh):
            return "\(entry): mask is \(mw)x\(mh) but image is \(iw)x\(ih)"
        case let .classes(file, entry, detail):
            return (entry.map { "\($0): " } ?? "\(file): ") + detail
        case let .emptyEpoch(detail):
            return "no batches: \(detail)"
        case let .emptySplit(file, split, skipped):
            return "\(file): the '\(split)' split has no usable samples"
                + (skipped > 0
                    ? " (all \(skipped) entries were skipped as unusable, data.on_error=skip)" : " (the list is empty)")
        case let .layout(path, detail):
            return "\(path): \(detail)"
        }
    }

    public var errorDescription: String? { description }

    /// The entry the problem belongs to, when there is one.
    public var entry: EntryReference? {
        switch self {
        case .malformedJSON, .emptyEpoch, .emptySplit, .layout: return nil
        case let .missingFile(_, _, e), let .unreadableFile(_, _, e, _), let .classes(_, e, _): return e
        case let .malformedEntry(e, _), let .noUsablePrompt(e, _), let .sizeMismatch(e, _, _, _, _): return e
        }
    }
}

// MARK: - Prompts

/// An entry's prompts, keyed `p0`, `p1`, ... in natural order (p2 before p10).
///
/// medvlsm stores each value as a string or a list of strings; both become a list here. Blank texts are
/// dropped (p0 is the empty prompt in most medvlsm files), but the key is kept so that `data check`
/// can report which keys a dataset has.
public struct PromptSet: Sendable, Equatable {
    public private(set) var keys: [String]
    public private(set) var texts: [String: [String]]

    public init(_ values: [String: [String]] = [:]) {
        var texts: [String: [String]] = [:]
        for (k, v) in values {
            texts[k] = v.filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
        }
        self.texts = texts
        self.keys = texts.keys.sorted(by: PromptSet.naturalOrder)
    }

    /// The non-blank texts under `key` (empty if the key is absent or blank).
    public subscript(key: String) -> [String] { texts[key] ?? [] }

    /// Keys that hold at least one non-blank text, in natural order.
    public var nonEmptyKeys: [String] { keys.filter { !(texts[$0] ?? []).isEmpty } }

    public var isEmpty: Bool { nonEmptyKeys.isEmpty }

    /// `p2` < `p10`: compare a key's alphabetic prefix, then its numeric suffix, then the raw string.
    public static func naturalOrder(_ a: String, _ b: String) -> Bool {
        func split(_ s: String) -> (String, Int?) {
            let digits = s.reversed().prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty else { return (s, nil) }
            let prefix = String(s.dropLast(digits.count))
            return (prefix, Int(String(digits.reversed())))
        }
        let (pa, na) = split(a), (pb, nb) = split(b)
        if pa != pb { return pa < pb }
        switch (na, nb) {
        case let (x?, y?) where x != y: return x < y
        default: return a < b
        }
    }
}

// MARK: - Entries and samples

/// One entry of `anns/<split>.json`, with its files resolved.
public struct DatasetEntry: Sendable, Equatable {
    public var reference: EntryReference
    public var imageName: String
    public var maskName: String
    public var imageURL: URL
    public var maskURL: URL
    public var prompts: PromptSet
    /// Class ids present in the mask, when the entry lists them (`"classes": [..]`, multi-class datasets).
    public var classIDs: [Int]?

    public init(
        reference: EntryReference, imageName: String, maskName: String, imageURL: URL, maskURL: URL,
        prompts: PromptSet, classIDs: [Int]? = nil
    ) {
        self.reference = reference
        self.imageName = imageName
        self.maskName = maskName
        self.imageURL = imageURL
        self.maskURL = maskURL
        self.prompts = prompts
        self.classIDs = classIDs
    }
}

/// What a sample's target mask is and where its prompt comes from.
public enum SampleTarget: Sendable, Equatable {
    /// A binary mask file (foreground = first channel > 127); the prompt comes from the entry's prompts.
    case binary
    /// A class-index mask; foreground = pixels equal to the class id; the prompt names the class.
    case classPresent(Int)
    /// A class that is not in the image (a negative example): the target is all background. The class is
    /// drawn per epoch from `candidates` with the sample's `.classSampling` stream, so each epoch shows
    /// the model different absent classes without changing the number of samples.
    case classAbsent(candidates: [Int])
}

/// One training or evaluation item: an entry and a target. Sample indices (the position in a
/// `SampleSet`) key the counter-based randomness, so they must not depend on rank or worker.
public struct Sample: Sendable, Equatable {
    public var entry: DatasetEntry
    public var target: SampleTarget

    public init(entry: DatasetEntry, target: SampleTarget = .binary) {
        self.entry = entry
        self.target = target
    }
}

/// The samples of one split, ready for a sampler and a loader.
public struct SampleSet: Sendable {
    public var samples: [Sample]
    /// The class list of a multi-class dataset (nil for binary medvlsm datasets).
    public var classes: ClassList?
    /// Entries left out while building the set (only under `on_error: skip`).
    public var problems: [DataError]

    public init(samples: [Sample], classes: ClassList? = nil, problems: [DataError] = []) {
        self.samples = samples
        self.classes = classes
        self.problems = problems
    }

    public var count: Int { samples.count }
}

// MARK: - Layout and index

/// Where a dataset root keeps its parts; the defaults are the medvlsm layout.
public struct DatasetLayout: Sendable, Equatable, Codable {
    public var annotationsDirectory = "anns"
    public var imagesDirectory = "images"
    public var masksDirectory = "masks"

    public init(
        annotationsDirectory: String = "anns", imagesDirectory: String = "images", masksDirectory: String = "masks"
    ) {
        self.annotationsDirectory = annotationsDirectory
        self.imagesDirectory = imagesDirectory
        self.masksDirectory = masksDirectory
    }
}

/// The entries of one split of a medvlsm-layout dataset.
///
/// Layout: `ROOT/anns/{train,val,test}.json`, `ROOT/images/`, `ROOT/masks/`. Each JSON file is a list of
/// objects with `img_name`, `mask_name` and `prompts` (`{"p0": "", "p1": "...", "p2": ["...", "..."]}`).
/// Keys medvlsm's preparation scripts add (`bbox`, `cat`, `segment_id`, `sentences`, `sentences_num`)
/// are ignored. Names may contain sub-folders.
///
/// File resolution: a name is looked up under `images/NAME` first; medvlsm's CAMUS configuration points
/// `images_dir` at `images/train` (train and val) and `images/test` (test) while the names carry no folder,
/// so `images/<split>/NAME` and, for `val`, `images/train/NAME` are tried next. The same holds for masks.
/// An entry whose file is found nowhere keeps the first candidate, and the loader reports it missing.
public struct DatasetIndex: Sendable {
    public let root: URL
    public let split: String
    public let layout: DatasetLayout
    public let annotationsURL: URL
    public let entries: [DatasetEntry]
    /// Entries left out (only with `onError: .skip`): malformed, or without a usable prompt.
    public let problems: [DataError]

    public static let standardSplits = ["train", "val", "test"]

    /// The annotation file of `split` under `root`.
    public static func annotationsURL(root: URL, split: String, layout: DatasetLayout = DatasetLayout()) -> URL {
        root.appendingPathComponent(layout.annotationsDirectory).appendingPathComponent("\(split).json")
    }

    /// Splits with an annotation file: the standard ones in order, then any other `*.json` (e.g. CAMUS's
    /// `testA.json`) alphabetically.
    public static func availableSplits(root: URL, layout: DatasetLayout = DatasetLayout()) -> [String] {
        let dir = root.appendingPathComponent(layout.annotationsDirectory)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        let found = Set(names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) })
        return standardSplits.filter(found.contains) + found.subtracting(standardSplits).sorted()
    }

    /// Reads and checks `anns/<split>.json`.
    ///
    /// - Parameters:
    ///   - promptChoice: when given, every entry must be able to produce a prompt with it (checked now,
    ///     so a bad entry stops the run before training starts rather than hours into it).
    ///   - requirePrompts: multi-class datasets take prompts from the class list and pass false.
    ///   - onError: `.fail` throws at the first bad entry; `.skip` leaves it out and records it in `problems`.
    /// Malformed JSON and a missing annotation file always throw: there is nothing to skip to.
    public static func load(
        root: URL, split: String, layout: DatasetLayout = DatasetLayout(),
        promptChoice: PromptChoice? = nil, requirePrompts: Bool = true,
        onError: OnErrorPolicy = .fail
    ) throws -> DatasetIndex {
        let annURL = annotationsURL(root: root, split: split, layout: layout)
        let file = annURL.path
        guard FileManager.default.fileExists(atPath: file) else {
            throw DataError.missingFile(path: file, role: "annotations", entry: nil)
        }
        let data: Data
        do {
            data = try Data(contentsOf: annURL)
        } catch {
            throw DataError.unreadableFile(
                path: file, role: "annotations", entry: nil, detail: error.localizedDescription)
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw DataError.malformedJSON(file: file, detail: jsonErrorDetail(error, data: data))
        }
        guard let list = parsed as? [Any] else {
            throw DataError.malformedJSON(
                file: file, detail: "expected a list of entries at the top level, found \(jsonTypeName(parsed))")
        }

        let resolver = FileResolver(root: root, split: split, layout: layout)
        var entries: [DatasetEntry] = []
        entries.reserveCapacity(list.count)
        var problems: [DataError] = []
        for (i, element) in list.enumerated() {
            do {
                var entry = try parseEntry(element, index: i, file: file, requirePrompts: requirePrompts)
                entry.imageURL = resolver.resolve(entry.imageName, in: layout.imagesDirectory)
                entry.maskURL = resolver.resolve(entry.maskName, in: layout.masksDirectory)
                if let choice = promptChoice {
                    _ = try choice.validate(entry.prompts, entry: entry.reference)
                }
                entries.append(entry)
            } catch let error as DataError {
                if onError == .fail { throw error }
                problems.append(error)
            }
        }
        return DatasetIndex(
            root: root, split: split, layout: layout, annotationsURL: annURL, entries: entries, problems: problems)
    }

    /// Binary samples, one per entry, in file order.
    public var sampleSet: SampleSet {
        SampleSet(samples: entries.map { Sample(entry: $0, target: .binary) }, classes: nil, problems: problems)
    }

    // MARK: Parsing

    static func parseEntry(_ element: Any, index: Int, file: String, requirePrompts: Bool) throws -> DatasetEntry {
        var ref = EntryReference(file: file, index: index)
        guard let object = element as? [String: Any] else {
            throw DataError.malformedEntry(ref, detail: "expected an object, found \(jsonTypeName(element))")
        }
        let img = object["img_name"] as? String
        let mask = object["mask_name"] as? String
        ref.imageName = img
        ref.maskName = mask
        guard let img, !img.isEmpty else {
            throw DataError.malformedEntry(
                ref, detail: object["img_name"] == nil ? "no \"img_name\"" : "\"img_name\" must be a non-empty string")
        }
        guard let mask, !mask.isEmpty else {
            throw DataError.malformedEntry(
                ref,
                detail: object["mask_name"] == nil ? "no \"mask_name\"" : "\"mask_name\" must be a non-empty string")
        }
        for name in [img, mask] where name.hasPrefix("/") || name.split(separator: "/").contains("..") {
            throw DataError.malformedEntry(ref, detail: "\"\(name)\" must be a relative path inside the dataset root")
        }

        var values: [String: [String]] = [:]
        switch object["prompts"] {
        case nil, is NSNull:
            break
        case let dict as [String: Any]:
            for (key, value) in dict {
                switch value {
                case let s as String: values[key] = [s]
                case is NSNull: values[key] = []
                case let list as [Any]:
                    var texts: [String] = []
                    for item in list {
                        guard let s = item as? String else {
                            throw DataError.malformedEntry(
                                ref,
                                detail:
                                    "prompt \"\(key)\" must be a string or a list of strings, found a list holding \(jsonTypeName(item))"
                            )
                        }
                        texts.append(s)
                    }
                    values[key] = texts
                default:
                    throw DataError.malformedEntry(
                        ref,
                        detail: "prompt \"\(key)\" must be a string or a list of strings, found \(jsonTypeName(value))")
                }
            }
        default:
            throw DataError.malformedEntry(
                ref,
                detail:
                    "\"prompts\" must be an object like {\"p1\": \"...\"}, found \(jsonTypeName(object["prompts"]!))")
        }
        let prompts = PromptSet(values)
        if requirePrompts && prompts.isEmpty {
            let detail =
                values.isEmpty
                ? "the entry has no \"prompts\"" : "every prompt (\(prompts.keys.joined(separator: ", "))) is empty"
            throw DataError.noUsablePrompt(ref, detail: detail)
        }

        var classIDs: [Int]?
        if let raw = object["classes"] {
            let list = raw as? [Any] ?? []
            let ids = list.compactMap { ($0 as? NSNumber)?.intValue }
            guard raw is [Any], ids.count == list.count else {
                throw DataError.malformedEntry(ref, detail: "\"classes\" must be a list of class ids")
            }
            classIDs = ids
        }
        let placeholder = URL(fileURLWithPath: "/")
        return DatasetEntry(
            reference: ref, imageName: img, maskName: mask, imageURL: placeholder, maskURL: placeholder,
            prompts: prompts, classIDs: classIDs)
    }

    /// The parser's own message, with the line and column when it gives a character offset (Foundation
    /// says "around character 1234", which is useless in a 2 MB annotation file).
    static func jsonErrorDetail(_ error: Error, data: Data? = nil) -> String {
        let ns = error as NSError
        var message = "\(error)"
        if let debug = ns.userInfo["NSDebugDescription"] as? String, !debug.isEmpty {
            message = debug
        } else if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError,
            let debug = underlying.userInfo["NSDebugDescription"] as? String
        {
            message = debug
        }
        guard let data, let range = message.range(of: "character "),
            let offset = Int(message[range.upperBound...].prefix { $0.isNumber }), offset <= data.count
        else {
            return message
        }
        var line = 1, column = 1
        for byte in data.prefix(offset) {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else if byte & 0xC0 != 0x80 { column += 1 }
        }
        return "\(message) (line \(line), column \(column))"
    }

    static func jsonTypeName(_ value: Any) -> String {
        switch value {
        case is String: return "a string"
        case is NSNull: return "null"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        case is NSNumber: return "a number"
        default: return "\(type(of: value))"
        }
    }
}

/// Finds an entry's file among the candidate folders (see `DatasetIndex`).
struct FileResolver {
    let root: URL
    let split: String
    let layout: DatasetLayout

    func candidates(_ name: String, in directory: String) -> [URL] {
        let base = root.appendingPathComponent(directory)
        var out = [base.appendingPathComponent(name)]
        if !name.hasPrefix(split + "/") {
            out.append(base.appendingPathComponent(split).appendingPathComponent(name))
        }
        if split == "val" {
            out.append(base.appendingPathComponent("train").appendingPathComponent(name))
        }
        return out
    }

    func resolve(_ name: String, in directory: String) -> URL {
        let all = candidates(name, in: directory)
        if all.count > 1 {
            for url in all where FileManager.default.fileExists(atPath: url.path) { return url }
        }
        return all[0]
    }
}
