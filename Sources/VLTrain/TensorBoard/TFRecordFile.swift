import Foundation

/// TensorFlow's record framing, which TensorBoard's event files use: per record, the length as a
/// little-endian UInt64, a masked CRC-32C of those 8 bytes, the data, and a masked CRC-32C of the data.
/// Readers check both checksums, so a torn last record (a crash mid-write) is detected, not misread.
enum TFRecord {
    static func frame(_ data: Data) -> Data {
        var out = Data(capacity: data.count + 16)
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        out.append(lengthBytes)
        appendLittleEndian(CRC32C.masked(lengthBytes), to: &out)
        out.append(data)
        appendLittleEndian(CRC32C.masked(data), to: &out)
        return out
    }

    private static func appendLittleEndian(_ value: UInt32, to data: inout Data) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { data.append(contentsOf: $0) }
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, and TensorFlow's masking
/// (rotate right by 15, add 0xa282ead8), which keeps a CRC of data that holds CRCs well distributed.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for byte in data { crc = t[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }

    static func masked(_ data: Data) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
