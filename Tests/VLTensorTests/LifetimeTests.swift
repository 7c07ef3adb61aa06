import XCTest

@testable import VLTensor

/// Backward must not depend on tensors the caller dropped after the forward pass.
final class LifetimeTests: XCTestCase {
    func testAttentionKeepsItsMaskAliveForBackward() {
        let q = Check.random([2, 4, 12], seed: 1), k = Check.random([2, 4, 12], seed: 2),
            v = Check.random([2, 4, 12], seed: 3)
        func run(maskOwnedByCaller: Tensor?) -> [Float] {
            let leaf = q.requiringGrad()
            let out: Tensor
            if let m = maskOwnedByCaller {
                out = multiHeadAttention(query: leaf, key: k, value: v, heads: 3, causal: true, keyMask: m)
            } else {
                // The mask exists only inside this scope.
                out = multiHeadAttention(
                    query: leaf, key: k, value: v, heads: 3, causal: true,
                    keyMask: Tensor(shape: [2, 4], values: [1, 1, 1, 1, 1, 1, 1, 0]))
            }
            // Churn the allocator so freed memory is reused with other values.
            var junk: [Tensor] = []
            for i in 0..<64 { junk.append(Tensor(filling: Float(i) - 7, shape: [8])) }
            out.sum().backward()
            _ = junk
            return leaf.grad!.scalars
        }
        let kept = Tensor(shape: [2, 4], values: [1, 1, 1, 1, 1, 1, 1, 0])
        XCTAssertEqual(run(maskOwnedByCaller: nil), run(maskOwnedByCaller: kept))
    }
}
