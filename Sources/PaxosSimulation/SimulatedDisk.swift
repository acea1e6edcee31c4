import PaxosCore
import Synchronization

/// A mistake the simulator can plant in its own disk, to show that its checks catch the bug class
/// (a simulation that cannot find a bug is a gap).
public enum PlantedBug: String, CaseIterable, Sendable {
    /// The disk acknowledges a commit at once and makes it durable one fsync later: a crash in
    /// between loses what the replica already acted on (a promise, an accept, a choice).
    case ackBeforeFsync = "ack-before-fsync"
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
        var committing = false
        var failNext = false
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
            return state.generation
        }
        return Handle(disk: self, generation: generation)
    }

    /// The node crashed: its handle is retired, and what was not durable is gone.
    func crash() {
        state.withLock { state in

            state.generation += 1
            state.current = state.durable
        }
    }

    /// The next commit fails (an I/O error): the replica must stop without replying.
    func failNextCommit() { state.withLock { $0.failNext = true } }

    /// No commit fails any more (the cluster is healed).
    func clearFaults() { state.withLock { $0.failNext = false } }

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
        beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
    ) async throws -> [(ProposalID, Value)] {
        let (start, injected) = try state.withLock { state -> (LogDurableState, Bool) in
            guard state.generation == generation else {
                throw SimulatedIOError("the disk's incarnation is gone")
            }
            precondition(!state.committing, "two commits at once on one replica's store")
            defer { state.failNext = false }
            if !state.failNext { state.committing = true }
            return (state.current, state.failNext)
        }
        if injected {
            observer.event("n\(self.node.rawValue) commit fails (injected I/O error)")
            throw SimulatedIOError("injected commit failure")
        }
        defer { state.withLock { $0.committing = false } }
        var next = start
        var outputs: [(ProposalID, Value)] = []
        for mutation in mutations { outputs += try next.apply(mutation, machine: machine, outputsFor: node) }
        if !outputs.isEmpty { beforeDurable(outputs) }
        let fsync = Duration.microseconds(Int64(scheduler.random(in: fsyncRange)))
        if bug == .ackBeforeFsync {
            let made = state.withLock { state -> Bool in
                guard state.generation == generation else { return false }
                state.current = next
                return true
            }
            guard made else { throw SimulatedIOError("the disk's incarnation is gone") }
            observer.committed(node: self.node, mutations)
            onCommit?()
            let synced = next
            scheduler.after(fsync) { [self] in
                state.withLock { state in
                    if state.generation == generation { state.durable = synced }
                }
            }
            return outputs
        }
        var interrupted: (any Error)?
        do { try await scheduler.sleep(fsync) } catch { interrupted = error }
        // A crash (or a kill) during the fsync: the batch may or may not have reached the disk,
        // and either way the replica hears that it failed.
        let survives = scheduler.chance(0.5)
        try state.withLock { state in
            if state.generation != generation || interrupted != nil {
                if survives { state.durable = next }
                throw interrupted ?? SimulatedIOError("crashed during the fsync")
            }
            state.current = next
            state.durable = next
        }
        observer.committed(node: self.node, mutations)
        onCommit?()
        return outputs
    }

    /// What an incarnation of the node reads and writes.
    struct Handle: LogStore {
        let disk: SimulatedDisk
        let generation: UInt64

        func loadLog() throws -> LogDurableState { try disk.load(generation) }

        func commitLog(
            _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID,
            beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
        ) async throws -> [(ProposalID, Value)] {
            try await disk.commit(
                generation, mutations, machine: machine, outputsFor: node, beforeDurable: beforeDurable)
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
