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
            arena.gradients.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: g) }
            opt.update(arena, lr: Float(lr))
            for i in 0..<3 {
                p[i] *= 1 - lr * 0.1
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.99 * v[i] + 0.01 * Double(g[i]) * Double(g[i])
                let bc1 = 1 - pow(0.9, Double(t + 1)), bc2 = 1 - pow(0.99, Double(t + 1))
                p[i] -= lr / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + 1e-8)
            }
        }
        let values = arena.values.scalars
        for i in 0..<3 { XCTAssertEqual(Double(values[i]), p[i], accuracy: 1e-6) }
        XCTAssertEqual(opt.step, 2)
    }

    /// The vectorised update gives every element exactly the bits of the scalar formula, over an
    /// arena whose size is not a multiple of the vector width or of the parallel grain.
    func testVectorisedUpdateIsTheScalarFormulaBitForBit() {
        let count = 70_001
        var rng = SplitMix64(seed: 11)
        let values = (0..<count).map { _ in Float(rng.nextUnitFloat() * 2 - 1) }
        let (arena, _) = makeArena(values)
        var opt = AdamW(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05)
        var p = values, m = [Float](repeating: 0, count: count), v = m
        for step in 1...3 {
            let g = (0..<count).map { _ in Float(rng.nextUnitFloat() * 0.2 - 0.1) }
            arena.gradients.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: g) }
            let lr: Float = 1e-3
            opt.update(arena, lr: lr)
            let bc1 = 1 - pow(Double(Float(0.9)), Double(step)), bc2 = 1 - pow(Double(Float(0.999)), Double(step))
            let stepSize = Float(Double(lr) / bc1), bc2Sqrt = Float(bc2.squareRoot()), decay = 1 - lr * Float(0.05)
            for i in 0..<count {
                p[i] *= decay
                m[i] += (g[i] - m[i]) * (1 - Float(0.9))
                v[i] = v[i] * Float(0.999) + (1 - Float(0.999)) * g[i] * g[i]
                p[i] -= stepSize * (m[i] / (v[i].squareRoot() / bc2Sqrt + Float(1e-8)))
            }
            let got = arena.values.scalars
            let firstDifference = (0..<count).first { got[$0].bitPattern != p[$0].bitPattern }
            XCTAssertNil(firstDifference, "step \(step): element \(firstDifference ?? -1)")
        }
    }

    /// The norm over a large arena against a Double reference, the scaling exact, and the same bits
    /// with one thread as with several.
    func testClippingALargeArenaIsThreadCountIndependent() {
        let count = 100_003
        var rng = SplitMix64(seed: 12)
        let grads = (0..<count).map { _ in Float(rng.nextUnitFloat() * 2 - 1) }
        let reference = grads.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        var norms: [Float] = []
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        for threads in [1, 2, 3] {
            ComputeThreads.set(threads)
            let (arena, _) = makeArena([Float](repeating: 0, count: count))
            arena.gradients.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: grads) }
            let norm = clipGradientNorm(arena, maxNorm: 1)
            XCTAssertEqual(Double(norm), reference, accuracy: 1e-6 * reference)
            let coef = 1 / (norm + 1e-6)
            let scaled = arena.gradients.scalars
            XCTAssertNil((0..<count).first { scaled[$0] != grads[$0] * coef })
            norms.append(norm)
        }
        XCTAssertEqual(Set(norms.map(\.bitPattern)).count, 1, "norms \(norms)")
    }

    func testZeroWeightDecayMeansNoDecay() {
        let (arena, _) = makeArena([3])
        var opt = AdamW(weightDecay: 0)
        opt.update(arena, lr: 0.1)  // zero gradient: nothing may change
        XCTAssertEqual(arena.values.scalars[0], 3)
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
        arena.values.withUnsafeMutableBufferPointer { $0[0] = 10 }
        XCTAssertEqual(store["w"].scalars[0], 10)
        XCTAssertEqual(
            ParameterArena(store: ParameterStore.copy(of: store), names: ["w", "b"]).layoutHash, arena.layoutHash)
    }

    func testClipping() {
        let (arena, _) = makeArena([0, 0])
        arena.gradients.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: [3, 4]) }
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
        XCTAssertTrue(plateau.observe(validationLoss: 1.0))  // 2 bad > patience 1
        XCTAssertEqual(plateau.rate(at: 100), 0.3, accuracy: 1e-7)
        var stop = EarlyStopping(patience: 2, minDelta: 0.01)
        XCTAssertEqual(stop.observe(dice: 0.5).improved, true)
        XCTAssertEqual(stop.observe(dice: 0.505).shouldStop, false)
        XCTAssertEqual(stop.observe(dice: 0.5).shouldStop, true)
    }
}
