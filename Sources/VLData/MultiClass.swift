import Foundation

// MARK: - Multi-class datasets
//
// TuneVLSeg trains its text-prompted models on datasets with any number of classes (Cityscapes, Pascal VOC)
// by turning each (image, class) pair into a binary problem whose prompt names the class. VLSeg reads such a
// dataset in the medvlsm layout plus one file:
//
//   ROOT/classes.json        the class list (below)
//   ROOT/anns/<split>.json   entries {"img_name": ..., "mask_name": ...} ("prompts" optional and unused;
//                            an optional "classes": [ids] lists the classes present and spares a scan)
//   ROOT/images/...          the images
//   ROOT/masks/...           class-index masks: 8-bit PNGs whose gray value (or palette index, as in
//                            Pascal VOC's SegmentationClass) is the class id
//
// classes.json:
//
//   {
//     "classes": [
//       {"id": 0, "name": "background", "ignore": true},
//       {"id": 1, "name": "aeroplane"},
//       {"id": 2, "name": "bicycle", "prompts": ["a bicycle", "a photo of a {}"]}
//     ],
//     "templates": ["{}", "a photo of a {}."]
//   }
//
// - `id` (0...255, unique) is the mask value; without `id` a class takes its position in the list.
// - `name` is substituted for `{}` (or `{name}`) in the prompts.
// - `prompts` (optional) are the class's own texts or templates; otherwise the top-level `templates` are
//   used, and without those the prompt is the class name itself (what TuneVLSeg does).
// - `ignore: true` classes (background, "void") never become samples; mask values that are not in the list
//   (Pascal VOC's 255 border) are treated as background and never become samples either.
// - Shorthand: `{"classes": ["background", "aeroplane", ...]}` or a bare list of names (ids by position).
//
// Each image yields one sample per present, non-ignored class (at least `minimumPixels` pixels), in id
// order, plus `absentPerImage` negative samples whose class is drawn per epoch from the classes the image
// lacks (target all background), so the model also learns to answer "not here". Batches carry the class id
// of every sample, which per-class evaluation needs.

/// One class of a multi-class dataset.
public struct ClassInfo: Sendable, Equatable, Codable {
    public var id: Int
    public var name: String
    /// The class's own prompt texts or templates (`{}` / `{name}` = the name); empty = use the list's templates.
    public var prompts: [String]
    /// Never turned into a sample (background, void).
    public var ignore: Bool

    public init(id: Int, name: String, prompts: [String] = [], ignore: Bool = false) {
        self.id = id
        self.name = name
        self.prompts = prompts
        self.ignore = ignore
    }
}

/// The class list of a multi-class dataset (`classes.json`).
public struct ClassList: Sendable, Equatable {
    public var classes: [ClassInfo]
    /// Templates for classes without their own prompts.
    public var templates: [String]
    /// The file it was read from (for messages).
    public var file: String

    public static let defaultFileName = "classes.json"

