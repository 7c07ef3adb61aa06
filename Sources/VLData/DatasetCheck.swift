import Foundation

/// What `vlseg data check` looks at.
public struct DatasetCheckOptions: Sendable {
    /// Splits to check; nil = every split with an annotation file (and a problem if none of train/val/test exists).
    public var splits: [String]?
    public var layout: DatasetLayout
    public var multiClass: MultiClassConfig

    public init(
        splits: [String]? = nil, layout: DatasetLayout = DatasetLayout(),
        multiClass: MultiClassConfig = MultiClassConfig()
    ) {
        self.splits = splits
        self.layout = layout
        self.multiClass = multiClass
    }
}

/// The result of checking a dataset: a summary per split and every problem found, each naming its file and
/// entry. `ok` is false when there is any problem; warnings (e.g. empty masks, duplicate entries) do not
/// count as problems because real datasets have them on purpose.
public struct DatasetCheckReport: Sendable, Codable, Equatable {
    public struct SizeStats: Sendable, Codable, Equatable {
        public var minWidth: Int, maxWidth: Int, minHeight: Int, maxHeight: Int
        /// The most common size ("600x500") and how many images have it.
        public var mostCommon: String
        public var mostCommonCount: Int
        public var distinctSizes: Int
    }

    public struct ForegroundStats: Sendable, Codable, Equatable {
        /// Fractions of foreground pixels over the masks read (0...1).
        public var mean: Double, min: Double, max: Double
        /// Masks with no foreground at all, and masks that are all foreground.
        public var emptyMasks: Int, fullMasks: Int
    }

    public struct SplitSummary: Sendable, Codable, Equatable {
        public var split: String
        public var file: String
        public var entries: Int
        /// Distinct image files referred to (CAMUS has several masks per image).
        public var images: Int
        public var sizes: SizeStats?
        public var foreground: ForegroundStats?
        /// Prompt key -> number of entries where it holds non-empty text (a key present but always blank shows 0).
        public var promptKeys: [String: Int]
        /// Multi-class: class name -> number of entries whose mask contains it.
        public var classes: [String: Int]?
        public var problems: Int
    }

    public struct Problem: Sendable, Codable, Equatable, CustomStringConvertible {
        public var split: String
        public var file: String
        public var entryIndex: Int?
        public var imageName: String?
        public var maskName: String?
        public var message: String
        public var description: String { message }
    }

    public var root: String
    /// `medvlsm`, `multi-class` or `class-directories` (see `DatasetFormat`).
    public var format: String
    public var multiClass: Bool
    public var splits: [SplitSummary]
    public var problems: [Problem]
    public var warnings: [String]
    public var ok: Bool { problems.isEmpty }

    enum CodingKeys: String, CodingKey { case root, format, multiClass, splits, problems, warnings, ok }

    public init(
        root: String, format: String = DatasetFormat.medvlsm.rawValue, multiClass: Bool, splits: [SplitSummary],
        problems: [Problem], warnings: [String]
    ) {
        self.root = root
        self.format = format
        self.multiClass = multiClass
        self.splits = splits
        self.problems = problems
        self.warnings = warnings
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        root = try c.decode(String.self, forKey: .root)
        format = try c.decodeIfPresent(String.self, forKey: .format) ?? DatasetFormat.medvlsm.rawValue
        multiClass = try c.decode(Bool.self, forKey: .multiClass)
        splits = try c.decode([SplitSummary].self, forKey: .splits)
        problems = try c.decode([Problem].self, forKey: .problems)
        warnings = try c.decode([String].self, forKey: .warnings)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(root, forKey: .root)
        try c.encode(format, forKey: .format)
        try c.encode(multiClass, forKey: .multiClass)
        try c.encode(splits, forKey: .splits)
        try c.encode(problems, forKey: .problems)
        try c.encode(warnings, forKey: .warnings)
        try c.encode(ok, forKey: .ok)
    }

