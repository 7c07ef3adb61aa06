import Foundation
import XCTest

@testable import VLTrain

/// docs/protocols.md against the configs: every row with a VLSeg key names a value, and every experiment
/// the row covers resolves that key to that value, so the table and the experiments cannot drift.
final class ProtocolsDocTests: XCTestCase {
    static let docURL = ProcessRunner.repoRoot.appendingPathComponent("docs/protocols.md")
    static let configDir = ProcessRunner.repoRoot.appendingPathComponent("configs")

    /// One checked row: its line, setting, key, expected value and the experiments it covers.
    struct Row {
        var line: Int
        var setting: String
        var key: String
        var value: String
        var experiments: [String]
    }

    /// The cells of a markdown table row (`| a | b |` -> ["a", "b"]), nil for other lines.
    static func cells(_ line: String) -> [String]? {
        let t = line.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("|"), t.hasSuffix("|"), t.count > 1 else { return nil }
        return t.dropFirst().dropLast().split(separator: "|", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
    }

    /// The backticked items of a cell (`` `a`, `b` `` -> ["a", "b"]).
    static func ticked(_ cell: String) -> [String] {
        cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().compactMap {
            $0.offset % 2 == 1 ? String($0.element) : nil
        }
    }

    /// `*` is any text within one path segment, `{a,b}` either alternative.
    static func regex(_ pattern: String) throws -> NSRegularExpression {
        var out = "^"
        var inBraces = false
        for ch in pattern {
            switch ch {
            case "*": out += "[^/]*"
            case "{": out += "(?:"; inBraces = true
            case "}": out += ")"; inBraces = false
            case "," where inBraces: out += "|"
            default: out += NSRegularExpression.escapedPattern(for: String(ch))
            }
        }
        return try NSRegularExpression(pattern: out + "$")
    }

    /// Every `<dataset>/<method>` experiment under configs/experiment.
    static func experiments() throws -> [String] {
        let root = configDir.appendingPathComponent("experiment")
        var names: [String] = []
        for dataset in try FileManager.default.contentsOfDirectory(atPath: root.path).sorted() {
            var isDir: ObjCBool = false
            let dir = root.appendingPathComponent(dataset)
            guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
                continue
            }
            for file in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            where file.hasSuffix(".yaml") {
                names.append("\(dataset)/\(file.dropLast(5))")
            }
        }
        return names
    }

    /// The sets table and the paper tables, parsed.
    static func parse(_ text: String, experiments: [String]) throws -> (rows: [Row], unchecked: Int) {
        var sets: [String: [String]] = [:]
        var rows: [Row] = []
        var unchecked = 0
        var header: [String]? = nil
        func expand(_ items: [String], line: Int) throws -> [String] {
            var out: [String] = []
            for item in items {
                if let members = sets[item] {
                    out += members
                    continue
                }
                let re = try regex(item)
                let matched = experiments.filter {
                    re.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil
                }
                XCTAssertFalse(matched.isEmpty, "docs/protocols.md:\(line): '\(item)' matches no experiment")
                out += matched
            }
            return out
        }
        for (index, line) in text.components(separatedBy: "\n").enumerated() {
            guard let c = cells(line) else {
                header = nil
                continue
            }
            if header == nil {
                header = c
                continue
            }
            if c.allSatisfy({ $0.allSatisfy { "-:".contains($0) } }) { continue }
            let n = index + 1
            switch header! {
            case ["set", "experiments"]:
                let name = ticked(c[0])
                XCTAssertEqual(name.count, 1, "docs/protocols.md:\(n): a set row names one set")
                sets[name[0]] = Array(Set(try expand(ticked(c[1]), line: n))).sorted()
            case ["setting", "upstream (file: key = value)", "VLSeg key", "VLSeg value", "experiments"]:
                XCTAssertEqual(c.count, 5, "docs/protocols.md:\(n): five cells")
                guard c.count == 5 else { continue }
                let covered = Array(Set(try expand(ticked(c[4]), line: n))).sorted()
                XCTAssertFalse(covered.isEmpty, "docs/protocols.md:\(n): no experiments")
                if c[2] == "—" {
                    unchecked += 1
                    continue
                }
                let key = ticked(c[2]), value = ticked(c[3])
                XCTAssertEqual(key.count, 1, "docs/protocols.md:\(n): one `key`")
                XCTAssertEqual(value.count, 1, "docs/protocols.md:\(n): one `value`")
                guard key.count == 1, value.count == 1 else { continue }
                rows.append(Row(line: n, setting: c[0], key: key[0], value: value[0], experiments: covered))
            default:
                XCTFail("docs/protocols.md:\(n): a table with unexpected columns \(header!)")
            }
        }
        return (rows, unchecked)
    }

