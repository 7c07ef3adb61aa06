import XCTest

@testable import VLTensor

/// `vlseg bench step --profile`'s bookkeeping: every op's forward time goes to that op, recorded or
/// not, and backward time to the ops that have a backward.
final class OpProfileTests: XCTestCase {
    override func tearDown() {
        OpProfile.active = nil
        super.tearDown()
    }

    func testFrozenOpsKeepTheirForwardTime() {
        let profile = OpProfile()
        let x = Check.random([512, 512], seed: 1)
        let frozen = Check.random([512, 512], seed: 2)
        let bias = Check.random([4], seed: 3).requiringGrad()
        OpProfile.active = profile
        profile.startForward()
        let h = linear(x, weight: frozen)  // nothing requires a gradient: not recorded
        let y = (h.slice(axis: 1, 0..<4) + bias).sum()
        y.backward()
        OpProfile.active = nil

        let entries = profile.entries
        XCTAssertEqual(entries["linear"]?.forwardCalls, 1, "\(entries.keys.sorted())")
        XCTAssertEqual(entries["linear"]?.backwardCalls, 0)
        XCTAssertEqual(entries["add"]?.forwardCalls, 1)
        XCTAssertEqual(entries["add"]?.backwardCalls, 1)
        XCTAssertEqual(entries["sum"]?.backwardCalls, 1)
        // 268 MFLOP of frozen GEMM against an add of 2,048 elements: the GEMM's time is its own.
        let linearTime = entries["linear"]?.forwardSeconds ?? 0, addTime = entries["add"]?.forwardSeconds ?? 0
        XCTAssertGreaterThan(linearTime, 5 * addTime, "linear \(linearTime) s, add \(addTime) s")
    }

    func testOpsOutsideAProfileAreNotCounted() {
        let profile = OpProfile()
        _ = linear(Check.random([8, 8], seed: 4), weight: Check.random([8, 8], seed: 5))
        XCTAssertTrue(profile.entries.isEmpty)
    }
}