    /// The human-readable summary `vlseg data check` prints.
    public var text: String {
        var lines = ["dataset \(root)" + (format == DatasetFormat.medvlsm.rawValue ? "" : " (\(format))")]
        for s in splits {
            lines.append("split \(s.split): \(s.entries) entries, \(s.images) images (\(s.file))")
            if let z = s.sizes {
                let range =
                    z.minWidth == z.maxWidth && z.minHeight == z.maxHeight
                    ? "all \(z.mostCommon)"
                    : "width \(z.minWidth)-\(z.maxWidth), height \(z.minHeight)-\(z.maxHeight), most common \(z.mostCommon) (\(z.mostCommonCount)), \(z.distinctSizes) distinct"
                lines.append("  image sizes: \(range)")
            }
            if let f = s.foreground {
                lines.append(
                    String(
                        format: "  foreground: mean %.1f%%, min %.1f%%, max %.1f%%", f.mean * 100, f.min * 100,
                        f.max * 100)
                        + (f.emptyMasks > 0 ? ", \(f.emptyMasks) empty mask(s)" : "")
                        + (f.fullMasks > 0 ? ", \(f.fullMasks) all-foreground mask(s)" : ""))
            }
            if !s.promptKeys.isEmpty {
                let keys = s.promptKeys.keys.sorted(by: PromptSet.naturalOrder).map { "\($0) (\(s.promptKeys[$0]!))" }
                lines.append("  prompt keys (entries with text): \(keys.joined(separator: ", "))")
            }
            if let classes = s.classes {
                let list = classes.keys.sorted().map { "\($0) (\(classes[$0]!))" }
                lines.append("  classes (entries containing): \(list.isEmpty ? "none" : list.joined(separator: ", "))")
            }
            if s.problems > 0 { lines.append("  problems: \(s.problems)") }
        }
        for w in warnings { lines.append("warning: \(w)") }
        for p in problems { lines.append("problem: \(p.message)") }
        lines.append(ok ? "ok: no problems found" : "\(problems.count) problem(s) found")
        return lines.joined(separator: "\n")
    }
}

/// Validates a whole dataset: annotation files, every image and mask (decoded, not just present), sizes,
/// prompts, and for multi-class datasets the class list and mask values.
public enum DatasetCheck {
    public struct RootError: Error, CustomStringConvertible, LocalizedError {
        public var path: String
        public var description: String { "dataset root not found or not a folder: \(path)" }
        public var errorDescription: String? { description }
    }

    public static func run(root: URL, options: DatasetCheckOptions = DatasetCheckOptions()) throws -> DatasetCheckReport
    {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
            throw RootError(path: root.path)
        }
        let format = DatasetFormat.detect(root: root, multiClass: options.multiClass)
        let multi = format == .multiClass
        var report = DatasetCheckReport(
            root: root.path, format: format.rawValue, multiClass: multi, splits: [], problems: [], warnings: [])
        if format == .classDirectories {
            // TuneVLSeg's binarised layout: the split folders are whatever its preparation named them.
            let found = ClassDirectoryDataset.availableSplits(root: root)
            if options.splits == nil, found.isEmpty {
                let dir = root.appendingPathComponent(ClassDirectoryLayout().masksDirectory).path
                report.problems.append(
                    .init(
                        split: "-", file: dir, entryIndex: nil, imageName: nil, maskName: nil,
                        message: "no split folders: expected \(dir)/<split>/<class>/*.png"))
            }
            for split in options.splits ?? found {
                check(split: split, root: root, options: options, format: format, classes: nil, report: &report)
            }
            return report
        }

        var classes: ClassList?
        if multi {
            do {
                classes = try ClassList.load(root.appendingPathComponent(options.multiClass.classFile))
            } catch {
                report.problems.append(
                    problem(
                        split: "-", file: root.appendingPathComponent(options.multiClass.classFile).path, error: error))
            }
        }