    public init(classes: [ClassInfo], templates: [String] = ["{}"], file: String = "classes.json") throws {
        self.classes = classes.sorted { $0.id < $1.id }
        self.templates = templates.isEmpty ? ["{}"] : templates
        self.file = file
        var seen = Set<Int>()
        for c in self.classes {
            guard (0...255).contains(c.id) else {
                throw DataError.classes(
                    file: file, entry: nil,
                    detail: "class \"\(c.name)\" has id \(c.id); ids must be 0...255 (8-bit mask values)")
            }
            guard seen.insert(c.id).inserted else {
                throw DataError.classes(file: file, entry: nil, detail: "class id \(c.id) appears more than once")
            }
            guard !c.name.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw DataError.classes(file: file, entry: nil, detail: "class id \(c.id) has an empty name")
            }
        }
        guard self.classes.contains(where: { !$0.ignore }) else {
            throw DataError.classes(file: file, entry: nil, detail: "every class is ignored: nothing to train on")
        }
    }

    /// Reads a class list (format in the comment at the top of MultiClass.swift).
    public static func load(_ url: URL) throws -> ClassList {
        let file = url.path
        guard FileManager.default.fileExists(atPath: file) else {
            throw DataError.missingFile(path: file, role: "class list", entry: nil)
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw DataError.unreadableFile(
                path: file, role: "class list", entry: nil, detail: error.localizedDescription)
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw DataError.malformedJSON(file: file, detail: DatasetIndex.jsonErrorDetail(error, data: data))
        }
        var rawClasses: [Any]
        var templates: [String] = ["{}"]
        if let list = parsed as? [Any] {
            rawClasses = list
        } else if let object = parsed as? [String: Any] {
            guard let list = object["classes"] as? [Any] else {
                throw DataError.classes(file: file, entry: nil, detail: "expected a \"classes\" list")
            }
            rawClasses = list
            if let t = object["templates"] {
                guard let strings = t as? [String] ?? (t as? String).map({ [$0] }) else {
                    throw DataError.classes(
                        file: file, entry: nil, detail: "\"templates\" must be a string or a list of strings")
                }
                templates = strings
            }
        } else {
            throw DataError.classes(
                file: file, entry: nil, detail: "expected an object with \"classes\" or a list of class names")
        }
        var classes: [ClassInfo] = []
        for (position, raw) in rawClasses.enumerated() {
            if let name = raw as? String {
                classes.append(ClassInfo(id: position, name: name))
                continue
            }
            guard let object = raw as? [String: Any], let name = object["name"] as? String else {
                throw DataError.classes(
                    file: file, entry: nil, detail: "class \(position) must be a name or an object with \"name\"")
            }
            var id = position
            if let rawID = object["id"] {
                guard let n = rawID as? NSNumber, n.doubleValue == n.doubleValue.rounded() else {
                    throw DataError.classes(
                        file: file, entry: nil, detail: "class \"\(name)\": \"id\" must be an integer")
                }
                id = n.intValue
            }
            var prompts: [String] = []
            if let p = object["prompts"] {
                guard let strings = p as? [String] ?? (p as? String).map({ [$0] }) else {
                    throw DataError.classes(
                        file: file, entry: nil,
                        detail: "class \"\(name)\": \"prompts\" must be a string or a list of strings")
                }
                prompts = strings.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            }
            let ignore = (object["ignore"] as? Bool) ?? false
            classes.append(ClassInfo(id: id, name: name, prompts: prompts, ignore: ignore))
        }
        return try ClassList(classes: classes, templates: templates, file: file)
    }

    public func info(_ id: Int) -> ClassInfo? { classes.first { $0.id == id } }

    /// Classes that become samples.
    public var trainableIDs: [Int] { classes.filter { !$0.ignore }.map(\.id) }

    /// The prompt texts of a class, templates filled in.
    public func promptTexts(for id: Int) -> [String] {
        guard let c = info(id) else { return [] }
        let sources = c.prompts.isEmpty ? templates : c.prompts
        return sources.map {
            $0.replacingOccurrences(of: "{name}", with: c.name).replacingOccurrences(of: "{}", with: c.name)
        }
    }

    /// The prompt of sample `index` in `epoch` for class `id`: uniform among the class's texts, drawn from
    /// the sample's `.prompt` stream like binary datasets' prompts.
    public func choosePrompt(classID id: Int, seed: UInt64, epoch: Int, index: Int) -> String {
        let texts = promptTexts(for: id)
        guard texts.count > 1 else { return texts.first ?? "" }
        var rng = CounterRandom(seed: seed, epoch: UInt64(epoch), index: UInt64(index), purpose: .prompt)
        return texts[rng.drawIndex(below: texts.count)]
    }
}

// MARK: - Label maps

/// A class-index mask: one 8-bit class id per pixel, row-major.
public struct LabelMap: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var values: [UInt8]

    public init(width: Int, height: Int, values: [UInt8]) {
        precondition(values.count == width * height, "label map \(width)x\(height) with \(values.count) values")
        self.width = width
        self.height = height
        self.values = values
    }

    /// Foreground where the pixel holds `classID`.
    public func binaryMask(classID: Int) -> BinaryMask {
        let target = UInt8(clamping: classID)
        let matches = classID >= 0 && classID <= 255
        return BinaryMask(width: width, height: height, values: values.map { matches && $0 == target ? 1 : 0 })
    }

    /// Pixel count per value.
    public var histogram: [Int] {
        var h = [Int](repeating: 0, count: 256)
        for v in values { h[Int(v)] += 1 }
        return h
    }

    /// Values that cover at least `minimumPixels` pixels, ascending.
    public func presentValues(minimumPixels: Int = 1) -> [Int] {
        histogram.enumerated().filter { $0.element >= max(1, minimumPixels) }.map(\.offset)
    }

    /// Reads a class-index mask through the codecs' index reader: the palette index of palette PNGs
    /// (Pascal VOC), otherwise the first channel's value. The ordinary mask reader binarises, which would
    /// destroy the ids, hence this separate path.
    public static func read(_ url: URL) throws -> LabelMap {
        do {
            let m = try ImageIO.readClassIndices(url)
            return LabelMap(width: m.width, height: m.height, values: m.values)
        } catch let error as ImageError {
            throw DataError(imageError: error, role: "mask", entry: nil)
        }
    }

    /// Writes the ids as an 8-bit gray PNG (tools and tests that make class-index masks).
    public func writePNG(to url: URL) throws {
        try ImageIO.writeFileBytes(PNGCodec.encodeGray(values, width: width, height: height), to: url)
    }
}

// MARK: - Samples

/// How a multi-class dataset becomes binary samples (`data.multiclass` in the config).
public struct MultiClassConfig: Sendable, Equatable, Codable {
    /// The class list, relative to the dataset root.
    public var classFile: String = ClassList.defaultFileName
    /// Negative samples per image: a class the image lacks, drawn per epoch, with an all-background target.
    public var absentPerImage: Int = 0
    /// A class counts as present when it covers at least this many pixels.
    public var minimumPixels: Int = 1

    public init(classFile: String = ClassList.defaultFileName, absentPerImage: Int = 0, minimumPixels: Int = 1) {
        self.classFile = classFile
        self.absentPerImage = absentPerImage
        self.minimumPixels = minimumPixels
    }
}

