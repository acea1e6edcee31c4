import Logging
import PaxosCore
import PaxosWire
import ServiceLifecycle

/// The outcome of a proposal handed to a ``LogPeer``.
public enum SubmitOutcome: Hashable, Sendable {
    /// Chosen and applied; the state machine's output.
    case applied(Value)
    /// Certainly never entered the log (no leader could take it, or the peer is stopped and the
    /// proposal never left it). Safe to report as a failure.
    case failed(String)
    /// The outcome is not known (timed out, or the peer stopped after it left): it may yet be
    /// applied. A client retries with the same request number to learn it.
    case unknown(String)
}

/// How a read is answered (``LogPeer/read(_:consistency:)``).
public enum ReadConsistency: String, Hashable, Sendable, CaseIterable {
    /// Reflects every write completed before the read began, on any node (etcd's default): the
    /// leader confirms it still leads with one round of messages and answers once applied
    /// through the read index, without a log write or an fsync; with leader-lease reads on
    /// (``LogConfiguration/leaseTicks``), without the round while its lease holds. A non-leader
    /// sends the read through the log.
    case linearizable
    /// This replica's committed state, at once, whatever its role: may be stale (behind writes
    /// another node has answered), never ahead of what is chosen.
    case serializable
}

/// A monotonic clock read in ticks, for leader-lease reads (``LogReplica/read(clock:)``).
struct LeaseClock: Sendable {
    /// The clock's reading; the same clock the replica's tick sleeps are measured on, or one
    /// that never runs slower than it.
    let now: @Sendable () -> Duration
    /// A reading taken before the replica's first tick began.
    let origin: Duration
    let tick: Duration

    /// Whole tick lengths since `origin`: never fewer than the ticks the replica has taken,
    /// each of which followed a full sleep of one tick length.
    func ticks() -> UInt64 {
        let elapsed = LogMetrics.nanoseconds(now() - origin)
        let length = Swift.max(1, LogMetrics.nanoseconds(tick))
        return elapsed <= 0 ? 0 : UInt64(elapsed / length)
    }
}

fileprivate struct Waiter {
    var continuation: CheckedContinuation<SubmitOutcome, Never>
    var deadline: UInt64
}

fileprivate enum ReadGrant: Sendable {
    /// Confirmed and applied through its index: read the store now.
    case ready
    /// Not confirmed here (this replica does not lead, or stopped leading): nothing was read.
    case notLeader
    case failed(String)
}

fileprivate struct ReadWaiter {
    var continuation: CheckedContinuation<ReadGrant, Never>
    var deadline: UInt64
}

/// The replicated log's part of the runtime: the core, and the clients and reads waiting on it.
/// Not generic over the state machine, so that the runtime is specialized for it.
public struct LogDriver: RuntimeDriver {
    public struct Notes: RuntimeNotes {
        /// The last slot an `apply` in this batch applies.
        var appliedThrough: Slot?
        /// An `apply` in this batch answers a waiting client: commit it now, not at the next
        /// tick.
        var prompt = false
        public init() {}
    }

    public var core: LogReplica
    let me: NodeID
    let transport: any PeerTransport
    let submitTimeoutTicks: UInt64
    let logger: Logger
    let metrics: LogMetrics
    var observed: LogMetrics.Observed
    fileprivate var waiters: [ProposalID: Waiter] = [:]
    fileprivate var readWaiters: [ReadID: ReadWaiter] = [:]
    var ticks: UInt64 = 0
    /// The tick each kind of event was last logged, by peer: refusals repeat with every
    /// message.
    var lastLogged: [String: UInt64] = [:]
    var jobs: [@Sendable () async -> Void] = []
    /// Client proposals of this replica that were applied.
    var appliedProposals = 0
    /// Why the replica stopped, once it did.
    var stopReason: String?
    /// The monotonic clock lease reads are checked against (`nil`: no lease reads).
    var leaseClock: LeaseClock?

