import PaxosCore
import Synchronization

/// A mistake the simulator can plant in its own disk, to show that its checks catch the bug class
/// (a simulation that cannot find a bug is a gap).
public enum PlantedBug: String, CaseIterable, Sendable {
    /// The disk acknowledges a commit at once and makes it durable one fsync later: a crash in
    /// between loses what the replica already acted on (a promise, an accept, a choice).
    case ackBeforeFsync = "ack-before-fsync"
    /// Every commit skips its fsync, as if the runtime took votes and promises for state a crash
    /// may lose (``RuntimeDriver/needsSync(_:)`` answering wrong).
    case unsyncedVotes = "unsynced-votes"
}

/// One node's disk: what survives its crashes. Each incarnation of the node writes through its
/// own ``Handle``; a crash retires the handle, so nothing the dead incarnation still runs reaches
/// the disk afterwards.
final class SimulatedDisk: Sendable {
    private struct State {
        /// What a crash keeps.
        var durable = LogDurableState()
        /// What the running incarnation sees: ahead of `durable` only with a planted bug.
        var current = LogDurableState()
        var generation: UInt64 = 0
        /// Commits made without an fsync since the last durable one, oldest first: written, not
        /// synced, so a crash keeps any prefix of them.
        var unsynced: [LogDurableState] = []
        /// The commit in its fsync, if any.
        var inFlight: InFlight?
        var failNext = false
    }

    private struct InFlight {
        var generation: UInt64
        var next: LogDurableState
        var mutations: [LogMutation]
    }

    let node: NodeID
    private let scheduler: Scheduler
    private let observer: Observer
    private let bug: PlantedBug?
    private let state = Mutex(State())
    private let commitHook = Mutex<(@Sendable () -> Void)?>(nil)

    /// Called after every commit the node made (or, with a planted bug, acknowledged).
    var onCommit: (@Sendable () -> Void)? {
        get { commitHook.withLock { $0 } }
        set { commitHook.withLock { $0 = newValue } }
    }

    /// How long one fsync takes on this disk.
    let fsyncRange: ClosedRange<UInt64>

    init(
        node: NodeID, scheduler: Scheduler, observer: Observer, bug: PlantedBug?,
        fsyncMicroseconds: ClosedRange<UInt64>
    ) {
        self.node = node
        self.fsyncRange = fsyncMicroseconds
        self.scheduler = scheduler
        self.observer = observer
        self.bug = bug
    }

    /// The handle of a new incarnation; every earlier handle is retired.
    func open() -> Handle {
        let generation = state.withLock { state in
            state.generation += 1
            state.current = state.durable
            state.unsynced = []
            return state.generation
        }
        return Handle(disk: self, generation: generation)
    }

    /// The node crashed: its handle is retired, and what was not durable is gone. A commit in
    /// its fsync at this instant may or may not have reached the disk: decided now, so nothing
    /// the dead incarnation does later can change what the disk holds. Of the commits made
    /// without an fsync before it, any prefix survives (harsher than a process crash, which
    /// keeps them in the page cache: what a power loss does).
    func crash() {
        let survives = scheduler.chance(0.5)
        let draw = scheduler.random(in: 0...UInt64(UInt32.max))
        let landed = state.withLock { state -> InFlight? in
            defer {
                state.inFlight = nil
                state.unsynced = []
                state.generation += 1
                state.current = state.durable
            }
            let kept = Int(draw % UInt64(state.unsynced.count + 1))
            if kept > 0 { state.durable = state.unsynced[kept - 1] }
            guard let flight = state.inFlight, flight.generation == state.generation, survives,
                kept == state.unsynced.count
            else {
                return nil
            }
            state.durable = flight.next
            return flight
        }
        if let landed { observer.committed(node: node, landed.mutations, state: landed.next) }
    }

    /// The next commit fails (an I/O error): the replica must stop without replying.
    func failNextCommit() { state.withLock { $0.failNext = true } }

    /// No commit fails any more (the cluster is healed).
    func clearFaults() { state.withLock { $0.failNext = false } }

    /// Whether `generation` is the incarnation running (not crashed since it opened).
    func isCurrent(_ generation: UInt64) -> Bool { state.withLock { $0.generation == generation } }

    /// The state a restart finds.
    var durable: LogDurableState { state.withLock { $0.durable } }

    fileprivate func load(_ generation: UInt64) throws -> LogDurableState {
        try state.withLock { state in
            guard state.generation == generation else {
                throw SimulatedIOError("the disk's incarnation is gone")
            }
            return state.current
        }
    }