public enum MultiClassDataset {
    /// Whether `root` is a multi-class dataset (it has a class list).
    public static func isMultiClass(root: URL, config: MultiClassConfig = MultiClassConfig()) -> Bool {
        FileManager.default.fileExists(atPath: root.appendingPathComponent(config.classFile).path)
    }

    /// The binary samples of one split: for each entry, its present classes in id order, then its absent slots.
    ///
    /// Entries without a `"classes"` list have their mask scanned once here (in parallel); bad masks are
    /// errors under `.fail` and skipped entries under `.skip`.
    public static func load(
        root: URL, split: String, layout: DatasetLayout = DatasetLayout(),
        config: MultiClassConfig = MultiClassConfig(),
        onError: OnErrorPolicy = .fail
    ) throws -> SampleSet {
        guard config.absentPerImage >= 0, config.minimumPixels >= 1 else {
            throw DataError.classes(
                file: root.appendingPathComponent(config.classFile).path, entry: nil,
                detail: "absent_per_image must be >= 0 and minimum_pixels >= 1")
        }
        let classes = try ClassList.load(root.appendingPathComponent(config.classFile))
        let index = try DatasetIndex.load(
            root: root, split: split, layout: layout, requirePrompts: false, onError: onError)
        let trainable = Set(classes.trainableIDs)
        let presence = try scanPresence(index.entries, config: config, classes: classes)

        var samples: [Sample] = []
        var problems = index.problems
        for (entry, result) in zip(index.entries, presence) {
            let present: [Int]
            switch result {
            case let .success(ids): present = ids
            case let .failure(error):
                if onError == .fail { throw error }
                problems.append(error)
                continue
            }
            let presentTrainable = present.filter(trainable.contains)
            for id in presentTrainable {
                samples.append(Sample(entry: entry, target: .classPresent(id)))
            }
            let absent = classes.trainableIDs.filter { !present.contains($0) }
            if !absent.isEmpty {
                for _ in 0..<config.absentPerImage {
                    samples.append(Sample(entry: entry, target: .classAbsent(candidates: absent)))
                }
            }
        }
        return SampleSet(samples: samples, classes: classes, problems: problems)
    }

    /// The classes present in each entry: its `"classes"` list, or a scan of its mask.
    static func scanPresence(
        _ entries: [DatasetEntry], config: MultiClassConfig,
        classes: ClassList
    ) throws -> [Result<[Int], DataError>] {
        var results = [Result<[Int], DataError>](repeating: .success([]), count: entries.count)
        let toScan = entries.indices.filter { entries[$0].classIDs == nil }
        for i in entries.indices where entries[i].classIDs != nil {
            let ids = entries[i].classIDs!
            if let bad = ids.first(where: { !(0...255).contains($0) }) {
                results[i] = .failure(
                    .classes(
                        file: classes.file, entry: entries[i].reference,
                        detail: "\"classes\" lists id \(bad), outside 0...255"))
            } else {
                results[i] = .success(Array(Set(ids)).sorted())
            }
        }
        let scanned = LockedBox(results)
        DispatchQueue.concurrentPerform(iterations: toScan.count) { k in
            let i = toScan[k]
            let r: Result<[Int], DataError>
            do {
                let map = try LabelMap.read(entries[i].maskURL)
                r = .success(map.presentValues(minimumPixels: config.minimumPixels))
            } catch let error as DataError {
                r = .failure(error.attaching(entries[i].reference))
            } catch {
                r = .failure(
                    .unreadableFile(
                        path: entries[i].maskURL.path, role: "mask", entry: entries[i].reference, detail: "\(error)"))
            }
            scanned.modify { $0[i] = r }
        }
        results = scanned.value
        return results
    }
}

extension DataError {
    /// A codec error as a data error: a missing file stays "not found", everything else is "cannot read".
    init(imageError: ImageError, role: String, entry: EntryReference?) {
        switch imageError {
        case let .missingFile(path):
            self = .missingFile(path: path, role: role, entry: entry)
        case let .unreadable(path, reason), let .corrupt(path, reason), let .unsupportedFormat(path, reason),
            let .writeFailed(path, reason):
            if case .corrupt = imageError {
                self = .unreadableFile(path: path, role: role, entry: entry, detail: "corrupt or truncated: \(reason)")
            } else if case .unsupportedFormat = imageError {
                self = .unreadableFile(path: path, role: role, entry: entry, detail: "unsupported format: \(reason)")
            } else {
                self = .unreadableFile(path: path, role: role, entry: entry, detail: reason)
            }
        }
    }

    /// The same error, naming `entry` if it did not name one yet (codec-level errors know only the path).
    func attaching(_ entry: EntryReference) -> DataError {
        switch self {
        case let .missingFile(path, role, nil): return .missingFile(path: path, role: role, entry: entry)
        case let .unreadableFile(path, role, nil, detail):
            return .unreadableFile(path: path, role: role, entry: entry, detail: detail)
        case let .classes(file, nil, detail): return .classes(file: file, entry: entry, detail: detail)
        default: return self
        }
    }
}