    public mutating func absorb(_ step: LogReady, into notes: inout Notes) {
        if !step.events.isEmpty { report(step.events) }
        metrics.observe(core, since: &observed)
        for mutation in step.mutations {
            if case .installSnapshot(let applied) = mutation {
                // Installing stands for many applies: the replica serves from it once
                // durable, and reports it applied through its slot after the commit (reads
                // wait for that).
                notes.prompt = true
                notes.appliedThrough = Swift.max(notes.appliedThrough ?? 0, applied)
            }
            guard case .apply(let slot, let entry) = mutation else { continue }
            notes.appliedThrough = Swift.max(notes.appliedThrough ?? 0, slot)
            if !notes.prompt, !waiters.isEmpty, entry.contains(where: { waiters[$0.id] != nil }) {
                notes.prompt = true
            }
            if !notes.prompt, !readWaiters.isEmpty, let index = core.waitingReadIndex, index <= slot {
                // A read waits for this apply to be reported.
                notes.prompt = true
            }
        }
        // Results depend only on chosen entries, durable at a majority (LogReady's contract).
        deliver(results: step.results, failed: step.failed, unknown: step.unknown)
        // Confirmed reads wait for an applied index reported after its commit: serve them now.
        for id in step.reads {
            readWaiters.removeValue(forKey: id)?.continuation.resume(returning: .ready)
        }
        for id in step.failedReads {
            readWaiters.removeValue(forKey: id)?.continuation.resume(returning: .notLeader)
        }
    }

    /// Mutations that nothing waits on (applying or learning chosen entries no client of this
    /// replica waits for) wait for the next commit that does gate a reply, a message, a vote
    /// or a client, or for the next tick, instead of costing an fsync of their own. Losing
    /// them in a crash loses nothing: the replica re-learns and re-applies the chosen entries.
    public func mustCommit(_ notes: Notes) -> Bool { notes.prompt }

    /// Learning and applying chosen entries need no fsync of their own when the batch releases
    /// nothing: a crash that loses them loses a cache (the replica re-learns and re-applies the
    /// chosen entries from its durable `applied`, computing the same rows), and the store keeps
    /// commits in order, so no durable state ever depends on a lost one. Everything else (votes,
    /// promises, `maxRound`, releases, a snapshot) is fsynced. The leader's apply of a client's
    /// command is the common case: its output left before the fsync anyway, and the next accept
    /// no longer waits for that fsync.
    public func needsSync(_ mutations: [LogMutation]) -> Bool {
        mutations.contains { mutation in
            switch mutation {
            case .choose, .apply: false
            default: true
            }
        }
    }

    public mutating func released(_ notes: Notes) {}

    public mutating func committed(
        _ mutations: [LogMutation], notes: Notes, output: [(ProposalID, Value)], duration: Duration,
        synced: Bool
    ) -> LogReady? {
        metrics.committed(mutations, duration: synced ? duration : nil)
        guard let through = notes.appliedThrough else { return nil }
        return core.onApplied(through: through, outputs: output)
    }

    /// Answers the clients waiting for `outputs` (the first output of a proposal counts; a
    /// later one, or the replica's own report after the commit, finds no waiter).
    public mutating func early(_ outputs: [(ProposalID, Value)]) {
        for (id, output) in outputs {
            waiters.removeValue(forKey: id)?.continuation.resume(returning: .applied(output))
        }
    }

    public mutating func tick() -> LogReady {
        ticks += 1
        let expired = waiters.filter { $0.value.deadline <= ticks }
        for (id, waiter) in expired {
            waiters[id] = nil
            core.forget(id)
            waiter.continuation.resume(
                returning: .unknown("timed out waiting for the command to be applied"))
        }
        for (id, waiter) in readWaiters where waiter.deadline <= ticks {
            readWaiters[id] = nil
            core.forgetRead(id)
            waiter.continuation.resume(
                returning: .failed("timed out confirming the read with a majority"))
        }
        return core.tick()
    }

    public mutating func stopped(failure: String?) {
        stopReason = stopReason ?? failure ?? "the replica is stopped"
        if let failure {
            logger.critical(
                "commit failed: this replica stops serving (nothing of the batch left the node); restart it once the disk is fixed",
                metadata: ["error": "\(failure)"])
        }
        let reason = failure.map { "the replica stopped: \($0)" } ?? "the replica stopped"
        let all = waiters
        waiters = [:]
        for (_, waiter) in all { waiter.continuation.resume(returning: .unknown(reason)) }
        let reads = readWaiters
        readWaiters = [:]
        for (_, waiter) in reads { waiter.continuation.resume(returning: .failed(reason)) }
    }

