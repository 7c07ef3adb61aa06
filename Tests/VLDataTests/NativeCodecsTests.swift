import XCTest

@testable import VLData

final class NativeCodecsTests: XCTestCase {
    func testLibpngVersionIsOneSix() {
        XCTAssertTrue(NativeCodecs.pngVersion.hasPrefix("1.6."), NativeCodecs.pngVersion)
    }

    func testTurboJPEGLoads() {
        XCTAssertTrue(NativeCodecs.turboJPEGAvailable)
    }
}
