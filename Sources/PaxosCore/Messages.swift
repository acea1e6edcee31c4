/// A request from one node's proposer (or learner announcer) to another node.
///
/// Requests and replies travel as RPCs: every request gets exactly one reply or a transport
/// failure. The lab counts RPCs at their receiver, and only requests count.
public enum Request: Hashable, Sendable, CustomStringConvertible {
    /// Phase 1a.
    case prepare(seq: Int, ballot: Ballot)
    /// Phase 2a.
    case accept(seq: Int, ballot: Ballot, value: Value)
    /// The instance is decided; the receiver records the value and acknowledges.
    case decided(seq: Int, value: Value)
    /// A node that lost its acceptor state asks what the receiver knows (answered by
    /// ``Reply/recoveryReport(maxSeq:maxRound:recovering:)``); see ``PaxosNode/recover()``.
    case recoveryQuery

    /// The instance the request is about; -1 for ``recoveryQuery``, which is about none (its
    /// report answers with -1 too, so a driver can pair requests and replies by `seq`).
    public var seq: Int {
        switch self {
        case .prepare(let seq, _), .accept(let seq, _, _), .decided(let seq, _): seq
        case .recoveryQuery: -1
        }
    }

    public var description: String {
        switch self {
        case .prepare(let seq, let ballot): "prepare(seq: \(seq), ballot: \(ballot))"
        case .accept(let seq, let ballot, let value):
            "accept(seq: \(seq), ballot: \(ballot), value: \(renderValue(value)))"
        case .decided(let seq, let value): "decided(seq: \(seq), value: \(renderValue(value)))"
        case .recoveryQuery: "recoveryQuery"
        }
    }
}

/// An acceptor's (or learner's) answer to a ``Request``.
public enum Reply: Hashable, Sendable, CustomStringConvertible {
    /// Phase 1b: the acceptor promised `ballot` and reports what it accepted before, if anything.
    case promise(seq: Int, ballot: Ballot, accepted: AcceptedProposal?)
    /// Phase 2b: the acceptor accepted the value under `ballot`.
    case accepted(seq: Int, ballot: Ballot)
    /// The acceptor has promised `promised`, which rules out `ballot`; the proposer can jump past it.
    case rejected(seq: Int, ballot: Ballot, promised: Ballot)
    /// The instance is already decided at the acceptor: the proposer learns the value instead.
    case decided(seq: Int, value: Value)
    /// Acknowledges a `decided` request.
    case decidedAck(seq: Int)
    /// The instance is below the responder's `min()`: every peer is done with it.
    case forgotten(seq: Int)
    /// The acceptor takes no part in `seq` under `ballot`: it is recovering its lost state, or
    /// `seq` is below its vote floor. A refusal, never a vote.
    case refused(seq: Int, ballot: Ballot)
    /// The answer to ``Request/recoveryQuery``: the highest instance in which the responder holds
    /// an acceptor record (promised, accepted, decided) or which it forgot or put below its vote
    /// floor (-1 for none), the highest round it has seen or used, and whether it is recovering
    /// a lost state itself.
    case recoveryReport(maxSeq: Int, maxRound: UInt64, recovering: Bool)

    /// The instance the reply is about; -1 for ``recoveryReport(maxSeq:maxRound:recovering:)``.
    public var seq: Int {
        switch self {
        case .promise(let seq, _, _), .accepted(let seq, _), .rejected(let seq, _, _),
            .decided(let seq, _), .decidedAck(let seq), .forgotten(let seq), .refused(let seq, _):
            seq
        case .recoveryReport: -1
        }
    }

    public var description: String {
        switch self {
        case .promise(let seq, let ballot, let accepted):
            "promise(seq: \(seq), ballot: \(ballot), accepted: \(accepted.map(\.description) ?? "none"))"
        case .accepted(let seq, let ballot): "accepted(seq: \(seq), ballot: \(ballot))"
        case .rejected(let seq, let ballot, let promised):
            "rejected(seq: \(seq), ballot: \(ballot), promised: \(promised))"
        case .decided(let seq, let value): "decided(seq: \(seq), value: \(renderValue(value)))"
        case .decidedAck(let seq): "decidedAck(seq: \(seq))"
        case .forgotten(let seq): "forgotten(seq: \(seq))"
        case .refused(let seq, let ballot): "refused(seq: \(seq), ballot: \(ballot))"
        case .recoveryReport(let maxSeq, let maxRound, let recovering):
            "recoveryReport(maxSeq: \(maxSeq), maxRound: \(maxRound), recovering: \(recovering))"
        }
    }
}

/// A request with the sender's identity and its highest `done` value, piggybacked as the lab
/// suggests so that every peer learns every other peer's `done` without extra messages.
public struct RequestEnvelope: Hashable, Sendable, CustomStringConvertible {
    public var from: NodeID
    public var done: Int
    public var request: Request

    public init(from: NodeID, done: Int, request: Request) {
        self.from = from
        self.done = done
        self.request = request
    }

    public var description: String { "\(from) → \(request) [done \(done)]" }
}

/// A reply with the responder's identity and its highest `done` value.
public struct ReplyEnvelope: Hashable, Sendable, CustomStringConvertible {
    public var from: NodeID
    public var done: Int
    public var reply: Reply

    public init(from: NodeID, done: Int, reply: Reply) {
        self.from = from
        self.done = done
        self.reply = reply
    }

    public var description: String { "\(from) ← \(reply) [done \(done)]" }
}

/// A request the driver must send to `to`, and whose reply (or failure) it feeds back.
public struct OutboundRequest: Hashable, Sendable, CustomStringConvertible {
    public var to: NodeID
    public var envelope: RequestEnvelope

    public init(to: NodeID, envelope: RequestEnvelope) {
        self.to = to
        self.envelope = envelope
    }

    public var description: String { "to \(to): \(envelope.request)" }
}
