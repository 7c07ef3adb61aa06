import Foundation
import XCTest

/// `vlseg config show / validate / list`: the configs/ of this checkout, found from the executable.
final class ConfigCommandTests: XCTestCase {
    func vlseg(_ args: [String], environment: [String: String] = [:]) throws -> ProcessRunner.Result {
        try ProcessRunner.run(
            ProcessRunner.vlsegPath, args, environment: ProcessRunner.cleanEnvironment(environment), timeout: 60,
            currentDirectory: URL(fileURLWithPath: "/"))
    }

    func testShowPrintsTheResolvedConfig() throws {
        let r = try vlseg(["config", "show", "experiment=demo", "trainer.max_steps=3"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.hasPrefix("name: demo\n"), r.output)
        XCTAssertTrue(r.output.contains("  max_steps: 3\n"), r.output)
        XCTAssertTrue(r.output.contains("  preset: small\n"), r.output)
        let annotated = try vlseg(["config", "show", "--sources", "trainer.lr=0.01"])
        XCTAssertTrue(annotated.output.contains("lr: 0.01  # override 'trainer.lr=0.01'"), annotated.output)
        // An explicit --config-dir and the environment variable work too.
        let dir = ProcessRunner.repoRoot.appendingPathComponent("configs").path
        XCTAssertEqual(try vlseg(["config", "show", "--config-dir", dir]).status, 0)
        XCTAssertEqual(try vlseg(["config", "validate"], environment: ["VLSEG_CONFIG_DIR": dir]).status, 0)
    }

    func testValidateReportsOneLineErrors() throws {
        let ok = try vlseg(["config", "validate", "experiment=kvasir/vlsm_dense_vl"])
        XCTAssertEqual(ok.status, 0, ok.output)
        XCTAssertTrue(
            ok.output.contains("config OK: kvasir-vlsm_dense_vl: tuning vlsm_dense_vl (vlsm_dense)"), ok.output)
        XCTAssertTrue(ok.output.contains("config hash "), ok.output)

        for (args, expected) in [
            (["trainer.lrr=0.1"], "did you mean 'trainer.lr'?"),
            (["tuning=vlsm_dense_vll"], "did you mean 'vlsm_dense_vl'?"),
            (["trainer.max_epochs=many"], "trainer.max_epochs: expected an integer"),
        ] {
            let r = try vlseg(["config", "validate"] + args)
            XCTAssertEqual(r.status, 1, r.output)
            let lines = r.output.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.output)
            XCTAssertTrue(r.output.hasPrefix("vlseg: error: "), r.output)
            XCTAssertTrue(r.output.contains(expected), r.output)
        }
        let missing = try vlseg(["config", "validate", "--config-dir", "/nonexistent"])
        XCTAssertEqual(missing.status, 1, missing.output)
    }

    func testListShowsGroupsAndMethods() throws {
        let r = try vlseg(["config", "list"])
        XCTAssertEqual(r.status, 0, r.output)
        for text in [
            "tuning:", "kvasir/: ", "vlsm_dense_vl [vlsm_dense]", "coop: ", "lora: ",
            "; runs on CLIPSeg, CRIS; depth=1 n_ctx=4",
        ] {
            XCTAssertTrue(r.output.contains(text), "missing \(text):\n\(r.output)")
        }
        // The Markdown tables, as docs/methods.md embeds them (VLTrainTests checks the embedded block).
        let md = try vlseg(["config", "list", "--markdown"])
        XCTAssertEqual(md.status, 0, md.output)
        XCTAssertTrue(md.output.hasPrefix("| method | runs on |"), md.output)
        XCTAssertTrue(md.output.contains("| `n_ctx` | integer | 4 | >= 1 |"), md.output)
        // --help lists the methods.
        let help = try vlseg(["config", "--help"])
        XCTAssertTrue(help.output.contains("vlsm_dense_vl") && help.output.contains("shared_attention"), help.output)
    }

    /// n_ctx = 0 for CoOp: the config refuses it with the method's own reason (the registry refuses it alike).
    func testValidateRefusesAPromptMethodWithoutPromptTokens() throws {
        let r = try vlseg(["config", "validate", "tuning=coop", "tuning.n_ctx=0"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(
            r.output.contains("vlseg: error: override 'tuning.n_ctx=0': tuning.n_ctx: must be at least 1, found 0"),
            r.output)
        XCTAssertEqual(try vlseg(["config", "validate", "tuning=coop", "tuning.n_ctx=1"]).status, 0)
    }
}
