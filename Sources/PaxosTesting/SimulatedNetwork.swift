import Paxos
import PaxosCore
import PaxosWire
import Synchronization

/// An in-process network that reproduces the 6.824 lab harness, for tests.
///
/// - Unreliable mode, per receiver: 10% of requests are dropped unprocessed; of the rest, 20% are
///   processed but lose their reply.
/// - Deafness: nobody can reach a deaf node; the node itself can still send.
/// - Partitions: symmetric groups; a call succeeds only between members of one group.
/// - Calls that cannot complete fail promptly, and the receiver counts the RPCs it accepted for
///   processing (the lab's `rpcCount`).
/// - A frame limit, as TCP has: a replicated-log message whose encoding is larger fails its
///   call (``setMaxLogMessageBytes(_:)``); the largest one sent is recorded either way.
///
/// Every request and reply is encoded with ``PaxosWire`` and decoded on the other side, so peers
/// never share a value by reference and the codec is exercised by every test.
public final class SimulatedNetwork: Sendable {
    public typealias Handler = @Sendable (RequestEnvelope) async -> ReplyEnvelope?
    /// Serves replicated-log requests.
    public typealias LogHandler = @Sendable (LogRequestEnvelope) async -> LogReplyEnvelope?

    private struct State {
        var handlers: [NodeID: Handler] = [:]
        var logHandlers: [NodeID: LogHandler] = [:]
        var unreliable: Set<NodeID> = []
        var deaf: Set<NodeID> = []
        /// `nil` means fully connected.
        var groups: [Set<NodeID>]?
        var rpcCounts: [NodeID: Int] = [:]
        var random: SplitMix64
        var maxLogMessageBytes: Int?
        var largestLogMessageBytes = 0
    }

    private let state: Mutex<State>

    public init(seed: UInt64 = 1) {
        state = Mutex(State(random: SplitMix64(seed: seed)))
    }

    /// The transport a peer with id `node` uses on this network.
    public func transport(for node: NodeID) -> SimulatedTransport {
        SimulatedTransport(network: self, node: node)
    }

    /// The lab's `setunreliable`: the receiver `node` drops requests and replies at random.
    public func setUnreliable(_ node: NodeID, _ unreliable: Bool) {
        state.withLock { state in
            if unreliable { state.unreliable.insert(node) } else { state.unreliable.remove(node) }
        }
    }

    /// Makes `node` unreachable by everybody (it can still send).
    public func setDeaf(_ node: NodeID, _ deaf: Bool) {
        state.withLock { state in
            if deaf { state.deaf.insert(node) } else { state.deaf.remove(node) }
        }
    }

    /// The lab's `part`: only nodes in the same group can talk; a node in no group is isolated.
    public func partition(_ groups: [[NodeID]]) {
        state.withLock { $0.groups = groups.map(Set.init) }
    }

    /// Removes every partition.
    public func heal() {
        state.withLock { $0.groups = nil }
    }

    /// Refuses replicated-log messages larger than `bytes` once encoded (nil: no limit).
    public func setMaxLogMessageBytes(_ bytes: Int?) {
        state.withLock { $0.maxLogMessageBytes = bytes }
    }

    /// The largest replicated-log message (request or reply) encoded so far, in bytes.
    public var largestLogMessageBytes: Int { state.withLock { $0.largestLogMessageBytes } }

    /// Records a log message's size; false when it is above the limit.
    private func fits(_ bytes: [UInt8]) -> Bool {
        state.withLock { state in
            state.largestLogMessageBytes = Swift.max(state.largestLogMessageBytes, bytes.count)
            return bytes.count <= (state.maxLogMessageBytes ?? Int.max)
        }
    }

    /// The RPCs `node` accepted for processing.
    public func rpcCount(_ node: NodeID) -> Int {
        state.withLock { $0.rpcCounts[node] ?? 0 }
    }

    /// The RPCs accepted by all nodes.
    public var totalRPCCount: Int {
        state.withLock { $0.rpcCounts.values.reduce(0, +) }
    }

    fileprivate func register(_ node: NodeID, _ handler: Handler?) {
        state.withLock { $0.handlers[node] = handler }
    }

    /// Decides the fate of one RPC from `from` to `to` under the current faults, and counts it at
    /// the receiver when it is accepted for processing. Returns nil when the request is lost
    /// (partition, deafness, unreliable drop, or `to` is not serving); otherwise whether its
    /// reply is to be lost.
    public func admit(from: NodeID, to: NodeID, requireServing: Bool = false) -> (
        dropReply: Bool, handler: Handler?
    )? {
        state.withLock { state -> (Bool, Handler?)? in
            let handler = state.handlers[to]
            if requireServing && handler == nil { return nil }
            guard let dropReply = Self.admit(from: from, to: to, &state) else { return nil }
            return (dropReply, handler)
        }
    }

