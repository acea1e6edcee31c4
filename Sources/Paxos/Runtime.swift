import Logging
import PaxosCore
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
    /// The batch with `notes` is durable; its messages and replies are about to be released.
    mutating func released(_ notes: Notes)
    /// The batch is durable and released: what the core makes of that, if anything.
    mutating func committed(
        _ mutations: [Step.Mutation], notes: Notes, output: Output, duration: Duration
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
/// the runtime holds: the tick loop, the commit loop, the inbox loop (replies and early outputs
/// come back through it onto this actor), the senders and the driver's jobs. ``kill()`` cancels
/// them all.
public actor ReplicaRuntime<Driver: RuntimeDriver> {
    public typealias Step = Driver.Step
    public typealias Request = Driver.Core.Request
    public typealias Reply = Step.Reply
    public typealias Outbound = Step.Outbound
    public typealias Mutation = Step.Mutation

    /// Commits mutations durably; hands early outputs to the closure while the fsync runs.
    public typealias Persist =
        @Sendable ([Mutation], _ early: @escaping @Sendable (Driver.Early) -> Void) async throws ->
        Driver.Output
    /// Sends a request to a peer and returns its reply.
    public typealias Call = @Sendable (Request, NodeID) async throws -> Reply

    private struct Batch {
        var mutations: [Mutation] = []
        var messages: [Outbound] = []
        var localReplies: [Reply] = []
        var replies: [(CheckedContinuation<Reply?, Never>, Reply?)] = []
        var notes = Driver.Notes()

        var isEmpty: Bool { mutations.isEmpty && messages.isEmpty && localReplies.isEmpty && replies.isEmpty }
    }

    private enum Input: Sendable {
        case replied(Outbound, Result<Reply, any Error>)
        case early(Driver.Early)
    }

    private struct Send: Sendable {
        var outbound: Outbound
        var observe: (@Sendable (Duration) -> Void)?
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
    /// Batches committed (each is one fsync with a durable store).
    public private(set) var commits = 0

    private let persist: Persist
    private let call: Call
    private let unserve: @Sendable (_ failed: Bool) async -> Void
    private let tickInterval: Duration
    private let sleep: @Sendable (Duration) async throws -> Void
    private let alongside: [@Sendable () async -> Void]

    private let inbox: AsyncStream<Input>
    private let inboxInput: AsyncStream<Input>.Continuation
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let sends: AsyncStream<Send>
    private let sendInput: AsyncStream<Send>.Continuation
    private let jobs: AsyncStream<@Sendable () async -> Void>
    private let jobInput: AsyncStream<@Sendable () async -> Void>.Continuation
    /// The task that runs ``run()``, cancelled by ``kill()`` and when the face is released.
    private nonisolated let root = Mutex<Task<Void, Never>?>(nil)

    /// - Parameters:
    ///   - persist: the store's commit.
    ///   - call: the transport's request/reply call.
    ///   - unserve: stops the transport from handing this replica requests: on a kill, and after
    ///     a failed commit (`failed`), when the replica answers no request either way.
    ///   - alongside: more work that lives as long as the replica (serving snapshots' sweeper).
    public init(
        me: NodeID, driver: Driver, persist: @escaping Persist, call: @escaping Call,
        unserve: @escaping @Sendable (_ failed: Bool) async -> Void, tickInterval: Duration,
        sleep: @escaping @Sendable (Duration) async throws -> Void,
        alongside: [@Sendable () async -> Void] = []
    ) {
        self.me = me
        self.driver = driver
        self.persist = persist
        self.call = call
        self.unserve = unserve
        self.tickInterval = tickInterval
        self.sleep = sleep
        self.alongside = alongside
        (inbox, inboxInput) = AsyncStream.makeStream(of: Input.self)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (sends, sendInput) = AsyncStream.makeStream(of: Send.self)
        (jobs, jobInput) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
    }

    deinit {
        inboxInput.finish()
        wake.finish()
        sendInput.finish()
        jobInput.finish()
    }

    /// Starts ``run()`` under a task this runtime holds (cancelled by ``kill()`` or ``cancel()``).
    public func start() {
        root.withLock { task in
            guard task == nil, !killed else { return }
            task = Task { await self.run() }
        }
    }

    /// Cancels the runtime's tasks without waiting (the face that owns it was released).
    public nonisolated func cancel() {
        root.withLock { $0?.cancel() }
    }

    /// Runs the replica until cancelled: every task it needs is a child of this one.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.inboxLoop() }
            group.addTask { await self.commitLoop() }
            group.addTask { await self.tickLoop() }
            group.addTask { await self.sendLoop() }
            group.addTask { await self.jobLoop() }
            for work in alongside { group.addTask { await work() } }
        }
    }

    // MARK: Inputs

    /// Whether the replica serves: false once killed or after a failed commit.
    public var isServing: Bool { !killed && failure == nil }

    /// A request from a peer: the reply, once what it depends on is durable (nil: no answer).
    public func handle(_ request: Request) async -> Reply? {
        guard isServing else { return nil }
        let step = driver.core.onRequest(request)
        guard step.reply != nil else {
            enqueue(step)
            return step.eagerReply
        }
        return await withCheckedContinuation { continuation in
            enqueue(step, replyTo: continuation)
        }
    }

    /// Runs `body` on the driver and carries out the step it returns.
    public func act<T: Sendable>(_ body: @Sendable (inout Driver) -> (T, Step?)) -> T {
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
            enqueue(step, replyTo: continuation)
        }
    }

    /// Reads the driver's state.
    public func inspect<T: Sendable>(_ body: @Sendable (Driver) -> T) -> T { body(driver) }

    /// Stops the replica: no more ticks, requests or replies; waiters are failed. What is
    /// committed stays in the store.
    public func kill() async {
        guard !killed else { return }
        killed = true
        dropUnreleased()
        driver.stopped(failure: nil)
        cancel()
        await unserve(false)
    }

    private func inboxLoop() async {
        for await input in inbox {
            guard isServing else { continue }
            switch input {
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

    private func enqueue(_ step: Step, replyTo continuation: CheckedContinuation<Reply?, Never>? = nil) {
        guard isServing else {
            continuation?.resume(returning: nil)
            return
        }
        for message in step.eagerMessages { send(message) }
        driver.absorb(step, into: &pending.notes)
        for job in driver.takeJobs() { jobInput.yield(job) }
        pending.mutations += step.mutations
        pending.messages += step.messages
        pending.localReplies += step.localReplies
        if let continuation { pending.replies.append((continuation, step.reply)) }
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
            output = try await persist(batch.mutations) { early in inbox.yield(.early(early)) }
        } catch {
            committing = false
            let reason = "commit failed: \(error)"
            failure = reason
            for (continuation, _) in batch.replies { continuation.resume(returning: nil) }
            dropUnreleased()
            driver.stopped(failure: reason)
            cancel()
            await unserve(true)
            return
        }
        committing = false
        commits += 1
        if isServing {
            release(batch)
            if isServing,
                let step = driver.committed(
                    batch.mutations, notes: batch.notes, output: output,
                    duration: ContinuousClock.now - started)
            {
                enqueue(step)
            }
        } else {
            for (continuation, _) in batch.replies { continuation.resume(returning: nil) }
        }
        flush()
    }

    private func release(_ batch: Batch) {
        driver.released(batch.notes)
        for (continuation, reply) in batch.replies { continuation.resume(returning: reply) }
        for message in batch.messages { send(message) }
        for reply in batch.localReplies where isServing { enqueue(driver.core.onReply(reply)) }
    }

    private func send(_ outbound: Outbound) {
        sendInput.yield(Send(outbound: outbound, observe: driver.roundTripObserver(for: outbound)))
    }

    /// Runs every call as a child task, so that many are in flight to each peer; replies come
    /// back through the inbox.
    private nonisolated func sendLoop() async {
        let call = self.call
        let inbox = self.inboxInput
        await withDiscardingTaskGroup { group in
            for await send in sends {
                group.addTask {
                    let started = ContinuousClock.now
                    do {
                        let reply = try await call(send.outbound.envelope, send.outbound.to)
                        send.observe?(ContinuousClock.now - started)
                        inbox.yield(.replied(send.outbound, .success(reply)))
                    } catch {
                        inbox.yield(.replied(send.outbound, .failure(error)))
                    }
                }
            }
        }
    }

    private func dropUnreleased() {
        for (continuation, _) in pending.replies { continuation.resume(returning: nil) }
        pending = Batch()
    }
}
