import Foundation
import VLTestSupport
import XCTest

@testable import VLModels
@testable import VLTensor

final class SafeTensorsTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tmp)
    }

    /// A file from a raw header string and data bytes.
    func rawFile(header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) throws -> URL {
        var bytes = Data()
        let h = Data(header.utf8)
        withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(h)
        bytes.append(contentsOf: data)
        let url = tmp.appendingPathComponent("f-\(UUID().uuidString).safetensors")
        try bytes.write(to: url)
        return url
    }

    func testRoundTripBorrowsFloat32WithoutCopy() throws {
        var w = SafeTensorsWriter()
        let a = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        w.add("a", a)
        w.add("ids", int64: [49406, -1, 7], shape: [1, 3])
        w.add("d", float64: [0.1, 1e-300], shape: [2])
        w.metadata = ["format": "pt"]
        let url = tmp.appendingPathComponent("rt.safetensors")
        try w.write(to: url)

        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(f.names, ["a", "ids", "d"])
        XCTAssertEqual(f.metadata, ["format": "pt"])
        let t = try f.tensor("a")
        XCTAssertEqual(t.shape, [2, 3])
        XCTAssertEqual(t.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertTrue(t.isReadOnly, "float32 tensors must be borrowed from the read-only mapping")
        let ids = try f.integers("ids")
        XCTAssertEqual(ids.shape, [1, 3])
        XCTAssertEqual(ids.values, [49406, -1, 7])
        XCTAssertEqual(try f.doubles("d").values, [0.1, 1e-300])
        XCTAssertThrowsError(try f.tensor("ids")) { XCTAssertTrue("\($0)".contains("'ids'")) }
        XCTAssertThrowsError(try f.tensor("nope")) { XCTAssertEqual("\($0)", "\(url.path): no tensor named 'nope'") }
    }

    func testHalfAndBFloat16AreConverted() throws {
        // F16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, smallest subnormal 0x0001.
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001]
        // BF16: 1.0 = 0x3F80, -0.5 = 0xBF00.
        let bf16: [UInt16] = [0x3F80, 0xBF00]
        var data: [UInt8] = []
        for v in f16 + bf16 { data += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        let header =
            #"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}}"#
        let f = try SafeTensorsFile(url: try rawFile(header: header, data: data))
        XCTAssertEqual(try f.tensor("h").scalars, [1, -2, 65504, 0x1p-24])
        XCTAssertEqual(try f.tensor("b").scalars, [1, -0.5])
        XCTAssertFalse(try f.tensor("h").isReadOnly)
    }

    func testReadsTheFixtureCheckpoint() throws {
        let f = try SafeTensorsFile(url: Fixtures.url("clipseg-tiny/model.safetensors"))
        let w = try f.tensor("clip.vision_model.embeddings.patch_embedding.weight")
        XCTAssertEqual(w.shape, [48, 3, 16, 16])
        XCTAssertTrue(w.scalars.allSatisfy { $0.isFinite })
    }

    func testSpecificHeaderViolationsNameTheTensor() throws {
        let cases: [(String, [UInt8], String)] = [
            (#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], "needs 8 bytes"),
            (#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, [0, 0], "run past the data section"),
            (#"{"t":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}"#, [0], "unknown dtype 'Q8'"),
            (#"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], "negative dimension"),
            (#"{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], "non-integer dimension"),
            (#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, [0, 0, 0, 0], "reversed"),
            (#"{"t":{"dtype":"F32","shape":[1]}}"#, [0, 0, 0, 0], "data_offsets"),
            (#"{"t":{"shape":[1],"data_offsets":[0,4]}}"#, [0, 0, 0, 0], "missing dtype"),
            (#"{"t":"x"}"#, [], "not an object"),
            (
                #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                [UInt8](repeating: 0, count: 8), "overlaps"
            ),
        ]
        for (header, data, expected) in cases {
            let url = try rawFile(header: header, data: data)
            XCTAssertThrowsError(try SafeTensorsFile(url: url), header) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(expected), "\(header): \(text)")
                XCTAssertTrue(text.hasPrefix(url.path), text)
                XCTAssertFalse(text.contains("\n"), "one line: \(text)")
            }
        }
        XCTAssertThrowsError(try SafeTensorsFile(url: try rawFile(header: "{not json", data: []))) {
            XCTAssertTrue("\($0)".contains("not valid JSON"))
        }
        XCTAssertThrowsError(try SafeTensorsFile(url: try rawFile(header: "{}", lengthOverride: 1 << 40))) {
            XCTAssertTrue("\($0)".contains("exceeds the file"))
        }
        XCTAssertThrowsError(try SafeTensorsFile(path: tmp.appendingPathComponent("missing").path)) {
            XCTAssertTrue("\($0)".contains("cannot open"))
        }
    }

    /// Every truncation of a valid file and many random corruptions must throw, never crash.
    func testTruncatedAndRandomFilesNeverCrash() throws {
        var w = SafeTensorsWriter()
        w.add("x", Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6]))
        w.add("y", int64: [1, 2], shape: [2])
        let good = try w.serialized()
        for cut in 0..<good.count {
            let url = tmp.appendingPathComponent("cut.safetensors")
            try good.prefix(cut).write(to: url)
            XCTAssertThrowsError(try SafeTensorsFile(url: url), "truncated at \(cut) of \(good.count) bytes")
        }
        var rng = SplitMix64(seed: 2024)
        var accepted = 0
        for i in 0..<400 {
            var bytes = [UInt8](good)
            let flips = 1 + Int(rng.next() % 6)
            for _ in 0..<flips {
                let at = Int(rng.next() % UInt64(bytes.count))
                bytes[at] =
                    i % 3 == 0
                    ? UInt8(rng.next() & 0xFF)
                    : [UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "]"), 0][Int(rng.next() % 4)]
            }
            if i % 5 == 0 { bytes = (0..<Int(rng.next() % 200)).map { _ in UInt8(rng.next() & 0xFF) } }
            let url = tmp.appendingPathComponent("fuzz.safetensors")
            try Data(bytes).write(to: url)
            // Either a clean error, or a file whose every tensor can be read.
            if let f = try? SafeTensorsFile(url: url) {
                accepted += 1
                for name in f.names {
                    let e = try f.entry(name)
                    if e.dtype == .f32 || e.dtype == .f16 || e.dtype == .bf16 || e.dtype == .f64 {
                        XCTAssertEqual(try f.tensor(name).count, e.elementCount)
                    } else {
                        XCTAssertEqual(try f.integers(name).values.count, e.elementCount)
                    }
                }
            }
        }
        XCTAssertLessThan(accepted, 400)
    }
}
