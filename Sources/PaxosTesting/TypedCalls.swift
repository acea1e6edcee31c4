import Paxos
import PaxosCore
import PaxosWire

/// Typed calls and handlers over a ``PeerTransport``, for tests and tools that speak to a
/// transport directly (a replica's runtime encodes and decodes on its own).
extension PeerTransport {
    /// Sends `payload` on `channel` and waits for the reply's payload.
    public func exchange(_ payload: [UInt8], on channel: PeerChannel, to peer: NodeID) async throws -> [UInt8]
    {
        try await withCheckedThrowingContinuation { continuation in
            send(payload, on: channel, to: peer) { continuation.resume(with: $0) }
        }
    }

    /// A classic request and its decoded reply.
    public func call(_ request: RequestEnvelope, to peer: NodeID) async throws -> ReplyEnvelope {
        try PaxosWire.decodeReply(try await exchange(PaxosWire.encode(request), on: .classic, to: peer))
    }

    /// A replicated-log request and its decoded reply.
    public func call(_ request: LogRequestEnvelope, to peer: NodeID) async throws -> LogReplyEnvelope {
        try LogWire.decodeReply(try await exchange(LogWire.encode(request), on: .log, to: peer))
    }

    /// Answers classic requests with `handler` (a request that does not decode, or that speaks
    /// for another node than the connection's, is refused). Each request is answered in a task of
    /// its own: a test's handler may wait.
    public func serve(_ handler: @escaping @Sendable (RequestEnvelope) async -> ReplyEnvelope?) {
        serve(.classic) { from, payload, respond in
            guard let request = try? PaxosWire.decodeRequest(payload), request.from == from else {
                return respond(.refuse("malformed or forged request from node \(from)"))
            }
            Task { respond(await handler(request).map { .reply(PaxosWire.encode($0)) } ?? .none) }
        }
    }
}
