import NIOCore
import NIOSSL
import PaxosFrames
import PaxosWire

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
