import Paxos
import PaxosCore
import PaxosKV
import Synchronization

/// A key-value cluster for tests: `count` replicas of the log on a ``SimulatedNetwork``, each
/// with its own store that outlives it, so a replica can be killed and restarted.
public final class KVCluster: Sendable {
    public typealias StoreFactory = @Sendable (Int) async throws -> any LogStore

    public let network: SimulatedNetwork
    public let count: Int
    public let configuration: LogConfiguration
    private let makeMetrics: @Sendable (Int) -> LogMetrics
    private let slots: Mutex<[LogPeer<KVStateMachine>?]>
    private let stores: StoreShelf<any LogStore>
    private let restarts = Mutex(0)

    /// - Parameter leaseReads: leader-lease reads on (``LogConfiguration/leaseTicks`` at its
    ///   most), checked against the clock the replicas' ticks sleep on.
    public init(
        _ count: Int, seed: UInt64 = 1, configuration: LogConfiguration = KVCluster.testConfiguration,
        leaseReads: Bool = false,
        stores: @escaping StoreFactory = { _ in InMemoryLogStore() },
        metrics: @escaping @Sendable (Int) -> LogMetrics = { _ in .disabled }
    ) async throws {
        self.makeMetrics = metrics
        self.network = SimulatedNetwork(seed: seed)
        self.count = count
        var configuration = configuration
        if leaseReads {
            configuration.leaseTicks = LogConfiguration.maxLeaseTicks(
                electionTicks: configuration.electionTicks)
        }
        self.configuration = configuration
        self.slots = Mutex(Array(repeating: nil, count: count))
        self.stores = StoreShelf(stores)
        for index in 0..<count { try await start(index) }
        // A new cluster serves once all of its replicas have been up together (its first leader
        // needs every one's promise): tests that cut a replica off or stop one start after that.
        let deadline = ContinuousClock.now + .seconds(20)
        for index in 0..<count {
            while await peer(index)!.inspect({ $0.membership.isProvisional }) {
                guard ContinuousClock.now < deadline else {
                    var states: [String] = []
                    for other in 0..<count {
                        states.append(
                            await peer(other)!.inspect {
                                "\(other): \($0.role), leader \($0.leader.map { "\($0.rawValue)" } ?? "none"), applied \($0.applied), first unchosen \($0.firstUnchosen), \($0.membership)"
                            })
                    }
                    throw LabFailure(
                        "the cluster did not record its first membership within 20 s (\(states.joined(separator: "; ")))"
                    )
                }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// An origin for the clock `Task.sleep` measures (the replicas' ticks sleep on it).
    static let epoch = ContinuousClock.now

    /// Time since ``epoch`` on that clock.
    @Sendable static func clock() -> Duration { epoch.duration(to: .now) }

    /// Shorter timeouts than production, for quick tests (ticks are 5 ms here).
    public static var testConfiguration: LogConfiguration {
        var configuration = LogConfiguration()
        configuration.electionTicks = 20
        configuration.retainEntries = 200
        return configuration
    }

    public var ids: [NodeID] { (0..<count).map { NodeID(UInt32($0)) } }

    /// Starts (or restarts, on its store) replica `index`.
    @discardableResult
    public func start(_ index: Int) async throws -> LogPeer<KVStateMachine> {
        let store = try await stores.store(for: index)
        let generation = restarts.withLock { value in
            value += 1
            return UInt64(value)
        }
        let peer = try await LogPeer<KVStateMachine>.make(
            me: NodeID(UInt32(index)), peers: ids, machine: KVStateMachine(), store: store,
            transport: network.transport(for: NodeID(UInt32(index))),
            configuration: configuration, tickInterval: .milliseconds(5), submitTimeout: .milliseconds(500),
            seed: generation &* 7919 &+ UInt64(index), metrics: makeMetrics(index),
            clock: configuration.leaseReads ? KVCluster.clock : nil)
        slots.withLock { $0[index] = peer }
        return peer
    }

    /// Stops replica `index` (its store keeps what it committed).
    public func kill(_ index: Int) async {
        let peer = slots.withLock { slots -> LogPeer<KVStateMachine>? in
            defer { slots[index] = nil }
            return slots[index]
        }
        await peer?.kill()
    }

    public func peer(_ index: Int) -> LogPeer<KVStateMachine>? { slots.withLock { $0[index] } }

    public func service(_ index: Int) -> KVService? { peer(index).map(KVService.init) }

    public func store(_ index: Int) -> (any LogStore)? { stores[index] }

    /// A clerk that may talk to the replicas in `servers` (all by default).
    public func clerk(_ servers: [Int]? = nil) -> KVClerk {
        KVClerk(cluster: self, servers: servers ?? Array(0..<count))
    }

    /// The cluster's leader, once every live replica in `among` agrees on one, within `timeout`.
    public func waitForLeader(among: [Int]? = nil, timeout: Duration = .seconds(10)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for index in among ?? Array(0..<count) {
                if let peer = peer(index), await peer.inspect({ $0.isLeader }) { return index }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw LabFailure("no leader within \(timeout)")
    }

    public func shutdown() async {
        for index in 0..<count { await kill(index) }
    }
}

/// The 6.824 kvpaxos Clerk: a client with a session that tries servers in turn and retries a
/// request with the same request number until some server answers, so it executes exactly once.
public final class KVClerk: Sendable {
    private struct State {
        var client: UInt64 = 0
        var request: UInt64 = 0
        var next = 0
    }

    let cluster: KVCluster
    let servers: [Int]
    private let state = Mutex(State())

    init(cluster: KVCluster, servers: [Int]) {
        self.cluster = cluster
        self.servers = servers
    }

    /// Runs `operation` to completion (retrying forever, like the lab's clerk) and returns its result.
    public func run(_ operation: KVOperation) async throws -> KVResult {
        if state.withLock({ $0.client }) == 0 {
            let answer = try await attempt { _ in KVCommand(operation: .register) }
            guard let client = answer.clientID else { throw LabFailure("register failed: \(answer)") }
            state.withLock { $0.client = client }
        }
        let (client, request) = state.withLock { state in
            state.request += 1
            return (state.client, state.request)
        }
        let result = try await attempt { _ in
            KVCommand(client: client, request: request, operation: operation)
        }
        if result.status == .sessionExpired || result.status == .staleRequest {
            throw LabFailure("request \(request) of client \(client): \(result.status)")
        }
        return result
    }

    private func attempt(_ command: @Sendable (Int) -> KVCommand) async throws -> KVResult {
        while true {
            try Task.checkCancellation()
            let server = state.withLock { state -> Int in
                defer { state.next += 1 }
                return servers[state.next % servers.count]
            }
            guard let service = cluster.service(server) else {
                try await Task.sleep(for: .milliseconds(10))
                continue
            }
            if case .done(let result) = await service.execute(command(server)) { return result }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    public func get(_ key: String) async throws -> String {
        let result = try await run(.get(key: Array(key.utf8)))
        return result.status == .ok ? String(decoding: result.value ?? [], as: UTF8.self) : ""
    }

    public func put(_ key: String, _ value: String) async throws {
        _ = try await run(.put(key: Array(key.utf8), value: Array(value.utf8)))
    }

    public func append(_ key: String, _ value: String) async throws {
        _ = try await run(.append(key: Array(key.utf8), value: Array(value.utf8)))
    }
}