    /// ``admit(from:to:requireServing:)`` for the replicated-log protocol.
    public func admitLog(from: NodeID, to: NodeID, requireServing: Bool = false) -> (
        dropReply: Bool, handler: LogHandler?
    )? {
        state.withLock { state -> (Bool, LogHandler?)? in
            let handler = state.logHandlers[to]
            if requireServing && handler == nil { return nil }
            guard let dropReply = Self.admit(from: from, to: to, &state) else { return nil }
            return (dropReply, handler)
        }
    }

    /// Whether a request from `from` reaches `to` (nil: dropped), and whether its reply is lost.
    private static func admit(from: NodeID, to: NodeID, _ state: inout State) -> Bool? {
        if state.deaf.contains(to) { return nil }
        if let groups = state.groups, !groups.contains(where: { $0.contains(from) && $0.contains(to) }) {
            return nil
        }
        var dropReply = false
        if state.unreliable.contains(to) {
            if UInt64.random(in: 0..<1000, using: &state.random) < 100 { return nil }
            dropReply = UInt64.random(in: 0..<1000, using: &state.random) < 200
        }
        state.rpcCounts[to, default: 0] += 1
        return dropReply
    }

    fileprivate func registerLog(_ node: NodeID, _ handler: LogHandler?) {
        state.withLock { $0.logHandlers[node] = handler }
    }

    fileprivate func call(_ request: LogRequestEnvelope, from: NodeID, to: NodeID) async throws
        -> LogReplyEnvelope
    {
        let requestBytes = LogWire.encode(request)
        guard fits(requestBytes) else {
            throw TransportError("a \(requestBytes.count)-byte message from \(from) is over the frame limit")
        }
        guard let (dropReply, handler) = admitLog(from: from, to: to, requireServing: true), let handler
        else {
            throw TransportError("\(from) cannot reach \(to)")
        }
        let delivered = try LogWire.decodeRequest(requestBytes)
        guard let reply = await handler(delivered) else {
            throw TransportError("\(to) did not answer")
        }
        let replyBytes = LogWire.encode(reply)
        guard fits(replyBytes) else {
            throw TransportError("a \(replyBytes.count)-byte reply from \(to) is over the frame limit")
        }
        if dropReply { throw TransportError("reply from \(to) lost") }
        return try LogWire.decodeReply(replyBytes)
    }

    fileprivate func call(_ request: RequestEnvelope, from: NodeID, to: NodeID) async throws -> ReplyEnvelope
    {
        let requestBytes = PaxosWire.encode(request)
        guard let (dropReply, handler) = admit(from: from, to: to, requireServing: true), let handler else {
            throw TransportError("\(from) cannot reach \(to)")
        }
        let delivered = try PaxosWire.decodeRequest(requestBytes)
        guard let reply = await handler(delivered) else {
            throw TransportError("\(to) did not answer")
        }
        let replyBytes = PaxosWire.encode(reply)
        if dropReply { throw TransportError("reply from \(to) lost") }
        return try PaxosWire.decodeReply(replyBytes)
    }
}

/// Puts the faults of a ``SimulatedNetwork`` (partitions, deafness, unreliable receivers, RPC
/// counts) in front of a real transport, so the lab scenarios also run over TCP.
public struct FaultInjectingTransport: PaxosTransport {
    public let inner: any PaxosTransport
    public let network: SimulatedNetwork
    public let node: NodeID

    public init(_ inner: any PaxosTransport, network: SimulatedNetwork, node: NodeID) {
        self.inner = inner
        self.network = network
        self.node = node
    }

    public func call(_ request: RequestEnvelope, to peer: NodeID) async throws -> ReplyEnvelope {
        guard let (dropReply, _) = network.admit(from: node, to: peer) else {
            throw TransportError("\(node) cannot reach \(peer)")
        }
        let reply = try await inner.call(request, to: peer)
        if dropReply { throw TransportError("reply from \(peer) lost") }
        return reply
    }

    public func serve(_ handler: @escaping @Sendable (RequestEnvelope) async -> ReplyEnvelope?) async {
        await inner.serve(handler)
    }

    public func shutdown() async { await inner.shutdown() }
}

/// One node's view of a ``SimulatedNetwork``.
public struct SimulatedTransport: PaxosTransport, LogTransport {
    let network: SimulatedNetwork
    public let node: NodeID

    public func call(_ request: RequestEnvelope, to peer: NodeID) async throws -> ReplyEnvelope {
        try await network.call(request, from: node, to: peer)
    }

    public func serve(_ handler: @escaping @Sendable (RequestEnvelope) async -> ReplyEnvelope?) async {
        network.register(node, handler)
    }

    public func shutdown() async {
        network.register(node, nil)
    }

    public func call(_ request: LogRequestEnvelope, to peer: NodeID) async throws -> LogReplyEnvelope {
        try await network.call(request, from: node, to: peer)
    }

    public func serveLog(_ handler: @escaping @Sendable (LogRequestEnvelope) async -> LogReplyEnvelope?) async
    {
        network.registerLog(node, handler)
    }

    public func stopServingLog() async {
        network.registerLog(node, nil)
    }
}
