import Foundation
import VLTestSupport
import XCTest

/// The event files a training run writes, read back with TensorBoard's own reader (EventAccumulator):
/// every scalar of metrics.jsonl is there under its tag with its step and value, and a resumed run
/// adds a file that the reader merges.
final class TensorBoardTests: XCTestCase {
    static let work = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-tensorboard-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: work) }

    func train(_ run: URL, steps: Int, extra: [String] = []) throws -> ProcessRunner.Result {
        let args =
            [
                "train", "--config-dir", ProcessRunner.repoRoot.appendingPathComponent("configs").path,
                "data.name=demo", "data.root=\(Self.work.appendingPathComponent("data").path)", "data.demo.count=40",
                "data.demo.size=64", "model.path=\(Self.work.appendingPathComponent("model").path)",
                "model.preset=tiny",
                "model.image_size=64", "data.batch_size=4", "trainer.global_batch_size=0", "data.workers=1",
                "trainer.threads=2", "trainer.max_steps=\(steps)", "trainer.max_epochs=0", "trainer.log_every=2",
                "trainer.eval_every=3", "trainer.checkpoint_every=3", "run.dir=\(run.path)", "seed=5",
            ] + extra
        let r = try ProcessRunner.run(
            ProcessRunner.vlsegPath, args, environment: ProcessRunner.cleanEnvironment(), timeout: 180)
        XCTAssertEqual(r.status, 0, r.output)
        return r
    }

    /// Every scalar TensorBoard's reader finds: tag -> [(step, value)].
    func readBack(_ directory: URL) throws -> [String: [(step: Int, value: Double)]] {
        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
            acc.Reload()
            out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
            print(json.dumps(out))
            """
        let text = try PythonReference.run(script, arguments: [directory.path])
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: [[Double]]] ?? [:]
        return object.mapValues { $0.map { (Int($0[0]), $0[1]) } }
    }

    /// Every image TensorBoard's reader finds, decoded by Pillow: tag -> [[step, width, height]] (the
    /// size Pillow decodes; -1 when the stored size disagrees with the PNG).
    func readImages(_ directory: URL) throws -> [String: [[Int]]] {
        let script = """
            import io, json, sys
            from PIL import Image
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
            acc.Reload()
            out = {}
            for tag in acc.Tags()["images"]:
                rows = []
                for e in acc.Images(tag):
                    png = Image.open(io.BytesIO(e.encoded_image_string))
                    ok = png.size == (e.width, e.height) and png.mode == "RGB"
                    rows.append([e.step, png.size[0] if ok else -1, png.size[1] if ok else -1])
                out[tag] = rows
            print(json.dumps(out))
            """
        let text = try PythonReference.run(script, arguments: [directory.path])
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: [[Int]]] ?? [:]
    }

    /// metrics.jsonl's numbers as tag -> [(step, value)], named as the writer names them.
    func expected(_ run: URL) throws -> [String: [(step: Int, value: Double)]] {
        var out: [String: [(step: Int, value: Double)]] = [:]
        let lines = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(
            separator: "\n")
        for line in lines {
            guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let kind = record["kind"] as? String, let step = record["step"] as? Int
            else { continue }
            for (key, value) in record where !["kind", "step", "epoch", "seconds"].contains(key) {
                guard let number = value as? Double, number.isFinite else { continue }
                let name = key.hasPrefix(kind + "_") ? String(key.dropFirst(kind.count + 1)) : key
                out["\(kind)/\(name)", default: []].append((step, number))
            }
        }
        return out
    }

    func assertSame(
        _ got: [String: [(step: Int, value: Double)]], _ want: [String: [(step: Int, value: Double)]],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(Set(got.keys), Set(want.keys), file: file, line: line)
        for (tag, points) in want {
            let read = got[tag] ?? []
            XCTAssertEqual(read.map(\.step), points.map(\.step), tag, file: file, line: line)
            for (a, b) in zip(read, points) {
                // Stored as float32, as TensorBoard's simple_value is (and the JSON line prints the double
                // to 15-17 digits, so the two may round to neighbouring floats).
                XCTAssertEqual(
                    a.value, b.value, accuracy: 2.5e-7 * max(1, abs(b.value)), "\(tag) at \(b.step)", file: file,
                    line: line)
            }
        }
    }

    func testEveryLoggedScalarReadsBackWithItsStep() throws {
        let run = Self.work.appendingPathComponent("run")
        _ = try train(run, steps: 6)
        let events = run.appendingPathComponent("tensorboard")
        let files = try FileManager.default.contentsOfDirectory(atPath: events.path)
        XCTAssertEqual(files.count, 1, "\(files)")
        XCTAssertTrue(files.allSatisfy { $0.hasPrefix("events.out.tfevents.") }, "\(files)")
        let got = try readBack(events)
        for tag in [
            "train/loss", "train/lr", "train/images_per_s", "train/grad_norm", "val/loss", "val/dice", "val/iou",
        ] {
            XCTAssertNotNil(got[tag], "\(tag) missing: \(got.keys.sorted())")
        }
        XCTAssertEqual(got["train/loss"]?.map(\.step), [2, 4, 6])
        XCTAssertEqual(got["val/dice"]?.map(\.step), [3, 6])
        assertSame(got, try expected(run))
        // Four validation overlays per evaluation, at the demo images' own 64x64.
        let images = try readImages(events)
        XCTAssertEqual(images.count, 4, "\(images.keys.sorted())")
        XCTAssertTrue(images.keys.allSatisfy { $0.hasPrefix("val/overlay/") }, "\(images.keys.sorted())")
        for (tag, rows) in images { XCTAssertEqual(rows, [[3, 64, 64], [6, 64, 64]], tag) }

        // Resumed to step 9: a second file, merged by the reader, still equal to the metrics.
        _ = try train(run, steps: 9, extra: ["resume=auto"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: events.path).count, 2)
        let resumed = try readBack(events)
        XCTAssertEqual(resumed["val/dice"]?.map(\.step), [3, 6, 9])
        assertSame(resumed, try expected(run))

        // Off by config: no directory.
        let quiet = Self.work.appendingPathComponent("quiet")
        _ = try train(quiet, steps: 2, extra: ["run.tensorboard=false"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: quiet.appendingPathComponent("tensorboard").path))
    }
}
