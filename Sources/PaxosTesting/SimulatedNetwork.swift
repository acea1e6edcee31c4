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
/// It carries encoded payloads, as TCP does: every request and reply is encoded by the sender's
/// runtime and decoded by the receiver's, so peers never share a value by reference and the
/// codecs are exercised by every test.
public final class SimulatedNetwork: Sendable {
    private struct Route: Hashable {
        var node: NodeID
        var channel: PeerChannel
    }

    private struct State {
        var handlers: [Route: PeerHandler] = [:]
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

    fileprivate func register(_ node: NodeID, _ channel: PeerChannel, _ handler: PeerHandler?) {
        state.withLock { $0.handlers[Route(node: node, channel: channel)] = handler }
    }

    fileprivate func unregister(_ node: NodeID) {
        state.withLock { state in
            for channel in PeerChannel.allCases { state.handlers[Route(node: node, channel: channel)] = nil }
        }
    }

    /// Decides the fate of one RPC from `from` to `to` under the current faults, and counts it at
    /// the receiver when it is accepted for processing. Returns nil when the request is lost
    /// (partition, deafness, unreliable drop, or `to` serves no handler on `channel` when
    /// `requireServing`); otherwise whether its reply is to be lost, and the handler.
    public func admit(
        from: NodeID, to: NodeID, channel: PeerChannel = .classic, requireServing: Bool = false
    ) -> (dropReply: Bool, handler: PeerHandler?)? {
        state.withLock { state -> (Bool, PeerHandler?)? in
            let handler = state.handlers[Route(node: to, channel: channel)]
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

    /// Carries one request to `to`'s handler and its answer back, at once, on the caller's
    /// thread (the receiving runtime queues it in its inbox). A replicated-log message over the
    /// frame limit fails, as TCP refuses it.
    fileprivate func send(
        _ payload: [UInt8], on channel: PeerChannel, from: NodeID, to: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
    ) {
        if channel == .log, !fits(payload) {
            return done(
                .failure(
                    TransportError("a \(payload.count)-byte message from \(from) is over the frame limit")))
        }
        guard let (dropReply, handler) = admit(from: from, to: to, channel: channel, requireServing: true),
            let handler
        else {
            return done(.failure(TransportError("\(from) cannot reach \(to)")))
        }
        handler(from, payload) { [self] answer in
            guard case .reply(let reply) = answer else {
                return done(.failure(TransportError("\(to) did not answer")))
            }
            if channel == .log, !fits(reply) {
                return done(
                    .failure(TransportError("a \(reply.count)-byte reply from \(to) is over the frame limit"))
                )
            }
            if dropReply { return done(.failure(TransportError("reply from \(to) lost"))) }
            done(.success(reply))
        }
    }
}

/// Puts the faults of a ``SimulatedNetwork`` (partitions, deafness, unreliable receivers, RPC
/// counts) in front of a real transport, so the lab scenarios also run over TCP.
public struct FaultInjectingTransport: PeerTransport {
    public let inner: any PeerTransport
    public let network: SimulatedNetwork
    public let node: NodeID

    public init(_ inner: any PeerTransport, network: SimulatedNetwork, node: NodeID) {
        self.inner = inner
        self.network = network
        self.node = node
    }

    public func send(
        _ payload: [UInt8], on channel: PeerChannel, to peer: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
    ) {
        guard let (dropReply, _) = network.admit(from: node, to: peer, channel: channel) else {
            return done(.failure(TransportError("\(node) cannot reach \(peer)")))
        }
        inner.send(payload, on: channel, to: peer) { result in
            if dropReply, case .success = result {
                return done(.failure(TransportError("reply from \(peer) lost")))
            }
            done(result)
        }
    }

    public func serve(_ channel: PeerChannel, with handler: PeerHandler?) {
        inner.serve(channel, with: handler)
    }

    public func updateMembers(_ addresses: [NodeID: String]) async { await inner.updateMembers(addresses) }

    public func shutdown() async { await inner.shutdown() }
}

/// One node's view of a ``SimulatedNetwork``.
public struct SimulatedTransport: PeerTransport {
    let network: SimulatedNetwork
    public let node: NodeID

    public func send(
        _ payload: [UInt8], on channel: PeerChannel, to peer: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
    ) {
        network.send(payload, on: channel, from: node, to: peer, done: done)
    }

    public func serve(_ channel: PeerChannel, with handler: PeerHandler?) {
        network.register(node, channel, handler)
    }

    public func shutdown() async { network.unregister(node) }
}
