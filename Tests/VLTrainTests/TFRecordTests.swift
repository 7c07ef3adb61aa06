import Foundation
import XCTest

@testable import VLTrain

/// The record framing of TensorBoard's event files: CRC-32C's published check value, TensorFlow's
/// mask, and the layout a reader walks.
final class TFRecordTests: XCTestCase {
    func testCRC32CCheckValueAndMask() {
        XCTAssertEqual(CRC32C.checksum(Data("123456789".utf8)), 0xE306_9283)  // the standard check value
        XCTAssertEqual(CRC32C.checksum(Data()), 0)
        let crc = CRC32C.checksum(Data("123456789".utf8))
        XCTAssertEqual(CRC32C.masked(Data("123456789".utf8)), ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }

    func testFrameLayout() {
        let payload = Data([1, 2, 3, 4, 5])
        let framed = TFRecord.frame(payload)
        XCTAssertEqual(framed.count, 8 + 4 + 5 + 4)
        let length = framed.prefix(8).enumerated().reduce(UInt64(0)) {
            $0 | UInt64($1.element) << (8 * UInt64($1.offset))
        }
        XCTAssertEqual(length, 5)
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(framed[at + $1]) << (8 * UInt32($1)) } }
        XCTAssertEqual(u32(8), CRC32C.masked(framed.prefix(8)))
        XCTAssertEqual(framed.subdata(in: 12..<17), payload)
        XCTAssertEqual(u32(17), CRC32C.masked(payload))
    }
}
