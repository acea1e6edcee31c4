/// A request from one replica to another.
public enum LogRequest: Hashable, Sendable, CustomStringConvertible {
    /// Phase 1a for every slot from `from` on: one promise covers the rest of the log, so a
    /// leader that wins it sends only accepts afterwards.
    case prepare(ballot: Ballot, from: Slot)
    /// Phase 2a for `entries` (empty: a heartbeat). `firstUnchosen` is the leader's first slot
    /// not known chosen: the receiver may mark every entry it accepted under this same ballot
    /// below it as chosen. `releasable` is the slot below which every replica has applied.
    case accept(ballot: Ballot, entries: [SlotEntry], firstUnchosen: Slot, releasable: Slot)
    /// Catch-up: the sender asks for chosen entries from `from` on.
    case fetch(from: Slot)
    /// A non-leader hands client proposals to the leader.
    case forward([Proposal])
    /// Pre-vote: would the receiver promise `ballot` if it came as a prepare? Asking changes
    /// nothing on either side (no promise, no timer), so a node that was cut off cannot raise
    /// its own promise, come back, and depose a healthy leader; it campaigns for real only once
    /// a majority says it has lost its leader too (Ongaro's thesis, 9.6; etcd/raft's PreVote).
    case preVote(ballot: Ballot)
    /// Asks for the next chunk of a snapshot: `token` 0 for a new snapshot, otherwise the one the
    /// sender's earlier chunks came from, with the rows after `after`. Answered by the driver (it
    /// reads the store), never by the replica.
    case snapshotChunk(token: UInt64, after: MachineKey?)
    /// A leader asks whether the receiver has promised any ballot above `ballot`, for its read
    /// confirmation `round` (``LogReplica/read()``). Changes nothing on the receiver: a majority
    /// answering "no" after a read arrived proves that no later leader could have chosen
    /// anything before it (etcd/raft's ReadIndex heartbeat round).
    case confirm(ballot: Ballot, round: UInt64)

    public var description: String {
        switch self {
        case .prepare(let ballot, let from): "prepare(\(ballot), from: \(from))"
        case .accept(let ballot, let entries, let firstUnchosen, let releasable):
            "accept(\(ballot), \(entries), firstUnchosen: \(firstUnchosen), releasable: \(releasable))"
        case .fetch(let from): "fetch(from: \(from))"
        case .forward(let proposals): "forward(\(proposals))"
        case .preVote(let ballot): "preVote(\(ballot))"
        case .snapshotChunk(let token, let after):
            "snapshotChunk(\(token), after: \(after.map { "\($0.space):\($0.key.count) bytes" } ?? "-"))"
        case .confirm(let ballot, let round): "confirm(\(ballot), round: \(round))"
        }
    }
}

/// A replica's answer to a ``LogRequest``.
public enum LogReply: Hashable, Sendable, CustomStringConvertible {
    /// Phase 1b: the acceptor promised `ballot` for the whole log. `firstUnchosen` is its first
    /// slot not known chosen; `records` are what it holds from `max(from, firstUnchosen)` on;
    /// `membershipSlot` is the slot of the latest membership change it knows chosen (0: none), so
    /// a candidate that missed one learns that it counted its quorum in an old membership.
    case promise(ballot: Ballot, firstUnchosen: Slot, records: [ReportedRecord], membershipSlot: Slot)
    /// Phase 2b for `slots` (or a heartbeat's answer), with the acceptor's progress.
    case accepted(ballot: Ballot, slots: [Slot], firstUnchosen: Slot, applied: Slot)
    /// The acceptor promised `promised`, which rules out `ballot`.
    case rejected(ballot: Ballot, promised: Ballot)
    /// Chosen entries from the fetch's `from` on, and the responder's first unchosen slot.
    case chosen(entries: [SlotEntry], firstUnchosen: Slot)
    /// The fetch asked for released slots: the responder has a snapshot of its state machine
    /// after `applied`, to be fetched in chunks with ``LogRequest/snapshotChunk(token:after:)``.
    case snapshotAvailable(applied: Slot)
    /// Rows of snapshot `token` (the state machine after `applied`), in key order, following
    /// `after`, which repeats the request's (`nil` for a new snapshot), so a late answer to an
    /// older request is never taken for the next chunk; `done` when no rows are left.
    case snapshotChunk(token: UInt64, applied: Slot, after: MachineKey?, rows: [MachineRow], done: Bool)
    /// The snapshot asked for is gone (the responder restarted or dropped it): start again.
    case snapshotGone
    /// Answer to `forward`: whether the responder, as leader, took the proposals.
    case forwarded(taken: Bool)
    /// Answer to `preVote`: whether the responder would promise `ballot` now, and what it has
    /// promised (so a refused candidate can ask again above it).
    case preVote(ballot: Ballot, granted: Bool, promised: Ballot?)
    /// The responder does not take requests from the sender as a member: the sender's id is not
    /// a member there, or its incarnation is not the one recorded for it (`known`, 0 when the id
    /// is not a member): its data directory is not the one the cluster knows.
    case refused(known: UInt64)
    /// Answer to `confirm`: the highest ballot the responder has promised (`nil`: none). It
    /// confirms `ballot` when that is not above it.
    case confirmed(ballot: Ballot, round: UInt64, promised: Ballot?)
    /// Answer to `confirm` from a replica with leader-lease reads on
    /// (``LogConfiguration/leaseTicks``) that has promised `ballot` and nothing above it: it
    /// confirms `ballot`, and it refuses to promise any other node's ballot for an election
    /// timeout of its own ticks from when it received the request. A leader counts only these
    /// towards its lease; a replica with leases off answers `confirmed`, which counts for a read
    /// round only.
    case leaseConfirmed(ballot: Ballot, round: UInt64)

