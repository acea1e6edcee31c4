import Logging
import PaxosCore
import PaxosWire
import ServiceLifecycle
import Synchronization

// MARK: - What the runtime needs of a protocol

/// One step's output of a protocol core (``Ready`` or ``LogReady``), as the runtime carries it
/// out: persist ``mutations``, then release ``messages``, ``localReplies`` and ``reply``;
/// ``eagerMessages`` and ``eagerReply`` may leave at once.
public protocol RuntimeStep: Sendable {
    associatedtype Mutation: Sendable
    associatedtype Outbound: RuntimeOutbound
    associatedtype Reply: Sendable
    var mutations: [Mutation] { get }
    var eagerMessages: [Outbound] { get }
    var messages: [Outbound] { get }
    var localReplies: [Reply] { get }
    var reply: Reply? { get }
    var eagerReply: Reply? { get }
}

/// A request a core addresses to one peer.
public protocol RuntimeOutbound: Sendable {
    associatedtype Request: Sendable
    var to: NodeID { get }
    var envelope: Request { get }
}

/// A pure protocol core (``PaxosNode`` or ``LogReplica``): inputs in, a step out.
public protocol RuntimeCore {
    associatedtype Step: RuntimeStep
    associatedtype Request: Sendable where Step.Outbound.Request == Request
    mutating func onRequest(_ request: Request) -> Step
    mutating func onReply(_ reply: Step.Reply) -> Step
    mutating func onSendFailure(_ outbound: Step.Outbound) -> Step
    mutating func tick() -> Step
}

/// What one batch remembers for its driver until it is committed and released.
public protocol RuntimeNotes { init() }

/// The part of a replica that differs between the two protocols: its core and whatever its face
/// (``PaxosPeer``, ``LogPeer``) keeps beside it (clients waiting, decisions not yet durable).
/// The runtime calls it only on its own executor, one call at a time; every call is synchronous.
public protocol RuntimeDriver: SendableMetatype {
    associatedtype Core: RuntimeCore
    /// The protocol's messages on the wire, and the channel they travel on.
    associatedtype Codec: PeerCodec
    where Codec.RequestMessage == Core.Request, Codec.ReplyMessage == Core.Step.Reply
    associatedtype Notes: RuntimeNotes
    /// What a commit returns (the outputs of applied entries, for the log).
    associatedtype Output: Sendable
    /// What a commit hands out before its fsync (outputs that depend only on chosen entries).
    associatedtype Early: Sendable
    typealias Step = Core.Step

    var core: Core { get set }
    /// Takes what is the face's in `step` (results, reads, events) and notes what the batch that
    /// holds its mutations must remember.
    mutating func absorb(_ step: Step, into notes: inout Notes)
    /// Whether a batch must be committed now rather than wait for the next commit that gates a
    /// message or a reply, or for the next tick.
    func mustCommit(_ notes: Notes) -> Bool
    /// Whether a batch of these mutations that releases nothing (no message, reply or vote) must
    /// still be fsynced: `false` only for state a crash may lose because it is re-derived (the
    /// log's learned and applied chosen entries). A batch that releases anything is always
    /// fsynced, whatever this says.
    func needsSync(_ mutations: [Step.Mutation]) -> Bool
    /// The batch with `notes` is durable; its messages and replies are about to be released.
    mutating func released(_ notes: Notes)
    /// The batch is committed (durable, unless `synced` is false: see ``needsSync(_:)``) and
    /// released: what the core makes of that, if anything. `duration` is the commit's.
    mutating func committed(
        _ mutations: [Step.Mutation], notes: Notes, output: Output, duration: Duration, synced: Bool
    ) -> Step?
    /// Outputs a commit handed out before its fsync.
    mutating func early(_ early: Early)
    /// One tick of the clock.
    mutating func tick() -> Step
    /// The replica stopped serving (killed, or a commit failed: `failure`); fail every waiter.
    mutating func stopped(failure: String?)
    /// Whether `reply` answers `outbound` (a reply from another node, or to another request, is
    /// treated as a failed send).
    func answers(_ reply: Step.Reply, _ outbound: Step.Outbound) -> Bool
    /// Called with the round trip of `outbound` once its reply came (metrics), if wanted.
    func roundTripObserver(for outbound: Step.Outbound) -> (@Sendable (Duration) -> Void)?
    /// Work the driver asked for that must wait (reconfiguring the transport): run in order,
    /// off the replica's executor.
    mutating func takeJobs() -> [@Sendable () async -> Void]
}

