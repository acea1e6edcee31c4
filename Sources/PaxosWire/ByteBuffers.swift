/// Appends big-endian integers and length-prefixed byte strings.
public struct ByteWriter {
    public var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func write(_ value: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    public mutating func write(_ value: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    public mutating func write(_ value: Int64) { write(UInt64(bitPattern: value)) }

    public mutating func writeBytes(_ value: [UInt8]) {
        write(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
}

/// Reads what ``ByteWriter`` wrote, with a bounds check on every read.
public struct ByteReader {
    public let bytes: [UInt8]
    public var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var remaining: Int { bytes.count - offset }

    public mutating func readUInt8(_ field: String) throws(WireError) -> UInt8 {
        guard remaining >= 1 else { throw truncated(field) }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readUInt32(_ field: String) throws(WireError) -> UInt32 {
        guard remaining >= 4 else { throw truncated(field) }
        var value: UInt32 = 0
        for index in offset..<offset + 4 { value = value << 8 | UInt32(bytes[index]) }
        offset += 4
        return value
    }

    public mutating func readUInt64(_ field: String) throws(WireError) -> UInt64 {
        guard remaining >= 8 else { throw truncated(field) }
        var value: UInt64 = 0
        for index in offset..<offset + 8 { value = value << 8 | UInt64(bytes[index]) }
        offset += 8
        return value
    }

    public mutating func readInt64(_ field: String) throws(WireError) -> Int64 {
        Int64(bitPattern: try readUInt64(field))
    }

    public mutating func readBytes(_ field: String, limit: Int) throws(WireError) -> [UInt8] {
        let count = Int(try readUInt32(field + " length"))
        guard count <= limit else {
            throw WireError(.valueTooLarge, "\(field) of \(count) bytes exceeds the limit of \(limit)")
        }
        guard remaining >= count else { throw truncated(field) }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    private func truncated(_ field: String) -> WireError {
        WireError(.truncated, "message ends before \(field) (offset \(offset) of \(bytes.count))")
    }
}