    public var description: String {
        switch self {
        case .promise(let ballot, let firstUnchosen, let records, let membershipSlot):
            "promise(\(ballot), firstUnchosen: \(firstUnchosen), \(records), membership: \(membershipSlot))"
        case .accepted(let ballot, let slots, let firstUnchosen, let applied):
            "accepted(\(ballot), \(slots), firstUnchosen: \(firstUnchosen), applied: \(applied))"
        case .rejected(let ballot, let promised): "rejected(\(ballot), promised: \(promised))"
        case .chosen(let entries, let firstUnchosen): "chosen(\(entries), firstUnchosen: \(firstUnchosen))"
        case .snapshotAvailable(let applied): "snapshotAvailable(applied: \(applied))"
        case .snapshotChunk(let token, let applied, let after, let rows, let done):
            "snapshotChunk(\(token), applied: \(applied), after: \(after.map { "\($0.space):\($0.key.count) bytes" } ?? "-"), \(rows.count) rows\(done ? ", done" : ""))"
        case .snapshotGone: "snapshotGone"
        case .forwarded(let taken): "forwarded(\(taken))"
        case .preVote(let ballot, let granted, let promised):
            "preVote(\(ballot), \(granted ? "granted" : "refused"), promised: \(promised.map(\.description) ?? "-"))"
        case .refused(let known): "refused(known: \(String(known, radix: 16)))"
        case .confirmed(let ballot, let round, let promised):
            "confirmed(\(ballot), round: \(round), promised: \(promised.map(\.description) ?? "-"))"
        case .leaseConfirmed(let ballot, let round): "leaseConfirmed(\(ballot), round: \(round))"
        }
    }
}

/// A ``LogRequest`` with its sender.
public struct LogRequestEnvelope: Hashable, Sendable, CustomStringConvertible {
    public var from: NodeID
    /// The sender's incarnation (its data directory's): see ``Member/incarnation``.
    public var incarnation: UInt64
    public var request: LogRequest

    public init(from: NodeID, incarnation: UInt64 = 0, request: LogRequest) {
        self.from = from
        self.incarnation = incarnation
        self.request = request
    }

    public var description: String { "\(from) → \(request)" }
}

/// A ``LogReply`` with its sender.
public struct LogReplyEnvelope: Hashable, Sendable, CustomStringConvertible {
    public var from: NodeID
    /// The sender's incarnation (its data directory's): see ``Member/incarnation``.
    public var incarnation: UInt64
    public var reply: LogReply

    public init(from: NodeID, incarnation: UInt64 = 0, reply: LogReply) {
        self.from = from
        self.incarnation = incarnation
        self.reply = reply
    }

    public var description: String { "\(from) ← \(reply)" }
}

/// A request the driver must send to `to`, and whose reply (or failure) it feeds back.
public struct LogOutbound: Hashable, Sendable, CustomStringConvertible {
    public var to: NodeID
    public var envelope: LogRequestEnvelope

    public init(to: NodeID, envelope: LogRequestEnvelope) {
        self.to = to
        self.envelope = envelope
    }

    public var description: String { "to \(to): \(envelope.request)" }
}

