import PaxosCore
import PaxosWire

/// How a replica reaches the other nodes: requests of both protocols, each on its
/// ``PeerChannel``, as encoded payloads. Two implementations: TCP, and the simulated network of
/// the tests.
///
/// Nothing here suspends or blocks, so a ``ReplicaRuntime`` calls it from its own executor and
/// hears back through callbacks, without a task per message.
public protocol PeerTransport: Sendable {
    /// Sends `payload` on `channel` to `peer`. `done` is called exactly once, from any thread,
    /// with the reply's payload or why there is none (unreachable, refused, declined, lost, timed
    /// out); promptly where the transport can tell.
    func send(
        _ payload: [UInt8], on channel: PeerChannel, to peer: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void)
    /// Hands every request on `channel` to `handler`, with the node the connection authenticated
    /// (nil removes the handler: requests get no answer). The handler answers exactly once,
    /// from any thread, through `respond`.
    func serve(_ channel: PeerChannel, with handler: PeerHandler?)
    /// The log's membership changed: dial its members at these addresses (`HOST:PORT`) and
    /// take their connections. A transport with fixed peers ignores it.
    func updateMembers(_ addresses: [NodeID: String]) async
    /// Stops serving and drops connections. Sends made afterwards fail.
    func shutdown() async
}

extension PeerTransport {
    public func updateMembers(_ addresses: [NodeID: String]) async {}
}

/// Serves one channel's requests: `from` is the authenticated sender.
public typealias PeerHandler =
    @Sendable (_ from: NodeID, _ payload: [UInt8], _ respond: @escaping @Sendable (PeerAnswer) -> Void) ->
    Void

/// A node's answer to one request.
public enum PeerAnswer: Sendable, Equatable {
    /// The reply's payload.
    case reply([UInt8])
    /// The node declines to answer (it stopped, or the request needs none): the call fails.
    case none
    /// The request is malformed or forged: the transport closes the connection it came on.
    case refuse(String)
}

/// The failure a transport reports when a call cannot complete.
public struct TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
