/// A position in the replicated log. Slots start at 1; 0 means "none".
public typealias Slot = Int

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

/// A change to a state machine's rows.
public enum MachineMutation: Hashable, Sendable {
    case put(MachineKey, [UInt8])
    case delete(MachineKey)
}

/// A deterministic state machine fed by the replicated log.
///
/// `apply` must be a pure function of the machine's state and the proposal: every replica applies
/// the same entries in the same order and must reach the same state and the same outputs.
public protocol StateMachine: Sendable {
    /// Rebuilds the machine from its durable rows (after a restart, or from a snapshot).
    init(rows: [MachineKey: [UInt8]])
    /// Applies one chosen proposal in slot `slot` and returns the client's answer and the row
    /// changes to persist in the same transaction as the new applied index.
    mutating func apply(_ proposal: Proposal, slot: Slot) -> (output: Value, mutations: [MachineMutation])
    /// Every row, for a snapshot sent to a node that fell behind the log's start.
    func rows() -> [MachineKey: [UInt8]]
}
