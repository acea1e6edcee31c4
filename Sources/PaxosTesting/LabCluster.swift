import Paxos
import PaxosCore
import Synchronization

/// A test failure with the lab's wording.
public struct LabFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The 6.824 lab's harness: `npaxos` peers on a ``SimulatedNetwork``, with the lab's helpers
/// (`ndecided`, `waitn`, `waitmajority`, `checkmax`, `cleanup`). Peer `i` has node id `i`.
public final class LabCluster: Sendable {
    /// Creates the store of peer `i`.
    public typealias StoreFactory = @Sendable (Int) async throws -> any AcceptorStore

    public let network: SimulatedNetwork
    public let count: Int
    private let transports: [any PeerTransport]?
    private let seed: UInt64
    private let slots: Mutex<[PaxosPeer?]>
    private let stores: StoreShelf<any AcceptorStore>

    /// - Parameters:
    ///   - make: whether to create every peer now (the lab's `Make` for each); `false` leaves
    ///     them to ``make(_:)``.
    ///   - transports: real transports, one per peer, to use instead of the simulated network;
    ///     the network's faults are then injected in front of them.
    public init(
        _ count: Int, seed: UInt64 = 1, make: Bool = true,
        transports: [any PeerTransport]? = nil,
        stores: @escaping StoreFactory = { _ in InMemoryStore() }
    ) async throws {
        precondition(transports == nil || transports?.count == count, "one transport per peer")
        self.network = SimulatedNetwork(seed: seed)
        self.count = count
        self.transports = transports
        self.seed = seed
        self.slots = Mutex(Array(repeating: nil, count: count))
        self.stores = StoreShelf(stores)
        if make {
            for index in 0..<count { try await self.make(index) }
        }
    }

    /// Node ids of all peers.
    public var ids: [NodeID] { (0..<count).map { NodeID(UInt32($0)) } }

    /// The lab's `Make(pxh, i)`: creates (or re-creates, on the same store) peer `i`.
    /// `recover` is ``PaxosPeer/make(me:peers:store:transport:configuration:tickInterval:seed:recover:sleep:)``'s.
    @discardableResult
    public func make(_ index: Int, recover: Bool = false) async throws -> PaxosPeer {
        let store = try await stores.store(for: index)
        let id = NodeID(UInt32(index))
        let transport: any PeerTransport =
            transports.map { FaultInjectingTransport($0[index], network: network, node: id) }
            ?? network.transport(for: id)
        let peer = try await PaxosPeer.make(
            me: id, peers: ids, store: store, transport: transport,
            seed: seed &+ UInt64(index) &* 7919, recover: recover)
        slots.withLock { $0[index] = peer }
        return peer
    }

    /// Forgets the store of peer `i` (crash the peer first): the next ``make(_:recover:)`` asks
    /// the store factory again. With the factory's backing data wiped too (the default in-memory
    /// factory makes a new, empty store), this is a peer that lost its disk.
    public func dropStore(_ index: Int) {
        stores.remove(index)
    }

    /// Peer `i`, or nil when it was not made (or was dropped).
    public subscript(index: Int) -> PaxosPeer? { slots.withLock { $0[index] } }

    /// The store of peer `i`, if one was made.
    public func store(_ index: Int) -> (any AcceptorStore)? { stores[index] }

    /// Forgets peer `i` without shutting it down cleanly: it is killed and dropped, as a crash
    /// would; its store keeps whatever was committed.
    public func crash(_ index: Int) async {
        let peer = slots.withLock { slots -> PaxosPeer? in
            defer { slots[index] = nil }
            return slots[index]
        }
        await peer?.kill()
    }

    public func peers() -> [PaxosPeer?] { slots.withLock { $0 } }

    /// The lab's `ndecided`: how many peers decided `seq`; fails if two decided differently.
    public func ndecided(_ seq: Int) async throws -> Int {
        var count = 0
        var first: Value?
        for (index, peer) in peers().enumerated() {
            guard let peer else { continue }
            if case .decided(let value) = await peer.status(seq) {
                if let first, first != value {
                    throw LabFailure(
                        "decided values do not match; seq=\(seq) i=\(index) v=\(render(first)) v1=\(render(value))"
                    )
                }
                count += 1
                first = value
            }
        }
        return count
    }

    /// The lab's `waitn`: polls (10 ms doubling to 1 s, 30 times) until `wanted` peers decided.
    public func waitn(_ seq: Int, _ wanted: Int) async throws {
        var delay = Duration.milliseconds(10)
        for _ in 0..<30 {
            if try await ndecided(seq) >= wanted { break }
            try await Task.sleep(for: delay)
            if delay < .seconds(1) { delay *= 2 }
        }
        let decided = try await ndecided(seq)
        if decided < wanted {
            throw LabFailure("too few decided; seq=\(seq) ndecided=\(decided) wanted=\(wanted)")
        }
    }

    /// The lab's `waitmajority`.
    public func waitmajority(_ seq: Int) async throws {
        try await waitn(seq, count / 2 + 1)
    }

    /// The lab's `checkmax`: after 3 s, at most `max` peers decided `seq`.
    public func checkmax(_ seq: Int, _ max: Int) async throws {
        try await Task.sleep(for: .seconds(3))
        let decided = try await ndecided(seq)
        if decided > max {
            throw LabFailure("too many decided; seq=\(seq) ndecided=\(decided) max=\(max)")
        }
    }

    /// The lab's `part`, with peer indices.
    public func part(_ groups: [Int]...) {
        network.partition(groups.map { $0.map { NodeID(UInt32($0)) } })
    }

    /// The lab's `setunreliable` on every peer.
    public func setUnreliable(_ unreliable: Bool) {
        for id in ids { network.setUnreliable(id, unreliable) }
    }

    /// Polls until no peer has a proposer or announcer at work (the cluster is quiet), up to
    /// `timeout`; fails if it does not happen.
    public func waitQuiet(timeout: Duration = .seconds(30)) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            var busy = false
            for peer in peers() {
                if let peer, await peer.inspect({ $0.hasActiveWork }) { busy = true }
            }
            if !busy { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw LabFailure("peers still busy after \(timeout)")
    }

    /// The lab's `cleanup`: kills every peer.
    public func cleanup() async {
        for peer in peers() { await peer?.kill() }
        // Real transports of peers that were never made still listen.
        for transport in transports ?? [] { await transport.shutdown() }
    }

    private func render(_ value: Value) -> String {
        value.count <= 40 ? String(decoding: value, as: UTF8.self) : "<\(value.count) bytes>"
    }
}

extension Value {
    /// The bytes of a string, for lab values.
    public static func text(_ string: String) -> Value { Array(string.utf8) }
}
