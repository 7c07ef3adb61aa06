import Foundation
import XCTest

@testable import VLTensor

/// The recording rules and the bookkeeping of the reverse-mode engine.
final class AutogradTests: XCTestCase {

    // MARK: - (1) Frozen-only computations record nothing

    func testFrozenOnlyOpsRecordNothing() {
        let x = Check.random([2, 3, 4], seed: 1)
        let w = Check.random([5, 4], seed: 2), b = Check.random([5], seed: 3)
        let lnW = Check.random([4], seed: 4), lnB = Check.random([4], seed: 5)
        let pos = Check.random([2, 3, 4], seed: 6, low: 0.5, high: 2)
        let mask = Tensor(shape: [2, 3], values: [1, 1, 0, 1, 1, 1])
        let t = Check.random([2, 3, 4], seed: 7, low: 0, high: 1)

        let results: [(String, Tensor)] = [
            ("linear", linear(x, weight: w, bias: b)),
            ("linear no bias", linear(x, weight: w)),
            ("matmul", matmul(x, x, transposeB: true)),
            ("matmul shared", matmul(x, w, transposeB: true)),
            ("attention", multiHeadAttention(query: x, key: x, value: x, heads: 2)),
            (
                "attention masked causal",
                multiHeadAttention(query: x, key: x, value: x, heads: 1, causal: true, keyMask: mask)
            ),
            ("layerNorm", layerNorm(x, weight: lnW, bias: lnB)),
            ("layerNorm plain", layerNorm(x, weight: nil, bias: nil)),
            ("softmax", x.softmax()),
            ("add", x + pos), ("sub", x - lnW), ("mul", x * pos), ("div", x / pos),
            ("scaled", x.scaled(2)), ("adding", x.adding(1)),
            ("relu", x.relu()), ("sigmoid", x.sigmoid()), ("tanh", x.tanh()),
            ("quickGELU", x.quickGELU()), ("gelu", x.gelu()), ("exp", x.exp()), ("log", pos.log()),
            ("square", x.square()),
            ("sum", x.sum()), ("sum axes", x.sum(axes: [1], keepDims: true)), ("mean", x.mean(axes: [0, 2])),
            ("reshape", x.reshaped([6, 4])), ("permute", x.permuted([2, 0, 1])), ("transpose", x.transposed(0, 1)),
            ("expand", lnW.expanded(to: [3, 4])), ("slice0", x.slice(axis: 0, 0..<1)),
            ("slice", x.slice(axis: 2, 1..<3)),
            ("indexSelect", w.indexSelect(rows: [0, 0, 3])), ("selectPerBatch", x.selectPerBatch([0, 2])),
            ("concat", concat([x, pos], axis: 1)),
            ("bce", binaryCrossEntropyWithLogits(x, target: t)), ("dice", softDiceLoss(x, target: t)),
            ("resize", x.resized(to: (5, 6), mode: .bilinear)), ("resize cubic", x.resized(to: (2, 2), mode: .bicubic)),
        ]
        for (name, r) in results {
            XCTAssertNil(r.node, "\(name) recorded a node for frozen inputs")
            XCTAssertFalse(r.requiresGrad, name)
        }
        // backward on an unrecorded tensor is a no-op.
        results[0].1.sum().backward()
        XCTAssertNil(w.grad)
    }

    func testAnyTrainableInputRecords() {
        let x = Check.random([2, 3, 4], seed: 8)
        let w = Check.random([5, 4], seed: 9)
        let bias = Check.random([5], seed: 10).requiringGrad(name: "bias")
        XCTAssertNotNil(linear(x, weight: w, bias: bias).node, "a trainable bias alone must record")
        let lnB = Check.random([4], seed: 11).requiringGrad()
        XCTAssertNotNil(layerNorm(x, weight: nil, bias: lnB).node)
        let v = x.requiringGrad()
        XCTAssertNotNil(multiHeadAttention(query: x, key: x, value: v, heads: 1).node)
        XCTAssertNotNil(concat([x, v], axis: 0).node)
        XCTAssertNotNil((x + v).node)
        XCTAssertTrue(v.node!.isLeaf)
        XCTAssertFalse((x * v).node!.isLeaf)
    }

    // MARK: - (2) Mixed graph: frozen prefix and release of saved state

