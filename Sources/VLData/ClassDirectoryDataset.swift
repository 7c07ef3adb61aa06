import Foundation

// MARK: - Binarised natural-image datasets (one folder of masks per class)
//
// TuneVLSeg trains and tests on natural-image datasets (Cityscapes, Pascal VOC) after turning each class of
// each image into its own binary mask. Its preparation scripts write:
//
//   ROOT/images/<split>/<stem>.<ext>                    the images (`training`, `validation`; PNG for
//                                                       Cityscapes, JPEG for Pascal VOC)
//   ROOT/annotations/<split>/<class name>/<stem>.png    0/255 masks, one folder per class
//
// and the prompt of a sample is the class name (the folder's name, e.g. "traffic light"). There are no
// annotation files: the folders are the index. VLSeg reads this layout as it is, so a dataset prepared for
// TuneVLSeg needs no conversion.

/// Where a class-directory dataset keeps its parts.
///
/// The image of mask `<class>/<stem>.png` is the file of `images/<split>/` with the same stem, whatever its
/// extension (TuneVLSeg configures `.png` for Cityscapes and `.jpg` for Pascal VOC; finding it by stem needs
/// no setting); with no such file the entry names `<stem>.png`, which the loader reports missing.
public struct ClassDirectoryLayout: Sendable, Equatable {
    public var imagesDirectory = "images"
    public var masksDirectory = "annotations"
    public var maskSuffix = ".png"

    public init(imagesDirectory: String = "images", masksDirectory: String = "annotations", maskSuffix: String = ".png")
    {
        self.imagesDirectory = imagesDirectory
        self.masksDirectory = masksDirectory
        self.maskSuffix = maskSuffix
    }
}

public enum ClassDirectoryDataset {
    /// The prompt key of every entry: its single prompt is the class name.
    public static let promptKey = "class"

    /// Whether `root` is in this layout: an `annotations/` folder and no medvlsm `anns/` folder.
    public static func matches(root: URL, layout: ClassDirectoryLayout = ClassDirectoryLayout()) -> Bool {
        isDirectory(root.appendingPathComponent(layout.masksDirectory))
            && !isDirectory(root.appendingPathComponent(DatasetLayout().annotationsDirectory))
    }

    /// The splits: the sub-folders of `annotations/`, sorted.
    public static func availableSplits(root: URL, layout: ClassDirectoryLayout = ClassDirectoryLayout()) -> [String] {
        subdirectories(of: root.appendingPathComponent(layout.masksDirectory))
    }

    /// The folder that plays the annotation file's part for `split` (errors and reports name it).
    public static func splitURL(root: URL, split: String, layout: ClassDirectoryLayout = ClassDirectoryLayout())
        -> URL
    {
        root.appendingPathComponent(layout.masksDirectory).appendingPathComponent(split)
    }

    /// The entries of one split, ordered by class name then mask name (the folder listing's order is not
    /// defined, and sample positions key the run's randomness, so the order must not depend on the file system).
    ///
    /// A split folder that is missing, or holds no class folder, is an error naming it. Images are not opened
    /// here; the loader (or `vlseg data check`) reports a missing or unreadable one with its entry.
    public static func load(
        root: URL, split: String, layout: ClassDirectoryLayout = ClassDirectoryLayout()
    ) throws -> DatasetIndex {
        let splitDir = splitURL(root: root, split: split, layout: layout)
        guard isDirectory(splitDir) else {
            throw DataError.missingFile(path: splitDir.path, role: "class folders of split '\(split)'", entry: nil)
        }
        let classes = subdirectories(of: splitDir)
        guard !classes.isEmpty else {
            throw DataError.layout(
                path: splitDir.path, detail: "no class folders (expected <class name>/*\(layout.maskSuffix))")
        }
        let imagesDir = root.appendingPathComponent(layout.imagesDirectory).appendingPathComponent(split)
        var imageByStem: [String: String] = [:]
        for name in files(in: imagesDir).sorted() {
            let stem = (name as NSString).deletingPathExtension
            if imageByStem[stem] == nil { imageByStem[stem] = name }
        }
        var entries: [DatasetEntry] = []
        for className in classes {
            let classDir = splitDir.appendingPathComponent(className)
            let masks = files(in: classDir).filter { $0.hasSuffix(layout.maskSuffix) }.sorted()
            for maskFile in masks {
                let stem = String(maskFile.dropLast(layout.maskSuffix.count))
                let imageName = imageByStem[stem] ?? stem + layout.maskSuffix
                let maskName = className + "/" + maskFile
                let reference = EntryReference(
                    file: splitDir.path, index: entries.count, imageName: imageName, maskName: maskName)
                entries.append(
                    DatasetEntry(
                        reference: reference, imageName: imageName, maskName: maskName,
                        imageURL: imagesDir.appendingPathComponent(imageName),
                        maskURL: classDir.appendingPathComponent(maskFile),
                        prompts: PromptSet([promptKey: [className]])))
            }
        }
        return DatasetIndex(
            root: root, split: split, layout: DatasetLayout(annotationsDirectory: layout.masksDirectory),
            annotationsURL: splitDir, entries: entries, problems: [])
    }

    static func isDirectory(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue
    }

    /// Visible sub-folders, sorted by name.
    static func subdirectories(of url: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return names.filter { !$0.hasPrefix(".") && isDirectory(url.appendingPathComponent($0)) }.sorted()
    }

    /// Visible regular files.
    static func files(in url: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return names.filter { !$0.hasPrefix(".") && !isDirectory(url.appendingPathComponent($0)) }
    }
}
