/// One member of the cluster, as the replicated log records it.
public struct Member: Hashable, Sendable, CustomStringConvertible {
    public var id: NodeID
    /// The random number its data directory drew when it was created; 0 until the cluster has
    /// heard it. A node presenting a known id with another incarnation lost its disk (or is
    /// another process under the same id) and is refused as a voter and as a leader.
    public var incarnation: UInt64
    /// Where its peers dial it (`HOST:PORT`).
    public var address: String
    /// Whether it votes (counts in quorums and may lead); a learner only receives the log.
    public var isVoter: Bool

    public init(id: NodeID, incarnation: UInt64, address: String, isVoter: Bool) {
        self.id = id
        self.incarnation = incarnation
        self.address = address
        self.isVoter = isVoter
    }

    public var description: String {
        "\(id.rawValue)\(isVoter ? "" : "(learner)")@\(address)#\(String(incarnation, radix: 16))"
    }
}

/// The cluster's members as of one slot of the log. Configuration entries are chosen like any
/// other entry; the membership in force for slot `s` is the one that the chosen entries below
/// `s` make (the bootstrap list until the first one).
public struct Membership: Hashable, Sendable, CustomStringConvertible {
    /// Sorted by id.
    public private(set) var members: [Member]
    /// The slot of the entry that made this membership; 0 for the provisional one a new cluster
    /// starts from (its `--peers`, incarnations not yet recorded), which a node that joins an
    /// existing cluster starts from empty.
    public private(set) var slot: Slot

    /// The ids of the voters.
    public let voters: Set<NodeID>

    public init(members: [Member], slot: Slot) {
        self.members = members.sorted { $0.id < $1.id }
        self.slot = slot
        self.voters = Set(members.filter(\.isVoter).map(\.id))
    }

    /// The provisional membership of a new cluster: every bootstrap peer votes.
    public static func provisional(_ peers: [NodeID: String]) -> Membership {
        Membership(
            members: peers.map { Member(id: $0.key, incarnation: 0, address: $0.value, isVoter: true) },
            slot: 0)
    }

    /// What a node that joins knows before the cluster told it anything.
    public static let unknown = Membership(members: [], slot: 0)

    /// Whether no configuration entry was chosen yet: a new cluster's first leader needs every
    /// bootstrap peer's promise, and its first entry records their incarnations.
    public var isProvisional: Bool { slot == 0 }
    public var isUnknown: Bool { members.isEmpty }

    public var ids: [NodeID] { members.map(\.id) }

    public func member(_ id: NodeID) -> Member? { members.first { $0.id == id } }

    public func isVoter(_ id: NodeID) -> Bool { member(id)?.isVoter == true }

    public var description: String { "[\(members.map(\.description).joined(separator: ", "))]@\(slot)" }

    /// The membership after the change chosen in `slot`, and the answer its proposer gets. A
    /// change that does not fit (adding a member twice, promoting an unknown node, removing the
    /// last voter) changes nothing and is answered with the reason: every replica applies the
    /// same entries and reaches the same decision.
    public func applying(_ change: MembershipChange, slot: Slot) -> (Membership, String?) {
        var next = members
        if isProvisional {
            switch change {
            case .bootstrap, .refused: break
            default: return (self, "the cluster has not recorded its first membership yet")
            }
        }
        switch change {
        case .bootstrap(let list):
            guard isProvisional else { return (self, "the cluster is already bootstrapped") }
            next = list
        case .addLearner(let id, let address):
            guard member(id) == nil else { return (self, "node \(id.rawValue) is already a member") }
            guard id.rawValue != 0 else { return (self, "node ids start at 1") }
            next.append(Member(id: id, incarnation: 0, address: address, isVoter: false))
        case .promote(let id):
            guard let index = next.firstIndex(where: { $0.id == id }) else {
                return (self, "node \(id.rawValue) is not a member")
            }
            guard !next[index].isVoter else { return (self, "node \(id.rawValue) is already a voter") }
            guard next[index].incarnation != 0 else {
                return (self, "node \(id.rawValue) has not been heard from yet")
            }
            next[index].isVoter = true
        case .remove(let id):
            guard let index = next.firstIndex(where: { $0.id == id }) else {
                return (self, "node \(id.rawValue) is not a member")
            }
            if next[index].isVoter, voters.count == 1 {
                return (self, "node \(id.rawValue) is the last voter")
            }
            next.remove(at: index)
        case .pin(let id, let incarnation):
            guard let index = next.firstIndex(where: { $0.id == id }), next[index].incarnation == 0,
                incarnation != 0
            else { return (self, "node \(id.rawValue) needs no incarnation recorded") }
            next[index].incarnation = incarnation
        case .refused(let reason):
            return (self, reason)
        }
        return (Membership(members: next, slot: slot), nil)
    }