    func testMixedGraphFrozenPrefixAndStateRelease() {
        // Frozen "backbone".
        let x = Check.random([2, 3, 4], seed: 20)
        let w0 = Check.random([6, 4], seed: 21), b0 = Check.random([6], seed: 22)
        let h0 = linear(x, weight: w0, bias: b0).gelu()
        let h1 = layerNorm(h0, weight: nil, bias: nil)
        XCTAssertNil(h0.node)
        XCTAssertNil(h1.node)

        // Trainable head.
        let w1 = Check.random([6, 6], seed: 23).requiringGrad(name: "w1")
        let lnW = Check.random([6], seed: 24, low: 0.5, high: 1.5).requiringGrad(name: "lnW")
        let a = linear(h1, weight: w1)
        let b = a.quickGELU()
        let c = layerNorm(b, weight: lnW, bias: nil)
        let d = multiHeadAttention(query: c, key: c, value: c, heads: 2, causal: true)
        let e = concat([d, h1], axis: 1).reshaped([2, -1]).softmax()
        let target = Check.random(e.shape, seed: 25)
        let loss = (e * target).sum(axes: [1]).mean()

        let interior: [(String, Tensor)] = [
            ("linear", a), ("quickGELU", b), ("layerNorm", c), ("attention", d),
            ("softmax", e), ("loss", loss),
        ]
        let nodes = interior.map { ($0.0, $0.1.node!) }
        for (name, n) in nodes {
            XCTAssertFalse(n.isLeaf, name)
            XCTAssertTrue(n.holdsSavedState, "\(name) should hold its backward before backward runs")
        }
        loss.backward()
        for (name, n) in nodes {
            XCTAssertFalse(n.holdsSavedState, "\(name) still holds saved state after backward")
        }
        XCTAssertFalse(w1.node!.holdsSavedState)
        XCTAssertEqual(w1.grad?.shape, [6, 6])
        XCTAssertEqual(lnW.grad?.shape, [6])
        XCTAssertNil(w0.grad)
        XCTAssertNil(b0.grad)
        XCTAssertNil(x.grad)

        // The recorded gradients are the right ones.
        let f: ([Tensor]) -> Tensor = { t in
            let c = layerNorm(linear(h1, weight: t[0]).quickGELU(), weight: t[1], bias: nil)
            let d = multiHeadAttention(query: c, key: c, value: c, heads: 2, causal: true)
            return concat([d, h1], axis: 1).reshaped([2, -1]).softmax()
        }
        Check.gradients([w1.detached(), lnW.detached()], f)
    }

    func testUnreachedInteriorNodeIsReleased() {
        // An op that blocks its gradient (returns nil) leaves its upstream node unreached.
        let p = Check.random([3], seed: 30).requiringGrad(name: "p")
        let q = Check.random([3], seed: 31).requiringGrad(name: "q")
        let sq = p.square()
        let blocked = Tensor.record(sq.detached(), inputs: [sq], name: "stop_gradient") { _, _ in [nil] }
        let loss = (blocked * q).sum()
        let sqNode = sq.node!, blockedNode = blocked.node!
        var ready: [String] = []
        loss.backward(onLeafReady: { ready.append($0.name) })
        XCTAssertFalse(sqNode.holdsSavedState)
        XCTAssertFalse(blockedNode.holdsSavedState)
        XCTAssertNil(p.grad, "nothing flows through the blocked op")
        Check.assertClose(q.grad!, sq.scalars, tolerance: 1e-7)
        XCTAssertEqual(ready.sorted(), ["p", "q"], "every leaf is reported ready, even one that got nothing")
    }

    // MARK: - (3) A leaf used several times accumulates every contribution

