import Foundation

/// `metrics.jsonl` and `metrics.csv` in the run directory (rank 0 only), appended and flushed per
/// record so a crash loses at most the line being written.
public final class MetricsLog {
    public static let columns = ["kind", "step", "epoch", "loss", "lr", "images_per_s", "val_loss", "val_dice", "val_iou", "grad_norm", "seconds"]
    let jsonl: FileHandle?
    let csv: FileHandle?

    public init(runDirectory: URL, resuming: Bool) {
        let fm = FileManager.default
        try? fm.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        func open(_ name: String, header: String?) -> FileHandle? {
            let url = runDirectory.appendingPathComponent(name)
            if !resuming || !fm.fileExists(atPath: url.path) {
                _ = fm.createFile(atPath: url.path, contents: header.map { Data(($0 + "\n").utf8) } ?? Data())
            }
            let h = try? FileHandle(forWritingTo: url)
            _ = try? h?.seekToEnd()
            return h
        }
        jsonl = open("metrics.jsonl", header: nil)
        csv = open("metrics.csv", header: Self.columns.joined(separator: ","))
    }

    /// Appends one record; keys outside `columns` go to the JSON line only.
    public func append(_ record: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) {
            jsonl?.write(data + Data("\n".utf8))
        }
        let row = Self.columns.map { key -> String in
            switch record[key] {
            case let d as Double: return String(format: "%.6g", d)
            case let f as Float: return String(format: "%.6g", Double(f))
            case let i as Int: return "\(i)"
            case let s as String: return s
            default: return ""
            }
        }
        csv?.write(Data((row.joined(separator: ",") + "\n").utf8))
    }

    deinit {
        try? jsonl?.close()
        try? csv?.close()
    }
}
