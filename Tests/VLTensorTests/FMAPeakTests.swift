import CVectorMath
import XCTest

@testable import VLTensor

/// The FMA-peak loop does the arithmetic it reports: the FLOP count it returns and its checksum
/// against the same 12 recurrences computed one lane at a time.
final class FMAPeakTests: XCTestCase {
    func testLoopCountsItsOperationsAndComputesEveryChain() {
        let lanes = FMAPeak.lanes
        XCTAssertTrue(lanes == 8 || lanes == 16, "lanes \(lanes)")
        for iterations in [0, 1, 7, 1000] {
            var checksum: Float = .nan
            let flops = vlseg_fma_loop(iterations, &checksum)
            XCTAssertEqual(flops, 2 * 12 * Double(lanes) * Double(iterations), "iterations \(iterations)")
            // Chain c, lane l starts at 0.05 + 0.001 l + offset c and repeats x = x * 0.9999999 + 1e-7.
            let offsets: [Float] = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2]
            var expected = 0.0
            for l in 0..<lanes {
                for offset in offsets {
                    var x = (Float(0.05) + 0.001 * Float(l)) + offset
                    for _ in 0..<iterations { x = Float(1e-7).addingProduct(x, Float(0.9999999)) }
                    expected += Double(x)
                }
            }
            XCTAssertEqual(Double(checksum), expected, accuracy: 1e-5 * expected, "iterations \(iterations)")
        }
    }

    func testPeakIsAFinitePositiveRate() {
        let one = FMAPeak.measure(threads: 1, minSeconds: 0.05)
        XCTAssertTrue(one.isFinite && one > 0.1, "one thread \(one) GFLOP/s")
    }
}
