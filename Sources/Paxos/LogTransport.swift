import PaxosCore

/// How replicas of the log exchange messages: RPCs of ``LogRequestEnvelope`` and
/// ``LogReplyEnvelope``. The TCP transport and the simulated network implement it beside
/// ``PaxosTransport``.
public protocol LogTransport: Sendable {
    /// Sends `request` to `peer` and returns its reply; throws when the peer cannot be reached,
    /// refuses, or the reply is lost.
    func call(_ request: LogRequestEnvelope, to peer: NodeID) async throws -> LogReplyEnvelope
    /// Installs the handler for log requests addressed to this node. A `nil` reply means the
    /// node declines to answer.
    func serveLog(_ handler: @escaping @Sendable (LogRequestEnvelope) async -> LogReplyEnvelope?) async
    /// Stops serving log requests.
    func stopServingLog() async
    /// The log's membership changed: dial its members at these addresses (`HOST:PORT`) and
    /// take their connections.
    func updateMembers(_ addresses: [NodeID: String]) async
}

extension LogTransport {
    /// The log's membership changed: dial its members at these addresses (`HOST:PORT`) and
    /// take their connections. A transport with fixed peers ignores it.
    public func updateMembers(_ addresses: [NodeID: String]) async {}
}
