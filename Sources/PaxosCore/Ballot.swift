/// The identity of one node of the cluster.
///
/// Node ids are part of every ``Ballot``, which is what makes ballots unique per node: two nodes
/// can pick the same round, never the same ballot.
public struct NodeID: RawRepresentable, Hashable, Comparable, Sendable, ExpressibleByIntegerLiteral,
    CustomStringConvertible
{
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ value: UInt32) { self.rawValue = value }
    public init(integerLiteral value: UInt32) { self.rawValue = value }

    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { String(rawValue) }
}

/// A proposal number: `(round, node)`, ordered by round first, then by node id.
///
/// A proposer makes a new ballot with `maxRound + 1` and its own node id, where `maxRound` is the
/// highest round it has seen or used. `maxRound` is durable state: it is committed before any
/// message carrying a ballot of that round leaves the process, so a restarted node never reuses a
/// ballot.
public struct Ballot: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var round: UInt64
    public var node: NodeID

    public init(round: UInt64, node: NodeID) {
        self.round = round
        self.node = node
    }

    /// Every round that comes from outside the process (a peer's message, a file) is below this:
    /// `maxRound + 1` can never overflow, and every round fits a signed 64-bit SQLite integer,
    /// so SQL compares ballots exactly as the core does. Anything at or above it is refused.
    public static let roundLimit: UInt64 = 1 << 62

    public static func < (lhs: Ballot, rhs: Ballot) -> Bool {
        if lhs.round != rhs.round { return lhs.round < rhs.round }
        return lhs.node < rhs.node
    }

    /// `round.node`, the same rendering the SQLite views use.
    public var description: String { "\(round).\(node)" }
}

/// A value as Paxos sees it: opaque bytes.
public typealias Value = [UInt8]

/// A ballot together with the value an acceptor accepted under it.
public struct AcceptedProposal: Hashable, Sendable, CustomStringConvertible {
    public var ballot: Ballot
    public var value: Value

    public init(ballot: Ballot, value: Value) {
        self.ballot = ballot
        self.value = value
    }

    public var description: String { "(\(ballot), \(renderValue(value)))" }
}

/// What a peer knows about one instance, as the 6.824 lab's `Status` reports it.
public enum Fate: Hashable, Sendable, CustomStringConvertible {
    /// Agreement was reached on this value.
    case decided(Value)
    /// Not (yet) known to be decided here.
    case pending
    /// Below `min()`: this peer has released everything about the instance.
    case forgotten

    public var description: String {
        switch self {
        case .decided(let value): "decided(\(renderValue(value)))"
        case .pending: "pending"
        case .forgotten: "forgotten"
        }
    }
}

/// Renders a value for transcripts: as text when it is short printable UTF-8, else as a byte count.
func renderValue(_ value: Value) -> String {
    if value.count <= 32, value.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) {
        return "\"" + String(decoding: value, as: UTF8.self) + "\""
    }
    return "<\(value.count) bytes>"
}
