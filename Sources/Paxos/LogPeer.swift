import Logging
import PaxosCore

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
    /// through the read index, without a log write or an fsync. A non-leader sends the read
    /// through the log.
    case linearizable
    /// This replica's committed state, at once, whatever its role: may be stale (behind writes
    /// another node has answered), never ahead of what is chosen.
    case serializable
}

/// One replica of the replicated log: a ``LogReplica`` (the pure protocol) driven with a durable
/// ``LogStore``, a ``LogTransport``, a clock and the state machine the store applies entries with.
///
/// It carries out every ``LogReady`` as its contract demands: a leader's accepts leave at once,
/// then the mutations of every input that arrived while a commit was in flight are committed as
/// one batch (group commit), and only then are replies, messages and local votes released. The
/// store applies chosen entries to the state machine inside the commit; client results go out as
/// soon as the store has computed them, before that commit's fsync (they depend only on chosen
/// entries, durable at a majority: see ``LogReady``). A failed commit stops the replica
/// (crash-stop).
///
/// It also answers peers' snapshot chunk requests from its store: each snapshot is one read
/// transaction of the store, kept open between chunks (at most one per peer) and closed when the
/// last chunk went out or the peer stopped asking.
public actor LogPeer<Machine: StateMachine> {
    private struct Batch {
        var mutations: [LogMutation] = []
        var messages: [LogOutbound] = []
        var localReplies: [LogReplyEnvelope] = []
        var replies: [(CheckedContinuation<LogReplyEnvelope?, Never>, LogReplyEnvelope?)] = []
        /// The last slot an `apply` in this batch applies.
        var appliedThrough: Slot?
        /// An `apply` in this batch answers a waiting client: commit it now, not at the next tick.
        var prompt = false

        var isEmpty: Bool { mutations.isEmpty && messages.isEmpty && localReplies.isEmpty && replies.isEmpty }
    }

    private struct SnapshotReader {
        var token: UInt64
        var source: any LogSnapshotSource
        var lastUsed: UInt64
    }

    private struct Waiter {
        var continuation: CheckedContinuation<SubmitOutcome, Never>
        var deadline: UInt64
    }

    private enum ReadGrant: Sendable {
        /// Confirmed and applied through its index: read the store now.
        case ready
        /// Not confirmed here (this replica does not lead, or stopped leading): nothing was read.
        case notLeader
        case failed(String)
    }

    private struct ReadWaiter {
        var continuation: CheckedContinuation<ReadGrant, Never>
        var deadline: UInt64
    }

    public nonisolated let me: NodeID
    private var core: LogReplica
    private let machine: Machine
    private let store: any LogStore
    private let transport: any LogTransport
    private let submitTimeoutTicks: UInt64
    private var pending = Batch()
    private var committing = false
    private var killed = false
    private var tickTask: Task<Void, Never>?
    private var waiters: [ProposalID: Waiter] = [:]
    private var readWaiters: [ReadID: ReadWaiter] = [:]
    private var ticks: UInt64 = 0
    private var snapshotReaders: [NodeID: SnapshotReader] = [:]
    /// Peers whose new snapshot is being opened: one at a time per peer, so a peer that repeats
    /// its first request cannot make this replica open connections (and files) without bound.
    private var openingSnapshots: Set<NodeID> = []
    private let snapshotIdleTicks: UInt64
    private let logger: Logger
    private let metrics: LogMetrics
    private var observed: LogMetrics.Observed
    /// The tick each kind of event was last logged, by peer: refusals repeat with every message.
    private var lastLogged: [String: UInt64] = [:]
    /// Why the replica stopped, when a commit failed.
    public private(set) var failure: String?
    /// Batches committed (each is one fsync with a durable store).
    public private(set) var commits = 0
    /// Client proposals of this replica that were applied.
    public private(set) var appliedProposals = 0

    private init(
        core: LogReplica, machine: Machine, store: any LogStore, transport: any LogTransport,
        submitTimeoutTicks: UInt64, snapshotIdleTicks: UInt64, logger: Logger, metrics: LogMetrics
    ) {
        self.logger = logger
        self.metrics = metrics
        self.observed = LogMetrics.Observed(leader: nil, firstUnchosen: core.firstUnchosen)
        self.me = core.me
        self.core = core
        self.machine = machine
        self.store = store
        self.transport = transport
        self.submitTimeoutTicks = submitTimeoutTicks
        self.snapshotIdleTicks = snapshotIdleTicks
    }

    /// Opens the replica on `store` (durably starting a new incarnation first) and starts serving.
    ///
    /// - Parameters:
    ///   - tickInterval: the length of one tick (election timeouts and heartbeats are in ticks).
    ///   - submitTimeout: how long ``submit(_:)`` waits before reporting an unknown outcome.
    ///   - snapshotIdle: how long a snapshot a peer stopped asking chunks of stays open.
    ///   - incarnation: this data directory's incarnation (``Member/incarnation``); the default
    ///     derives one from `me`, for tests.
    ///   - addresses: the bootstrap peers' addresses, recorded in a new cluster's membership.
    ///   - joining: the node joins an existing cluster (see ``LogReplica/init``).
    ///   - logger: where membership events and refusals are reported.
    ///   - metrics: where counters and histograms are recorded (see ``LogMetrics``).
    public static func make(
        me: NodeID, peers: [NodeID], machine: Machine, store: any LogStore, transport: any LogTransport,
        configuration: LogConfiguration = LogConfiguration(), tickInterval: Duration = .milliseconds(10),
        submitTimeout: Duration = .seconds(5), snapshotIdle: Duration = .seconds(30), seed: UInt64 = 1,
        incarnation: UInt64? = nil, addresses: [NodeID: String] = [:], joining: Bool = false,
        logger: Logger = Logger(label: "paxos.log", factory: { _ in SwiftLogNoOpLogHandler() }),
        metrics: LogMetrics = .disabled,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) async throws -> LogPeer {
        var state = try await store.loadLog()
        state.incarnation += 1
        try await store.commitLog([.incarnation(state.incarnation)])
        let core = LogReplica(
            me: me, peers: peers, state: state, configuration: configuration, seed: seed,
            memberIncarnation: incarnation, addresses: addresses, joining: joining)
        let timeoutTicks = UInt64(Swift.max(1, submitTimeout / tickInterval))
        let peer = LogPeer(
            core: core, machine: machine, store: store, transport: transport,
            submitTimeoutTicks: timeoutTicks,
            snapshotIdleTicks: UInt64(Swift.max(1, snapshotIdle / tickInterval)), logger: logger,
            metrics: metrics)
        await peer.startUp()
        await transport.serveLog { [weak peer] request in await peer?.handle(request) }
        await peer.startTicking(every: tickInterval, sleep: sleep)
        return peer
    }

    // MARK: - API

    /// Proposes `command` and waits until it is applied (its output), certainly failed, or its
    /// outcome is unknown.
    /// `resendable`: applying the command twice is harmless (see ``LogReplica/submit(_:resendable:)``).
    public func submit(_ command: Value, resendable: Bool = false) async -> SubmitOutcome {
        guard isServing else {
            metrics.proposalsFailed.increment()
            return .failed(failure ?? "the replica is stopped")
        }
        let (id, ready) = core.submit(command, resendable: resendable)
        let outcome = await withCheckedContinuation { continuation in
            waiters[id] = Waiter(continuation: continuation, deadline: ticks + submitTimeoutTicks)
            enqueue(ready)
        }
        if case .applied = outcome {} else { metrics.proposalsFailed.increment() }
        return outcome
    }

    /// Proposes a membership change and waits for its answer: `ok`, `refused: REASON`, or an
    /// unknown outcome. See ``LogReplica/changeMembership(_:)``.
    public func changeMembership(_ change: MembershipChange) async -> SubmitOutcome {
        guard isServing else { return .failed(failure ?? "the replica is stopped") }
        let (id, ready) = core.changeMembership(change)
        return await withCheckedContinuation { continuation in
            waiters[id] = Waiter(continuation: continuation, deadline: ticks + submitTimeoutTicks)
            enqueue(ready)
        }
    }

    /// Answers a command that only reads (``StateMachine/read(_:rows:)``) with `consistency`; a
    /// command the machine does not answer without the log, and a linearizable read on a replica
    /// that does not lead, go through the log like ``submit(_:resendable:)`` (as resendable).
    ///
    /// Nonisolated: the store read runs on the store's reader, not on this actor.
    public nonisolated func read(_ command: Value, consistency: ReadConsistency = .linearizable) async
        -> SubmitOutcome
    {
        if consistency == .linearizable {
            switch await confirmRead() {
            case .ready: break
            case .notLeader: return await submit(command, resendable: true)
            case .failed(let reason): return .failed(reason)
            }
        } else if await !isServing {
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

    /// Waits until the core confirms a read and has applied through its index.
    private func confirmRead() async -> ReadGrant {
        guard isServing else { return .failed(failure ?? "the replica is stopped") }
        let (id, ready) = core.read()
        if ready.failedReads.contains(id) {
            enqueue(ready)
            // A leader refuses a read only when too many wait: not a reason to send it through
            // the log, which is busier still.
            return core.isLeader ? .failed("too many reads waiting for confirmation") : .notLeader
        }
        if let index = core.waitingReadIndex, let through = pending.appliedThrough, index <= through {
            // The applies it waits for are pending without a client of their own: commit them now.
            pending.prompt = true
        }
        return await withCheckedContinuation { continuation in
            readWaiters[id] = ReadWaiter(continuation: continuation, deadline: ticks + submitTimeoutTicks)
            enqueue(ready)
        }
    }

    /// Whether the replica serves: false once killed or after a failed commit.
    public var isServing: Bool { !killed && failure == nil }

    /// Reads the protocol state, for status pages and tests.
    public func inspect<T: Sendable>(_ body: (LogReplica) -> T) -> T { body(core) }

    /// Every row of the state machine, read from the store (the whole store: for tests).
    public func machineRows() async throws -> [MachineKey: [UInt8]] { try await store.machineRows() }

    /// A consistent view of the state machine as this replica applied it (a backup reads it while
    /// the replica goes on committing); the caller closes it.
    public func openSnapshot() async throws -> any LogSnapshotSource { try await store.openSnapshot() }

    /// This replica's proposals waiting for their outcome (``submit(_:resendable:)`` calls).
    public var pendingProposals: Int { waiters.count }

    /// Snapshots peers are fetching from this replica now.
    public var openSnapshots: Int { snapshotReaders.count }

    /// Stops the replica: no more ticks, requests or replies; waiting clients get an unknown
    /// outcome. What is committed stays in the store.
    public func kill() async {
        guard !killed else { return }
        killed = true
        tickTask?.cancel()
        tickTask = nil
        dropUnreleased()
        failWaiters(unknown: "the replica stopped")
        await transport.stopServingLog()
        await closeSnapshots()
    }

    // MARK: - Inputs

    func handle(_ request: LogRequestEnvelope) async -> LogReplyEnvelope? {
        guard isServing else { return nil }
        if case .snapshotChunk(let token, let after) = request.request {
            // Any authenticated peer: a node that joins fetches a snapshot before it is a member.
            guard request.from != me else { return nil }
            return await serveSnapshotChunk(to: request.from, token: token, after: after)
        }
        let ready = core.onRequest(request)
        guard ready.reply != nil else {
            enqueue(ready)
            return ready.eagerReply
        }
        return await withCheckedContinuation { continuation in
            enqueue(ready, replyTo: continuation)
        }
    }

    private func onReply(_ reply: LogReplyEnvelope) {
        guard isServing else { return }
        enqueue(core.onReply(reply))
    }

    private func onSendFailure(_ outbound: LogOutbound) {
        guard isServing else { return }
        enqueue(core.onSendFailure(outbound))
    }

    private func tick() async {
        guard isServing else { return }
        await closeIdleSnapshots()
        guard isServing else { return }
        ticks += 1
        let expired = waiters.filter { $0.value.deadline <= ticks }
        for (id, waiter) in expired {
            waiters[id] = nil
            core.forget(id)
            waiter.continuation.resume(returning: .unknown("timed out waiting for the command to be applied"))
        }
        for (id, waiter) in readWaiters where waiter.deadline <= ticks {
            readWaiters[id] = nil
            core.forgetRead(id)
            waiter.continuation.resume(returning: .failed("timed out confirming the read with a majority"))
        }
        enqueue(core.tick())
        flush(force: true)
    }

    private func startTicking(
        every interval: Duration, sleep: @escaping @Sendable (Duration) async throws -> Void
    ) {
        tickTask = Task { [weak self] in
            while !Task.isCancelled {
                do { try await sleep(interval) } catch { return }
                guard let self else { return }
                await self.tick()
            }
        }
    }

    // MARK: - Send now, persist, then send and apply

    private func enqueue(
        _ ready: LogReady, replyTo continuation: CheckedContinuation<LogReplyEnvelope?, Never>? = nil
    ) {
        guard isServing else {
            continuation?.resume(returning: nil)
            return
        }
        for message in ready.eagerMessages { send(message) }
        if !ready.events.isEmpty { report(ready.events) }
        metrics.observe(core, since: &observed)
        pending.mutations += ready.mutations
        pending.messages += ready.messages
        pending.localReplies += ready.localReplies
        for mutation in ready.mutations {
            if case .installSnapshot(let applied) = mutation {
                // Installing stands for many applies: the replica serves from it once durable,
                // and reports it applied through its slot after the commit (reads wait for that).
                pending.prompt = true
                pending.appliedThrough = Swift.max(pending.appliedThrough ?? 0, applied)
            }
            guard case .apply(let slot, let entry) = mutation else { continue }
            pending.appliedThrough = Swift.max(pending.appliedThrough ?? 0, slot)
            if !pending.prompt, !waiters.isEmpty, entry.contains(where: { waiters[$0.id] != nil }) {
                pending.prompt = true
            }
            if !pending.prompt, !readWaiters.isEmpty, let index = core.waitingReadIndex, index <= slot {
                // A read waits for this apply to be reported.
                pending.prompt = true
            }
        }
        // Results depend only on chosen entries, durable at a majority (LogReady's contract).
        deliver(results: ready.results, failed: ready.failed, unknown: ready.unknown)
        // Confirmed reads wait for an applied index reported after its commit: serve them now.
        for id in ready.reads { readWaiters.removeValue(forKey: id)?.continuation.resume(returning: .ready) }
        for id in ready.failedReads {
            readWaiters.removeValue(forKey: id)?.continuation.resume(returning: .notLeader)
        }
        if let continuation { pending.replies.append((continuation, ready.reply)) }
        flush()
    }

    /// Starts the next commit unless one is in flight; batches commit strictly in order.
    ///
    /// Mutations that nothing waits on (applying or learning chosen entries no client of this
    /// replica waits for) wait for the next commit that does gate a reply, a message, a vote or
    /// a client, or for the next tick, instead of costing an fsync of their own. Losing them in a
    /// crash loses nothing: the replica re-learns and re-applies the chosen entries.
    private func flush(force: Bool = false) {
        while !committing, !pending.isEmpty, isServing {
            if !force, !pending.prompt, pending.messages.isEmpty, pending.localReplies.isEmpty,
                pending.replies.isEmpty
            {
                return
            }
            let batch = pending
            pending = Batch()
            if batch.mutations.isEmpty {
                release(batch)
                continue
            }
            committing = true
            Task { await self.commit(batch) }
        }
    }

    private func commit(_ batch: Batch) async {
        let outputs: [(ProposalID, Value)]
        let started = ContinuousClock.now
        do {
            outputs = try await store.commitLog(batch.mutations, machine: machine, outputsFor: me) {
                [weak self] early in
                // While this replica's own copy of the apply is still being fsynced: the outputs
                // depend only on chosen entries (LogReady's contract).
                guard let self else { return }
                Task { await self.deliverEarly(early) }
            }
        } catch {
            committing = false
            failure = "commit failed: \(error)"
            logger.critical(
                "commit failed: this replica stops serving (nothing of the batch left the node); restart it once the disk is fixed",
                metadata: ["error": "\(error)", "mutations": "\(batch.mutations.count)"])
            for (continuation, _) in batch.replies { continuation.resume(returning: nil) }
            dropUnreleased()
            failWaiters(unknown: "the replica stopped: \(failure!)")
            tickTask?.cancel()
            await transport.stopServingLog()
            await closeSnapshots()
            return
        }
        committing = false
        commits += 1
        metrics.committed(batch.mutations, duration: ContinuousClock.now - started)
        if isServing {
            release(batch)
            if let through = batch.appliedThrough, isServing {
                enqueue(core.onApplied(through: through, outputs: outputs))
            }
        } else {
            for (continuation, _) in batch.replies { continuation.resume(returning: nil) }
        }
        flush()
    }

    private func release(_ batch: Batch) {
        for (continuation, reply) in batch.replies { continuation.resume(returning: reply) }
        for message in batch.messages { send(message) }
        for reply in batch.localReplies { onReply(reply) }
    }

    /// Answers the clients waiting for `outputs` (the first output of a proposal counts; a later
    /// one, or the replica's own report after the commit, finds no waiter).
    private func deliverEarly(_ outputs: [(ProposalID, Value)]) {
        for (id, output) in outputs {
            waiters.removeValue(forKey: id)?.continuation.resume(returning: .applied(output))
        }
    }

    private func deliver(results: [(ProposalID, Value)], failed: [ProposalID], unknown: [ProposalID]) {
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

    // MARK: - Snapshots for peers

    /// Answers a peer's request for the next chunk of a snapshot: token 0 opens a new one (and
    /// closes the peer's earlier one); another token continues the peer's open one, or is told it
    /// is gone. No answer when the store cannot be read: the peer's call fails and it asks again.
    private func serveSnapshotChunk(to peer: NodeID, token: UInt64, after: MachineKey?) async
        -> LogReplyEnvelope?
    {
        let reader: SnapshotReader
        if token == 0 {
            guard openingSnapshots.insert(peer).inserted else { return nil }
            defer { openingSnapshots.remove(peer) }
            if let old = snapshotReaders.removeValue(forKey: peer) { await old.source.close() }
            guard let source = try? await store.openSnapshot() else { return nil }
            var generator = SystemRandomNumberGenerator()
            let opened = SnapshotReader(
                token: UInt64.random(in: 1...UInt64.max, using: &generator), source: source, lastUsed: ticks)
            // Another request of this peer may have opened one meanwhile: the newest wins.
            if let raced = snapshotReaders.updateValue(opened, forKey: peer) { await raced.source.close() }
            reader = opened
        } else {
            guard let open = snapshotReaders[peer], open.token == token else {
                return LogReplyEnvelope(from: me, incarnation: core.memberIncarnation, reply: .snapshotGone)
            }
            reader = open
        }
        guard isServing else {
            await closeSnapshots()
            return nil
        }
        snapshotReaders[peer]?.lastUsed = ticks
        do {
            let (rows, done) = try await reader.source.chunk(
                after: token == 0 ? nil : after, maxBytes: core.configuration.snapshotChunkBytes)
            if done, snapshotReaders[peer]?.token == reader.token {
                snapshotReaders[peer] = nil
                await reader.source.close()
            }
            if done { metrics.snapshotSends.increment() }
            return LogReplyEnvelope(
                from: me, incarnation: core.memberIncarnation,
                reply: .snapshotChunk(
                    token: reader.token, applied: reader.source.applied, after: token == 0 ? nil : after,
                    rows: rows,
                    done: done))
        } catch {
            if snapshotReaders[peer]?.token == reader.token { snapshotReaders[peer] = nil }
            await reader.source.close()
            return nil
        }
    }

    private func closeIdleSnapshots() async {
        let idle = snapshotReaders.filter { ticks - $0.value.lastUsed > snapshotIdleTicks }
        for (peer, reader) in idle where snapshotReaders[peer]?.token == reader.token {
            snapshotReaders[peer] = nil
            await reader.source.close()
        }
    }

    private func closeSnapshots() async {
        let all = snapshotReaders
        snapshotReaders = [:]
        for reader in all.values { await reader.source.close() }
    }

    private func send(_ message: LogOutbound) {
        let transport = self.transport
        let roundTrip =
            LogMetrics.measuresRoundTrip(message.envelope.request) ? metrics.peerRoundTrip(message.to) : nil
        Task { [weak self] in
            do {
                let started = ContinuousClock.now
                let reply = try await transport.call(message.envelope, to: message.to)
                roundTrip?.recordNanoseconds(LogMetrics.nanoseconds(ContinuousClock.now - started))
                guard reply.from == message.to else {
                    await self?.onSendFailure(message)
                    return
                }
                await self?.onReply(reply)
            } catch {
                await self?.onSendFailure(message)
            }
        }
    }

    /// Dials the members the store's membership names, and says what this node is in it.
    private func startUp() async {
        let membership = core.membership
        await transport.updateMembers(Self.addresses(membership))
        logger.info(
            "replicated log started",
            metadata: [
                "membership": "\(membership)", "incarnation": "\(String(core.memberIncarnation, radix: 16))",
            ])
        if let member = membership.member(me), member.incarnation != 0,
            member.incarnation != core.memberIncarnation
        {
            logNotAVoter(known: member.incarnation)
        }
    }

    private static func addresses(_ membership: Membership) -> [NodeID: String] {
        Dictionary(
            uniqueKeysWithValues: membership.members.filter { !$0.address.isEmpty }.map {
                ($0.id, $0.address)
            })
    }

    private func report(_ events: [ReplicaEvent]) {
        for event in events {
            switch event {
            case .membership(let membership):
                logger.info("membership changed", metadata: ["membership": "\(membership)"])
                let transport = self.transport
                let addresses = Self.addresses(membership)
                Task { await transport.updateMembers(addresses) }
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
                    target == nil ? "election won: leading" : "election won: catching up first, then leading",
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

    private func logNotAVoter(known: UInt64) {
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
    private func due(_ kind: String) -> Bool {
        if let last = lastLogged[kind], ticks - last < 6000, ticks >= last { return false }
        lastLogged[kind] = ticks
        return true
    }

    private func dropUnreleased() {
        for (continuation, _) in pending.replies { continuation.resume(returning: nil) }
        pending = Batch()
    }

    private func failWaiters(unknown reason: String) {
        let all = waiters
        waiters = [:]
        for (_, waiter) in all { waiter.continuation.resume(returning: .unknown(reason)) }
        let reads = readWaiters
        readWaiters = [:]
        for (_, waiter) in reads { waiter.continuation.resume(returning: .failed(reason)) }
    }
}