    fileprivate func commit(
        _ generation: UInt64, _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID,
        durable: Bool, beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
    ) async throws -> [(ProposalID, Value)] {
        let (start, injected) = try state.withLock { state -> (LogDurableState, Bool) in
            guard state.generation == generation else {
                throw SimulatedIOError("the disk's incarnation is gone")
            }
            precondition(state.inFlight == nil, "two commits at once on one replica's store")
            defer { state.failNext = false }
            return (state.current, state.failNext)
        }
        var next = start
        var outputs: [(ProposalID, Value)] = []
        for mutation in mutations { outputs += try next.apply(mutation, machine: machine, outputsFor: node) }
        if injected {
            // An fsync that reports an error may still have written the batch (a WAL frame that
            // made it): the replica must stop either way, and a restart finds either.
            observer.event("n\(self.node.rawValue) commit fails (injected I/O error)")
            // The store hands outputs out before its fsync: the failure comes after that.
            if !outputs.isEmpty { beforeDurable(outputs) }
            if scheduler.chance(0.5), make(next, generation) {
                observer.committed(node: self.node, mutations, state: next)
            }
            throw SimulatedIOError("injected commit failure")
        }
        if !durable || bug == .unsyncedVotes, bug != .ackBeforeFsync {
            // Written without an fsync: visible once written, durable with the next durable
            // commit. The write takes a moment, so other work interleaves with it.
            if !outputs.isEmpty { beforeDurable(outputs) }
            try await scheduler.sleep(.microseconds(Int64(scheduler.random(in: 2...40))))
            guard
                state.withLock({ state in
                    guard state.generation == generation else { return false }
                    state.current = next
                    state.unsynced.append(next)
                    return true
                })
            else { throw SimulatedIOError("the disk's incarnation is gone") }
            observer.committed(node: self.node, mutations, state: next)
            onCommit?()
            return outputs
        }
        let fsync = Duration.microseconds(Int64(scheduler.random(in: fsyncRange)))
        if bug == .ackBeforeFsync {
            guard
                state.withLock({ state in
                    guard state.generation == generation else { return false }
                    state.current = next
                    return true
                })
            else { throw SimulatedIOError("the disk's incarnation is gone") }
            if !outputs.isEmpty { beforeDurable(outputs) }
            observer.committed(node: self.node, mutations, state: next)
            onCommit?()
            let synced = next
            scheduler.after(fsync) { [self] in
                state.withLock { state in
                    if state.generation == generation { state.durable = synced }
                }
            }
            return outputs
        }
        state.withLock { $0.inFlight = InFlight(generation: generation, next: next, mutations: mutations) }
        if !outputs.isEmpty { beforeDurable(outputs) }
        var interrupted: (any Error)?
        do { try await scheduler.sleep(fsync) } catch { interrupted = error }
        let survives = scheduler.chance(0.5)
        let made = try state.withLock { state -> Bool in
            guard let flight = state.inFlight, flight.generation == generation, state.generation == generation
            else {
                // Crashed during the fsync: the crash decided what reached the disk.
                throw interrupted ?? SimulatedIOError("crashed during the fsync")
            }
            state.inFlight = nil
            guard interrupted == nil || survives else { return false }
            state.current = next
            state.durable = next
            state.unsynced = []
            return true
        }
        if made { observer.committed(node: self.node, mutations, state: next) }
        // Killed during the fsync (not a crash): the batch may have landed, the replica hears
        // that it failed.
        if let interrupted { throw interrupted }
        onCommit?()
        return outputs
    }

    /// Makes `next` durable if `generation` still runs; whether it did.
    private func make(_ next: LogDurableState, _ generation: UInt64) -> Bool {
        state.withLock { state in
            guard state.generation == generation else { return false }
            state.current = next
            state.durable = next
            state.unsynced = []
            return true
        }
    }

    /// What an incarnation of the node reads and writes.
    struct Handle: LogStore {
        let disk: SimulatedDisk
        let generation: UInt64

        func loadLog() throws -> LogDurableState { try disk.load(generation) }

        func commitLog(
            _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID, durable: Bool,
            beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
        ) async throws -> [(ProposalID, Value)] {
            try await disk.commit(
                generation, mutations, machine: machine, outputsFor: node, durable: durable,
                beforeDurable: beforeDurable)
        }

        func openSnapshot() throws -> any LogSnapshotSource {
            let state = try disk.load(generation)
            return MemorySnapshotSource(applied: state.applied, rows: state.machine)
        }

        func machineRows() throws -> [MachineKey: [UInt8]] { try disk.load(generation).machine }

        func read(_ command: Value, machine: some StateMachine) throws -> Value? {
            try machine.read(command, rows: MemoryRows(try disk.load(generation).machine, counted: false))
        }
    }
}

/// The simulated disk's failure.
struct SimulatedIOError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
