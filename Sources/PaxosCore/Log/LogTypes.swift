/// A position in the replicated log. Slots start at 1; 0 means "none".
public typealias Slot = Int

/// Names one linearizable read on the replica that was asked (``LogReplica/read()``); reads
/// never leave that replica, so a counter is enough.
public typealias ReadID = UInt64

/// Names one proposal uniquely across the cluster's whole history: the proposing node, that
/// node's incarnation (bumped durably at every start, so a restarted node never reuses an id) and
/// a counter within the incarnation. The proposer matches applied entries to waiting clients by it.
public struct ProposalID: Hashable, Sendable, CustomStringConvertible {
    public var node: NodeID
    public var incarnation: UInt64
    public var number: UInt64

    public init(node: NodeID, incarnation: UInt64, number: UInt64) {
        self.node = node
        self.incarnation = incarnation
        self.number = number
    }

    public var description: String { "\(node.rawValue).\(incarnation).\(number)" }
}

/// One command for the state machine, as a client handed it to some node.
public struct Proposal: Hashable, Sendable, CustomStringConvertible {
    public var id: ProposalID
    public var command: Value

    public init(id: ProposalID, command: Value) {
        self.id = id
        self.command = command
    }

    public var description: String { "\(id):\(renderValue(command))" }
}

/// The value of one slot: a batch of proposals, applied in order. An empty batch is a no-op,
/// which a new leader uses to fill holes it finds no accepted value for.
public typealias LogEntry = [Proposal]

/// One slot with its value, as carried by messages.
public struct SlotEntry: Hashable, Sendable, CustomStringConvertible {
    public var slot: Slot
    public var entry: LogEntry

    public init(slot: Slot, entry: LogEntry) {
        self.slot = slot
        self.entry = entry
    }

    public var description: String { "\(slot)=\(entry)" }
}

/// What an acceptor holds for one slot.
public struct LogRecord: Hashable, Sendable {
    /// The ballot the entry was accepted under; `nil` when the node learned the chosen entry
    /// without accepting it (catch-up).
    public var ballot: Ballot?
    public var entry: LogEntry
    /// Whether this node knows the entry is chosen.
    public var chosen: Bool

    public init(ballot: Ballot?, entry: LogEntry, chosen: Bool) {
        self.ballot = ballot
        self.entry = entry
        self.chosen = chosen
    }
}

/// A slot's record as an acceptor reports it in a promise.
public struct ReportedRecord: Hashable, Sendable, CustomStringConvertible {
    public var slot: Slot
    public var record: LogRecord

    public init(slot: Slot, record: LogRecord) {
        self.slot = slot
        self.record = record
    }

    public var description: String {
        "\(slot)=\(record.entry)@\(record.ballot.map(\.description) ?? "-")\(record.chosen ? " chosen" : "")"
    }
}

/// One row of a state machine's durable state. Machines keep their state as rows in numbered
/// spaces so that every store can keep it (and a person can read it) without knowing the machine.
public struct MachineKey: Hashable, Sendable, Comparable {
    public var space: UInt8
    public var key: [UInt8]

    public init(space: UInt8, key: [UInt8]) {
        self.space = space
        self.key = key
    }

    public static func < (lhs: MachineKey, rhs: MachineKey) -> Bool {
        lhs.space != rhs.space ? lhs.space < rhs.space : lhs.key.lexicographicallyPrecedes(rhs.key)
    }
}

/// One row with its value, as a snapshot carries it.
public struct MachineRow: Hashable, Sendable {
    public var key: MachineKey
    public var value: [UInt8]

