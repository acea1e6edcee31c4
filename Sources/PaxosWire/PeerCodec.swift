import PaxosCore

/// One protocol's messages as a replica's runtime sends and serves them: the channel its requests
/// travel on, and requests and replies to and from bytes.
public protocol PeerCodec {
    associatedtype RequestMessage: Sendable
    associatedtype ReplyMessage: Sendable
    static var channel: PeerChannel { get }
    static func encode(_ request: RequestMessage) -> [UInt8]
    static func encode(_ reply: ReplyMessage) -> [UInt8]
    /// Every problem is a ``WireError``, never a trap: the bytes come from a peer.
    static func decodeRequest(_ bytes: [UInt8], maxValueBytes: Int) throws(WireError) -> RequestMessage
    static func decodeReply(_ bytes: [UInt8], maxValueBytes: Int) throws(WireError) -> ReplyMessage
    /// The node a request says it is from (a peer may speak only as itself).
    static func sender(of request: RequestMessage) -> NodeID
}

extension PaxosWire: PeerCodec {
    public typealias RequestMessage = RequestEnvelope
    public typealias ReplyMessage = ReplyEnvelope
    public static var channel: PeerChannel { .classic }
    public static func sender(of request: RequestEnvelope) -> NodeID { request.from }
}

extension LogWire: PeerCodec {
    public typealias RequestMessage = LogRequestEnvelope
    public typealias ReplyMessage = LogReplyEnvelope
    public static var channel: PeerChannel { .log }
    public static func sender(of request: LogRequestEnvelope) -> NodeID { request.from }
}