    // MARK: - Rows

    /// The row that holds the membership among the state machine's rows, so that it commits with
    /// the entry that changes it and travels in snapshots; it sorts before every other row, so a
    /// snapshot's first chunk carries it.
    public static let rowKey = MachineKey(space: 0, key: [0] + Array("cluster.membership".utf8))

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = [1]
        append(UInt64(slot), to: &bytes)
        append(UInt64(members.count), to: &bytes)
        for member in members {
            append(UInt64(member.id.rawValue), to: &bytes)
            append(member.incarnation, to: &bytes)
            bytes.append(member.isVoter ? 1 : 0)
            let address = Array(member.address.utf8)
            append(UInt64(address.count), to: &bytes)
            bytes += address
        }
        return bytes
    }

    /// Decodes ``encoded()``; `nil` for anything else (a damaged row).
    public init?(encoded bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        guard reader.byte() == 1, let slot = reader.number(), slot < 1 << 62, let count = reader.number(),
            count <= 10_000
        else { return nil }
        var members: [Member] = []
        for _ in 0..<count {
            guard let id = reader.number(), id <= UInt64(UInt32.max), let incarnation = reader.number(),
                let voter = reader.byte(), voter <= 1, let length = reader.number(), length <= 1024,
                let address = reader.bytes(Int(length)), let text = String(validating: address, as: UTF8.self)
            else { return nil }
            members.append(
                Member(id: NodeID(UInt32(id)), incarnation: incarnation, address: text, isVoter: voter == 1))
        }
        guard reader.isAtEnd, Set(members.map(\.id)).count == members.count else { return nil }
        self.init(members: members, slot: Slot(slot))
    }
}

/// A change to the membership, proposed through the log. One member changes at a time (see
/// ``LogReplica`` for why that, with the rest of its rules, keeps every quorum sound).
public enum MembershipChange: Hashable, Sendable, CustomStringConvertible {
    /// A new cluster's first entry: its bootstrap peers with their incarnations.
    case bootstrap([Member])
    /// A non-voting member: it receives the log and snapshots and never counts in a quorum.
    case addLearner(NodeID, address: String)
    /// A learner that has caught up becomes a voter.
    case promote(NodeID)
    case remove(NodeID)
    /// Records the incarnation of a member the cluster had not heard from yet.
    case pin(NodeID, incarnation: UInt64)
    /// A change the leader refused (a learner that has not caught up); applies as nothing, so its
    /// proposer gets the reason.
    case refused(String)

    public var description: String {
        switch self {
        case .bootstrap(let members): "bootstrap(\(members))"
        case .addLearner(let id, let address): "addLearner(\(id.rawValue)@\(address))"
        case .promote(let id): "promote(\(id.rawValue))"
        case .remove(let id): "remove(\(id.rawValue))"
        case .pin(let id, let incarnation): "pin(\(id.rawValue)#\(String(incarnation, radix: 16)))"
        case .refused(let reason): "refused(\(reason))"
        }
    }

    /// Commands that start with these bytes are membership changes, never state machine
    /// commands: ``LogReplica/submit(_:resendable:)`` refuses client commands that start so.
    public static let magic: [UInt8] = [0xFF, 0x50, 0x58, 0x4D]

    public func encoded() -> [UInt8] {
        var bytes = Self.magic
        switch self {
        case .bootstrap(let members):
            bytes.append(1)
            bytes += Membership(members: members, slot: 0).encoded()
        case .addLearner(let id, let address):
            bytes.append(2)
            append(UInt64(id.rawValue), to: &bytes)
            bytes += Array(address.utf8)
        case .promote(let id):
            bytes.append(3)
            append(UInt64(id.rawValue), to: &bytes)
        case .remove(let id):
            bytes.append(4)
            append(UInt64(id.rawValue), to: &bytes)
        case .pin(let id, let incarnation):
            bytes.append(5)
            append(UInt64(id.rawValue), to: &bytes)
            append(incarnation, to: &bytes)
        case .refused(let reason):
            bytes.append(6)
            bytes += Array(reason.utf8.prefix(1024))
        }
        return bytes
    }