        let found = DatasetIndex.availableSplits(root: root, layout: options.layout)
        let splits = options.splits ?? found
        if options.splits == nil {
            if !found.contains(where: DatasetIndex.standardSplits.contains) {
                let dir = root.appendingPathComponent(options.layout.annotationsDirectory).path
                report.problems.append(
                    .init(
                        split: "-", file: dir, entryIndex: nil, imageName: nil, maskName: nil,
                        message: "no annotation files: expected \(dir)/{train,val,test}.json"))
            } else {
                for s in DatasetIndex.standardSplits where !found.contains(s) {
                    report.warnings.append(
                        "no \(s) split (\(DatasetIndex.annotationsURL(root: root, split: s, layout: options.layout).path))"
                    )
                }
            }
        }
        for split in splits {
            check(split: split, root: root, options: options, format: format, classes: classes, report: &report)
        }
        return report
    }

    static func problem(split: String, file: String, error: Error) -> DatasetCheckReport.Problem {
        let entry = (error as? DataError)?.entry
        return .init(
            split: split, file: entry?.file ?? file, entryIndex: entry?.index, imageName: entry?.imageName,
            maskName: entry?.maskName, message: "\(error)")
    }

    /// What one decode pass learned about a file.
    private struct Decoded: Sendable {
        var width = 0, height = 0
        var foreground: Double?
        /// For a mask with no foreground: the largest value of its first channel when that is 1-127
        /// (a 0/1 label mask, say, which the > 127 rule reads as all background).
        var faintMaximum: Int?
        var values: [Int]?
        var error: DataError?
    }

    static func check(
        split: String, root: URL, options: DatasetCheckOptions, format: DatasetFormat, classes: ClassList?,
        report: inout DatasetCheckReport
    ) {
        let multi = format == .multiClass
        let annFile =
            format == .classDirectories
            ? ClassDirectoryDataset.splitURL(root: root, split: split).path
            : DatasetIndex.annotationsURL(root: root, split: split, layout: options.layout).path
        let index: DatasetIndex
        do {
            index =
                format == .classDirectories
                ? try ClassDirectoryDataset.load(root: root, split: split)
                : try DatasetIndex.load(
                    root: root, split: split, layout: options.layout, requirePrompts: !multi, onError: .skip)
        } catch {
            report.problems.append(problem(split: split, file: annFile, error: error))
            report.splits.append(
                .init(
                    split: split, file: annFile, entries: 0, images: 0, sizes: nil, foreground: nil,
                    promptKeys: [:], classes: nil, problems: 1))
            return
        }
        var splitProblems = index.problems.map { problem(split: split, file: annFile, error: $0) }
        let entries = index.entries

        // Decode each distinct image once, then each mask, in parallel.
        var imageOrder: [URL] = []
        var imageSlot: [URL: Int] = [:]
        for e in entries where imageSlot[e.imageURL] == nil {
            imageSlot[e.imageURL] = imageOrder.count
            imageOrder.append(e.imageURL)
        }
        let imageURLs = imageOrder
        let decodedImages = LockedBox([Decoded](repeating: Decoded(), count: imageURLs.count))
        let decodedMasks = LockedBox([Decoded](repeating: Decoded(), count: entries.count))
        DispatchQueue.concurrentPerform(iterations: imageURLs.count) { i in
            var d = Decoded()
            do {
                let img = try ImageIO.readImage(imageURLs[i])
                d.width = img.width
                d.height = img.height
            } catch let error as ImageError {
                d.error = DataError(imageError: error, role: "image", entry: nil)
            } catch {
                d.error = .unreadableFile(path: imageURLs[i].path, role: "image", entry: nil, detail: "\(error)")
            }
            decodedImages.modify { $0[i] = d }
        }
        DispatchQueue.concurrentPerform(iterations: entries.count) { i in
            var d = Decoded()
            let entry = entries[i]
            do {
                if multi {
                    let map = try LabelMap.read(entry.maskURL)
                    d.width = map.width
                    d.height = map.height
                    d.values = map.presentValues(minimumPixels: options.multiClass.minimumPixels)
                } else {
                    let m = try ImageIO.readMask(entry.maskURL)
                    d.width = m.width
                    d.height = m.height
                    d.foreground = m.foregroundRatio
                    if m.foregroundRatio == 0 { d.faintMaximum = ImageIO.faintMaskMaximum(entry.maskURL) }
                }
            } catch let error as ImageError {
                d.error = DataError(imageError: error, role: "mask", entry: entry.reference)
            } catch let error as DataError {
                d.error = error.attaching(entry.reference)
            } catch {
                d.error = .unreadableFile(
                    path: entry.maskURL.path, role: "mask", entry: entry.reference, detail: "\(error)")
            }
            decodedMasks.modify { $0[i] = d }
        }
        let images = decodedImages.value, masks = decodedMasks.value

        // Per-entry problems, in file order.
        var reportedImages = Set<Int>()
        var sizeCounts: [String: Int] = [:]
        var widths: [Int] = [], heights: [Int] = []
        for d in images where d.error == nil {
            sizeCounts["\(d.width)x\(d.height)", default: 0] += 1
            widths.append(d.width)
            heights.append(d.height)
        }
        var ratios: [Double] = []
        var classCounts: [String: Int] = [:]
        var unknownValues: [Int: Int] = [:]
        var seenPairs: [String: Int] = [:]
        var faintMasks: [(name: String, maximum: Int)] = []
        for (i, entry) in entries.enumerated() {
            let slot = imageSlot[entry.imageURL]!
            let img = images[slot], m = masks[i]
            if let error = img.error {
                if reportedImages.insert(slot).inserted {
                    splitProblems.append(problem(split: split, file: annFile, error: error.attaching(entry.reference)))
                }
            }
            if let error = m.error {
                splitProblems.append(problem(split: split, file: annFile, error: error))
            }
            if img.error == nil, m.error == nil, img.width != m.width || img.height != m.height {
                splitProblems.append(
                    problem(
                        split: split, file: annFile,
                        error: DataError.sizeMismatch(
                            entry.reference, imageWidth: img.width, imageHeight: img.height,
                            maskWidth: m.width, maskHeight: m.height)))
            }
            if let r = m.foreground { ratios.append(r) }
            if let top = m.faintMaximum { faintMasks.append((entry.maskName, top)) }
            if let values = m.values, let classes {
                for v in values {
                    if let c = classes.info(v) {
                        classCounts[c.name, default: 0] += 1
                    } else {
                        unknownValues[v, default: 0] += 1
                    }
                }
            }
            let pair = "\(entry.imageName)\u{0}\(entry.maskName)"
            if let first = seenPairs[pair] {
                report.warnings.append("\(entry.reference): same image and mask as entry \(first)")
            } else {
                seenPairs[pair] = entry.reference.index
            }
        }
        if !unknownValues.isEmpty {
            let list = unknownValues.keys.sorted().map { "\($0) (\(unknownValues[$0]!) masks)" }.joined(separator: ", ")
            report.warnings.append("\(split): mask values not in the class list, treated as background: \(list)")
        }

        var promptKeys: [String: Int] = [:]
        if !multi {
            for e in entries {
                for k in e.prompts.keys { promptKeys[k, default: 0] += e.prompts[k].isEmpty ? 0 : 1 }
            }
        }

        var sizes: DatasetCheckReport.SizeStats?
        if let best = sizeCounts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }) {
            sizes = .init(
                minWidth: widths.min()!, maxWidth: widths.max()!, minHeight: heights.min()!, maxHeight: heights.max()!,
                mostCommon: best.key, mostCommonCount: best.value, distinctSizes: sizeCounts.count)
        }
        var foreground: DatasetCheckReport.ForegroundStats?
        if !ratios.isEmpty {
            foreground = .init(
                mean: ratios.reduce(0, +) / Double(ratios.count), min: ratios.min()!, max: ratios.max()!,
                emptyMasks: ratios.filter { $0 == 0 }.count, fullMasks: ratios.filter { $0 == 1 }.count)
            if foreground!.emptyMasks > 0 {
                report.warnings.append("\(split): \(foreground!.emptyMasks) mask(s) with no foreground")
            }
            if let first = faintMasks.first {
                report.warnings.append(
                    "\(split): \(faintMasks.count) of the empty mask(s) hold nonzero values no larger than 127 "
                        + "(\(first.name): up to \(first.maximum)); foreground is a first-channel value above 127, as in "
                        + "medvlsm's 0/255 masks, so 0/1 label masks read as empty: rescale them to 0/255")
            }
        }
        report.problems += splitProblems
        report.splits.append(
            .init(
                split: split, file: annFile, entries: entries.count + index.problems.count,
                images: imageOrder.count, sizes: sizes, foreground: foreground, promptKeys: promptKeys,
                classes: multi ? classCounts : nil, problems: splitProblems.count))
    }
}
