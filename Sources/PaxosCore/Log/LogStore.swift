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
    /// The state machine applied every slot through `through`, producing `machine`. The new
    /// applied index and the rows it produced are one atomic change, so a restart never skips
    /// or re-applies an entry.
    case apply(through: Slot, machine: [MachineMutation])
    /// Slots below `below` are applied here and released from the log.
    case release(below: Slot)
    /// Replaces the state machine by a snapshot taken after applying slot `applied`, and drops
    /// the log up to it.
    case installSnapshot(applied: Slot, rows: [MachineKey: [UInt8]])
    /// A new process incarnation started (proposal ids include it).
    case incarnation(UInt64)

    public var description: String {
        switch self {
        case .promise(let ballot): "promise(\(ballot))"
        case .maxRound(let round): "maxRound(\(round))"
        case .ballotUsed(let ballot): "ballotUsed(\(ballot))"
        case .accept(let slot, let ballot, let entry): "accept(\(slot), \(ballot), \(entry))"
        case .choose(let slot, let entry): "choose(\(slot), \(entry))"
        case .apply(let through, let machine): "apply(through: \(through), \(machine.count) row changes)"
        case .release(let below): "release(below: \(below))"
        case .installSnapshot(let applied, let rows):
            "installSnapshot(applied: \(applied), \(rows.count) rows)"
        case .incarnation(let value): "incarnation(\(value))"
        }
    }
}

/// Everything a replica must find again after a crash. ``apply(_:)`` defines what each
/// ``LogMutation`` means, so every backend and every test model agrees on it.
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
    /// The last incarnation that started.
    public var incarnation: UInt64 = 0

    public init() {}

    public mutating func apply(_ mutation: LogMutation) {
        switch mutation {
        case .promise(let ballot):
            if promised.map({ ballot > $0 }) ?? true { promised = ballot }
        case .maxRound(let round):
            maxRound = Swift.max(maxRound, round)
        case .ballotUsed:
            break
        case .accept(let slot, let ballot, let entry):
            guard slot >= logStart, records[slot]?.chosen != true else { return }
            records[slot] = LogRecord(ballot: ballot, entry: entry, chosen: false)
        case .choose(let slot, let entry):
            guard slot >= logStart else { return }
            let ballot = records[slot].flatMap { $0.entry == entry ? $0.ballot : nil }
            records[slot] = LogRecord(ballot: ballot, entry: entry, chosen: true)
        case .apply(let through, let rows):
            guard through > applied else { return }
            for change in rows {
                switch change {
                case .put(let key, let value): machine[key] = value
                case .delete(let key): machine[key] = nil
                }
            }
            applied = through
        case .release(let below):
            guard below > logStart else { return }
            records = records.filter { $0.key >= below }
            logStart = below
        case .installSnapshot(let snapshotApplied, let rows):
            guard snapshotApplied > applied else { return }
            machine = rows
            applied = snapshotApplied
            records = records.filter { $0.key > snapshotApplied }
            logStart = Swift.max(logStart, snapshotApplied + 1)
        case .incarnation(let value):
            incarnation = Swift.max(incarnation, value)
        }
    }
}

/// Durable storage for one replica of the log: the acceptor's promise and accepted entries,
/// chosen entries, the proposer's `maxRound`, and the state machine with its applied index.
public protocol LogStore: Sendable {
    /// Everything committed so far.
    func loadLog() async throws -> LogDurableState
    /// Commits `mutations` atomically and durably: when this returns, they survive a crash; when
    /// it throws, none of them happened and the store refuses every later commit.
    func commitLog(_ mutations: [LogMutation]) async throws
}

/// The in-memory ``LogStore`` for tests. "Durable" here means it outlives the replica that wrote
/// to it, so a test can drop a replica without shutdown and start a new one on the same store.
public actor InMemoryLogStore: LogStore {
    private var state = LogDurableState()
    private var failures: [InMemoryStore.InjectedFailure] = []
    /// How many batches were committed, a stand-in for fsyncs.
    public private(set) var commitCount = 0

    public init() {}

    public func loadLog() -> LogDurableState { state }

    public func commitLog(_ mutations: [LogMutation]) throws {
        if !failures.isEmpty { throw failures.removeFirst() }
        var next = state
        for mutation in mutations { next.apply(mutation) }
        state = next
        commitCount += 1
    }

    /// Makes the next commit fail and leave the state untouched.
    public func failNextCommit() {
        failures.append(InMemoryStore.InjectedFailure("injected commit failure"))
    }

    /// A copy of the committed state, for assertions.
    public var snapshot: LogDurableState { state }
}
