import Foundation
import XCTest

@testable import VLModels
@testable import VLTensor
@testable import VLTrain

final class CheckpointTests: XCTestCase {
    var run: URL!

    override func setUpWithError() throws {
        run = FileManager.default.temporaryDirectory.appendingPathComponent("vlseg-ckpt-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: run) }

    func makeArena(seed: Float) -> ParameterArena {
        let store = ParameterStore()
        store.set("decoder.w", Tensor(shape: [2, 3], values: (0..<6).map { Float($0) + seed }))
        store.set("decoder.b", Tensor(shape: [3], values: [seed, -seed, 0.5]))
        let arena = ParameterArena(store: store, names: ["decoder.w", "decoder.b"])
        withTensorPointers(writing: arena.firstMoment, arena.secondMoment) { m, v in
            for i in 0..<arena.count {
                m[i] = Float(i) * 0.1 + seed
                v[i] = Float(i) * 0.01
            }
        }
        return arena
    }

    func state(step: Int) -> TrainerState {
        var s = TrainerState(
            optimizer: AdamW(weightDecay: 0.1), schedule: LearningRateSchedule(kind: .plateau, baseLR: 1e-3),
            earlyStopping: EarlyStopping(patience: 3), worldSize: 2, batchSize: 2, accumulate: 1,
            method: "decoder", configHash: "abc", layoutHash: "xyz")
        s.step = step
        s.epoch = 1
        s.samplesIntoEpoch = 12
        return s
    }

    func testSaveLoadRestoreRoundTrip() throws {
        let store = CheckpointStore(runDirectory: run)
        let arena = makeArena(seed: 1)
        let url = try store.save(
            arena: arena, state: state(step: 6), configYAML: "seed: 1\n", markBest: true, keepLast: 2)
        XCTAssertEqual(url.lastPathComponent, "step-0000006")
        XCTAssertEqual(store.pointer("latest"), "step-0000006")
        XCTAssertEqual(store.pointer("best"), "step-0000006")
        let loaded = try CheckpointStore.load(url)
        XCTAssertEqual(loaded.state.step, 6)
        XCTAssertEqual(loaded.state.samplesIntoEpoch, 12)
        XCTAssertEqual(loaded.configYAML, "seed: 1\n")
        let other = makeArena(seed: 5)
        try loaded.restore(into: other)
        XCTAssertEqual(other.values.scalars, arena.values.scalars)
        XCTAssertEqual(other.firstMoment.scalars, arena.firstMoment.scalars)
        XCTAssertEqual(other.secondMoment.scalars, arena.secondMoment.scalars)
        // trainable.safetensors alone holds the tensors under the model's own names.
        let t = try SafeTensorsFile(url: url.appendingPathComponent("trainable.safetensors"))
        XCTAssertEqual(Set(t.names), ["decoder.w", "decoder.b"])
        XCTAssertFalse(
            FileManager.default.fileExists(
                atPath: store.directory.appendingPathComponent(".tmp-step-0000006-\(getpid())").path))
    }

    func testCorruptAndPartialCheckpointsAreSkippedByAutoAndRefusedByPath() throws {
        let store = CheckpointStore(runDirectory: run)
        let arena = makeArena(seed: 1)
        try store.save(arena: arena, state: state(step: 3), configYAML: "", markBest: false, keepLast: 5)
        let newest = try store.save(arena: arena, state: state(step: 6), configYAML: "", markBest: false, keepLast: 5)
        // Corrupt one byte of the newest trainable file.
        let file = newest.appendingPathComponent("trainable.safetensors")
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: file)
        XCTAssertThrowsError(try CheckpointStore.load(newest)) { XCTAssertTrue("\($0)".contains("corrupt"), "\($0)") }
        var warnings: [String] = []
        let chosen = try store.resumable { warnings.append($0) }
        XCTAssertEqual(chosen?.state.step, 3)
        XCTAssertEqual(warnings.count, 1)
        // A truncated one (a crash mid-write never has a final name, but a damaged disk might).
        let t3 = store.directory.appendingPathComponent("step-0000003/optimizer.safetensors")
        try Data(try Data(contentsOf: t3).prefix(10)).write(to: t3)
        // Checkpoints exist, none valid: an error naming each, never a silent restart from step 0.
        XCTAssertThrowsError(try store.resumable { _ in }) {
            XCTAssertTrue("\($0)".contains("2 checkpoint(s), none valid"), "\($0)")
            XCTAssertTrue("\($0)".contains("step-0000003") && "\($0)".contains("step-0000006"), "\($0)")
        }
        // No checkpoints at all: nothing to resume, not an error.
        XCTAssertNil(try CheckpointStore(runDirectory: run.appendingPathComponent("fresh")).resumable { _ in })
        XCTAssertThrowsError(try CheckpointStore.load(store.directory.appendingPathComponent("step-0000099"))) {
            XCTAssertTrue("\($0)".contains("no such checkpoint"))
        }
    }

    /// `latest` wins over a newer-named step (e.g. one left by a run that was stopped before moving it).
    func testResumableFollowsLatestThenNewest() throws {
        let store = CheckpointStore(runDirectory: run)
        let arena = makeArena(seed: 1)
        try store.save(arena: arena, state: state(step: 3), configYAML: "", markBest: false, keepLast: 5)
        try store.save(arena: arena, state: state(step: 6), configYAML: "", markBest: false, keepLast: 5)
        try store.movePointer("latest", to: CheckpointStore.name(forStep: 3))
        XCTAssertEqual(try store.resumable { _ in }?.state.step, 3)
        try FileManager.default.removeItem(at: store.directory.appendingPathComponent("step-0000003/trainer.json"))
        var warnings: [String] = []
        XCTAssertEqual(try store.resumable { warnings.append($0) }?.state.step, 6)
        XCTAssertEqual(warnings.count, 1)
    }

    func testPruneKeepsLastAndBest() throws {
        let store = CheckpointStore(runDirectory: run)
        let arena = makeArena(seed: 0)
        try store.save(arena: arena, state: state(step: 1), configYAML: "", markBest: true, keepLast: 2)
        for step in 2...5 {
            try store.save(arena: arena, state: state(step: step), configYAML: "", markBest: false, keepLast: 2)
        }
        XCTAssertEqual(
            store.stepDirectories().map(\.lastPathComponent), ["step-0000005", "step-0000004", "step-0000001"])
        XCTAssertEqual(store.pointer("latest"), "step-0000005")
    }

    func testRestoreRefusesADifferentLayout() throws {
        let store = CheckpointStore(runDirectory: run)
        let url = try store.save(
            arena: makeArena(seed: 0), state: state(step: 1), configYAML: "", markBest: false, keepLast: 1)
        let other = ParameterStore()
        other.set("decoder.w", Tensor(zeros: [3, 2]))
        let arena = ParameterArena(store: other, names: ["decoder.w"])
        XCTAssertThrowsError(try CheckpointStore.load(url).restore(into: arena)) {
            XCTAssertTrue("\($0)".contains("shape"), "\($0)")
        }
    }
}