    public func answers(_ reply: LogReplyEnvelope, _ outbound: LogOutbound) -> Bool {
        reply.from == outbound.to
    }

    public typealias Codec = LogWire

    public func roundTripObserver(for outbound: LogOutbound) -> (@Sendable (Duration) -> Void)? {
        guard LogMetrics.measuresRoundTrip(outbound.envelope.request) else { return nil }
        let timer = metrics.peerRoundTrip(outbound.to)
        return { timer.recordNanoseconds(LogMetrics.nanoseconds($0)) }
    }

    public mutating func takeJobs() -> [@Sendable () async -> Void] {
        defer { jobs = [] }
        return jobs
    }

    fileprivate mutating func submit(
        _ command: Value, resendable: Bool, _ continuation: CheckedContinuation<SubmitOutcome, Never>
    ) -> LogReady? {
        if let stopReason {
            continuation.resume(returning: .failed(stopReason))
            return nil
        }
        let (id, ready) = core.submit(command, resendable: resendable)
        waiters[id] = Waiter(continuation: continuation, deadline: ticks + submitTimeoutTicks)
        return ready
    }

    fileprivate mutating func changeMembership(
        _ change: MembershipChange, _ continuation: CheckedContinuation<SubmitOutcome, Never>
    ) -> LogReady? {
        if let stopReason {
            continuation.resume(returning: .failed(stopReason))
            return nil
        }
        let (id, ready) = core.changeMembership(change)
        waiters[id] = Waiter(continuation: continuation, deadline: ticks + submitTimeoutTicks)
        return ready
    }

    fileprivate mutating func confirmRead(
        notes: inout Notes, _ continuation: CheckedContinuation<ReadGrant, Never>
    ) -> LogReady? {
        if let stopReason {
            continuation.resume(returning: .failed(stopReason))
            return nil
        }
        let leaseReads = core.leaseReads
        let (id, ready) = core.read(clock: leaseClock?.ticks())
        if core.leaseReads > leaseReads { metrics.leaseReads.increment() }
        if ready.failedReads.contains(id) {
            // A leader refuses a read only when too many wait: not a reason to send it through
            // the log, which is busier still.
            continuation.resume(
                returning: core.isLeader ? .failed("too many reads waiting for confirmation") : .notLeader
            )
            return ready
        }
        if let index = core.waitingReadIndex, let through = notes.appliedThrough, index <= through {
            // The applies it waits for are pending without a client of their own: commit them
            // now.
            notes.prompt = true
        }
        readWaiters[id] = ReadWaiter(continuation: continuation, deadline: ticks + submitTimeoutTicks)
        return ready
    }

    private mutating func deliver(
        results: [(ProposalID, Value)], failed: [ProposalID], unknown: [ProposalID]
    ) {
        for (id, output) in results {
            appliedProposals += 1
            waiters.removeValue(forKey: id)?.continuation.resume(returning: .applied(output))
        }
        for id in failed {
            waiters.removeValue(forKey: id)?.continuation.resume(
                returning: .failed("no leader took the command"))
        }
        for id in unknown {
            waiters.removeValue(forKey: id)?.continuation.resume(
                returning: .unknown("the command was handed to a leader that did not confirm it"))
        }
    }

