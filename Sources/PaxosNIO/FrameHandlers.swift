import NIOCore
import NIOSSL
import PaxosWire

/// Splits the byte stream into `length:u32 body` frames and decodes them. A frame above the
/// limit, or one that does not decode, is an error: the connection closes, the process does not.
struct PeerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerFrame

    /// Read at every frame: the transport raises it once the peer is authenticated.
    let limit: FrameLimit

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
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

    mutating func decodeLast(
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
struct PeerFrameEncoder: MessageToByteEncoder {
    typealias OutboundIn = PeerFrame

    func encode(data: PeerFrame, out: inout ByteBuffer) throws {
        let body = data.encodeBody()
        out.writeInteger(UInt32(body.count))
        out.writeBytes(body)
    }
}

extension Channel {
    /// Installs TLS (when given), the frame codec, and wraps the channel for async use.
    func makePeerFrameChannel(
        limit: FrameLimit, tls: (@Sendable () throws -> NIOSSLHandler)? = nil
    ) -> EventLoopFuture<NIOAsyncChannel<PeerFrame, PeerFrame>> {
        eventLoop.makeCompletedFuture {
            if let tls { try pipeline.syncOperations.addHandler(try tls()) }
            try pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder(limit: limit)))
            try pipeline.syncOperations.addHandler(MessageToByteHandler(PeerFrameEncoder()))
            return try NIOAsyncChannel<PeerFrame, PeerFrame>(wrappingChannelSynchronously: self)
        }
    }
}
