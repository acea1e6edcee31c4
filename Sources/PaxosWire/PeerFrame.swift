import PaxosCore

/// One frame of the TCP peer protocol. On the wire each frame is `length:u32 body`, with
/// `body = version:u8 kind:u8 fields`; `length` counts the body and is bounded by the receiver.
///
/// A connection opens with `hello` from the dialing node, naming the cluster, both node ids and
/// the address the dialer listens on; the listener answers `welcome`, or `refuse` with a reason
/// and closes (another cluster, an unknown node id, a node that is not the one dialed, or a
/// dialer whose address differs from the listener's configuration of it: two nodes whose peer
/// lists disagree must not talk, e.g. a stale process of an earlier cluster with the same id).
/// Then the dialer sends `request`s, each with an id and the ``PeerChannel`` (the protocol) it is
/// for, and the listener answers each with a `reply` (or `noReply` when the node declines to
/// answer) carrying the same id, in any order, so many RPCs of both protocols share one
/// connection.
public enum PeerFrame: Hashable, Sendable, CustomStringConvertible {
    case hello(clusterID: String, from: NodeID, to: NodeID, fromAddress: String)
    case welcome
    case refuse(reason: String)
    case request(id: UInt64, channel: PeerChannel = .classic, payload: [UInt8])
    case reply(id: UInt64, payload: [UInt8])
    case noReply(id: UInt64)

    /// The frame format version this build speaks (2: requests name their channel).
    public static let version: UInt8 = 2
    /// The default bound on one frame's body: the largest value plus room for the header.
    public static let defaultMaxFrameBytes = PaxosWire.defaultMaxValueBytes + 4096
    /// The longest cluster id accepted.
    public static let maxClusterIDBytes = 255
    /// The longest refusal reason sent; a longer one is cut.
    public static let maxReasonBytes = 1024

    /// The longest prefix of whole characters that fits in `limit` bytes of UTF-8. Cutting the
    /// bytes instead could end inside a character: the receiver would refuse a hello as not
    /// UTF-8, and a refusal decoded and sent on would change with every hop.
    static func utf8Prefix(_ text: String, _ limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for scalar in text.unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            guard bytes.count + encoded.count <= limit else { break }
            bytes += encoded
        }
        return bytes
    }

    enum Kind: UInt8 {
        case hello = 1
        case welcome = 2
        case refuse = 3
        case request = 4
        case reply = 5
        case noReply = 6
    }

    /// The frame's body (without the length prefix).
    public func encodeBody() -> [UInt8] {
        var writer = ByteWriter()
        writer.write(Self.version)
        switch self {
        case .hello(let clusterID, let from, let to, let fromAddress):
            writer.write(Kind.hello.rawValue)
            writer.writeBytes(Self.utf8Prefix(clusterID, Self.maxClusterIDBytes))
            writer.write(from.rawValue)
            writer.write(to.rawValue)
            writer.writeBytes(Self.utf8Prefix(fromAddress, Self.maxClusterIDBytes))
        case .welcome:
            writer.write(Kind.welcome.rawValue)
        case .refuse(let reason):
            writer.write(Kind.refuse.rawValue)
            writer.writeBytes(Self.utf8Prefix(reason, Self.maxReasonBytes))
        case .request(let id, let channel, let payload):
            writer.write(Kind.request.rawValue)
            writer.write(id)
            writer.write(channel.rawValue)
            writer.bytes.append(contentsOf: payload)
        case .reply(let id, let payload):
            writer.write(Kind.reply.rawValue)
            writer.write(id)
            writer.bytes.append(contentsOf: payload)
        case .noReply(let id):
            writer.write(Kind.noReply.rawValue)
            writer.write(id)
        }
        return writer.bytes
    }

    /// Decodes a frame's body; every problem is a ``WireError``, never a trap.
    public static func decodeBody(_ body: [UInt8]) throws(WireError) -> PeerFrame {
        var reader = ByteReader(body)
        let frameVersion = try reader.readUInt8("frame version")
        guard frameVersion == version else {
            throw WireError(
                .unsupportedVersion,
                "frame version \(frameVersion) is not supported (this build speaks \(version))")
        }
        let rawKind = try reader.readUInt8("frame kind")
        guard let kind = Kind(rawValue: rawKind) else {
            throw WireError(.unknownMessageType, "unknown frame kind \(rawKind)")
        }
        let frame: PeerFrame
        switch kind {
        case .hello:
            let cluster = try reader.readBytes("cluster id", limit: maxClusterIDBytes)
            guard let clusterID = String(validating: cluster, as: UTF8.self) else {
                throw WireError(.invalidField, "cluster id is not UTF-8")
            }
            let from = NodeID(try reader.readUInt32("sender id"))
            let to = NodeID(try reader.readUInt32("receiver id"))
            let address = try reader.readBytes("sender address", limit: maxClusterIDBytes)
            guard let fromAddress = String(validating: address, as: UTF8.self) else {
                throw WireError(.invalidField, "sender address is not UTF-8")
            }
            frame = .hello(clusterID: clusterID, from: from, to: to, fromAddress: fromAddress)
        case .welcome:
            frame = .welcome
        case .refuse:
            // Checked like the hello's texts: a lossy decoding would grow past the limit and be
            // cut when sent on, so the frame would not survive its own encoding.
            let reason = try reader.readBytes("reason", limit: maxReasonBytes)
            guard let text = String(validating: reason, as: UTF8.self) else {
                throw WireError(.invalidField, "refusal reason is not UTF-8")
            }
            frame = .refuse(reason: text)
        case .request:
            let id = try reader.readUInt64("request id")
            let rawChannel = try reader.readUInt8("channel")
            guard let channel = PeerChannel(rawValue: rawChannel) else {
                throw WireError(.invalidField, "unknown channel \(rawChannel)")
            }
            let payload = Array(body[reader.offset...])
            reader.offset = body.count
            frame = .request(id: id, channel: channel, payload: payload)
        case .reply:
            let id = try reader.readUInt64("request id")
            let payload = Array(body[reader.offset...])
            reader.offset = body.count
            frame = .reply(id: id, payload: payload)
        case .noReply:
            frame = .noReply(id: try reader.readUInt64("request id"))
        }
        guard reader.remaining == 0 else {
            throw WireError(.trailingBytes, "\(reader.remaining) unexpected bytes after a \(kind) frame")
        }
        return frame
    }

    public var description: String {
        switch self {
        case .hello(let clusterID, let from, let to, let fromAddress):
            "hello(cluster: \(clusterID), from: \(from) at \(fromAddress), to: \(to))"
        case .welcome: "welcome"
        case .refuse(let reason): "refuse(\(reason))"
        case .request(let id, let channel, let payload): "request(#\(id), \(channel), \(payload.count) bytes)"
        case .reply(let id, let payload): "reply(#\(id), \(payload.count) bytes)"
        case .noReply(let id): "noReply(#\(id))"
        }
    }
}

/// Which protocol a request is for: one connection carries both, told apart by this field of the
/// frame, never by looking into the payload.
public enum PeerChannel: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The classic, many-instance Paxos of the lab (``PaxosWire``).
    case classic = 1
    /// The replicated log (``LogWire``).
    case log = 2

    public var description: String {
        switch self {
        case .classic: "classic"
        case .log: "log"
        }
    }
}
