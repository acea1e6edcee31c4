/// One change to a replica's durable state. A ``LogReady`` lists them; the driver commits them
/// as one atomic, durable batch.
public enum LogMutation: Hashable, Sendable, CustomStringConvertible {
    /// The acceptor promised `ballot` for every slot (one promise covers the whole log).
    case promise(Ballot)
    /// The proposer's highest round seen or used. Never goes down.
    case maxRound(UInt64)
    /// This node's proposer used `ballot` (an audit record for checkers; no protocol meaning).
    case ballotUsed(Ballot)
    /// The acceptor accepted `entry` under `ballot` in `slot`.
    case accept(slot: Slot, ballot: Ballot, entry: LogEntry)
    /// `entry` is chosen in `slot`.
    case choose(slot: Slot, entry: LogEntry)
    /// Apply the chosen `entry` of `slot` to the state machine and advance the applied index to
    /// it, in the same transaction. The store applies a slot only right after the applied index
    /// (earlier ones it skips: a snapshot already covers them), so a restart never skips or
    /// re-applies an entry.
    case apply(slot: Slot, entry: LogEntry)
    /// Slots below `below` are applied here and released from the log.
    case release(below: Slot)
    /// Stage one chunk of a snapshot streamed from a peer, beside the state machine (which it
    /// does not touch). `first` starts a new staging and drops whatever was staged before.
    case stageSnapshot(SnapshotChunk)
    /// The staged snapshot is complete: if it is of a later slot than the applied index, replace
    /// the state machine's rows by it and drop the log up to `applied`, in one transaction;
    /// either way the staging is dropped.
    case installSnapshot(applied: Slot)
    /// Drop the staged snapshot, if any (the replica caught up past it from the log).
    case discardSnapshot
    /// A new process incarnation started (proposal ids include it).
    case incarnation(UInt64)

    public var description: String {
        switch self {
        case .promise(let ballot): "promise(\(ballot))"
        case .maxRound(let round): "maxRound(\(round))"
        case .ballotUsed(let ballot): "ballotUsed(\(ballot))"
        case .accept(let slot, let ballot, let entry): "accept(\(slot), \(ballot), \(entry))"
        case .choose(let slot, let entry): "choose(\(slot), \(entry))"
        case .apply(let slot, let entry): "apply(\(slot), \(entry.count) commands)"
        case .release(let below): "release(below: \(below))"
        case .stageSnapshot(let chunk): "stageSnapshot(\(chunk))"
        case .installSnapshot(let applied): "installSnapshot(applied: \(applied))"
        case .discardSnapshot: "discardSnapshot"
        case .incarnation(let value): "incarnation(\(value))"
        }
    }
}

/// One chunk of a snapshot in transfer: rows in key order, each above the previous chunk's.
public struct SnapshotChunk: Hashable, Sendable, CustomStringConvertible {
    /// The peer the snapshot comes from.
    public var source: NodeID
    /// Names one snapshot of `source` (one read transaction there).
    public var token: UInt64
    /// The snapshot holds the state machine after applying every slot up to this one.
    public var applied: Slot
    public var rows: [MachineRow]
    /// Whether this chunk starts the snapshot (it drops any earlier staging).
    public var first: Bool

    public init(source: NodeID, token: UInt64, applied: Slot, rows: [MachineRow], first: Bool) {
        self.source = source
        self.token = token
        self.applied = applied
        self.rows = rows
        self.first = first
    }

    public var description: String {
        "\(first ? "first " : "")chunk of \(source)'s snapshot \(token) at \(applied): \(rows.count) rows"
    }
}

/// How far a staged snapshot got, so a transfer that broke resumes after the last staged row.
public struct SnapshotStaging: Hashable, Sendable {
    public var source: NodeID
    public var token: UInt64
    public var applied: Slot
    /// The last row staged (rows come in key order); `nil` before the first row.
    public var after: MachineKey?
    /// The membership among the staged rows (the first row of a snapshot that has one).
    public var membership: Membership?

    public init(
        source: NodeID, token: UInt64, applied: Slot, after: MachineKey?, membership: Membership? = nil
    ) {
        self.source = source
        self.token = token
        self.applied = applied
        self.after = after
        self.membership = membership
    }
}