    mutating func report(_ events: [ReplicaEvent]) {
        for event in events {
            switch event {
            case .membership(let membership):
                logger.info("membership changed", metadata: ["membership": "\(membership)"])
                let transport = self.transport
                let addresses = LogDriver.addresses(membership)
                jobs.append { await transport.updateMembers(addresses) }
            case .refusedPeer(let peer, let incarnation, let known):
                guard due("refused-\(peer)") else { continue }
                logger.warning(
                    known == 0
                        ? "refused node \(peer): it is not a member of the cluster's membership"
                        : "refused node \(peer) as a member: it presents incarnation \(String(incarnation, radix: 16)) but the cluster records \(String(known, radix: 16)) for it; its data directory is not the one the cluster knows (it lost its data?). Replace it: README, 'Replacing a failed node'",
                    metadata: ["peer": "\(peer)"])
            case .refusedBy(let peer, let known):
                guard due("refused-by-\(peer)") else { continue }
                if known == 0, core.membership.isUnknown {
                    // A node that joins is refused until an operator adds it: the normal path.
                    logger.notice(
                        "node \(peer) does not know this node yet: waiting to be added (paxosctl member add \(me) ADDRESS)"
                    )
                    continue
                }
                logger.error(
                    known == 0
                        ? "node \(peer) refuses this node: node \(me) is not a member of the cluster (removed?)"
                        : "node \(peer) refuses this node: the cluster records node \(me) with incarnation \(String(known, radix: 16)), and this data directory is \(String(core.memberIncarnation, radix: 16)). This node lost its data (or is a copy): it will not vote. Replace it: remove node \(me), start it with --join and an empty data directory, add it and promote it (README, 'Replacing a failed node')",
                    metadata: ["peer": "\(peer)"])
            case .notAVoter(let known):
                logNotAVoter(known: known)
            case .electionStarted(let ballot, let voters):
                logger.info(
                    "election started", metadata: ["ballot": "\(ballot)", "voters": "\(voters)"])
            case .electionWon(let ballot, let target):
                var metadata: Logger.Metadata = ["ballot": "\(ballot)"]
                if let target { metadata["catch_up_to"] = "\(target)" }
                logger.info(
                    target == nil
                        ? "election won: leading" : "election won: catching up first, then leading",
                    metadata: metadata)
            case .electionLost(let ballot, let reason):
                logger.info("election lost", metadata: ["ballot": "\(ballot)", "reason": "\(reason)"])
            case .steppedDown(let ballot, let reason):
                logger.notice("stepped down", metadata: ["ballot": "\(ballot)", "reason": "\(reason)"])
            case .leaderChanged(let leader):
                logger.info(
                    leader == nil ? "leader unknown" : "leader changed",
                    metadata: ["leader": "\(leader.map { "\($0)" } ?? "none")"])
            case .snapshotStarted(let from, let theirApplied, let resuming):
                logger.info(
                    resuming ? "snapshot transfer resumed" : "snapshot transfer started",
                    metadata: ["from": "\(from)", "their_applied": "\(theirApplied)"])
            case .snapshotInstalled(let from, let applied):
                logger.info("snapshot installed", metadata: ["from": "\(from)", "applied": "\(applied)"])
            case .conflictingChosen(let slot):
                logger.critical(
                    "a peer reported another entry chosen in a slot than the one this node knows chosen: a broken or hostile peer; the known entry is kept",
                    metadata: ["slot": "\(slot)"])
            }
        }
    }

    mutating func logNotAVoter(known: UInt64) {
        guard due("not-a-voter") else { return }
        if known == 0 {
            logger.warning("this node is not a member of the cluster's membership: it does not vote")
        } else if known != core.memberIncarnation {
            logger.error(
                "the cluster records node \(me) with incarnation \(String(known, radix: 16)), and this data directory is \(String(core.memberIncarnation, radix: 16)): it lost its data (or is a copy) and will not vote. Replace it (README, 'Replacing a failed node')"
            )
        } else {
            logger.info("this node is a learner: it receives the log and does not vote")
        }
    }

    /// Whether an event of `kind` may be logged now (once a minute each).
    mutating func due(_ kind: String) -> Bool {
        if let last = lastLogged[kind], ticks - last < 6000, ticks >= last { return false }
        lastLogged[kind] = ticks
        return true
    }

    static func addresses(_ membership: Membership) -> [NodeID: String] {
        Dictionary(
            uniqueKeysWithValues: membership.members.filter { !$0.address.isEmpty }.map {
                ($0.id, $0.address)
            })
    }
}

/// One replica of the replicated log: a ``LogReplica`` (the pure protocol) driven by a
/// ``ReplicaRuntime`` with a durable ``LogStore``, a ``PeerTransport``, a clock and the state
/// machine the store applies entries with.
///
/// The runtime carries out every ``LogReady`` as its contract demands: a leader's accepts leave
/// at once, then the mutations of every input that arrived while a commit was in flight are
/// committed as one batch (group commit), and only then are replies, messages and local votes
/// released. The store applies chosen entries to the state machine inside the commit; client
/// results go out as soon as the store has computed them, before that commit's fsync (they depend
/// only on chosen entries, durable at a majority: see ``LogReady``). A failed commit stops the
/// replica (crash-stop).
///
/// This type is the face over it: clients' proposals and reads waiting for their outcome
/// (``Driver``), and the snapshots peers fetch from its store (``LogSnapshotServer``).
public final class LogPeer<Machine: StateMachine>: Sendable {
    /// The replicated log's part of the runtime (not generic over the machine, so the runtime is specialized for it).
    public typealias Driver = LogDriver

