import XCTest
@testable import VLModels
@testable import VLTensor
@testable import VLTrain

final class OptimizerTests: XCTestCase {
    func makeArena(_ values: [Float]) -> (ParameterArena, ParameterStore) {
        let store = ParameterStore()
        store.set("a", Tensor(shape: [values.count], values: values))
        return (ParameterArena(store: store, names: ["a"]), store)
    }

    /// Two AdamW steps computed by hand in Double with PyTorch's formula.
    func testAdamWMatchesReference() {
        let (arena, _) = makeArena([1, -2, 0.5])
        var opt = AdamW(beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        let grads: [[Float]] = [[0.5, -1, 2], [-0.25, 0.5, 1]]
        var p: [Double] = [1, -2, 0.5], m = [0.0, 0, 0], v = [0.0, 0, 0]
        let lr = 0.01
        for (t, g) in grads.enumerated() {
            arena.gradients.mutablePointer.update(from: g, count: 3)
            opt.update(arena, lr: Float(lr))
            for i in 0..<3 {
                p[i] *= 1 - lr * 0.1
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.99 * v[i] + 0.01 * Double(g[i]) * Double(g[i])
                let bc1 = 1 - pow(0.9, Double(t + 1)), bc2 = 1 - pow(0.99, Double(t + 1))
                p[i] -= lr / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + 1e-8)
            }
        }
        for i in 0..<3 { XCTAssertEqual(Double(arena.values.pointer[i]), p[i], accuracy: 1e-6) }
        XCTAssertEqual(opt.step, 2)
    }

    func testZeroWeightDecayMeansNoDecay() {
        let (arena, _) = makeArena([3])
        var opt = AdamW(weightDecay: 0)
        opt.update(arena, lr: 0.1)  // zero gradient: nothing may change
        XCTAssertEqual(arena.values.pointer[0], 3)
    }

    func testArenaBindsModelTensorsAndGradients() {
        let store = ParameterStore()
        store.set("w", Tensor(shape: [2, 2], values: [1, 2, 3, 4]))
        store.set("b", Tensor(shape: [2], values: [5, 6]))
        store.set("frozen", Tensor(shape: [2], values: [7, 8]))
        let arena = ParameterArena(store: store, names: ["w", "b"])
        XCTAssertEqual(arena.count, 6)
        XCTAssertEqual(arena.values.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertTrue(store["w"].requiresGrad && store["b"].requiresGrad && !store["frozen"].requiresGrad)
        let x = Tensor(shape: [1, 2], values: [1, 1])
        linear(x, weight: store["w"], bias: store["b"]).sum().backward()
        XCTAssertEqual(arena.gradients.scalars, [1, 1, 1, 1, 1, 1])
        // Updating the arena updates the model.
        arena.values.mutablePointer[0] = 10
        XCTAssertEqual(store["w"].scalars[0], 10)
        XCTAssertEqual(ParameterArena(store: ParameterStore.copy(of: store), names: ["w", "b"]).layoutHash, arena.layoutHash)
    }

    func testClipping() {
        let (arena, _) = makeArena([0, 0])
        arena.gradients.mutablePointer.update(from: [3, 4], count: 2)
        XCTAssertEqual(clipGradientNorm(arena, maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(arena.gradients.scalars[0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(arena.gradients.scalars[1], 0.8, accuracy: 1e-5)
    }

    func testSchedules() {
        let cosine = LearningRateSchedule(kind: .cosine, baseLR: 1, warmupSteps: 2, totalSteps: 12, minLR: 0)
        XCTAssertEqual(cosine.rate(at: 0), 0.5)
        XCTAssertEqual(cosine.rate(at: 1), 1)
        XCTAssertEqual(cosine.rate(at: 2), 1, accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(at: 7), 0.5, accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(at: 12), 0, accuracy: 1e-6)
        var plateau = LearningRateSchedule(kind: .plateau, baseLR: 1, factor: 0.3, patience: 1)
        XCTAssertFalse(plateau.observe(validationLoss: 1.0))
        XCTAssertFalse(plateau.observe(validationLoss: 1.0))  // 1 bad
        XCTAssertTrue(plateau.observe(validationLoss: 1.0))   // 2 bad > patience 1
        XCTAssertEqual(plateau.rate(at: 100), 0.3, accuracy: 1e-7)
        var stop = EarlyStopping(patience: 2, minDelta: 0.01)
        XCTAssertEqual(stop.observe(dice: 0.5).improved, true)
        XCTAssertEqual(stop.observe(dice: 0.505).shouldStop, false)
        XCTAssertEqual(stop.observe(dice: 0.5).shouldStop, true)
    }
}