    public init(key: MachineKey, value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// A change to a state machine's rows.
public enum MachineMutation: Hashable, Sendable {
    case put(MachineKey, [UInt8])
    case delete(MachineKey)
}

/// A state machine's rows as it sees them while it applies a command: the store's rows, with the
/// changes of the commands applied before it in the same batch. The SQLite store reads them from
/// disk inside the transaction that applies, so a node's memory does not grow with its data.
public protocol MachineRows {
    /// The value of `key`, or `nil`.
    func value(_ key: MachineKey) throws -> [UInt8]?
    /// The smallest key in `space`, or `nil` when the space is empty.
    func first(in space: UInt8) throws -> MachineKey?
    /// How many rows `space` holds.
    func count(in space: UInt8) throws -> Int
    mutating func put(_ key: MachineKey, _ value: [UInt8]) throws
    mutating func delete(_ key: MachineKey) throws
}

/// A deterministic state machine fed by the replicated log. It keeps no state of its own: every
/// bit of it is in rows, which the store keeps (on disk, for SQLite) and a snapshot carries.
///
/// `apply` must be a pure function of the rows and the proposal: every replica applies the same
/// entries in the same order and must reach the same rows and the same outputs. It may throw
/// only what reading or writing `rows` throws; the store then fails the commit.
public protocol StateMachine: Sendable {
    /// Applies one chosen proposal in slot `slot` and returns the client's answer.
    func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value
    /// The answer to `command` from `rows` alone, when the command only reads: what applying it
    /// would answer at this point of the log, without changing a row. `nil` when the command
    /// must go through the log (it writes, or the machine does not know it). The default
    /// answers `nil` for every command.
    func read<Rows: MachineRows>(_ command: Value, rows: Rows) throws -> Value?
}

extension StateMachine {
    public func read<Rows: MachineRows>(_ command: Value, rows: Rows) throws -> Value? { nil }
}

/// Rows in a dictionary: the in-memory store's, and the test double for a machine's rows. It
/// records every change, so a test can check that the changes rebuild the same rows.
public struct MemoryRows: MachineRows, Sendable {
    public private(set) var rows: [MachineKey: [UInt8]]
    public private(set) var changes: [MachineMutation] = []
    /// Rows per space, kept up to date; `nil` when not counted (``count(in:)`` then scans).
    private var counts: [UInt8: Int]?

    /// - Parameter counted: keep a count per space, so ``count(in:)`` does not scan (costs one
    ///   pass over `rows` now).
    public init(_ rows: [MachineKey: [UInt8]] = [:], counted: Bool = true) {
        self.rows = rows
        if counted {
            var counts: [UInt8: Int] = [:]
            for key in rows.keys { counts[key.space, default: 0] += 1 }
            self.counts = counts
        }
    }

    public func value(_ key: MachineKey) -> [UInt8]? { rows[key] }

    public func first(in space: UInt8) -> MachineKey? {
        rows.keys.filter { $0.space == space }.min()
    }

    public func count(in space: UInt8) -> Int {
        guard let counts else { return rows.keys.count { $0.space == space } }
        return counts[space] ?? 0
    }

    public mutating func put(_ key: MachineKey, _ value: [UInt8]) {
        if rows.updateValue(value, forKey: key) == nil { counts?[key.space, default: 0] += 1 }
        changes.append(.put(key, value))
    }

    public mutating func delete(_ key: MachineKey) {
        if rows.removeValue(forKey: key) != nil { counts?[key.space, default: 0] -= 1 }
        changes.append(.delete(key))
    }

    /// Hands the rows over, leaving this empty (so the caller's copy is not shared).
    public mutating func take() -> [MachineKey: [UInt8]] {
        let taken = rows
        rows = [:]
        counts = counts.map { _ in [:] }
        return taken
    }

    /// Forgets the recorded changes (the rows stay).
    public mutating func clearChanges() { changes = [] }
}

/// A state machine with its rows in memory, for tests and fuzzing.
public struct MemoryMachine<Machine: StateMachine>: Sendable {
    public let machine: Machine
    public private(set) var memory: MemoryRows

    public init(_ machine: Machine, rows: [MachineKey: [UInt8]] = [:]) {
        self.machine = machine
        self.memory = MemoryRows(rows)
    }

    /// Every row.
    public var rows: [MachineKey: [UInt8]] { memory.rows }

    /// Applies `proposal` and returns the answer and the row changes it made.
    public mutating func apply(_ proposal: Proposal, slot: Slot) throws -> (
        output: Value, mutations: [MachineMutation]
    ) {
        memory.clearChanges()
        let output = try machine.apply(proposal, slot: slot, rows: &memory)
        return (output, memory.changes)
    }
}

/// A machine for batches that apply nothing; applying with it is a bug and fails the commit.
public struct NoStateMachine: StateMachine {
    struct Unexpected: Error, CustomStringConvertible {
        var description: String { "an entry was applied without a state machine" }
    }

    public init() {}

    public func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
        throw Unexpected()
    }
}