    public static func isChange(_ command: Value) -> Bool { command.starts(with: magic) }

    /// Decodes a command; `nil` when it is not a membership change. A command with the magic
    /// bytes that does not decode applies as a refused change (see ``apply(_:rows:)``).
    public init?(command: Value) {
        guard Self.isChange(command) else { return nil }
        var reader = ByteReader(Array(command.dropFirst(Self.magic.count)))
        guard let tag = reader.byte() else { return nil }
        switch tag {
        case 1:
            guard let membership = Membership(encoded: reader.rest()) else { return nil }
            self = .bootstrap(membership.members)
        case 2:
            guard let id = reader.number(), (1...UInt64(UInt32.max)).contains(id),
                let address = String(validating: reader.rest(), as: UTF8.self), !address.isEmpty,
                address.utf8.count <= 1024
            else { return nil }
            self = .addLearner(NodeID(UInt32(id)), address: address)
        case 3, 4:
            guard let id = reader.number(), id <= UInt64(UInt32.max), reader.isAtEnd else { return nil }
            self = tag == 3 ? .promote(NodeID(UInt32(id))) : .remove(NodeID(UInt32(id)))
        case 5:
            guard let id = reader.number(), id <= UInt64(UInt32.max), let incarnation = reader.number(),
                reader.isAtEnd
            else { return nil }
            self = .pin(NodeID(UInt32(id)), incarnation: incarnation)
        case 6:
            self = .refused(String(decoding: reader.rest(), as: UTF8.self))
        default:
            return nil
        }
    }

    /// What applying a chosen membership command does to the rows: the state machine never sees
    /// it. Returns the proposer's answer: `ok`, or `refused: REASON`.
    public static func apply<Rows: MachineRows>(_ command: Value, slot: Slot, rows: inout Rows) throws
        -> Value
    {
        let current: Membership
        if let bytes = try rows.value(Membership.rowKey) {
            guard let decoded = Membership(encoded: bytes) else {
                throw MembershipRowError()
            }
            current = decoded
        } else {
            current = Membership(members: [], slot: 0)
        }
        guard let change = MembershipChange(command: command) else {
            return Array("refused: the change does not decode".utf8)
        }
        let (next, refusal) = current.applying(change, slot: slot)
        if let refusal { return Array("refused: \(refusal)".utf8) }
        try rows.put(Membership.rowKey, next.encoded())
        return Array("ok".utf8)
    }
}

/// The membership row does not decode: the store is damaged.
public struct MembershipRowError: Error, CustomStringConvertible {
    public var description: String {
        "the membership row (machine_rows space 0) does not decode: the database is damaged"
    }
}

/// Runs membership commands itself and hands every other command to `machine`: what the stores
/// apply chosen entries with.
public struct ClusterMachine<Machine: StateMachine>: StateMachine {
    public let machine: Machine

    public init(_ machine: Machine) { self.machine = machine }

    public func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
        if MembershipChange.isChange(proposal.command) {
            return try MembershipChange.apply(proposal.command, slot: slot, rows: &rows)
        }
        return try machine.apply(proposal, slot: slot, rows: &rows)
    }

    public func read<Rows: MachineRows>(_ command: Value, rows: Rows) throws -> Value? {
        MembershipChange.isChange(command) ? nil : try machine.read(command, rows: rows)
    }
}

private func append(_ value: UInt64, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
}

private struct ByteReader {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { index == bytes.count }

    mutating func byte() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    mutating func number() -> UInt64? {
        guard bytes.count - index >= 8 else { return nil }
        var value: UInt64 = 0
        for byte in bytes[index..<index + 8] { value = value << 8 | UInt64(byte) }
        index += 8
        return value
    }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, bytes.count - index >= count else { return nil }
        defer { index += count }
        return Array(bytes[index..<index + count])
    }

    mutating func rest() -> [UInt8] {
        defer { index = bytes.count }
        return Array(bytes[index...])
    }
}