    func testLeafUsedTwiceAccumulates() {
        let xv: [Float] = [0.5, -1.5, 2.0]
        let x = Tensor(shape: [3], values: xv).requiringGrad()
        // y = x*x + 3x  ->  dy/dx = 2x + 3
        (x * x + x.scaled(3)).sum().backward()
        Check.assertClose(x.grad!, xv.map { 2 * $0 + 3 }, tolerance: 1e-6)

        // Through two separate branches that rejoin, plus a direct use.
        let y = Tensor(shape: [3], values: xv).requiringGrad()
        let branch1 = y.exp(), branch2 = y.square()
        ((branch1 * branch2) + y).sum().backward()
        let expected = xv.map { v -> Float in Float(Foundation.exp(Double(v)) * Double(v * v + 2 * v) + 1) }
        Check.assertClose(y.grad!, expected, tolerance: 1e-5)

        // The same interior tensor consumed twice.
        let z = Tensor(shape: [3], values: xv).requiringGrad()
        let s = z.sigmoid()
        (s * s).sum().backward()
        let expZ = xv.map { v -> Float in
            let sg = 1 / (1 + Foundation.exp(-Double(v)))
            return Float(2 * sg * sg * (1 - sg))
        }
        Check.assertClose(z.grad!, expZ, tolerance: 1e-6)
    }

    // MARK: - (4) GradMode.withoutGradients

    func testWithoutGradientsRecordsNothing() {
        let x = Check.random([2, 3, 4], seed: 40).requiringGrad()
        let w = Check.random([5, 4], seed: 41).requiringGrad()
        XCTAssertTrue(GradMode.isEnabled)
        let (y, inner) = GradMode.withoutGradients { () -> (Tensor, Tensor) in
            XCTAssertFalse(GradMode.isEnabled)
            let nested = GradMode.withoutGradients { (x * x).sum() }
            XCTAssertFalse(GradMode.isEnabled, "leaving a nested scope keeps recording off")
            let y = layerNorm(linear(x, weight: w).relu(), weight: nil, bias: nil)
            XCTAssertNil(multiHeadAttention(query: x, key: x, value: x, heads: 2).node)
            XCTAssertNil(x.softmax().node)
            XCTAssertNil(x.resized(to: (4, 4), mode: .bilinear).node)
            return (y, nested)
        }
        XCTAssertTrue(GradMode.isEnabled)
        XCTAssertNil(y.node)
        XCTAssertNil(inner.node)
        y.sum().backward()
        XCTAssertNil(x.grad)
        XCTAssertNil(w.grad)
        // Recording resumes afterwards; values agree with the recorded computation.
        let recorded = layerNorm(linear(x, weight: w).relu(), weight: nil, bias: nil)
        XCTAssertNotNil(recorded.node)
        XCTAssertEqual(recorded.scalars, y.scalars)
        // Leaves stay leaves inside the scope.
        GradMode.withoutGradients { XCTAssertTrue(x.requiresGrad) }
        // Errors propagate and the mode is restored.
        struct Boom: Error {}
        XCTAssertThrowsError(try GradMode.withoutGradients { () throws -> Int in throw Boom() })
        XCTAssertTrue(GradMode.isEnabled)
    }

    // MARK: - (5) Accumulation across passes and clearGradient

    func testGradientsAccumulateAcrossPassesAndClear() {
        let x = Check.random([4, 3], seed: 50)
        let w = Check.random([2, 3], seed: 51).requiringGrad(name: "w")
        func pass() { linear(x, weight: w).square().sum().backward() }
        pass()
        let first = w.grad!.scalars
        pass()
        Check.assertClose(w.grad!, first.map { 2 * $0 }, tolerance: 1e-5)
        pass()
        Check.assertClose(w.grad!, first.map { 3 * $0 }, tolerance: 1e-5)
        w.node!.clearGradient()
        XCTAssertNil(w.grad)
        pass()
        Check.assertClose(w.grad!, first, tolerance: 1e-6)
        // The stored gradient is a private copy: later passes do not alias an op's buffers.
        let snapshot = w.grad!
        XCTAssertTrue(snapshot.storage === w.grad!.storage)
        pass()
        Check.assertClose(snapshot, first.map { 2 * $0 }, tolerance: 1e-5)
    }

    func testLeafAsRootAndSeed() {
        let x = Check.random([2, 2], seed: 52).requiringGrad()
        x.backward()
        Check.assertClose(x.grad!, [1, 1, 1, 1], tolerance: 0)
        x.node!.clearGradient()
        let seed = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        x.square().backward(seed: seed)
        let xv = x.scalars
        Check.assertClose(x.grad!, (0..<4).map { 2 * xv[$0] * seed.scalars[$0] }, tolerance: 1e-6)
        // The seed itself is not modified or aliased by accumulation.
        x.backward(seed: seed)
        XCTAssertEqual(seed.scalars, [1, 2, 3, 4])
    }