    public let me: NodeID
    private let runtime: ReplicaRuntime<Driver>
    private let machine: Machine
    private let store: any LogStore
    private let transport: any PeerTransport
    private let snapshots: LogSnapshotServer
    private let metrics: LogMetrics

    private init(
        runtime: ReplicaRuntime<Driver>, machine: Machine, store: any LogStore, transport: any PeerTransport,
        snapshots: LogSnapshotServer, metrics: LogMetrics
    ) {
        self.me = runtime.me
        self.runtime = runtime
        self.machine = machine
        self.store = store
        self.transport = transport
        self.snapshots = snapshots
        self.metrics = metrics
    }

    deinit { runtime.cancel() }

    /// Opens the replica on `store` (durably starting a new incarnation first) and starts serving.
    ///
    /// - Parameters:
    ///   - tickInterval: the length of one tick (election timeouts and heartbeats are in ticks).
    ///   - submitTimeout: how long ``submit(_:resendable:)`` waits before reporting an unknown
    ///     outcome.
    ///   - snapshotIdle: how long a snapshot a peer stopped asking chunks of stays open.
    ///   - incarnation: this data directory's incarnation (``Member/incarnation``); the default
    ///     derives one from `me`, for tests.
    ///   - addresses: the bootstrap peers' addresses, recorded in a new cluster's membership.
    ///   - joining: the node joins an existing cluster (see ``LogReplica/init``).
    ///   - logger: where membership events and refusals are reported.
    ///   - metrics: where counters and histograms are recorded (see ``LogMetrics``).
    ///   - sleep: the clock; the simulator passes its virtual one.
    ///   - clock: the monotonic clock `sleep` is measured on (or one that never runs slower),
    ///     which leader-lease reads are checked against (``LogConfiguration/leaseTicks``); `nil`:
    ///     leases are never used to serve a read, whatever the configuration says. Unused with
    ///     leases off.
    ///   - executor: where the replica's tasks prefer to run (see ``ReplicaRuntime``).
    ///   - serialExecutor: where the replica's actor runs, whoever calls it (see
    ///     ``ReplicaRuntime``).
    ///   - start: run the replica now, under a task of its own; `false` leaves it to whoever
    ///     runs ``service`` (paxos-node's service group).
    ///   - snapshotTokens: draws the unguessable token of each snapshot served to a peer (the
    ///     system's CSPRNG; the simulator draws from its seed).
    public static func make(
        me: NodeID, peers: [NodeID], machine: Machine, store: any LogStore, transport: any PeerTransport,
        configuration: LogConfiguration = LogConfiguration(), tickInterval: Duration = .milliseconds(10),
        submitTimeout: Duration = .seconds(5), snapshotIdle: Duration = .seconds(30), seed: UInt64 = 1,
        incarnation: UInt64? = nil, addresses: [NodeID: String] = [:], joining: Bool = false,
        logger: Logger = Logger(label: "paxos.log", factory: { _ in SwiftLogNoOpLogHandler() }),
        metrics: LogMetrics = .disabled,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        clock: (@Sendable () -> Duration)? = nil,
        executor: (any TaskExecutor)? = nil, serialExecutor: (any SerialExecutor)? = nil,
        snapshotTokens: @escaping @Sendable () -> UInt64 = LogPeer.randomToken,
        start: Bool = true
    ) async throws -> LogPeer {
        var state = try await store.loadLog()
        state.incarnation += 1
        try await store.commitLog([.incarnation(state.incarnation)])
        let core = LogReplica(
            me: me, peers: peers, state: state, configuration: configuration, seed: seed,
            memberIncarnation: incarnation, addresses: addresses, joining: joining)
        let snapshots = LogSnapshotServer(
            me: me, memberIncarnation: core.memberIncarnation, store: store,
            chunkBytes: configuration.snapshotChunkBytes,
            idleTicks: UInt64(Swift.max(1, snapshotIdle / tickInterval)), metrics: metrics,
            tokens: snapshotTokens)
        var driver = Driver(
            core: core, me: me, transport: transport,
            submitTimeoutTicks: UInt64(Swift.max(1, submitTimeout / tickInterval)), logger: logger,
            metrics: metrics, observed: LogMetrics.Observed(leader: nil, firstUnchosen: core.firstUnchosen))
        // Read before the runtime exists, so before its first tick's sleep begins; not read at
        // all with leases off (no read would use it).
        if configuration.leaseReads {
            driver.leaseClock = clock.map { LeaseClock(now: $0, origin: $0(), tick: tickInterval) }
        }
        let runtime = ReplicaRuntime(
            me: me, driver: driver,
            persist: { mutations, durable, early in
                try await store.commitLog(
                    mutations, machine: machine, outputsFor: me, durable: durable, beforeDurable: early)
            },
            transport: transport,
            unserve: { _ in
                transport.serve(.log, with: nil)
                await snapshots.close()
            },
            tickInterval: tickInterval, sleep: sleep,
            alongside: [{ await snapshots.run(tickInterval: tickInterval, sleep: sleep) }],
            executor: executor,
            serialExecutor: serialExecutor)
        let peer = LogPeer(
            runtime: runtime, machine: machine, store: store, transport: transport, snapshots: snapshots,
            metrics: metrics)
        await peer.startUp(logger: logger)
        transport.serve(.log) { [weak runtime] from, payload, respond in
            guard let runtime else { return respond(.none) }
            switch ReplicaRuntime<Driver>.decode(from: from, payload: payload) {
            case .failure(let refusal):
                respond(.refuse(refusal.message))
            case .success(let request):
                if case .snapshotChunk(let token, let after) = request.request {
                    // Any authenticated peer: a node that joins fetches a snapshot before it is a
                    // member.
                    guard from != me else { return respond(.none) }
                    snapshots.request(from: from, token: token, after: after, respond: respond)
                } else {
                    runtime.deliver(request, respond: respond)
                }
            }
        }
        if start { await runtime.start() }
        return peer
    }

