import NIOCore
import PaxosWire
import Synchronization

/// Splits the byte stream into `length:u32 body` frames and decodes them. A frame above the
/// limit, or one that does not decode, is an error: the connection closes, the process does not.
public struct PeerFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = PeerFrame

    /// Read at every frame: the transport raises it once the peer is authenticated.
    public let limit: FrameLimit

    public init(limit: FrameLimit) { self.limit = limit }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws
        -> DecodingState
    {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
            return .needMoreData
        }
        let maxFrameBytes = limit.value
        guard Int(length) <= maxFrameBytes else {
            throw WireError(.valueTooLarge, "frame of \(length) bytes exceeds the limit of \(maxFrameBytes)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let body = buffer.readBytes(length: Int(length)) ?? []
        context.fireChannelRead(Self.wrapInboundOut(try PeerFrame.decodeBody(body)))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw WireError(
                .truncated, "connection closed in the middle of a frame (\(buffer.readableBytes) bytes)")
        }
        return .needMoreData
    }
}

/// Writes frames as `length:u32 body`.
public struct PeerFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = PeerFrame

    public init() {}

    public func encode(data: PeerFrame, out: inout ByteBuffer) throws {
        let body = data.encodeBody()
        out.writeInteger(UInt32(body.count))
        out.writeBytes(body)
    }
}

/// The largest frame a connection may receive; small until the peer is authenticated, so that an
/// unauthenticated connection cannot make this node hold a large buffer.
public final class FrameLimit: Sendable {
    private let bytes: Atomic<Int>
    public init(_ bytes: Int) { self.bytes = Atomic(bytes) }
    public var value: Int { bytes.load(ordering: .relaxed) }
    public func raise(to bytes: Int) { self.bytes.store(bytes, ordering: .relaxed) }
}
