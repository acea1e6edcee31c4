import PaxosCore

/// How a ``PaxosPeer`` reaches the other nodes. Two implementations: the simulated network of the
/// tests and TCP. Both pass every message through the wire codec.
public protocol PaxosTransport: Sendable {
    /// Sends `request` to `peer` and returns its reply. Throws, promptly where the transport can
    /// tell, when the peer is unreachable, refuses, or the reply is lost.
    func call(_ request: RequestEnvelope, to peer: NodeID) async throws -> ReplyEnvelope
    /// Installs the handler for requests addressed to this node. A `nil` reply means the node
    /// declines to answer (killed, or stopped after a failed commit); the caller sees a failure.
    func serve(_ handler: @escaping @Sendable (RequestEnvelope) async -> ReplyEnvelope?) async
    /// Stops serving and drops connections. Calls made afterwards fail.
    func shutdown() async
}

/// The failure a transport reports when a call cannot complete.
public struct TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