    /// Values compare as numbers when both read as numbers, lists item by item, else as text.
    static func same(_ expected: String, _ actual: String) -> Bool {
        func items(_ s: String) -> [String]? {
            let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.hasPrefix("[") && t.hasSuffix("]") {
                return t.dropFirst().dropLast().split(separator: ",").map {
                    $0.trimmingCharacters(in: .whitespaces)
                }
            }
            let lines = t.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            if !lines.isEmpty, lines.allSatisfy({ $0.hasPrefix("- ") }) { return lines.map { String($0.dropFirst(2)) } }
            return nil
        }
        func scalar(_ a: String, _ b: String) -> Bool {
            let ua = a.trimmingCharacters(in: CharacterSet(charactersIn: "\"' \n"))
            let ub = b.trimmingCharacters(in: CharacterSet(charactersIn: "\"' \n"))
            if let x = Double(ua), let y = Double(ub) { return x == y || abs(x - y) <= 1e-12 * max(abs(x), abs(y)) }
            return ua == ub
        }
        if let e = items(expected), let a = items(actual) {
            return e.count == a.count && zip(e, a).allSatisfy { scalar($0, $1) }
        }
        return scalar(expected, actual)
    }

    func testEveryRowHoldsInEveryExperimentItNames() throws {
        let text = try String(contentsOf: Self.docURL, encoding: .utf8)
        let experiments = try Self.experiments()
        let (rows, unchecked) = try Self.parse(text, experiments: experiments)
        XCTAssertGreaterThan(rows.count, 60, "the tables parse into checked rows")
        let loader = ConfigLoader(configDir: Self.configDir, environment: ["HOME": "/home/tester"])
        var resolved: [String: ResolvedConfig] = [:]
        var checks = 0
        for row in rows {
            for experiment in row.experiments {
                if resolved[experiment] == nil {
                    resolved[experiment] = try loader.load(overrides: ["experiment=\(experiment)"])
                }
                let actual = resolved[experiment]!.text(at: row.key)
                XCTAssertNotNil(actual, "docs/protocols.md:\(row.line): no key \(row.key) in \(experiment)")
                if let actual {
                    XCTAssertTrue(
                        Self.same(row.value, actual),
                        "docs/protocols.md:\(row.line) (\(row.setting)): \(experiment) has \(row.key) = \(actual), the table says \(row.value)"
                    )
                }
                checks += 1
            }
        }
        // Every paper experiment is covered by the tables.
        let covered = Set(rows.flatMap(\.experiments))
        for experiment in experiments { XCTAssertTrue(covered.contains(experiment), "\(experiment) is in no row") }
        print(
            "docs/protocols.md: \(rows.count) checked rows, \(unchecked) without a VLSeg key; \(checks) (row, experiment) checks over \(resolved.count) experiments"
        )
    }

    /// The in-process resolution above is what `vlseg config show --key` prints.
    func testConfigShowKeyPrintsTheSameValue() throws {
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            ["config", "show", "--key", "trainer.early_stopping.monitor", "experiment=busi/coop"],
            environment: ProcessRunner.cleanEnvironment([:]), timeout: 60, currentDirectory: URL(fileURLWithPath: "/"))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output.trimmingCharacters(in: .whitespacesAndNewlines), "val_loss")
        let list = try ProcessRunner.run(
            ProcessRunner.vlsegPath, ["config", "show", "--key", "trainer.seeds", "experiment=kvasir/decoder"],
            environment: ProcessRunner.cleanEnvironment([:]), timeout: 60, currentDirectory: URL(fileURLWithPath: "/"))
        XCTAssertEqual(list.status, 0, list.output)
        XCTAssertEqual(list.output, "[41, 42, 43]\n")
    }

    /// The parser rejects what it must: a wrong value is reported with the row's line.
    func testAWrongValueIsCaught() throws {
        XCTAssertTrue(Self.same("1.0e-4", "0.0001"))
        XCTAssertTrue(Self.same("[41, 42, 43]", "- 41\n- 42\n- 43\n"))
        XCTAssertFalse(Self.same("[41, 42, 43]", "[41, 42]"))
        XCTAssertFalse(Self.same("val_loss", "val_dice"))
        XCTAssertFalse(Self.same("20", "200"))
        let table = """
            | set | experiments |
            |---|---|
            | `X` | `kvasir/coop` |

            | setting | upstream (file: key = value) | VLSeg key | VLSeg value | experiments |
            |---|---|---|---|---|
            | epochs | f: k = 1 | `trainer.max_epochs` | `7` | `X`, `busi/vpt` |
            | head | f: k = 1 | — | not implemented | `X` |
            """
        let (rows, unchecked) = try Self.parse(table, experiments: ["kvasir/coop", "busi/vpt", "busi/coop"])
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(unchecked, 1)
        XCTAssertEqual(rows[0].experiments, ["busi/vpt", "kvasir/coop"])
        XCTAssertEqual(rows[0].line, 7)
    }
}