    // MARK: - (6) Bound gradient buffers and onLeafReady

    func testBoundGradientAndLeafReady() {
        let arena = Tensor(zeros: [12])
        let buffer = arena.slice(axis: 0, 3..<9)  // a view at offset 3
        XCTAssertTrue(buffer.storage === arena.storage)

        let x = Check.random([4, 3], seed: 60)
        let w = Check.random([2, 3], seed: 61).requiringGrad(name: "w")
        let v = Check.random([2], seed: 62).requiringGrad(name: "v")
        w.node!.bindGradient(to: buffer)

        func forward() -> Tensor {
            // w is used twice (two consumers); v once.
            let h = linear(x, weight: w, bias: v)
            return (h.tanh() * linear(x, weight: w)).sum()
        }
        var calls: [String: Int] = [:]
        var atReady: [String: [Float]] = [:]
        forward().backward(onLeafReady: { node in
            calls[node.name, default: 0] += 1
            atReady[node.name] = node.leafGradient?.scalars
        })
        XCTAssertEqual(calls, ["w": 1, "v": 1], "onLeafReady fires exactly once per leaf")
        let g = w.grad!
        XCTAssertTrue(g.storage === arena.storage, "the gradient lives in the bound buffer")
        XCTAssertEqual(g.offset, 3)
        XCTAssertEqual(g.shape, [2, 3])
        XCTAssertEqual(atReady["w"], g.scalars, "the gradient is final when its leaf is reported ready")
        XCTAssertEqual(atReady["v"], v.grad!.scalars)
        let a = arena.scalars
        XCTAssertEqual(
            Array(a[0..<3]) + Array(a[9..<12]), [Float](repeating: 0, count: 6), "outside the slice untouched")
        XCTAssertEqual(Array(a[3..<9]), g.scalars)
        XCTAssertTrue(a[3..<9].contains { $0 != 0 })

        // The values are the true gradient.
        Check.gradients([w.detached()]) { t in
            (linear(x, weight: t[0], bias: v.detached()).tanh() * linear(x, weight: t[0])).sum()
        }
        let reference = w.detached().requiringGrad()
        (linear(x, weight: reference, bias: v.detached()).tanh() * linear(x, weight: reference)).sum().backward()
        Check.assertClose(g, reference.grad!.scalars, tolerance: 1e-6)

        // A second pass accumulates into the same buffer.
        let once = Array(a[3..<9])
        forward().backward()
        Check.assertClose(w.grad!, once.map { 2 * $0 }, tolerance: 1e-5)
        XCTAssertEqual(Array(arena.scalars[3..<9]), w.grad!.scalars)

        // clearGradient zeroes the bound buffer instead of dropping it.
        w.node!.clearGradient()
        XCTAssertNotNil(w.grad)
        XCTAssertEqual(arena.scalars, [Float](repeating: 0, count: 12))
        forward().backward()
        Check.assertClose(w.grad!, once, tolerance: 1e-6)
        XCTAssertTrue(w.grad!.storage === arena.storage)
    }

    func testBoundBufferAddsToExistingContents() {
        let buffer = Tensor(filling: 10, shape: [3])
        let w = Tensor(shape: [3], values: [1, 2, 3]).requiringGrad()
        w.node!.bindGradient(to: buffer)
        w.square().sum().backward()
        XCTAssertEqual(buffer.scalars, [12, 14, 16])
    }

    func testLeafReadyOrderFollowsBackward() {
        // The leaf nearest the loss is final first, before the deeper layer's backward runs.
        let x = Check.random([3, 4], seed: 70)
        let w1 = Check.random([5, 4], seed: 71).requiringGrad(name: "w1")
        let w2 = Check.random([2, 5], seed: 72).requiringGrad(name: "w2")
        var order: [String] = []
        linear(linear(x, weight: w1).relu(), weight: w2).sum().backward(onLeafReady: { order.append($0.name) })
        XCTAssertEqual(order, ["w2", "w1"])
    }

    // (7) Backward twice through the same graph is a precondition failure; it cannot be caught
    // in XCTest, so it is not exercised here.
}