/// What the driver must do after handing one input to a ``LogReplica``.
///
/// THE DRIVER MUST CARRY OUT A LOG READY IN THIS ORDER:
///
/// 1. ``eagerMessages`` MAY BE SENT AT ONCE: they depend only on state that was already durable
///    before this input was handled (a leader's accepts depend on its promise and `maxRound`,
///    which were durable before it became leader; its own vote is counted only after step 2).
///    ``results``, ``failed`` and ``unknown`` MAY BE HANDED TO CLIENTS AT ONCE, TOO: a result
///    comes from ``LogReplica/onApplied(through:outputs:)`` and is the state machine's output
///    for an entry that is chosen (a majority of acceptors hold it durably), a deterministic
///    function of the chosen prefix. So the driver MAY also hand a client the output the store
///    computed for its proposal inside the commit of step 2, before that commit's fsync (the
///    first output of a proposal; the later report then finds nobody waiting). `failed`
///    proposals never left this replica; `unknown` ones left it and may or may not be chosen.
/// 2. PERSIST: commit ``mutations`` atomically and durably, after every earlier Ready's. The
///    `apply` mutations among them run the state machine inside that same transaction.
/// 3. SEND: only after that commit returned, send ``messages`` and ``reply``, and feed
///    ``localReplies`` back with ``LogReplica/onReply(_:)``.
/// 4. APPLY: after that commit, report the highest slot it applied (an `installSnapshot` applies
///    through its slot) and the outputs of this replica's proposals with
///    ``LogReplica/onApplied(through:outputs:)``. Applied mutations that
///    gate no client MAY wait for a later commit: the chosen entries are safe at a majority, and
///    a restart applies them again from the durable applied index.
///
/// IF A COMMIT FAILS, NOTHING IN THIS READY OR ANY LATER ONE MAY BE RELEASED: the replica must stop
/// (crash-stop) rather than answer from state that is not on disk.
public struct LogReady: Sendable, CustomStringConvertible {
    /// MUST BE DURABLE BEFORE ANYTHING BUT ``eagerMessages`` IS RELEASED.
    public var mutations: [LogMutation] = []
    /// May leave before ``mutations`` are durable (see the type's contract).
    public var eagerMessages: [LogOutbound] = []
    /// SEND ONLY AFTER ``mutations`` ARE DURABLE.
    public var messages: [LogOutbound] = []
    /// This replica's acceptor answering its own proposer. FEED BACK ONLY AFTER ``mutations``
    /// ARE DURABLE: a vote counts only once it survives a crash.
    public var localReplies: [LogReplyEnvelope] = []
    /// The reply to the request being handled. SEND ONLY AFTER ``mutations`` ARE DURABLE.
    public var reply: LogReplyEnvelope?
    /// The reply to the request being handled, when it MAY BE SENT AT ONCE, before any commit
    /// in flight or pending: a confirmation reports the acceptor's promise as it is in memory,
    /// which is never below the durable one, so it can only confirm a ballot that the durable
    /// state confirms too (a higher promise not yet durable only refuses, which is always safe).
    public var eagerReply: LogReplyEnvelope?
    /// Outputs of this node's proposals that were applied. May be released at once: they depend
    /// only on chosen entries (see the type's contract).
    public var results: [(ProposalID, Value)] = []
    /// This node's proposals that certainly never entered the log (no leader to take them).
    public var failed: [ProposalID] = []
    /// This node's proposals that this replica gives up on although they left it (forwarded to
    /// a leader that may have chosen them): their outcome is unknown, never failed.
    public var unknown: [ProposalID] = []
    /// Linearizable reads (``LogReplica/read()``) confirmed and covered: a majority confirmed this
    /// leader after each arrived, and the replica has applied their read index. The driver MAY
    /// SERVE THEM AT ONCE from the store's committed rows: the applied index they wait for was
    /// reported by ``LogReplica/onApplied(through:outputs:)``, after its commit.
    public var reads: [ReadID] = []
    /// Reads this replica cannot confirm (it does not lead, or stopped leading): nothing was
    /// read; the driver may send them through the log or to the leader instead.
    public var failedReads: [ReadID] = []
    /// What an operator should hear about (the driver logs them). Carry no obligation.
    public var events: [ReplicaEvent] = []

    public init() {}

    public var isEmpty: Bool {
        mutations.isEmpty && eagerMessages.isEmpty && messages.isEmpty && localReplies.isEmpty
            && reply == nil && eagerReply == nil && results.isEmpty && failed.isEmpty && unknown.isEmpty
            && events.isEmpty
            && reads.isEmpty && failedReads.isEmpty
    }

    mutating func append(_ other: LogReady) {
        mutations += other.mutations
        eagerMessages += other.eagerMessages
        messages += other.messages
        localReplies += other.localReplies
        if other.reply != nil { reply = other.reply }
        if other.eagerReply != nil { eagerReply = other.eagerReply }
        results += other.results
        failed += other.failed
        unknown += other.unknown
        reads += other.reads
        failedReads += other.failedReads
        events += other.events
    }