/// Everything a replica must find again after a crash. ``apply(_:machine:outputsFor:)`` defines
/// what each ``LogMutation`` means, so every backend and every test model agrees on it.
///
/// A disk store's ``LogStore/loadLog()`` leaves ``machine`` and ``stagedRows`` empty: they stay
/// on disk, and start-up reads only the log and the bounded state above.
public struct LogDurableState: Hashable, Sendable {
    /// The acceptor's promise, covering every slot.
    public var promised: Ballot?
    /// The proposer's highest round seen or used.
    public var maxRound: UInt64 = 0
    /// The log from ``logStart`` on.
    public var records: [Slot: LogRecord] = [:]
    /// Every slot up to and including this one is applied to ``machine``.
    public var applied: Slot = 0
    /// Slots below this were released; the state machine's rows stand for them.
    public var logStart: Slot = 1
    /// The state machine's rows, as of ``applied``.
    public var machine: [MachineKey: [UInt8]] = [:]
    /// The membership as of ``applied`` (its row among the machine's rows; a disk store reads
    /// that one row at start-up); `nil` before the first membership change.
    public var membership: Membership?
    /// The last incarnation that started.
    public var incarnation: UInt64 = 0
    /// A snapshot being received, if any, and its rows so far.
    public var staging: SnapshotStaging?
    public var stagedRows: [MachineKey: [UInt8]] = [:]

    public init() {}

    /// The state without the rows a disk store leaves on disk.
    public var withoutRows: LogDurableState {
        var copy = self
        copy.machine = [:]
        copy.stagedRows = [:]
        return copy
    }

    /// Applies one mutation that applies no entry (for tests and models; an `apply` mutation
    /// here is a bug).
    public mutating func apply(_ mutation: LogMutation) {
        if case .apply = mutation { preconditionFailure("an apply mutation needs a state machine") }
        _ = try? apply(mutation, machine: NoStateMachine(), outputsFor: nil)
    }

    /// Applies one mutation; an `apply` runs `machine` and returns the outputs of the proposals
    /// of `node` it applied.
    @discardableResult
    public mutating func apply(
        _ mutation: LogMutation, machine stateMachine: some StateMachine, outputsFor node: NodeID?
    ) throws -> [(ProposalID, Value)] {
        switch mutation {
        case .promise(let ballot):
            if promised.map({ ballot > $0 }) ?? true { promised = ballot }
        case .maxRound(let round):
            maxRound = Swift.max(maxRound, round)
        case .ballotUsed:
            break
        case .accept(let slot, let ballot, let entry):
            guard slot >= logStart, records[slot]?.chosen != true else { return [] }
            records[slot] = LogRecord(ballot: ballot, entry: entry, chosen: false)
        case .choose(let slot, let entry):
            guard slot >= logStart else { return [] }
            let ballot = records[slot].flatMap { $0.entry == entry ? $0.ballot : nil }
            records[slot] = LogRecord(ballot: ballot, entry: entry, chosen: true)
        case .apply(let slot, let entry):
            guard slot > applied else { return [] }
            guard slot == applied + 1 else { throw LogStoreError.gap(slot: slot, applied: applied) }
            // Moved, not copied: the dictionary stays uniquely referenced while the machine writes.
            var rows = MemoryRows(machine, counted: false)
            machine = [:]
            var outputs: [(ProposalID, Value)] = []
            for proposal in entry {
                let output: Value
                do {
                    output = try ClusterMachine(stateMachine).apply(proposal, slot: slot, rows: &rows)
                } catch {
                    machine = rows.take()
                    throw error
                }
                if proposal.id.node == node { outputs.append((proposal.id, output)) }
            }
            machine = rows.take()
            applied = slot
            if entry.contains(where: { MembershipChange.isChange($0.command) }) {
                membership = machine[Membership.rowKey].flatMap { Membership(encoded: $0) }
            }
            return outputs
        case .release(let below):
            guard below > logStart else { return [] }
            records = records.filter { $0.key >= below }
            logStart = below
        case .stageSnapshot(let chunk):
            if chunk.first {
                staging = SnapshotStaging(
                    source: chunk.source, token: chunk.token, applied: chunk.applied, after: nil)
                stagedRows = [:]
            }
            guard var current = staging, current.source == chunk.source, current.token == chunk.token
            else { return [] }
            for row in chunk.rows {
                stagedRows[row.key] = row.value
                if row.key == Membership.rowKey { current.membership = Membership(encoded: row.value) }
            }
            current.after = chunk.rows.last?.key ?? current.after
            staging = current
        case .installSnapshot(let snapshotApplied):
            defer {
                staging = nil
                stagedRows = [:]
            }
            guard let staging, staging.applied == snapshotApplied, snapshotApplied > applied else {
                return []
            }
            machine = stagedRows
            membership = staging.membership
            applied = snapshotApplied
            records = records.filter { $0.key > snapshotApplied }
            logStart = Swift.max(logStart, snapshotApplied + 1)
        case .discardSnapshot:
            staging = nil
            stagedRows = [:]
        case .incarnation(let value):
            incarnation = Swift.max(incarnation, value)
        }
        return []
    }
}

