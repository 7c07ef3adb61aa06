import Foundation

/// The per-image scores file (`Inference.ImageScore.csvHeader` and one row per sample), as `vlseg
/// evaluate --per-image FILE` writes it and `vlseg report` keeps it in the run directory, read back.
public enum PerImageScores {
    /// The report's copy in the run directory, so a second report need not evaluate again.
    public static func fileName(split: String) -> String { "per-image-\(split).csv" }

    /// Reads `url`; any row that does not fit the header is an error naming the file and line.
    public static func read(_ url: URL) throws -> [Inference.ImageScore] {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ReportError.corrupt(path: url.path, reason: "cannot read: \(MetricsLog.reason(error))")
        }
        let rows = try parseCSV(text, path: url.path)
        guard let header = rows.first?.fields, header.joined(separator: ",") == Inference.ImageScore.csvHeader else {
            throw ReportError.corrupt(
                path: url.path,
                reason: "not a per-image scores file (its header is not \(Inference.ImageScore.csvHeader))")
        }
        return try rows.dropFirst().map { row in
            let f = row.fields
            func bad(_ what: String) -> ReportError {
                .corrupt(path: url.path, reason: "line \(row.line): \(what)")
            }
            guard f.count == header.count else { throw bad("\(f.count) fields, the header has \(header.count)") }
            guard let index = Int(f[0]) else { throw bad("index '\(f[0])' is not an integer") }
            func score(_ k: Int, optional: Bool) throws -> Double? {
                if f[k].isEmpty && optional { return nil }
                guard let v = Double(f[k]), v.isFinite else { throw bad("\(header[k]) '\(f[k])' is not a number") }
                return v
            }
            let cls: Int?
            if f[4].isEmpty {
                cls = nil
            } else {
                guard let c = Int(f[4]) else { throw bad("class '\(f[4])' is not an integer") }
                cls = c
            }
            return Inference.ImageScore(
                sampleIndex: index, image: f[1], mask: f[2], prompt: f[3], classID: cls,
                dice: try score(5, optional: false) ?? 0, iou: try score(6, optional: false) ?? 0,
                diceOriginal: try score(7, optional: true), iouOriginal: try score(8, optional: true))
        }
    }

    /// Writes the scores with the same header and rows as `evaluate --per-image` (atomically).
    public static func write(_ scores: [Inference.ImageScore], to url: URL) throws {
        let text = ([Inference.ImageScore.csvHeader] + scores.map(\.csvRow)).joined(separator: "\n") + "\n"
        do { try Data(text.utf8).write(to: url, options: .atomic) } catch {
            throw ReportError.cannotWrite(path: url.path, reason: MetricsLog.reason(error))
        }
    }

    /// RFC 4180: fields separated by commas, quoted when they hold a comma, quote or line break,
    /// a quote inside a quoted field doubled. Returns each record's fields and its first line number.
    static func parseCSV(_ text: String, path: String) throws -> [(fields: [String], line: Int)] {
        var records: [(fields: [String], line: Int)] = []
        var fields: [String] = []
        var field = ""
        var quoted = false, inQuotes = false
        var line = 1, recordLine = 1
        var chars = Array(text.unicodeScalars)[...]
        func endRecord() {
            fields.append(field)
            if !(fields.count == 1 && fields[0].isEmpty && !quoted) { records.append((fields, recordLine)) }
            fields = []
            field = ""
            quoted = false
        }
        while let c = chars.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if chars.first == "\"" {
                        chars.removeFirst()
                        field.unicodeScalars.append("\"")
                    } else {
                        inQuotes = false
                    }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"" where field.isEmpty && !quoted:
                inQuotes = true
                quoted = true
            case ",":
                fields.append(field)
                field = ""
                quoted = false
            case "\r":
                continue
            case "\n":
                endRecord()
                line += 1
                recordLine = line
            default:
                if quoted {
                    throw ReportError.corrupt(path: path, reason: "line \(line): text after a closing quote")
                }
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw ReportError.corrupt(path: path, reason: "line \(recordLine): unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty || quoted { endRecord() }
        return records
    }
}
