import Foundation

/// A metrics file that could not be opened or appended to (disk full, permissions, a vanished
/// directory): the run stops with this, naming the file; the last checkpoint stays as it was.
public struct MetricsLogError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot write the metrics: \(reason)" }
}

/// `metrics.jsonl` and `metrics.csv` in the run directory (rank 0 only), appended and flushed per
/// record so a crash loses at most the line being written; with `tensorboard`, every number of a
/// record is also a TensorBoard scalar (`train/loss`, `val/dice`, ...) at the record's step.
public final class MetricsLog {
    /// Later columns are appended, so scripts reading the earlier ones by position keep working. `val_*`:
    /// validation (Dice/IoU per image, `_pooled` over the split); `test_*`: the test after training.
    public static let columns = [
        "kind", "step", "epoch", "loss", "lr", "images_per_s", "val_loss", "val_dice", "val_iou", "grad_norm",
        "seconds",
        "val_dice_pooled", "val_iou_pooled", "test_dice", "test_iou", "test_dice_pooled", "test_iou_pooled",
    ]
    let jsonl: FileHandle
    let csv: FileHandle
    let jsonlURL: URL
    let csvURL: URL
    /// The event file, when TensorBoard output is on.
    public let tensorboard: TensorBoardWriter?
    /// The csv's own columns: `columns`, or when resuming a file written with fewer, that file's header,
    /// so its rows keep lining up with it (the JSON lines carry every key either way).
    let csvColumns: [String]

    public init(runDirectory: URL, resuming: Bool, tensorboard: Bool = false) throws {
        let fm = FileManager.default
        func open(_ name: String, header: String?) throws -> (FileHandle, URL) {
            let url = runDirectory.appendingPathComponent(name)
            do {
                try fm.createDirectory(at: runDirectory, withIntermediateDirectories: true)
                if !resuming || !fm.fileExists(atPath: url.path) {
                    try (header.map { Data(($0 + "\n").utf8) } ?? Data()).write(to: url)
                }
                let h = try FileHandle(forWritingTo: url)
                try h.seekToEnd()
                return (h, url)
            } catch {
                throw MetricsLogError(path: url.path, reason: Self.reason(error))
            }
        }
        (jsonl, jsonlURL) = try open("metrics.jsonl", header: nil)
        (csv, csvURL) = try open("metrics.csv", header: Self.columns.joined(separator: ","))
        let existing =
            resuming
            ? (try? String(contentsOf: csvURL, encoding: .utf8))?.split(separator: "\n", maxSplits: 1).first : nil
        csvColumns =
            existing.map { $0.split(separator: ",").map(String.init) }.flatMap { $0.isEmpty ? nil : $0 } ?? Self.columns
        self.tensorboard = tensorboard ? try TensorBoardWriter(runDirectory: runDirectory) : nil
    }

    /// Keys that place a record rather than measure something.
    static let positionKeys: Set<String> = ["kind", "step", "epoch", "seconds"]

    /// A record's numbers as TensorBoard scalars: `<kind>/<key>`, a `val_` prefix dropped after `val/`.
    static func scalars(of record: [String: Any]) -> [(tag: String, value: Double)] {
        let kind = record["kind"] as? String ?? "metrics"
        return record.keys.sorted().compactMap { key in
            guard !positionKeys.contains(key) else { return nil }
            let value: Double
            switch record[key] {
            case let d as Double: value = d
            case let f as Float: value = Double(f)
            case let i as Int: value = Double(i)
            default: return nil
            }
            guard value.isFinite else { return nil }
            let name = key.hasPrefix(kind + "_") ? String(key.dropFirst(kind.count + 1)) : key
            return ("\(kind)/\(name)", value)
        }
    }

    /// Appends one record; keys outside `columns` go to the JSON line only.
    public func append(_ record: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        let row = csvColumns.map { key -> String in
            switch record[key] {
            case let d as Double: return String(format: "%.6g", d)
            case let f as Float: return String(format: "%.6g", Double(f))
            case let i as Int: return "\(i)"
            case let s as String: return s
            default: return ""
            }
        }
        try write(data + Data("\n".utf8), to: jsonl, url: jsonlURL)
        try write(Data((row.joined(separator: ",") + "\n").utf8), to: csv, url: csvURL)
        if let tensorboard, let step = record["step"] as? Int {
            try tensorboard.scalars(Self.scalars(of: record), step: step)
        }
    }

    private func write(_ data: Data, to handle: FileHandle, url: URL) throws {
        do { try handle.write(contentsOf: data) } catch {
            throw MetricsLogError(path: url.path, reason: Self.reason(error))
        }
    }

    /// The system's words for an I/O error ("No space left on device"), not Foundation's wrapper.
    public static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(posix.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return ns.localizedDescription
    }

    deinit {
        try? jsonl.close()
        try? csv.close()
    }
}