    /// The replica's runtime as a service, for a `ServiceGroup` to run when the peer was made
    /// with `start: false`: it ends when the group shuts down gracefully (a stop like
    /// ``kill()``), or when a commit fails.
    public var service: any Service { runtime }

    /// A snapshot token from the system's CSPRNG.
    @Sendable public static func randomToken() -> UInt64 {
        var generator = SystemRandomNumberGenerator()
        return UInt64.random(in: 1...UInt64.max, using: &generator)
    }

    // MARK: - API

    /// Proposes `command` and waits until it is applied (its output), certainly failed, or its
    /// outcome is unknown.
    /// `resendable`: applying the command twice is harmless (see ``LogReplica/submit(_:resendable:)``).
    public func submit(_ command: Value, resendable: Bool = false) async -> SubmitOutcome {
        let outcome = await runtime.wait { driver, _, continuation in
            driver.submit(command, resendable: resendable, continuation)
        }
        if case .applied = outcome {} else { metrics.proposalsFailed.increment() }
        return outcome
    }

    /// Proposes a membership change and waits for its answer: `ok`, `refused: REASON`, or an
    /// unknown outcome. See ``LogReplica/changeMembership(_:)``.
    public func changeMembership(_ change: MembershipChange) async -> SubmitOutcome {
        await runtime.wait { driver, _, continuation in driver.changeMembership(change, continuation) }
    }

    /// Answers a command that only reads (``StateMachine/read(_:rows:)``) with `consistency`; a
    /// command the machine does not answer without the log, and a linearizable read on a replica
    /// that does not lead, go through the log like ``submit(_:resendable:)`` (as resendable).
    ///
    /// The store read runs on the store's reader, not on the replica's executor.
    public func read(_ command: Value, consistency: ReadConsistency = .linearizable) async -> SubmitOutcome {
        if consistency == .linearizable {
            let grant: ReadGrant = await runtime.wait { driver, notes, continuation in
                driver.confirmRead(notes: &notes, continuation)
            }
            switch grant {
            case .ready: break
            case .notLeader: return await submit(command, resendable: true)
            case .failed(let reason): return .failed(reason)
            }
        } else if await !runtime.isServing {
            return .failed("the replica is stopped")
        }
        do {
            guard let answer = try await store.read(command, machine: machine) else {
                return await submit(command, resendable: true)
            }
            return .applied(answer)
        } catch {
            return .failed("reading the store failed: \(error)")
        }
    }

