import PaxosCore
import PaxosWire

/// One operation on the key-value store.
public enum KVOperation: Hashable, Sendable {
    case get(key: [UInt8])
    case put(key: [UInt8], value: [UInt8])
    case append(key: [UInt8], value: [UInt8])
    case delete(key: [UInt8])
    /// Sets `key` to `new` if its value is `expected` (`nil`: the key must be absent).
    case compareAndSet(key: [UInt8], expected: [UInt8]?, new: [UInt8])
    /// Opens a client session with the next sequential id; the output carries it. Kept so that
    /// log entries written before ``openSession(id:)`` replay the same way; the HTTP API no longer
    /// proposes it (sequential ids are guessable).
    case register
    /// Opens a client session under `id`, chosen at random by the node that proposed it (so every
    /// replica applies the same id). Refused with `sessionExists` when the id is taken.
    case openSession(id: UInt64)
    /// Appends `value` unless the result would be longer than `maxBytes`, then answers
    /// `tooLarge` and changes nothing. The limit travels in the command, so every replica decides
    /// alike whatever its own configuration.
    case appendWithin(key: [UInt8], value: [UInt8], maxBytes: UInt64)

    var code: UInt8 {
        switch self {
        case .get: 1
        case .put: 2
        case .append: 3
        case .delete: 4
        case .compareAndSet: 5
        case .register: 6
        case .openSession: 7
        case .appendWithin: 8
        }
    }

    /// Whether the operation leaves the store as it was (reads need no session record).
    public var isReadOnly: Bool {
        if case .get = self { return true }
        return false
    }
}

/// A client's request: the operation plus the client's session id and request number, which
/// make a retried request execute once (client 0 is "no session": executed every time it is
/// applied).
public struct KVCommand: Hashable, Sendable {
    public var client: UInt64
    public var request: UInt64
    public var operation: KVOperation

    public init(client: UInt64 = 0, request: UInt64 = 0, operation: KVOperation) {
        self.client = client
        self.request = request
        self.operation = operation
    }

    public static let version: UInt8 = 1

    public func encode() -> Value {
        var writer = ByteWriter(capacity: 32)
        writer.write(Self.version)
        writer.write(operation.code)
        writer.write(client)
        writer.write(request)
        switch operation {
        case .get(let key), .delete(let key):
            writer.writeBytes(key)
        case .put(let key, let value), .append(let key, let value):
            writer.writeBytes(key)
            writer.writeBytes(value)
        case .compareAndSet(let key, let expected, let new):
            writer.writeBytes(key)
            writer.write(UInt8(expected == nil ? 0 : 1))
            writer.writeBytes(expected ?? [])
            writer.writeBytes(new)
        case .register:
            break
        case .openSession(let id):
            writer.write(id)
        case .appendWithin(let key, let value, let maxBytes):
            writer.writeBytes(key)
            writer.writeBytes(value)
            writer.write(maxBytes)
        }
        return writer.bytes
    }

    /// A digest of the operation (not of the client or request number), kept with a session's
    /// cached answer so that a request number reused for another operation is refused instead of
    /// answered with the first one's result.
    ///
    /// FNV-1a over the encoded operation: deterministic on every replica and every run (Swift's
    /// `Hasher` is seeded per process). It need not resist forgery: only the session's owner
    /// knows its id, and a collision would only hand that owner its own earlier answer.
    public var fingerprint: UInt64 { Self.fingerprint(encoded: encode()) }

    /// ``fingerprint`` from an encoded command, without decoding it.
    public static func fingerprint(encoded bytes: Value) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        // Version and operation code, then everything after the client and request numbers.
        let header = 2 + 8 + 8
        for index in bytes.indices where index < 2 || index >= header { mix(bytes[index]) }
        return hash
    }

    public static func decode(_ bytes: Value) throws(WireError) -> KVCommand {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8("command version")
        guard version == Self.version else {
            throw WireError(.unsupportedVersion, "command version \(version) is not supported")
        }
        let code = try reader.readUInt8("operation")
        let client = try reader.readUInt64("client")
        let request = try reader.readUInt64("request")
        let limit = Int.max
        let operation: KVOperation
        switch code {
        case 1: operation = .get(key: try reader.readBytes("key", limit: limit))
        case 2:
            operation = .put(
                key: try reader.readBytes("key", limit: limit),
                value: try reader.readBytes("value", limit: limit))
        case 3:
            operation = .append(
                key: try reader.readBytes("key", limit: limit),
                value: try reader.readBytes("value", limit: limit))
        case 4: operation = .delete(key: try reader.readBytes("key", limit: limit))
        case 5:
            let key = try reader.readBytes("key", limit: limit)
            let hasExpected = try reader.readUInt8("has expected") == 1
            let expected = try reader.readBytes("expected", limit: limit)
            operation = .compareAndSet(
                key: key, expected: hasExpected ? expected : nil,
                new: try reader.readBytes("new", limit: limit))
        case 6: operation = .register
        case 7: operation = .openSession(id: try reader.readUInt64("session id"))
        case 8:
            operation = .appendWithin(
                key: try reader.readBytes("key", limit: limit),
                value: try reader.readBytes("value", limit: limit),
                maxBytes: try reader.readUInt64("max bytes"))
        default: throw WireError(.unknownMessageType, "unknown operation \(code)")
        }
        guard reader.remaining == 0 else { throw WireError(.trailingBytes, "bytes after the command") }
        return KVCommand(client: client, request: request, operation: operation)
    }
}

/// The outcome of a ``KVCommand``.
public struct KVResult: Hashable, Sendable {
    public enum Status: UInt8, Hashable, Sendable {
        /// Done. `value` is the key's value for get (and the new value after append), the
        /// client id for register and openSession.
        case ok = 0
        /// get or delete of an absent key.
        case notFound = 1
        /// compare-and-set found another value (in `value`, or absent) and changed nothing.
        case compareFailed = 2
        /// The client id is unknown: the session was never opened or was evicted. Nothing was done.
        case sessionExpired = 3
        /// The client already got the answer to a later request. Nothing was done.
        case staleRequest = 4
        /// The command could not be decoded. Nothing was done.
        case malformed = 5
        /// openSession named an id that is already a session. Nothing was done.
        case sessionExists = 6
        /// appendWithin would have made the value longer than its limit. Nothing was done.
        case tooLarge = 7
        /// The request number is the session's last one, but the operation is another: the
        /// cached answer belongs to a different request. Nothing was done.
        case requestMismatch = 8
    }

    public var status: Status
    public var value: [UInt8]?

    public init(_ status: Status, _ value: [UInt8]? = nil) {
        self.status = status
        self.value = value
    }

    public func encode() -> Value {
        var writer = ByteWriter(capacity: 8 + (value?.count ?? 0))
        writer.write(status.rawValue)
        writer.write(UInt8(value == nil ? 0 : 1))
        if let value { writer.writeBytes(value) }
        return writer.bytes
    }

    public static func decode(_ bytes: Value) throws(WireError) -> KVResult {
        var reader = ByteReader(bytes)
        guard let status = Status(rawValue: try reader.readUInt8("status")) else {
            throw WireError(.invalidField, "unknown result status")
        }
        let value =
            try reader.readUInt8("has value") == 1 ? try reader.readBytes("value", limit: Int.max) : nil
        return KVResult(status, value)
    }
}
