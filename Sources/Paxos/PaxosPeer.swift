import PaxosCore
import PaxosWire
import ServiceLifecycle

/// One Paxos peer, the 6.824 lab's `Make(peers, me)`: a ``PaxosNode`` (the pure protocol) driven
/// by a ``ReplicaRuntime`` with a durable ``AcceptorStore``, a ``PeerTransport`` and a clock.
///
/// The runtime carries out every ``Ready`` in the order its contract demands — persist, then
/// send, then apply — with group commit. This type is the lab's API over it; its one piece of
/// state of its own is which decisions are not durable yet (``status(_:)`` reports them pending).
/// A failed commit stops the peer (crash-stop): it answers no request afterwards.
public final class PaxosPeer: Sendable {
    /// The classic protocol's part of the runtime.
    public struct Driver: RuntimeDriver {
        public struct Notes: RuntimeNotes {
            var decisions: [Int] = []
            public init() {}
        }

        public var core: PaxosNode
        /// Instances decided in the core whose decision is not on disk yet.
        var undurableDecisions: Set<Int> = []

        public mutating func absorb(_ step: Ready, into notes: inout Notes) {
            notes.decisions += step.decisions
            undurableDecisions.formUnion(step.decisions)
        }

        public func mustCommit(_ notes: Notes) -> Bool { true }

        public mutating func released(_ notes: Notes) { undurableDecisions.subtract(notes.decisions) }

        public mutating func committed(
            _ mutations: [StoreMutation], notes: Notes, output: Void, duration: Duration, synced: Bool
        ) -> Ready? { nil }

        public mutating func early(_ early: Void) {}

        public mutating func tick() -> Ready { core.tick() }

        public mutating func stopped(failure: String?) {}

        public func answers(_ reply: ReplyEnvelope, _ outbound: OutboundRequest) -> Bool {
            reply.from == outbound.to && reply.reply.seq == outbound.envelope.request.seq
        }

        public typealias Codec = PaxosWire
    }

    /// This peer's id.
    public let me: NodeID
    private let runtime: ReplicaRuntime<Driver>

    private init(runtime: ReplicaRuntime<Driver>) {
        self.me = runtime.me
        self.runtime = runtime
    }

    deinit { runtime.cancel() }

    /// Creates a peer on `store`, resuming from whatever the store holds, and starts serving.
    ///
    /// - Parameters:
    ///   - tickInterval: the length of one protocol tick (timeouts and backoff are in ticks).
    ///   - sleep: the clock; tests may pass a faster or virtual one.
    ///   - serialExecutor: where the peer's actor runs, whoever calls it (see ``ReplicaRuntime``).
    ///   - seed: seeds the proposer's randomized backoff.
    ///   - start: run the peer now, under a task of its own; `false` leaves it to whoever runs
    ///     ``service`` (paxos-node's service group).
    ///   - recover: the store may have lost this node's acceptor state (a wiped data directory, a
    ///     truncated file: pass true when the store was created at this start). Unless the store
    ///     records a finished recovery, the peer then recovers (``PaxosNode/recover()``): it
    ///     votes in no instance, and its ``start(_:_:)``s wait, until every other peer answered
    ///     what it knows; then it never votes at or below the highest instance reported, and
    ///     its ballots are above every reported round. The mark that it is recovering is durable
    ///     before this returns, so a peer restarted in the middle of a recovery resumes it
    ///     whatever `recover` says then. A new cluster whose nodes all pass true recovers from
    ///     itself (everyone reports nothing) once every node has been up. If the process may die
    ///     between creating the store and this call returning, the caller must treat that store
    ///     as new again on the next start.
    public static func make(
        me: NodeID, peers: [NodeID], store: any AcceptorStore, transport: any PeerTransport,
        configuration: PaxosConfiguration = PaxosConfiguration(), tickInterval: Duration = .milliseconds(10),
        seed: UInt64 = 1, recover: Bool = false,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        serialExecutor: (any SerialExecutor)? = nil, start: Bool = true
    ) async throws -> PaxosPeer {
        let state = try await store.load()
        var core = PaxosNode(me: me, peers: peers, state: state, configuration: configuration, seed: seed)
        var recovery = Ready()
        if recover || core.isRecovering {
            recovery = core.recover()
            // Committed here, before the peer serves or sends anything and before the caller
            // hears that the peer exists: from now on a restart finds the node recovering.
            if !recovery.mutations.isEmpty { try await store.commit(recovery.mutations) }
            recovery.mutations = []
        }
        let runtime = ReplicaRuntime(
            me: me, driver: Driver(core: core),
            persist: { mutations, _, _ in try await store.commit(mutations) },
            transport: transport,
            // A peer whose commit failed stays on the network and answers nothing, as a lab peer.
            unserve: { failed in if !failed { await transport.shutdown() } }, tickInterval: tickInterval,
            sleep: sleep, serialExecutor: serialExecutor)
        let peer = PaxosPeer(runtime: runtime)
        transport.serve(.classic) { [weak runtime] from, payload, respond in
            guard let runtime else { return respond(.none) }
            runtime.receive(from: from, payload: payload, respond: respond)
        }
        // The queries (and, in a single-node cluster, nothing): their mutations are durable.
        let queries = recovery
        await runtime.act { _ in ((), queries) }
        if start { await runtime.start() }
        return peer
    }

    /// The peer's runtime as a service, for a `ServiceGroup` to run when the peer was made with
    /// `start: false`: it ends when the group shuts down gracefully (a stop like ``kill()``), or
    /// when a commit fails.
    public var service: any Service { runtime }

    // MARK: - The lab API

    /// Starts agreement on instance `seq` with `value` and returns at once.
    public func start(_ seq: Int, _ value: Value) async {
        await runtime.act { driver in ((), driver.core.start(seq: seq, value: value)) }
    }

    /// What this peer knows about instance `seq`. Local; never waits on the network.
    /// The instance's fate as far as it is durable here: a decision the core has taken but whose
    /// commit has not returned (or failed) reads as pending, as the Ready contract asks.
    public func status(_ seq: Int) async -> Fate {
        await runtime.inspect { $0.undurableDecisions.contains(seq) ? .pending : $0.core.status(seq) }
    }

    /// This peer's application is done with every instance `<= seq`. Returns once that is
    /// durable (or the peer stopped), so whoever is told "done" is never told it too early.
    public func done(_ seq: Int) async {
        await runtime.durably { $0.core.done(seq) }
    }

    /// 1 + the minimum `done` over all peers; instances below are forgotten.
    public func min() async -> Int { await runtime.inspect { $0.core.min } }

    /// The highest instance sequence number known to this peer.
    public func max() async -> Int { await runtime.inspect { $0.core.max } }

    /// Stops the peer: no more ticks, requests or replies. What is committed stays in the store.
    public func kill() async { await runtime.kill() }

    /// Reads the core's state, for tests and inspection.
    public func inspect<T: Sendable>(_ body: @Sendable (PaxosNode) -> T) async -> T {
        await runtime.inspect { body($0.core) }
    }

    /// Whether the peer answers requests: false once killed, or after a failed commit.
    public var isServing: Bool { get async { await runtime.isServing } }

    /// Why the peer stopped serving, when a commit failed.
    public var failure: String? { get async { await runtime.failure } }

    /// How many batches were committed (a measure of group commit).
    public var commits: Int { get async { await runtime.commits } }
}

extension Ready: RuntimeStep {
    public var eagerMessages: [OutboundRequest] { [] }
    public var eagerReply: ReplyEnvelope? { nil }
}

extension OutboundRequest: RuntimeOutbound {}

extension PaxosNode: RuntimeCore {}
