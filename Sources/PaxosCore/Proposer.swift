/// The volatile state of this node's proposer for one instance. Lost on a crash, by design: the
/// application starts the instance again, and durable `maxRound` keeps the next ballot fresh.
struct Proposer: Sendable {
    enum Phase: Sendable {
        /// Phase 1 in flight under ``Proposer/ballot``.
        case preparing
        /// Phase 2 in flight under ``Proposer/ballot`` with this value.
        case accepting(Value)
        /// Backing off until this tick, then a new phase 1.
        case waiting(until: UInt64)
    }

    /// The value this node's application asked for; used only if no acceptor reports an accepted one.
    var ownValue: Value
    var ballot: Ballot
    var phase: Phase
    /// Nodes that answered positively in the current phase.
    var votes: Set<NodeID> = []
    /// Nodes that refused, or could not be reached, in the current phase.
    var refusals: Set<NodeID> = []
    /// The highest-ballot accepted proposal reported by the promises of the current phase 1.
    var highestAccepted: AcceptedProposal?
    /// The tick after which the current phase is abandoned.
    var deadline: UInt64 = 0
    /// Failed attempts so far; widens the backoff window.
    var attempts: UInt64 = 0

    init(ownValue: Value, ballot: Ballot) {
        self.ownValue = ownValue
        self.ballot = ballot
        self.phase = .waiting(until: 0)
    }

    var isPreparing: Bool {
        if case .preparing = phase { return true }
        return false
    }

    var acceptingValue: Value? {
        if case .accepting(let value) = phase { return value }
        return nil
    }
}

/// The volatile state of telling other nodes about a decision this node's proposer reached.
struct Announcer: Sendable {
    /// Nodes that have not acknowledged the decision yet.
    var pending: Set<NodeID>
    /// Nodes whose last `decided` failed, with the tick at which to try again.
    var retryAt: [NodeID: UInt64] = [:]
    /// Failed deliveries so far; widens the retry window.
    var failures: UInt64 = 0
}

/// Everything a node holds in memory about one instance.
struct Instance: Sendable {
    /// Durable acceptor and learner state (mirrors the store).
    var promised: Ballot?
    var accepted: AcceptedProposal?
    var decided: Value?
    /// Volatile proposer and announcer state.
    var proposer: Proposer?
    var announcer: Announcer?

    init() {}

    init(record: InstanceRecord) {
        promised = record.promised
        accepted = record.accepted
        decided = record.decided
    }

    var isActive: Bool { proposer != nil || announcer != nil }

    /// Whether this node's acceptor (or learner) holds anything durable about the instance.
    var hasAcceptorRecord: Bool { promised != nil || accepted != nil || decided != nil }
}

/// The volatile state of recovering a lost acceptor state: who answered, what they reported, and
/// when to ask the others (again). Only the fact that the node is recovering is durable; a restart
/// asks everyone again. Kept after the node's own recovery finished while some node that
/// reported recovering too has not reported that it finished.
struct Recovery: Sendable {
    struct Report: Sendable {
        var maxSeq: Int
        var maxRound: UInt64
        var recovering: Bool
    }

    /// The answers so far, by node.
    var reports: [NodeID: Report] = [:]
    /// The tick at which to ask each node whose answer is still needed: while recovering, those
    /// that have not answered; afterwards, those that were still recovering.
    var askAt: [NodeID: UInt64]
    /// Failed queries so far; widens the retry window.
    var failures: UInt64 = 0

    /// Every node in `others` is to be asked at once.
    init(asking others: [NodeID]) {
        askAt = Dictionary(uniqueKeysWithValues: others.map { ($0, 0) })
    }
}