    public var description: String {
        var lines: [String] = []
        for message in eagerMessages { lines.append("send now \(message)") }
        if let eagerReply { lines.append("reply now \(eagerReply)") }
        for mutation in mutations { lines.append("persist \(mutation)") }
        for message in messages { lines.append("send \(message)") }
        for reply in localReplies { lines.append("local \(reply)") }
        if let reply { lines.append("reply \(reply)") }
        for (id, output) in results { lines.append("result \(id) = \(renderValue(output))") }
        for id in failed { lines.append("failed \(id)") }
        for id in unknown { lines.append("unknown \(id)") }
        for id in reads { lines.append("read \(id) ready") }
        for id in failedReads { lines.append("read \(id) failed") }
        for event in events { lines.append("event \(event)") }
        return lines.joined(separator: "\n")
    }
}

/// Something a replica noticed that an operator should hear about.
public enum ReplicaEvent: Hashable, Sendable, CustomStringConvertible {
    /// The membership in force changed (the driver dials the new members).
    case membership(Membership)
    /// This replica refused a message of `peer` as a member's: `incarnation` is the one it
    /// presented, `known` the one recorded for it (0: not a member).
    case refusedPeer(NodeID, incarnation: UInt64, known: UInt64)
    /// `peer` refused this replica as a member: the cluster records `known` for this node's id
    /// (0: not a member), and this data directory is another.
    case refusedBy(NodeID, known: UInt64)
    /// This node is not a voter of the membership in force, with its incarnation: it does not
    /// vote or campaign. `known` is the incarnation recorded for its id (0: not a member).
    case notAVoter(known: UInt64)
    /// This replica campaigns: it promised `ballot` to itself and asks `voters` − 1 peers.
    case electionStarted(Ballot, voters: Int)
    /// This replica leads with `ballot`; a takeover that must first learn the chosen slots
    /// below `catchUpTo` from a promiser says so.
    case electionWon(Ballot, catchUpTo: Slot?)
    /// This replica's campaign with `ballot` ended without leading, for `reason`.
    case electionLost(Ballot, reason: String)
    /// This replica stopped leading with `ballot`, for `reason`.
    case steppedDown(Ballot, reason: String)
    /// The leader this replica knows changed (`nil`: it knows none now).
    case leaderChanged(NodeID?)
    /// This replica fell behind the released log and fetches a snapshot from `from`.
    case snapshotStarted(from: NodeID, theirApplied: Slot, resuming: Bool)
    /// This replica installed the snapshot from `from`, which applied the log up to `applied`.
    case snapshotInstalled(from: NodeID, applied: Slot)
    /// A peer reported an entry chosen in `slot` other than the one this replica knows chosen
    /// there: a broken or hostile peer (Paxos rules it out). The known entry stays.
    case conflictingChosen(slot: Slot)

    public var description: String {
        switch self {
        case .electionStarted(let ballot, let voters):
            "election started with ballot \(ballot) among \(voters) voters"
        case .electionWon(let ballot, let target):
            "election won with ballot \(ballot)" + (target.map { ": catching up to slot \($0) first" } ?? "")
        case .electionLost(let ballot, let reason): "election with ballot \(ballot) lost: \(reason)"
        case .steppedDown(let ballot, let reason): "stepped down from ballot \(ballot): \(reason)"
        case .leaderChanged(let leader): "leader is now \(leader.map { "node \($0.rawValue)" } ?? "unknown")"
        case .snapshotStarted(let from, let applied, let resuming):
            "\(resuming ? "resuming" : "fetching") a snapshot from node \(from.rawValue) (applied up to \(applied))"
        case .snapshotInstalled(let from, let applied):
            "installed the snapshot from node \(from.rawValue): applied up to slot \(applied)"
        case .conflictingChosen(let slot):
            "a peer reported another entry chosen in slot \(slot) than the one known chosen: kept the known one"
        case .membership(let membership): "membership \(membership)"
        case .refusedPeer(let peer, let incarnation, let known):
            "refused node \(peer.rawValue) with incarnation \(String(incarnation, radix: 16)) (known: \(String(known, radix: 16)))"
        case .refusedBy(let peer, let known):
            "refused by node \(peer.rawValue) (it knows this id as \(String(known, radix: 16)))"
        case .notAVoter(let known): "not a voter (this id is known as \(String(known, radix: 16)))"
        }
    }
}