extension RuntimeDriver {
    public func needsSync(_ mutations: [Step.Mutation]) -> Bool { true }
    public func roundTripObserver(for outbound: Step.Outbound) -> (@Sendable (Duration) -> Void)? { nil }
    public mutating func takeJobs() -> [@Sendable () async -> Void] { [] }
}

// MARK: - The runtime

/// Drives one protocol core with a durable store, a transport and a clock: the one place where
/// every step is carried out as its contract demands.
///
/// - Eager messages and replies leave at once.
/// - The mutations of every input that arrived while a commit was in flight are committed as
///   one batch (group commit); batches commit strictly in order.
/// - Only then are the batch's replies, messages and local votes released.
/// - A failed commit stops the replica (crash-stop): nothing unreleased ever leaves.
///
/// Every task the runtime needs is a child of ``run()``, which ``start()`` runs under a task
/// the runtime holds: the tick loop, the commit loop, the inbox loop and the driver's jobs.
/// ``kill()`` cancels them all. Messages need no task: the runtime hands them to the
/// ``PeerTransport`` from its own executor, and requests, replies and early outputs come back
/// through the inbox, decoded and checked on the transport's thread, onto this actor.
public actor ReplicaRuntime<Driver: RuntimeDriver>: Service {
    public typealias Step = Driver.Step
    public typealias Request = Driver.Core.Request
    public typealias Reply = Step.Reply
    public typealias Outbound = Step.Outbound
    public typealias Mutation = Step.Mutation

    /// Commits mutations, durably unless `durable` is false (see
    /// ``RuntimeDriver/needsSync(_:)``); hands early outputs to the closure while the fsync runs.
    public typealias Persist =
        @Sendable (
            [Mutation], _ durable: Bool, _ early: @escaping @Sendable (Driver.Early) -> Void
        ) async throws -> Driver.Output
    /// Answers one request of a peer.
    public typealias Respond = @Sendable (PeerAnswer) -> Void

    private struct Batch {
        var mutations: [Mutation] = []
        var messages: [Outbound] = []
        var localReplies: [Reply] = []
        var replies: [(Responder, Reply?)] = []
        var notes = Driver.Notes()
        /// Whether its commit must fsync: decided when it is handed to the commit loop.
        var needsSync = true

        var isEmpty: Bool { mutations.isEmpty && messages.isEmpty && localReplies.isEmpty && replies.isEmpty }
    }

    /// Who waits for a reply to leave: a peer's request, or a local caller.
    private enum Responder {
        case peer(UInt64)
        case local(CheckedContinuation<Reply?, Never>)
    }

    private enum Input: Sendable {
        case request(Request, UInt64)
        case replied(Outbound, Result<Reply, TransportError>)
        case early(Driver.Early)
    }

    public nonisolated let me: NodeID
    private var driver: Driver
    private var pending = Batch()
    /// The batch handed to the commit loop; set only while `committing`.
    private var inFlight: Batch?
    private var committing = false
    private var killed = false
    /// Why the replica stopped, when a commit failed.
    public private(set) var failure: String?
    /// Batches committed with an fsync (a durable store's fsyncs); those committed without one
    /// (``RuntimeDriver/needsSync(_:)``) are not counted.
    public private(set) var commits = 0

    private let persist: Persist
    private let transport: any PeerTransport
    /// The peers' requests not answered yet: every one is answered exactly once, by its reply,
    /// or with none when the replica stops, so a connection's requests in flight always drain.
    private nonisolated let unanswered = Unanswered()
    private let unserve: @Sendable (_ failed: Bool) async -> Void
    private let tickInterval: Duration
    private let sleep: @Sendable (Duration) async throws -> Void
    private let alongside: [@Sendable () async -> Void]
    /// Where the runtime's tasks prefer to run (the simulator's deterministic executor); `nil`:
    /// under ``run()``, whatever the calling task prefers (paxos-node: its event loop); under
    /// ``start()``, Swift's global executor.
    private let executor: (any TaskExecutor)?
    /// Where the actor runs, whoever calls it: the node's event loop, so that a client's call
    /// from another thread (an HTTP handler's) hops to the loop instead of running the replica
    /// there. Without one, the actor's own default executor (its code then runs on the
    /// preferred executor of the task that calls it, as any default actor's).
    private nonisolated let serial: UnownedSerialExecutor
    /// What `serial` points to, held strongly (an unowned executor must outlive the actor): the
    /// serial executor given, or the default actor whose executor it borrows.
    private nonisolated let serialOwner: any AnyObject & Sendable

    public nonisolated var unownedExecutor: UnownedSerialExecutor { serial }

    private let inbox: AsyncStream<Input>
    private let inboxInput: AsyncStream<Input>.Continuation
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let jobs: AsyncStream<@Sendable () async -> Void>
    private let jobInput: AsyncStream<@Sendable () async -> Void>.Continuation
    /// Finished to end ``run()``: by ``kill()``, a failed commit, the face's release, or a
    /// graceful shutdown of the service group that runs it.
    private let stopSignal: AsyncStream<Void>
    private nonisolated let stopInput: AsyncStream<Void>.Continuation
    /// ``run()`` began, and has ended; who waits for it to end.
    private var running = false
    private var ended = false
    private var endWaiters: [CheckedContinuation<Void, Never>] = []
    /// A stop finished (its tasks ended and it unserved); who waits for that.
    private var stopped = false
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    /// The task that runs ``run()`` when ``start()`` made it, cancelled with it.
    private nonisolated let root = Mutex<Task<Void, Never>?>(nil)

    /// - Parameters:
    ///   - persist: the store's commit.
    ///   - transport: where messages go and requests come from (on `Driver.Codec.channel`).
    ///   - unserve: stops the transport from handing this replica requests: on a kill, and after
    ///     a failed commit (`failed`), when the replica answers no request either way.
    ///   - alongside: more work that lives as long as the replica (serving snapshots' sweeper).
    ///   - executor: where the runtime's tasks prefer to run: the simulator passes its own, so a
    ///     run is repeatable; `nil` leaves them to the task that calls ``run()`` (``start()``:
    ///     Swift's global executor).
    ///   - serialExecutor: where the actor runs, whoever calls it (paxos-node: its event loop,
    ///     where the peer connections are); `nil`: a default executor of its own.
    public init(
        me: NodeID, driver: Driver, persist: @escaping Persist, transport: any PeerTransport,
        unserve: @escaping @Sendable (_ failed: Bool) async -> Void, tickInterval: Duration,
        sleep: @escaping @Sendable (Duration) async throws -> Void,
        alongside: [@Sendable () async -> Void] = [], executor: (any TaskExecutor)? = nil,
        serialExecutor: (any SerialExecutor)? = nil
    ) {
        if let serialExecutor {
            serial = serialExecutor.asUnownedSerialExecutor()
            serialOwner = serialExecutor
        } else {
            let isolation = DefaultIsolation()
            serial = isolation.unownedExecutor
            serialOwner = isolation
        }
        self.me = me
        self.driver = driver
        self.persist = persist
        self.transport = transport
        self.unserve = unserve
        self.tickInterval = tickInterval
        self.sleep = sleep
        self.alongside = alongside
        self.executor = executor
        (inbox, inboxInput) = AsyncStream.makeStream(of: Input.self)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (jobs, jobInput) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        (stopSignal, stopInput) = AsyncStream.makeStream(of: Void.self)
    }

    deinit {
        inboxInput.finish()
        wake.finish()
        jobInput.finish()
        stopInput.finish()
    }

    /// Starts ``run()`` under a task this runtime holds (cancelled by ``kill()`` or ``cancel()``),
    /// for a replica that no service group runs (tests, the lab API). The face serves the
    /// transport's requests into ``receive(from:payload:respond:)``.
    public func start() {
        root.withLock { task in
            guard task == nil, !killed, !running else { return }
            task = Task(executorPreference: executor) { await self.run() }
        }
    }

    /// Ends the runtime's tasks without waiting (the face that owns it was released), and
    /// answers every peer request not answered yet, and every later one, with nothing.
    public nonisolated func cancel() {
        stopInput.finish()
        root.withLock { $0?.cancel() }
        unanswered.close()
    }

    /// Runs the replica until it is killed, a commit fails, the calling task is cancelled, or the
    /// service group running it shuts down gracefully (then it stops as ``kill()`` stops it).
    /// Every task it needs is a child of this one; it runs once.
    public func run() async {
        guard !running, !killed else { return }
        running = true
        let stop = stopInput
        var stoppedHere = false
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.inboxLoop() }
                group.addTask { await self.commitLoop() }
                group.addTask { await self.tickLoop() }
                group.addTask { await self.jobLoop() }
                for work in alongside { group.addTask { await work() } }
                for await _ in stopSignal {}
                if !killed, failure == nil {
                    // Shut down gracefully, or cancelled: stop as kill() does, before the loops
                    // are cancelled, so a commit they interrupt is a stop, not a failure, and
                    // nothing they still hold is released.
                    killed = true
                    stoppedHere = true
                    dropUnreleased()
                    driver.stopped(failure: nil)
                    unanswered.close()
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            stop.finish()
        }
        ended = true
        for waiter in endWaiters { waiter.resume() }
        endWaiters = []
        if stoppedHere {
            await unserve(false)
            markStopped()
        }
    }

    // MARK: Inputs

    /// Whether the replica serves: false once killed or after a failed commit.
    public var isServing: Bool { !killed && failure == nil }

    /// A request from `from`, on the transport's thread: decoded and checked here, then handed
    /// to the replica through the inbox. A request that does not decode, or that speaks for
    /// another node than the connection's, is refused (the transport closes that connection).
    public nonisolated func receive(from: NodeID, payload: [UInt8], respond: @escaping Respond) {
        switch Self.decode(from: from, payload: payload) {
        case .success(let request): deliver(request, respond: respond)
        case .failure(let refusal): respond(.refuse(refusal.message))
        }
    }

    /// Decodes a request of `from` and checks that it speaks for `from`.
    public static func decode(from: NodeID, payload: [UInt8]) -> Result<Request, TransportError> {
        let request: Request
        do {
            request = try Driver.Codec.decodeRequest(payload, maxValueBytes: payload.count)
        } catch {
            return .failure(
                TransportError("malformed \(Driver.Codec.channel) request from node \(from): \(error)"))
        }
        let sender = Driver.Codec.sender(of: request)
        guard sender == from else {
            return .failure(
                TransportError("node \(from) sent a \(Driver.Codec.channel) request signed by node \(sender)")
            )
        }
        return .success(request)
    }

    /// Hands a decoded, checked request to the replica through the inbox.
    public nonisolated func deliver(_ request: Request, respond: @escaping Respond) {
        guard let id = unanswered.insert(respond) else { return respond(.none) }
        if case .terminated = inboxInput.yield(.request(request, id)) { unanswered.take(id)?(.none) }
    }

    /// Answers the peer's request `id` with `reply` (none: no answer).
    private func answer(_ id: UInt64, _ reply: Reply?) {
        unanswered.take(id)?(reply.map { .reply(Driver.Codec.encode($0)) } ?? .none)
    }

    private func onRequest(_ request: Request, _ id: UInt64) {
        guard isServing else { return answer(id, nil) }
        let step = driver.core.onRequest(request)
        guard step.reply != nil else {
            enqueue(step)
            return answer(id, step.eagerReply)
        }
        enqueue(step, replyTo: .peer(id))
    }

    /// Runs `body` on the driver and carries out the step it returns; nothing (nil) once the
    /// replica stopped.
    @discardableResult
    public func act<T: Sendable>(_ body: @Sendable (inout Driver) -> (T, Step?)) -> T? {
        guard isServing else { return nil }
        let (result, step) = body(&driver)
        if let step { enqueue(step) }
        return result
    }

    /// Runs `body` on the driver, which keeps the continuation, and carries out the step it
    /// returns; waits until the continuation is resumed.
    public func wait<T: Sendable>(
        _ body: @Sendable (inout Driver, inout Driver.Notes, CheckedContinuation<T, Never>) -> Step?
    ) async -> T {
        await withCheckedContinuation { continuation in
            if let step = body(&driver, &pending.notes, continuation) { enqueue(step) }
        }
    }

    /// Carries out `body`'s step and returns once everything it depends on is durable (or the
    /// replica stopped).
    public func durably(_ body: @Sendable (inout Driver) -> Step) async {
        guard isServing else { return }
        let step = body(&driver)
        _ = await withCheckedContinuation { continuation in
            enqueue(step, replyTo: .local(continuation))
        }
    }

    /// Reads the driver's state.
    public func inspect<T: Sendable>(_ body: @Sendable (Driver) -> T) -> T { body(driver) }

    /// Stops the replica: no more ticks, requests or replies; waiters are failed. Returns once
    /// the runtime's tasks have ended (a commit in flight has returned). What is committed stays
    /// in the store.
    public func kill() async {
        guard !killed else {
            // Stopping already (another kill, or run()'s graceful stop): return once it is done.
            if !stopped { await withCheckedContinuation { stopWaiters.append($0) } }
            return
        }
        killed = true
        dropUnreleased()
        if failure == nil { driver.stopped(failure: nil) }
        cancel()
        if running, !ended { await withCheckedContinuation { endWaiters.append($0) } }
        await unserve(false)
        markStopped()
    }

    /// A stop (kill or graceful) has ended: the tasks, and the unserving.
    private func markStopped() {
        stopped = true
        for waiter in stopWaiters { waiter.resume() }
        stopWaiters = []
    }

    private func inboxLoop() async {
        for await input in inbox {
            guard isServing else {
                if case .request(_, let id) = input { answer(id, nil) }
                continue
            }
            switch input {
            case .request(let request, let id):
                onRequest(request, id)
            case .replied(let outbound, .success(let reply)) where driver.answers(reply, outbound):
                enqueue(driver.core.onReply(reply))
            case .replied(let outbound, _):
                enqueue(driver.core.onSendFailure(outbound))
            case .early(let early):
                driver.early(early)
            }
        }
    }

    private func tickLoop() async {
        while !Task.isCancelled {
            do { try await sleep(tickInterval) } catch { return }
            guard isServing else { return }
            enqueue(driver.tick())
            flush(force: true)
        }
    }

    private func jobLoop() async {
        for await job in jobs { await job() }
    }

    // MARK: Send now, persist, then send and apply

    private func enqueue(_ step: Step, replyTo responder: Responder? = nil) {
        guard isServing else {
            if let responder { resolve(responder, nil) }
            return
        }
        for message in step.eagerMessages { send(message) }
        driver.absorb(step, into: &pending.notes)
        for job in driver.takeJobs() { jobInput.yield(job) }
        pending.mutations += step.mutations
        pending.messages += step.messages
        pending.localReplies += step.localReplies
        if let responder { pending.replies.append((responder, step.reply)) }
        flush()
    }

    /// Hands the next batch to the commit loop unless a commit is in flight; a batch with nothing
    /// to persist is released at once, since everything it depends on is durable already.
    ///
    /// A batch may wait (``RuntimeDriver/mustCommit(_:)``) when nothing waits on it but the
    /// driver's own bookkeeping: it goes with the next commit that gates a message, a reply or a
    /// vote, or at the next tick (`force`).
    private func flush(force: Bool = false) {
        while !committing, !pending.isEmpty, isServing {
            if !force, !driver.mustCommit(pending.notes), pending.messages.isEmpty,
                pending.localReplies.isEmpty, pending.replies.isEmpty
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
            inFlight = batch
            inFlight?.needsSync =
                !batch.messages.isEmpty || !batch.localReplies.isEmpty || !batch.replies.isEmpty
                || driver.needsSync(batch.mutations)
            wake.yield()
        }
    }

    private func commitLoop() async {
        for await _ in wakeups {
            guard let batch = inFlight else { continue }
            inFlight = nil
            await commit(batch)
        }
    }

    private func commit(_ batch: Batch) async {
        let output: Driver.Output
        let started = ContinuousClock.now
        let inbox = inboxInput
        do {
            output = try await persist(batch.mutations, batch.needsSync) { early in inbox.yield(.early(early))
            }
        } catch {
            committing = false
            guard !killed else {
                // Killed while this commit ran (a store may throw once cancelled): a stop, not a
                // failure. Nothing of the batch leaves either way.
                for (responder, _) in batch.replies { resolve(responder, nil) }
                return
            }
            let reason = "commit failed: \(error)"
            failure = reason
            for (responder, _) in batch.replies { resolve(responder, nil) }
            dropUnreleased()
            driver.stopped(failure: reason)
            cancel()
            await unserve(true)
            return
        }
        committing = false
        if batch.needsSync { commits += 1 }
        if isServing {
            release(batch)
            if isServing,
                let step = driver.committed(
                    batch.mutations, notes: batch.notes, output: output,
                    duration: ContinuousClock.now - started, synced: batch.needsSync)
            {
                enqueue(step)
            }
        } else {
            for (responder, _) in batch.replies { resolve(responder, nil) }
        }
        flush()
    }

    private func release(_ batch: Batch) {
        driver.released(batch.notes)
        for (responder, reply) in batch.replies { resolve(responder, reply) }
        for message in batch.messages { send(message) }
        for reply in batch.localReplies where isServing { enqueue(driver.core.onReply(reply)) }
    }

    private func resolve(_ responder: Responder, _ reply: Reply?) {
        switch responder {
        case .peer(let id): answer(id, reply)
        case .local(let continuation): continuation.resume(returning: reply)
        }
    }

    /// Hands `outbound` to the transport now; its reply is decoded on the transport's thread and
    /// comes back through the inbox.
    private func send(_ outbound: Outbound) {
        let inbox = inboxInput
        let observe = driver.roundTripObserver(for: outbound)
        let started = observe == nil ? nil : ContinuousClock.now
        transport.send(Driver.Codec.encode(outbound.envelope), on: Driver.Codec.channel, to: outbound.to) {
            result in
            let reply = result.flatMap { payload -> Result<Reply, TransportError> in
                do {
                    return .success(try Driver.Codec.decodeReply(payload, maxValueBytes: payload.count))
                } catch {
                    return .failure(TransportError("a malformed reply from \(outbound.to): \(error)"))
                }
            }
            if let observe, let started, case .success = reply { observe(ContinuousClock.now - started) }
            inbox.yield(.replied(outbound, reply))
        }
    }

    /// Answers nothing to whoever waits on a batch not committed yet: the pending one, and the
    /// one handed to the commit loop that it has not taken (it takes a batch before persisting
    /// it, so this one was never persisted).
    private func dropUnreleased() {
        for (responder, _) in pending.replies { resolve(responder, nil) }
        pending = Batch()
        if let batch = inFlight {
            for (responder, _) in batch.replies { resolve(responder, nil) }
            inFlight = nil
        }
    }
}