/// Why a store refused a batch.
public enum LogStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// An apply skipped slots: a bug in the driver.
    case gap(slot: Slot, applied: Slot)

    public var description: String {
        switch self {
        case .gap(let slot, let applied):
            "slot \(slot) applied right after slot \(applied): entries were skipped"
        }
    }
}

/// A consistent view of a store's state machine rows as of one applied index, read in chunks
/// while the store goes on committing (SQLite: one read transaction in WAL mode).
public protocol LogSnapshotSource: Sendable {
    /// The snapshot is the state machine after applying every slot up to this one.
    var applied: Slot { get }
    /// Rows after `after` (from the first when `nil`), in key order, until they hold at least
    /// `maxBytes` as a message carries them (9 bytes per row, its key and its value; at least one row); `done` when no rows are left after them.
    func chunk(after: MachineKey?, maxBytes: Int) async throws -> (rows: [MachineRow], done: Bool)
    /// Ends the read transaction.
    func close() async
}

/// Durable storage for one replica of the log: the acceptor's promise and accepted entries,
/// chosen entries, the proposer's `maxRound`, and the state machine with its applied index.
public protocol LogStore: Sendable {
    /// Everything committed so far.
    func loadLog() async throws -> LogDurableState
    /// Commits `mutations` atomically and durably: when this returns, they survive a crash; when
    /// it throws, none of them happened and the store refuses every later commit. Entries in
    /// `apply` mutations are applied with `machine`; the outputs of `node`'s proposals among them
    /// come back, in order. They are also handed to `beforeDurable` as soon as they are computed,
    /// before the commit's fsync: an output depends only on chosen entries, which a majority
    /// holds durably, so a client may have it at once (see ``LogReady``). A commit without an
    /// fsync (below) may return them only.
    ///
    /// With `durable: false` the commit may skip its fsync: it is atomic and visible to later
    /// reads and commits, but a crash may lose it. Commits stay ordered: a crash keeps a prefix of
    /// them, and a durable commit makes every earlier one durable too. The runtime asks for this
    /// only for batches that learn and apply chosen entries and release nothing (see
    /// ``LogDriver/needsSync(_:)``).
    func commitLog(
        _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID, durable: Bool,
        beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
    ) async throws -> [(ProposalID, Value)]
    /// Opens a consistent snapshot of the state machine for a peer that fell behind the log.
    func openSnapshot() async throws -> any LogSnapshotSource
    /// Every row of the state machine (reads the whole store: for tests and inspection only).
    func machineRows() async throws -> [MachineKey: [UInt8]]
    /// How many rows of the state machine are in `space` (for metrics: the sessions held).
    func machineRowCount(in space: UInt8) async throws -> Int
    /// Answers a command that only reads (``StateMachine/read(_:rows:)``) from the committed rows,
    /// without a commit: every commit that returned before this call is visible to it. `nil`
    /// when the machine does not answer the command without the log.
    func read(_ command: Value, machine: some StateMachine) async throws -> Value?
}

extension LogStore {
    /// Counts by reading every row; a store with an index answers from it instead.
    public func machineRowCount(in space: UInt8) async throws -> Int {
        try await machineRows().keys.count(where: { $0.space == space })
    }

