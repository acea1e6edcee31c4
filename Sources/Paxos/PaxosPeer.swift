import PaxosCore

/// One Paxos peer, the 6.824 lab's `Make(peers, me)`: a ``PaxosNode`` (the pure protocol) driven
/// with a durable ``AcceptorStore``, a ``PaxosTransport`` and a clock.
///
/// The peer carries out every ``Ready`` in the order its contract demands — persist, then send,
/// then apply — with group commit: the mutations of all inputs that arrive while a commit is in
/// flight are merged into the next batch, and batches commit strictly one after another. A
/// message, reply or local vote is released only after the batch it was produced with has
/// committed, so it never depends on state that is not on disk. A failed commit stops the peer
/// (crash-stop): it drops everything not yet released and answers no request afterwards.
public actor PaxosPeer {
    /// What has to wait for one commit.
    private struct Batch {
        var mutations: [StoreMutation] = []
        var messages: [OutboundRequest] = []
        var localReplies: [ReplyEnvelope] = []
        var replies: [(CheckedContinuation<ReplyEnvelope?, Never>, ReplyEnvelope?)] = []
        var decisions: [Int] = []

        var isEmpty: Bool { mutations.isEmpty && messages.isEmpty && localReplies.isEmpty && replies.isEmpty }
    }

    /// This peer's id.
    public nonisolated let me: NodeID
    private var core: PaxosNode
    private let store: any AcceptorStore
    private let transport: any PaxosTransport
    private var pending = Batch()
    /// Instances decided in the core whose decision is not on disk yet.
    private var undurableDecisions: Set<Int> = []
    private var committing = false
    private var killed = false
    private var tickTask: Task<Void, Never>?
    /// Why the peer stopped serving, when a commit failed.
    public private(set) var failure: String?
    /// How many batches were committed (a measure of group commit).
    public private(set) var commits = 0

    private init(core: PaxosNode, store: any AcceptorStore, transport: any PaxosTransport) {
        self.me = core.me
        self.core = core
        self.store = store
        self.transport = transport
    }

    /// Creates a peer on `store`, resuming from whatever the store holds, and starts serving.
    ///
    /// - Parameters:
    ///   - tickInterval: the length of one protocol tick (timeouts and backoff are in ticks).
    ///   - sleep: the clock; tests may pass a faster or virtual one.
    ///   - seed: seeds the proposer's randomized backoff.
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
        me: NodeID, peers: [NodeID], store: any AcceptorStore, transport: any PaxosTransport,
        configuration: PaxosConfiguration = PaxosConfiguration(), tickInterval: Duration = .milliseconds(10),
        seed: UInt64 = 1, recover: Bool = false,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
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
        let peer = PaxosPeer(core: core, store: store, transport: transport)
        await transport.serve { [weak peer] request in await peer?.handle(request) }
        // The queries (and, in a single-node cluster, nothing): their mutations are durable.
        await peer.enqueue(recovery)
        await peer.startTicking(every: tickInterval, sleep: sleep)
        return peer
    }

    // MARK: - The lab API

    /// Starts agreement on instance `seq` with `value` and returns at once.
    public func start(_ seq: Int, _ value: Value) {
        guard isServing else { return }
        enqueue(core.start(seq: seq, value: value))
    }

    /// What this peer knows about instance `seq`. Local; never waits on the network.
    /// The instance's fate as far as it is durable here: a decision the core has taken but whose
    /// commit has not returned (or failed) reads as pending, as the Ready contract asks.
    public func status(_ seq: Int) -> Fate {
        undurableDecisions.contains(seq) ? .pending : core.status(seq)
    }

    /// This peer's application is done with every instance `<= seq`. Returns once that is
    /// durable (or the peer stopped), so whoever is told "done" is never told it too early.
    public func done(_ seq: Int) async {
        guard isServing else { return }
        let ready = core.done(seq)
        _ = await withCheckedContinuation { continuation in
            enqueue(ready, replyTo: continuation)
        }
    }

    /// 1 + the minimum `done` over all peers; instances below are forgotten.
    public func min() -> Int { core.min }

    /// The highest instance sequence number known to this peer.
    public func max() -> Int { core.max }

    /// Stops the peer: no more ticks, requests or replies. What is committed stays in the store.
    public func kill() async {
        guard !killed else { return }
        killed = true
        tickTask?.cancel()
        tickTask = nil
        dropUnreleased()
        await transport.shutdown()
    }

    /// Reads the core's state, for tests and inspection.
    public func inspect<T: Sendable>(_ body: (PaxosNode) -> T) -> T { body(core) }

    // MARK: - Inputs

    /// Whether the peer answers requests: false once killed, or after a failed commit.
    public var isServing: Bool { !killed && failure == nil }

    /// A request from another peer; the reply leaves only after what it depends on is durable.
    func handle(_ request: RequestEnvelope) async -> ReplyEnvelope? {
        guard isServing else { return nil }
        let ready = core.onRequest(request)
        guard ready.reply != nil else { return nil }
        return await withCheckedContinuation { continuation in
            enqueue(ready, replyTo: continuation)
        }
    }

    private func onReply(_ reply: ReplyEnvelope) {
        guard isServing else { return }
        enqueue(core.onReply(reply))
    }

    private func onSendFailure(_ request: OutboundRequest) {
        guard isServing else { return }
        enqueue(core.onSendFailure(request))
    }

    private func tick() {
        guard isServing else { return }
        enqueue(core.tick())
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

    // MARK: - Persist, then send, then apply

    private func enqueue(
        _ ready: Ready, replyTo continuation: CheckedContinuation<ReplyEnvelope?, Never>? = nil
    ) {
        guard isServing else {
            continuation?.resume(returning: nil)
            return
        }
        pending.mutations.append(contentsOf: ready.mutations)
        pending.messages.append(contentsOf: ready.messages)
        pending.localReplies.append(contentsOf: ready.localReplies)
        pending.decisions.append(contentsOf: ready.decisions)
        undurableDecisions.formUnion(ready.decisions)
        if let continuation { pending.replies.append((continuation, ready.reply)) }
        flush()
    }

    /// Starts the next commit unless one is in flight; batches commit strictly in order.
    private func flush() {
        while !committing, !pending.isEmpty, isServing {
            let batch = pending
            pending = Batch()
            if batch.mutations.isEmpty {
                // Nothing new to persist and no commit in flight: everything this batch can
                // depend on is already durable.
                release(batch)
                continue
            }
            committing = true
            Task { await self.commit(batch) }
        }
    }

    private func commit(_ batch: Batch) async {
        do {
            try await store.commit(batch.mutations)
        } catch {
            committing = false
            // Crash-stop: never answer from state that may not be on disk.
            failure = "commit failed: \(error)"
            for (continuation, _) in batch.replies { continuation.resume(returning: nil) }
            dropUnreleased()
            tickTask?.cancel()
            return
        }
        committing = false
        commits += 1
        if isServing {
            release(batch)
        } else {
            for (continuation, _) in batch.replies { continuation.resume(returning: nil) }
        }
        flush()
    }

    private func release(_ batch: Batch) {
        undurableDecisions.subtract(batch.decisions)
        for (continuation, reply) in batch.replies { continuation.resume(returning: reply) }
        for message in batch.messages { send(message) }
        for reply in batch.localReplies { onReply(reply) }
    }

    private func send(_ message: OutboundRequest) {
        let transport = self.transport
        Task { [weak self] in
            do {
                let reply = try await transport.call(message.envelope, to: message.to)
                guard reply.from == message.to, reply.reply.seq == message.envelope.request.seq else {
                    await self?.onSendFailure(message)
                    return
                }
                await self?.onReply(reply)
            } catch {
                await self?.onSendFailure(message)
            }
        }
    }

    private func dropUnreleased() {
        for (continuation, _) in pending.replies { continuation.resume(returning: nil) }
        pending = Batch()
    }
}