/// A default actor whose executor a runtime without a serial executor of its own borrows: a
/// default actor's executor runs its jobs one at a time, on the preferred executor of the task
/// that enqueues them (the simulator's scheduler, in a simulation).
final actor DefaultIsolation {}

/// The requests of peers a runtime has not answered yet, under a lock: taken by whoever answers
/// first (the runtime, or its stop), so each is answered exactly once.
final class Unanswered: Sendable {
    private struct State {
        var next: UInt64 = 1
        var open: [UInt64: @Sendable (PeerAnswer) -> Void] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    deinit { close() }

    /// Files `respond`; nil once closed (answer at once instead).
    func insert(_ respond: @escaping @Sendable (PeerAnswer) -> Void) -> UInt64? {
        state.withLock { state in
            guard !state.closed else { return nil }
            let id = state.next
            state.next += 1
            state.open[id] = respond
            return id
        }
    }

    func take(_ id: UInt64) -> (@Sendable (PeerAnswer) -> Void)? {
        state.withLock { $0.open.removeValue(forKey: id) }
    }

    /// Answers every open request with none, and every later one at once.
    func close() {
        let open = state.withLock { state in
            state.closed = true
            defer { state.open = [:] }
            return state.open
        }
        for respond in open.values { respond(.none) }
    }
}