    /// Whether the replica serves: false once killed or after a failed commit.
    public var isServing: Bool { get async { await runtime.isServing } }

    /// Why the replica stopped, when a commit failed.
    public var failure: String? { get async { await runtime.failure } }

    /// Batches committed with an fsync (each is one fsync with a durable store).
    public var commits: Int { get async { await runtime.commits } }

    /// Client proposals of this replica that were applied.
    public var appliedProposals: Int { get async { await runtime.inspect { $0.appliedProposals } } }

    /// Reads the protocol state, for status pages and tests.
    public func inspect<T: Sendable>(_ body: @Sendable (LogReplica) -> T) async -> T {
        await runtime.inspect { body($0.core) }
    }

    /// Every row of the state machine, read from the store (the whole store: for tests).
    public func machineRows() async throws -> [MachineKey: [UInt8]] { try await store.machineRows() }

    /// A consistent view of the state machine as this replica applied it (a backup reads it while
    /// the replica goes on committing); the caller closes it.
    public func openSnapshot() async throws -> any LogSnapshotSource { try await store.openSnapshot() }

    /// This replica's proposals waiting for their outcome (``submit(_:resendable:)`` calls).
    public var pendingProposals: Int { get async { await runtime.inspect { $0.waiters.count } } }

    /// Snapshots peers are fetching from this replica now.
    public var openSnapshots: Int { get async { await snapshots.openCount } }

    /// Stops the replica: no more ticks, requests or replies; waiting clients get an unknown
    /// outcome. What is committed stays in the store.
    public func kill() async { await runtime.kill() }

    /// Dials the members the store's membership names, and says what this node is in it.
    private func startUp(logger: Logger) async {
        let (membership, memberIncarnation) = await runtime.inspect {
            ($0.core.membership, $0.core.memberIncarnation)
        }
        await transport.updateMembers(LogDriver.addresses(membership))
        logger.info(
            "replicated log started",
            metadata: [
                "membership": "\(membership)", "incarnation": "\(String(memberIncarnation, radix: 16))",
            ])
        if let member = membership.member(me), member.incarnation != 0,
            member.incarnation != memberIncarnation
        {
            await runtime.act { driver in
                driver.logNotAVoter(known: member.incarnation)
                return ((), nil)
            }
        }
    }

}

extension LogReady: RuntimeStep {}

extension LogOutbound: RuntimeOutbound {}

extension LogReplica: RuntimeCore {}