    /// Commits a batch that applies no entries.
    public func commitLog(_ mutations: [LogMutation]) async throws {
        _ = try await commitLog(mutations, machine: NoStateMachine(), outputsFor: NodeID(0))
    }

    /// Commits a batch; its outputs come back only once it is durable.
    public func commitLog(
        _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID
    ) async throws -> [(ProposalID, Value)] {
        try await commitLog(
            mutations, machine: machine, outputsFor: node, durable: true, beforeDurable: { _ in })
    }
}

/// A snapshot of rows held in memory (the in-memory store's, and the simulation's).
public struct MemorySnapshotSource: LogSnapshotSource {
    public let applied: Slot
    private let rows: [MachineRow]

    public init(applied: Slot, rows: [MachineKey: [UInt8]]) {
        self.applied = applied
        self.rows = rows.map { MachineRow(key: $0.key, value: $0.value) }.sorted { $0.key < $1.key }
    }

    public func chunk(after: MachineKey?, maxBytes: Int) -> (rows: [MachineRow], done: Bool) {
        var start = 0
        if let after {
            var low = 0
            var high = rows.count
            while low < high {
                let middle = (low + high) / 2
                if rows[middle].key <= after { low = middle + 1 } else { high = middle }
            }
            start = low
        }
        var end = start
        var bytes = 0
        while end < rows.count, end == start || bytes < maxBytes {
            bytes += 9 + rows[end].key.key.count + rows[end].value.count
            end += 1
        }
        return (Array(rows[start..<end]), end == rows.count)
    }

    public func close() {}
}

/// The in-memory ``LogStore`` for tests. "Durable" here means it outlives the replica that wrote
/// to it, so a test can drop a replica without shutdown and start a new one on the same store.
public actor InMemoryLogStore: LogStore {
    private var state = LogDurableState()
    /// What a power loss keeps: `state` as of the last durable commit.
    private var synced = LogDurableState()
    private var failures: [InMemoryStore.InjectedFailure] = []
    /// How many batches were committed with an fsync, a stand-in for fsyncs.
    public private(set) var commitCount = 0
    /// How many commits skipped their fsync (`durable: false`).
    public private(set) var unsyncedCommitCount = 0
    /// How many commits skipped their fsync since the last one that did not: what a power loss
    /// would take now.
    public private(set) var unsyncedSinceSync = 0
    /// The mutations of the last 256 commits that skipped their fsync, oldest first.
    public private(set) var unsyncedCommits: [[LogMutation]] = []

    public init() {}

    public func loadLog() -> LogDurableState { state }

    public func commitLog(
        _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID, durable: Bool,
        beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
    ) throws -> [(ProposalID, Value)] {
        if !failures.isEmpty { throw failures.removeFirst() }
        var next = state
        var outputs: [(ProposalID, Value)] = []
        for mutation in mutations { outputs += try next.apply(mutation, machine: machine, outputsFor: node) }
        if !outputs.isEmpty { beforeDurable(outputs) }
        state = next
        if durable {
            synced = next
            commitCount += 1
            unsyncedSinceSync = 0
        } else {
            unsyncedCommitCount += 1
            unsyncedSinceSync += 1
            if unsyncedCommits.count == 256 { unsyncedCommits.removeFirst() }
            unsyncedCommits.append(mutations)
        }
        return outputs
    }

    /// The machine lost power: every commit since the last durable one is gone (call it with no
    /// replica running on this store).
    public func losePower() {
        state = synced
        unsyncedSinceSync = 0
    }

    public func openSnapshot() -> any LogSnapshotSource {
        MemorySnapshotSource(applied: state.applied, rows: state.machine)
    }

    public func machineRows() -> [MachineKey: [UInt8]] { state.machine }

    public func read(_ command: Value, machine: some StateMachine) throws -> Value? {
        try machine.read(command, rows: MemoryRows(state.machine, counted: false))
    }

    /// Makes the next commit fail and leave the state untouched.
    public func failNextCommit() {
        failures.append(InMemoryStore.InjectedFailure("injected commit failure"))
    }

    /// A copy of the committed state, for assertions.
    public var snapshot: LogDurableState { state }
}
