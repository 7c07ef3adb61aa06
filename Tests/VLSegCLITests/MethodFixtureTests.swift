import Foundation
import VLModels
import VLTensor
import VLTestSupport
import XCTest

/// One reference case: a fixture directory under clipseg-tiny/methods and how to run it.
struct MethodFixtureCase {
    let fixture: String
    let tuning: String
    let options: [String]
}

enum MethodFixtureCases {
    static let baseline: [MethodFixtureCase] = [
        MethodFixtureCase(fixture: "decoder", tuning: "decoder", options: [])
    ]
    static var all: [MethodFixtureCase] { baseline + adapters + prompts }
}

/// Every implemented tuning method against the reference implementation's logits, loss and
/// gradients, through `vlseg forward --tuning NAME --trainable T --grads`.
final class MethodFixtureTests: XCTestCase {
    static var tiny: URL { get throws { try Fixtures.clipsegTiny() } }

    func inputsFile() throws -> URL {
        let ref = try SafeTensorsFile(url: Self.tiny.appendingPathComponent("reference.safetensors"))
        var w = SafeTensorsWriter()
        w.add("pixel_values", try ref.tensor("native.pixel_values").copy())
        w.add("target", try ref.tensor("native.target").copy())
        for key in ["input_ids", "attention_mask"] {
            let ints = try ref.integers(key)
            w.add(key, int64: ints.values, shape: ints.shape)
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vlseg-method-inputs-\(getpid()).safetensors")
        try w.write(to: url)
        return url
    }

    func check(_ c: MethodFixtureCase, inputs: URL) throws {
        let dir = try Self.tiny.appendingPathComponent("methods/\(c.fixture)")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vlseg-method-\(c.fixture)-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath,
            [
                "forward", "--model", Self.tiny.path, "--inputs", inputs.path, "--out", out.path, "--tuning", c.tuning,
                "--trainable", dir.appendingPathComponent("trainable.safetensors").path, "--grads",
            ] + c.options, timeout: 120)
        XCTAssertEqual(r.status, 0, "\(c.fixture): \(r.output)")
        guard r.status == 0 else { return }
        let got = try SafeTensorsFile(url: out),
            want = try SafeTensorsFile(url: dir.appendingPathComponent("reference.safetensors"))
        func maxDiff(_ a: Tensor, _ b: Tensor) -> Float { zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0 }
        let logits = try got.tensor("logits"), refLogits = try want.tensor("logits")
        XCTAssertEqual(logits.count, refLogits.count, c.fixture)
        XCTAssertLessThanOrEqual(maxDiff(logits, refLogits), 1e-4, "\(c.fixture): logits")
        XCTAssertLessThanOrEqual(maxDiff(try got.tensor("loss"), try want.tensor("loss")), 1e-5, "\(c.fixture): loss")
        let gradNames = want.names.filter { $0.hasPrefix("grad.") }
        XCTAssertFalse(gradNames.isEmpty)
        for name in gradNames {
            guard got.contains(name) else {
                XCTFail("\(c.fixture): no \(name)")
                continue
            }
            let g = try got.tensor(name), e = try want.tensor(name)
            let scale = e.scalars.map(abs).max() ?? 0
            XCTAssertLessThanOrEqual(maxDiff(g, e), max(1e-4 * scale, 1e-7), "\(c.fixture): \(name) (scale \(scale))")
        }
    }

    func testEveryImplementedMethodMatchesItsFixture() throws {
        let inputs = try inputsFile()
        defer { try? FileManager.default.removeItem(at: inputs) }
        for c in MethodFixtureCases.all { try check(c, inputs: inputs) }
    }
}