/// Answers peers' snapshot chunk requests from a replica's store: each snapshot is one read
/// transaction of the store, kept open between chunks (at most one per peer) and closed when the
/// last chunk went out, when the peer stopped asking, or when the replica stops.
actor LogSnapshotServer {
    private struct Reader {
        var token: UInt64
        var source: any LogSnapshotSource
        var lastUsed: UInt64
    }

    private let me: NodeID
    private let memberIncarnation: UInt64
    private let store: any LogStore
    private let chunkBytes: Int
    private let idleTicks: UInt64
    private let metrics: LogMetrics
    private let tokens: @Sendable () -> UInt64
    private var readers: [NodeID: Reader] = [:]
    /// Peers whose new snapshot is being opened: one at a time per peer, so a peer that repeats
    /// its first request cannot make this replica open connections (and files) without bound.
    private var opening: Set<NodeID> = []
    private var ticks: UInt64 = 0
    private var closed = false
    private struct Request: Sendable {
        var from: NodeID
        var token: UInt64
        var after: MachineKey?
        var respond: @Sendable (PeerAnswer) -> Void
    }
    private let requests: AsyncStream<Request>
    private let requestInput: AsyncStream<Request>.Continuation

    init(
        me: NodeID, memberIncarnation: UInt64, store: any LogStore, chunkBytes: Int, idleTicks: UInt64,
        metrics: LogMetrics, tokens: @escaping @Sendable () -> UInt64
    ) {
        self.me = me
        self.memberIncarnation = memberIncarnation
        self.store = store
        self.chunkBytes = chunkBytes
        self.idleTicks = idleTicks
        self.metrics = metrics
        self.tokens = tokens
        (requests, requestInput) = AsyncStream.makeStream(of: Request.self)
    }

    deinit { requestInput.finish() }

    /// A peer's chunk request, from the transport's thread: answered by ``run(tickInterval:sleep:)``.
    nonisolated func request(
        from: NodeID, token: UInt64, after: MachineKey?, respond: @escaping @Sendable (PeerAnswer) -> Void
    ) {
        if case .terminated = requestInput.yield(
            Request(from: from, token: token, after: after, respond: respond))
        {
            respond(.none)
        }
    }

    /// Answers chunk requests, each in a task of its own (a slow read of one peer's snapshot
    /// holds up no other), and closes idle snapshots once a tick, until cancelled.
    func run(tickInterval: Duration, sleep: @escaping @Sendable (Duration) async throws -> Void) async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.sweep(every: tickInterval, sleep: sleep) }
            for await request in requests {
                group.addTask {
                    let reply = await self.serve(to: request.from, token: request.token, after: request.after)
                    request.respond(reply.map { .reply(LogWire.encode($0)) } ?? .none)
                }
            }
            group.cancelAll()
        }
    }

    var openCount: Int { readers.count }

    /// Answers a peer's request for the next chunk of a snapshot: token 0 opens a new one (and
    /// closes the peer's earlier one); another token continues the peer's open one, or is told it
    /// is gone. No answer when the store cannot be read: the peer's call fails and it asks again.
    func serve(to peer: NodeID, token: UInt64, after: MachineKey?) async -> LogReplyEnvelope? {
        guard !closed else { return nil }
        let reader: Reader
        if token == 0 {
            guard opening.insert(peer).inserted else { return nil }
            defer { opening.remove(peer) }
            if let old = readers.removeValue(forKey: peer) { await old.source.close() }
            guard let source = try? await store.openSnapshot() else { return nil }
            // Zero asks for a new snapshot, so it is never a token.
            let opened = Reader(token: Swift.max(1, tokens()), source: source, lastUsed: ticks)
            // Another request of this peer may have opened one meanwhile: the newest wins.
            if let raced = readers.updateValue(opened, forKey: peer) { await raced.source.close() }
            reader = opened
        } else {
            guard let open = readers[peer], open.token == token else {
                return LogReplyEnvelope(from: me, incarnation: memberIncarnation, reply: .snapshotGone)
            }
            reader = open
        }
        guard !closed else {
            await close()
            return nil
        }
        readers[peer]?.lastUsed = ticks
        do {
            let (rows, done) = try await reader.source.chunk(
                after: token == 0 ? nil : after, maxBytes: chunkBytes)
            if done, readers[peer]?.token == reader.token {
                readers[peer] = nil
                await reader.source.close()
            }
            if done { metrics.snapshotSends.increment() }
            return LogReplyEnvelope(
                from: me, incarnation: memberIncarnation,
                reply: .snapshotChunk(
                    token: reader.token, applied: reader.source.applied, after: token == 0 ? nil : after,
                    rows: rows, done: done))
        } catch {
            if readers[peer]?.token == reader.token { readers[peer] = nil }
            await reader.source.close()
            return nil
        }
    }

    /// Closes the snapshots peers stopped asking for, once a tick, until cancelled.
    func sweep(every interval: Duration, sleep: @Sendable (Duration) async throws -> Void) async {
        while !Task.isCancelled, !closed {
            do { try await sleep(interval) } catch { return }
            ticks += 1
            let idle = readers.filter { ticks - $0.value.lastUsed > idleTicks }
            for (peer, reader) in idle where readers[peer]?.token == reader.token {
                readers[peer] = nil
                await reader.source.close()
            }
        }
    }

    /// Closes every open snapshot and answers no more requests.
    func close() async {
        closed = true
        let all = readers
        readers = [:]
        for reader in all.values { await reader.source.close() }
    }
}
