/// One replica of a Multi-Paxos replicated log: acceptor, proposer (leader) and learner in one
/// pure value. Every input returns a ``LogReady``; nothing here touches a clock, a thread, a
/// socket or a file. The state machine is not here: the replica hands chosen entries to the
/// driver as `apply` mutations, the store applies them in the commit, and the driver reports
/// back with ``onApplied(through:outputs:)`` (etcd/raft's committed entries and `Advance`).
///
/// The protocol (Ongaro, "Implementing Replicated Logs with Paxos"; seed 000):
/// - One promise covers every slot: `prepare(b, from)` makes the acceptor refuse every ballot
///   below `b` in every slot and report what it holds from `from` on, so a leader runs phase 1
///   once and then sends only accepts, reusing its ballot until someone rejects it.
/// - A follower that has heard no leader for a randomized election timeout first asks for a
///   pre-vote, which changes nothing anywhere, and campaigns (prepares) only when a majority
///   answers that it has lost its leader too; so a node that was cut off, or paused, cannot
///   raise its promise on its own and depose a healthy leader when it returns. The winner
///   learns what the promises report as chosen, fetches chosen entries it lacks below the
///   highest first-unchosen slot reported, and re-proposes the highest-ballot accepted entry (or
///   a no-op) in every other slot it found.
/// - Full replication: every accept and heartbeat carries the leader's first unchosen slot; an
///   acceptor marks as chosen every entry it accepted under the same ballot below it (a leader
///   proposes one entry per slot per ballot, and learns chosen slots from its own quorum only),
///   and fetches whatever else it lacks from the leader, from a snapshot when the leader has
///   already released those slots. A snapshot streams in chunks that the driver reads from one
///   read transaction of the responder's store; the replica stages them durably and installs
///   the snapshot in one commit when the last chunk is in, so a transfer that breaks leaves the
///   state machine as it was, and resumes after the last staged row.
/// - Forgetting: the leader tells everyone the slot below which every replica has applied;
///   replicas release their log below it, and below `retainEntries` behind their applied index.
public struct LogReplica: Sendable {
    /// What this replica is doing.
    public enum Role: Hashable, Sendable, CustomStringConvertible {
        case follower
        /// Asking for pre-votes for the ballot it would campaign with; nothing promised yet.
        case preCandidate(Ballot)
        case candidate(Ballot)
        case leader(Ballot)

        public var description: String {
            switch self {
            case .follower: "follower"
            case .preCandidate(let ballot): "pre-candidate(\(ballot))"
            case .candidate(let ballot): "candidate(\(ballot))"
            case .leader(let ballot): "leader(\(ballot))"
            }
        }
    }

    /// A replica's role with its state (``role`` is its public summary).
    enum Standing: Sendable {
        case follower
        case preCandidate(PreVote)
        case candidate(Candidacy)
        case leader(Leadership)
    }

    struct Candidacy: Sendable {
        var ballot: Ballot
        var from: Slot
        /// The voters of the membership it campaigns in, and whether it needs all of them.
        var voters: Set<NodeID>
        var unanimous: Bool
        /// The slot of the membership it campaigns in (see ``becomeLeader``).
        var membershipSlot: Slot
        var promises: [NodeID: (firstUnchosen: Slot, records: [ReportedRecord], membershipSlot: Slot)] = [:]
        var incarnations: [NodeID: UInt64] = [:]
    }

    /// A snapshot being fetched, chunk by chunk.
    struct Download: Sendable {
        var source: NodeID
        /// 0 until the first chunk names the snapshot.
        var token: UInt64
        var after: MachineKey?
        var deadline: UInt64
    }

    struct PreVote: Sendable {
        var ballot: Ballot
        var grants: Set<NodeID>
        var voters: Set<NodeID>
        var unanimous: Bool
    }

    struct InFlight: Sendable {
        var entry: LogEntry
        var votes: Set<NodeID> = []
        var sentAt: UInt64
    }

    struct Leadership: Sendable {
        var ballot: Ballot
        /// The voters its promises were counted in. It leads only while the membership in force
        /// has these voters: its phase 1 holds in no other.
        var voters: Set<NodeID>
        /// The incarnations its promises came with (a new cluster's first entry records them).
        var incarnations: [NodeID: UInt64] = [:]
        /// A membership entry it proposed (or re-proposed) and has not seen chosen: it proposes
        /// nothing after it until it is, because the slots after it may belong to another
        /// membership.
        var changeSlot: Slot?
        /// Its takeover stopped re-proposing at ``changeSlot``; the slots after it were read in
        /// this phase 1 only, so it campaigns again once that slot is chosen.
        var campaignAgain = false
        /// Membership changes waiting for their turn: each goes alone in its slot, once nothing
        /// else is in flight.
        var changes: [Proposal] = []
        /// Members heard from whose incarnation the membership does not record yet.
        var heard: [NodeID: UInt64] = [:]
        /// Voters that refused it as a member.
        var refusedBy: Set<NodeID> = []
        var nextSlot: Slot
        /// Slots below this may be learned from others (catch-up); at and above it only from
        /// this leader's own quorums, which is what makes the heartbeat's chosen-marking sound.
        var catchUpTarget: Slot
        var inFlight: [Slot: InFlight] = [:]
        var queue: [Proposal] = []
        var lastHeartbeat: UInt64 = 0
        /// Each peer's reported applied index.
        var appliedByPeer: [NodeID: Slot] = [:]
        /// Slots this leader proposed whose own vote (fed back only once its commit is durable)
        /// has not come back, with the tick each was proposed: a leader whose commits hang
        /// steps down instead of keeping its followers loyal with heartbeats.
        var ownVotePending: [Slot: UInt64] = [:]
        /// The tick this leader's own vote last came back: its commits are making progress.
        var ownVoteProgress: UInt64
        /// The first unchosen slot when catch-up last made progress, and the tick it did.
        var catchUpSlot: Slot
        var catchUpSince: UInt64
        /// One past the highest slot an earlier leader may have chosen: what its phase 1 found
        /// (accepted entries, and first-unchosen slots reported). A read must wait for every
        /// slot below it, since a client may have been told about any of them.
        var takeoverEnd: Slot
        /// Read confirmation: the round last started, the last one a majority confirmed, who
        /// confirmed the one in flight, when it was sent, and whether reads wait for another.
        var readRound: UInt64 = 0
        var confirmedRound: UInt64 = 0
        var readConfirmations: Set<NodeID> = []
        var readRoundSentAt: UInt64 = 0
        var readRoundWanted = false
        /// The tick the round in flight started (a resend does not move it): the earliest any of
        /// its requests left, where a lease it earns is measured from.
        var readRoundStartedAt: UInt64 = 0
        /// Lease reads (``LogConfiguration/leaseTicks``): who granted the round in flight a
        /// lease (``LogReply/leaseConfirmed(ballot:round:)``), the tick the lease ends, and
        /// whether a read was served under it since the last round started (so it is renewed).
        var leaseConfirmations: Set<NodeID> = []
        var leaseEnd: UInt64 = 0
        var leaseWanted = false
        /// Reads waiting for their round to be confirmed and their index to be applied, in order.
        var reads: [PendingRead] = []
    }

    struct PendingRead: Sendable {
        var id: ReadID
        /// The highest slot the read must see applied.
        var index: Slot
        /// The confirmation round that must complete: one started after the read arrived.
        var round: UInt64
    }

    public let me: NodeID
    /// The bootstrap peers, this one included: the provisional membership of a new cluster.
    public let peers: [NodeID]
    public let configuration: LogConfiguration
    /// This process's incarnation (the durable restart counter, offset by ``memberIncarnation``);
    /// part of every proposal id it makes.
    public let incarnation: UInt64
    /// This node's data directory's incarnation (random, drawn when it was created): what the
    /// membership records for it (``Member/incarnation``), sent with every message.
    public let memberIncarnation: UInt64
    /// The membership in force for ``firstUnchosen``: what the chosen entries below it make.
    public internal(set) var membership: Membership
    /// What the membership falls back to when a snapshot has none.
    let bootstrapMembership: Membership
    var membershipChanged = false
    /// The leader last reported in a ``ReplicaEvent/leaderChanged(_:)`` event.
    var reportedLeader: NodeID?
    var random: SplitMix64
    var now: UInt64 = 0

    // Mirrors of durable state.
    public internal(set) var promised: Ballot?
    public internal(set) var maxRound: UInt64
    public internal(set) var records: [Slot: LogRecord]
    public internal(set) var applied: Slot
    /// The highest slot the driver reported applied after its commit (``onApplied``): what a
    /// read of the store sees. ``applied`` runs ahead of it while a snapshot install is not yet
    /// committed, so reads wait for this one.
    public internal(set) var committedApplied: Slot
    public internal(set) var logStart: Slot
    /// Entries through this slot were handed to the driver to apply (``applied`` trails it
    /// until the driver reports back).
    public internal(set) var handedOut: Slot
    /// Bytes of the applied entries still held (from ``logStart`` through ``applied``).
    public internal(set) var retainedBytes = 0
    /// The snapshot staged so far (durably), to resume from.
    public internal(set) var staging: SnapshotStaging?
    var download: Download?

    /// The first slot this replica does not know to be chosen.
    public internal(set) var firstUnchosen: Slot
    /// The leader this replica last heard from (itself when leading).
    public internal(set) var leader: NodeID?
    /// What this replica does about leadership, with the state that goes with it: one role at a
    /// time by construction (it never campaigns while it leads, nor leads while it campaigns).
    var standing = Standing.follower
    var electionDeadline: UInt64 = 0
    var lastHeardLeader: UInt64?
    /// Lease reads: until which tick this acceptor promises no ballot of a node other than
    /// `holder` (`nil`: of any node, after a start), because it granted that leader a lease
    /// (see ``LogConfiguration/leaseTicks``).
    var leaseGuard: (holder: NodeID?, until: UInt64)?
    var releasable: Slot = 1
    var nextNumber: UInt64 = 0
    var nextReadID: ReadID = 0
    /// Proposals waiting for a leader to be known, with the tick they arrived.
    var outbox: [(proposal: Proposal, since: UInt64)] = []
    var fetchDeadline: UInt64?
    /// This replica's proposals, not applied yet, that may safely be forwarded again.
    var resendableProposals: Set<ProposalID> = []
    /// This replica's proposals of this incarnation whose outcome it has not reported yet. A
    /// resent proposal can exist twice (one copy chosen, one still queued): only the first
    /// outcome counts, so a later copy given up is never reported failed after it was applied.
    var outstandingProposals: Set<ProposalID> = []
    /// This replica's proposals, not applied yet, that left it in a forward: a leader may have
    /// taken and chosen them, so giving up on one reports an unknown outcome, never a failure.
    var forwardedProposals: Set<ProposalID> = []

    /// Creates a replica from what `state` holds. `state.incarnation` must already be this
    /// process's incarnation, durably (the driver commits it before creating the replica).
    ///
    /// - Parameters:
    ///   - peers: the bootstrap peers, with their addresses in `addresses` (a new cluster's
    ///     provisional membership).
    ///   - memberIncarnation: this data directory's incarnation (nonzero); the default derives
    ///     one from `me`, for tests.
    ///   - joining: this node joins an existing cluster: it starts knowing no membership, never
    ///     campaigns, and learns the membership from the leader's log or snapshot.
    public init(
        me: NodeID, peers: [NodeID], state: LogDurableState,
        configuration: LogConfiguration = LogConfiguration(),
        seed: UInt64 = 1, memberIncarnation: UInt64? = nil, addresses: [NodeID: String] = [:],
        joining: Bool = false
    ) {
        precondition(joining || peers.contains(me), "the peer list must contain this replica")
        self.me = me
        self.peers = Array(Set(peers)).sorted()
        self.configuration = configuration
        let memberIncarnation = memberIncarnation ?? (0x1_0000_0000 | UInt64(me.rawValue))
        self.memberIncarnation = memberIncarnation
        // The restart counter starts again from 0 in a data directory that lost its disk: offset
        // by the directory's random incarnation, proposal ids never repeat those of its old life
        // (whose entries may still be applied, and would be taken for the new proposals').
        self.incarnation = (memberIncarnation &* 0x9E37_79B9_7F4A_7C15) &+ state.incarnation
        let bootstrap =
            joining
            ? Membership.unknown
            : Membership.provisional(
                Dictionary(uniqueKeysWithValues: Set(peers).map { ($0, addresses[$0] ?? "") }))
        self.bootstrapMembership = bootstrap
        self.membership = state.membership ?? bootstrap
        self.random = SplitMix64(seed: seed ^ (UInt64(me.rawValue) &* 0x9E37_79B9_7F4A_7C15))
        self.promised = state.promised
        self.maxRound = Swift.max(state.maxRound, state.promised?.round ?? 0)
        self.records = state.records
        self.applied = state.applied
        self.committedApplied = state.applied
        self.logStart = state.logStart
        self.handedOut = state.applied
        self.staging = state.staging
        self.firstUnchosen = state.applied + 1
        if state.logStart <= state.applied {
            for slot in state.logStart...state.applied {
                retainedBytes += state.records[slot].map { Self.wireSize($0.entry) } ?? 0
            }
        }
        advanceFirstUnchosen()
        resetElectionTimer()
        let maxLease = LogConfiguration.maxLeaseTicks(electionTicks: configuration.electionTicks)
        precondition(
            configuration.leaseTicks <= maxLease,
            "leaseTicks \(configuration.leaseTicks) exceeds what the clock argument allows")
        if configuration.leaseReads || configuration.refuseBallotsAfterStart {
            // It may have granted a lease just before it stopped, and remembers nothing of it.
            leaseGuard = (holder: nil, until: UInt64(configuration.electionTicks))
        }
    }

    /// What this replica does now.
    public var role: Role {
        switch standing {
        case .follower: .follower
        case .preCandidate(let preVote): .preCandidate(preVote.ballot)
        case .candidate(let candidacy): .candidate(candidacy.ballot)
        case .leader(let leadership): .leader(leadership.ballot)
        }
    }

    public var isLeader: Bool { leadership != nil }

    /// Ticks taken since this replica was created.
    public var ticks: UInt64 { now }

    /// Reads this replica took under its lease, with no round of messages (for metrics and
    /// tests).
    public internal(set) var leaseReads: UInt64 = 0

    /// How far the driver's clock was seen ahead of the tick count (``read(clock:)``): ticks
    /// only ever fall behind it (each follows a full sleep, and takes time to run), so a lease
    /// is measured on the clock, estimated from this.
    var clockAhead: UInt64 = 0

    /// Whether this replica knows a leader it heard from within an election timeout (a leader
    /// hears itself at every tick): what a readiness probe asks before sending clients here.
    public var heardLeaderRecently: Bool {
        guard leader != nil, let lastHeardLeader else { return false }
        return now - lastHeardLeader < UInt64(configuration.electionTicks)
    }

    /// Each member's applied index as this leader last heard it (empty unless leading).
    public var peerApplied: [NodeID: Slot] { leadership?.appliedByPeer ?? [:] }

    /// This replica's own proposals it still tracks, waiting for their outcome (for tests: it
    /// must not grow with proposals whose clients were given up on).
    public var trackedProposals: Int { outstandingProposals.count }

    /// Log records held (for tests of forgetting).
    public var recordCount: Int { records.count }

    // MARK: - Client input

    /// Proposes `command`; its output comes back in a later Ready's ``LogReady/results`` under
    /// the returned id, once it is chosen and applied (or in ``LogReady/failed`` when no leader
    /// could take it).
    ///
    /// - Parameter resendable: whether applying the command twice is harmless (the state machine
    ///   deduplicates it, or it only reads). Such a proposal is forwarded again when a forward to
    ///   the leader fails; any other proposal is never sent twice.
    public mutating func submit(_ command: Value, resendable: Bool = false) -> (ProposalID, LogReady) {
        nextNumber += 1
        let proposal = Proposal(
            id: ProposalID(node: me, incarnation: incarnation, number: nextNumber), command: command)
        outstandingProposals.insert(proposal.id)
        var ready = LogReady()
        if MembershipChange.isChange(command) {
            // Only ``changeMembership(_:)`` proposes those.
            giveUp(proposal.id, &ready)
            return (proposal.id, ready)
        }
        if resendable { resendableProposals.insert(proposal.id) }
        route([proposal], &ready)
        finish(&ready)
        return (proposal.id, ready)
    }

    /// Proposes a change of the membership; its answer (`ok`, or `refused: REASON`) comes back
    /// like a command's output once it is chosen and applied. The leader proposes one change at a
    /// time, alone in its slot, and nothing after it until it is chosen; it refuses to promote a
    /// learner that has not caught up (``LogConfiguration/promoteLag``).
    public mutating func changeMembership(_ change: MembershipChange) -> (ProposalID, LogReady) {
        nextNumber += 1
        let proposal = Proposal(
            id: ProposalID(node: me, incarnation: incarnation, number: nextNumber), command: change.encoded())
        outstandingProposals.insert(proposal.id)
        // Applying a change twice is harmless: the second finds it made and changes nothing.
        resendableProposals.insert(proposal.id)
        var ready = LogReady()
        route([proposal], &ready)
        finish(&ready)
        return (proposal.id, ready)
    }

    mutating func route(_ proposals: [Proposal], _ ready: inout LogReady) {
        if leadership != nil {
            enqueue(proposals, &ready)
        } else if let leader, leader != me {
            forward(proposals, to: leader, &ready)
        } else {
            for proposal in proposals {
                if outbox.count >= configuration.maxQueuedProposals {
                    giveUp(proposal.id, &ready)
                } else {
                    outbox.append((proposal, now))
                }
            }
        }
    }

    mutating func enqueue(_ proposals: [Proposal], _ ready: inout LogReady) {
        for proposal in proposals {
            if MembershipChange.isChange(proposal.command) {
                // Peers may hand over the operator's changes, never what only a leader proposes.
                switch MembershipChange(command: proposal.command) {
                case .addLearner, .promote, .remove:
                    if leadership!.changes.count < 64 {
                        leadership!.changes.append(proposal)
                    } else {
                        giveUp(proposal.id, &ready)
                    }
                default:
                    giveUp(proposal.id, &ready)
                }
            } else if leadership!.queue.count >= configuration.maxQueuedProposals {
                giveUp(proposal.id, &ready)
            } else {
                leadership!.queue.append(proposal)
            }
        }
    }

    /// The driver stopped waiting for `id` (its client was told the outcome is unknown): stop
    /// tracking it. Without this, every proposal whose outcome never reaches this replica (a
    /// forward lost in transit, a slot a later leader filled with a no-op) would be held for the
    /// life of the process. A later apply of it still happens; it just reports nothing.
    public mutating func forget(_ id: ProposalID) {
        outstandingProposals.remove(id)
        forwardedProposals.remove(id)
        resendableProposals.remove(id)
    }

    // MARK: - Replies

    /// A reply to a request this replica sent (or its own acceptor's local reply).
    public mutating func onReply(_ envelope: LogReplyEnvelope) -> LogReady {
        var ready = LogReady()
        let from = envelope.from
        let (admitted, known) = admits(from, envelope.incarnation)
        switch envelope.reply {
        case .promise, .accepted, .preVote, .confirmed, .leaseConfirmed:
            // A vote counts only from the member the membership records: a node that lost its
            // disk comes back with another incarnation, and its promises and votes are void.
            if !admitted {
                // Its progress from before (another incarnation's) must not let it be promoted.
                leadership?.appliedByPeer[from] = nil
                ready.events.append(.refusedPeer(from, incarnation: envelope.incarnation, known: known))
                finish(&ready)
                return ready
            }
        default:
            break
        }
        switch envelope.reply {
        case .promise(let ballot, let peerFirstUnchosen, let reported, let membershipSlot):
            guard var candidacy, candidacy.ballot == ballot, candidacy.voters.contains(from) else { break }
            candidacy.promises[from] = (peerFirstUnchosen, reported, membershipSlot)
            candidacy.incarnations[from] = envelope.incarnation
            self.candidacy = candidacy
            if isQuorum(Set(candidacy.promises.keys), of: candidacy.voters, unanimous: candidacy.unanimous) {
                becomeLeader(&ready)
            }
        case .accepted(let ballot, let slots, _, let peerApplied):
            guard leadership?.ballot == ballot else { break }
            leadership!.appliedByPeer[from] = Swift.max(leadership!.appliedByPeer[from] ?? 0, peerApplied)
            if let member = membership.member(from), member.incarnation == 0, !membership.isProvisional,
                envelope.incarnation != 0, leadership!.heard[from] == nil
            {
                // A learner the membership has no incarnation for yet: record it before it may
                // ever vote.
                leadership!.heard[from] = envelope.incarnation
            }
            if from == me, !slots.isEmpty {
                for slot in slots { leadership!.ownVotePending[slot] = nil }
                leadership!.ownVoteProgress = now
            }
            for slot in slots { vote(slot, from, &ready) }
        case .preVote(let ballot, let granted, let theirPromise):
            // In memory only, like every observed round: the next campaign goes above it.
            if let theirPromise { observe(theirPromise.round) }
            guard granted, var preVote, preVote.ballot == ballot, leadership == nil,
                preVote.voters.contains(from)
            else { break }
            preVote.grants.insert(from)
            self.preVote = preVote
            if isQuorum(preVote.grants, of: preVote.voters, unanimous: preVote.unanimous) {
                startElection(&ready)
            }
        case .refused(let theirKnown):
            ready.events.append(.refusedBy(from, known: theirKnown))
            // A peer that lags behind the change that made this node a member refuses it too, so
            // one refusal proves nothing; a majority of its voters refusing it means it is not
            // (or no longer) the member it leads as.
            if let voters = leadership?.voters, voters.contains(from) {
                leadership!.refusedBy.insert(from)
                if isQuorum(leadership!.refusedBy, of: voters, unanimous: false) {
                    stepDown("a majority of the voters refuses this node as a member", &ready)
                }
            }
        case .rejected(let ballot, let promised):
            observe(promised.round)
            if (leadership?.ballot == ballot || candidacy?.ballot == ballot), promised > ballot {
                stepDown("node \(from.rawValue) promised the higher ballot \(promised)", &ready)
            }
        case .chosen(let entries, let theirFirstUnchosen):
            fetchDeadline = nil
            let limit = leadership?.catchUpTarget ?? Slot.max
            for item in entries where item.slot >= firstUnchosen && item.slot < limit {
                learn(item.slot, item.entry, &ready)
            }
            if !entries.isEmpty, firstUnchosen < Swift.min(theirFirstUnchosen, limit) {
                requestFetch(from: from, &ready)
            }
        case .snapshotAvailable(let theirApplied):
            fetchDeadline = nil
            guard download == nil, theirApplied > handedOut else { break }
            let resume = staging.flatMap { $0.source == from ? $0 : nil }
            download = Download(
                source: from, token: resume?.token ?? 0, after: resume?.after,
                deadline: now + UInt64(configuration.resendTicks))
            ready.events.append(
                .snapshotStarted(from: from, theirApplied: theirApplied, resuming: resume != nil))
            ready.eagerMessages.append(
                outbound(to: from, .snapshotChunk(token: resume?.token ?? 0, after: resume?.after)))
        case .snapshotChunk(let token, let snapshotApplied, let after, let rows, let done):
            onSnapshotChunk(from, token, snapshotApplied, after, rows, done, &ready)
        case .snapshotGone:
            guard let current = download, current.source == from, current.token != 0 else { break }
            // Start over: the next first chunk drops what was staged.
            staging = nil
            download = Download(
                source: from, token: 0, after: nil, deadline: now + UInt64(configuration.resendTicks))
            ready.eagerMessages.append(outbound(to: from, .snapshotChunk(token: 0, after: nil)))
        case .forwarded:
            break
        case .confirmed(let ballot, let round, let theirPromise):
            onConfirmed(from, ballot, round, theirPromise, lease: false, &ready)
        case .leaseConfirmed(let ballot, let round):
            onConfirmed(from, ballot, round, nil, lease: true, &ready)
        }
        finish(&ready)
        return ready
    }

    /// A request this replica sent could not be delivered, or its reply was lost.
    public mutating func onSendFailure(_ outbound: LogOutbound) -> LogReady {
        var ready = LogReady()
        switch outbound.envelope.request {
        case .fetch:
            fetchDeadline = nil
        case .snapshotChunk:
            // The staged rows stay: the next transfer from the same peer resumes after them.
            if download?.source == outbound.to { download = nil }
        case .forward(let proposals):
            // The leader may be gone; forget it until it (or another) is heard from again. The
            // proposals may have reached it all the same (only the reply was lost): they stay
            // in `forwardedProposals`, so none is ever reported failed.
            if leader == outbound.to { leader = nil }
            let again = proposals.filter { resendableProposals.contains($0.id) }
            if !again.isEmpty { route(again, &ready) }
        default:
            break
        }
        finish(&ready)
        return ready
    }

    // MARK: - Time

    /// One unit of time passed.
    public mutating func tick() -> LogReady {
        now += 1
        var ready = LogReady()
        if leadership == nil, now >= electionDeadline {
            if canCampaign {
                startPreVote(&ready)
            } else {
                // A learner, a removed member, or a node whose disk is not the one the
                // membership records: it never campaigns.
                candidacy = nil
                preVote = nil
                resetElectionTimer()
            }
        }
        if let leadership, let oldest = leadership.ownVotePending.values.min(),
            now - Swift.max(oldest, leadership.ownVoteProgress) >= UInt64(configuration.commitStallTicks)
        {
            // This leader's own commits have made no progress at all for commitStallTicks (a hung
            // disk): its heartbeats must stop keeping followers from electing a working leader.
            // A disk that is merely slow still completes commits, and keeps its leader.
            stepDown(
                "its own commits made no progress for \(configuration.commitStallTicks) ticks (a hung disk?)",
                &ready)
        }
        if let leadership, firstUnchosen < leadership.catchUpTarget {
            if firstUnchosen > leadership.catchUpSlot {
                self.leadership!.catchUpSlot = firstUnchosen
                self.leadership!.catchUpSince = now
            } else if now - leadership.catchUpSince >= UInt64(configuration.electionTicks) {
                // The peers that knew the slots below the target chosen are gone or cut off, and
                // the ones left may hold those slots only as accepted. A fresh campaign reads
                // them from a quorum that is up now and re-proposes them (Paxos makes any
                // number of campaigns safe); waiting for the lost peers could block forever. It
                // asks for pre-votes first like anyone: cut off, it must not raise its promise.
                stepDown(
                    "catching up to slot \(leadership.catchUpTarget) made no progress for an election timeout: campaigning again",
                    &ready)
                startPreVote(&ready)
            }
        }
        if let leadership {
            lastHeardLeader = now
            if now - leadership.lastHeartbeat >= UInt64(configuration.heartbeatTicks) {
                self.leadership!.lastHeartbeat = now
                for peer in membership.ids where peer != me {
                    ready.eagerMessages.append(outbound(to: peer, acceptRequest(leadership.ballot, [])))
                }
            }
            resendStale(&ready)
            resendReadRound(&ready)
            renewLease(&ready)
        }
        if let fetchDeadline, now >= fetchDeadline { self.fetchDeadline = nil }
        if let download, now >= download.deadline { self.download = nil }
        if let leadership, firstUnchosen < leadership.catchUpTarget, fetchDeadline == nil {
            // A follower asks again at the next heartbeat; a leader has nobody to remind it. Its
            // catch-up fetch (or the answer) may have been lost, or the peer it asked may be down.
            requestFetch(from: catchUpPeer(leadership), &ready)
        }
        let expired = outbox.prefix { now - $0.since >= UInt64(configuration.noLeaderTicks) }
        if !expired.isEmpty {
            outbox.removeFirst(expired.count)
            for item in expired { giveUp(item.proposal.id, &ready) }
        }
        finish(&ready)
        return ready
    }

    /// Applies newly chosen entries in order, releases what everyone has applied, and lets a
    /// leader propose what is queued. Every input ends here.
    mutating func finish(_ ready: inout LogReady) {
        while handedOut + 1 < firstUnchosen, let record = records[handedOut + 1] {
            handedOut += 1
            ready.mutations.append(.apply(slot: handedOut, entry: record.entry))
        }
        if let staging, download == nil, handedOut >= staging.applied {
            // Caught up past it from the log: the staged rows would never be installed.
            self.staging = nil
            ready.mutations.append(.discardSnapshot)
        }
        countVotes(&ready)
        checkMembership(&ready)
        serveReads(&ready)
        if membershipChanged {
            membershipChanged = false
            ready.events.append(.membership(membership))
            if !membership.isUnknown, !canCampaign {
                ready.events.append(.notAVoter(known: membership.member(me)?.incarnation ?? 0))
            }
        }
        if leader != reportedLeader {
            reportedLeader = leader
            ready.events.append(.leaderChanged(leader))
        }
        if leadership != nil { releasable = leaderReleasable }
        var target = Swift.min(releasable, applied + 1)
        if applied + 1 - logStart > configuration.retainEntries {
            target = Swift.max(target, applied + 1 - configuration.retainEntries)
        }
        // Released already (by count or bytes, past a lagging peer): nothing to release again.
        target = Swift.max(target, logStart)
        var bytesTarget = logStart
        var bytes = retainedBytes
        while bytes > configuration.retainBytes, bytesTarget <= applied {
            bytes -= records[bytesTarget].map { Self.wireSize($0.entry) } ?? 0
            bytesTarget += 1
        }
        if target - logStart >= configuration.releaseChunk || bytesTarget > target {
            target = Swift.max(target, bytesTarget)
            for slot in logStart..<target where slot <= applied {
                retainedBytes -= records[slot].map { Self.wireSize($0.entry) } ?? 0
            }
            records = records.filter { $0.key >= target }
            logStart = target
            ready.mutations.append(.release(below: target))
        }
        drive(&ready)
        checkInvariants()
    }

    /// What every step leaves true, whatever its input; a break is a bug in this type, so it
    /// stops the process rather than go on from a state nothing was proven for. (The driver
    /// checks durable state against the same rules when it loads it.)
    func checkInvariants() {
        precondition(
            applied <= handedOut && handedOut < firstUnchosen,
            "applied \(applied) ≤ handed out \(handedOut) < first unchosen \(firstUnchosen)")
        precondition(logStart <= applied + 1, "log start \(logStart) ≤ applied \(applied) + 1")
        precondition(
            committedApplied <= applied, "committed applied \(committedApplied) ≤ applied \(applied)")
        precondition(promised.map { $0.round <= maxRound } ?? true, "maxRound \(maxRound) below the promise")
        if let leadership {
            precondition(leadership.ballot == promised, "a leader's promise is its own ballot")
            precondition(
                leadership.confirmedRound <= leadership.readRound, "a read round confirmed before it began")
            precondition(
                leadership.leaseEnd <= now + clockAhead + UInt64(configuration.leaseTicks),
                "a lease ends at most leaseTicks after the round that earned it began")
            precondition(leader == me, "a leader knows itself as the leader")
        }
        if let candidacy {
            precondition(candidacy.ballot == promised, "a candidate's promise is its own ballot")
        }
        // Linear in the slots chosen but not applied: checked in debug builds (the tests and the
        // simulator) only.
        assert(
            (Swift.max(applied + 1, logStart)..<firstUnchosen).allSatisfy { records[$0]?.chosen == true },
            "a slot below first unchosen \(firstUnchosen) is not known chosen")
    }

    // MARK: - Helpers

    mutating func promise(_ ballot: Ballot, _ ready: inout LogReady) {
        observe(ballot.round)
        if let promised, promised >= ballot { return }
        promised = ballot
        ready.mutations.append(.promise(ballot))
        if let leadership, leadership.ballot < ballot {
            stepDown("it promised the higher ballot \(ballot)", &ready)
        }
        if let candidacy, candidacy.ballot < ballot {
            stepDown("it promised the higher ballot \(ballot)", &ready)
        }
    }

    mutating func observe(_ round: UInt64) {
        // In memory only: the next ballot is persisted (as maxRound) before it is used, and a
        // restart also raises maxRound to the durable promise.
        maxRound = Swift.max(maxRound, round)
    }

    mutating func requestFetch(from peer: NodeID, _ ready: inout LogReady) {
        guard peer != me, fetchDeadline == nil, download == nil else { return }
        fetchDeadline = now + UInt64(configuration.resendTicks)
        ready.eagerMessages.append(outbound(to: peer, .fetch(from: firstUnchosen)))
    }

    mutating func flushOutbox(_ ready: inout LogReady) {
        guard let leader, leader != me, !outbox.isEmpty else { return }
        let proposals = outbox.map(\.proposal)
        outbox = []
        forward(proposals, to: leader, &ready)
    }

    /// Hands `proposals` to `leader` in messages bounded by bytes and count. From here on this
    /// replica's own ones have an unknown outcome until applied.
    mutating func forward(_ proposals: [Proposal], to leader: NodeID, _ ready: inout LogReady) {
        var start = 0
        while start < proposals.count {
            var end = start
            var bytes = 0
            while end < proposals.count, end - start < configuration.maxProposalsPerForward {
                let size = Self.wireSize(proposals[end])
                if end > start, bytes + size > configuration.maxMessageBytes { break }
                bytes += size
                end += 1
            }
            let chunk = Array(proposals[start..<end])
            for proposal in chunk where outstandingProposals.contains(proposal.id) {
                forwardedProposals.insert(proposal.id)
            }
            ready.eagerMessages.append(outbound(to: leader, .forward(chunk)))
            start = end
        }
    }

    /// This replica stops tracking one of its proposals without it being applied: failed if it
    /// never left this replica, of unknown outcome if it did.
    mutating func giveUp(_ id: ProposalID, _ ready: inout LogReady) {
        guard id.node == me, outstandingProposals.remove(id) != nil else { return }
        resendableProposals.remove(id)
        if forwardedProposals.remove(id) != nil {
            ready.unknown.append(id)
        } else {
            ready.failed.append(id)
        }
    }

    /// `entries` split into runs that each fit in one message (a single larger entry goes alone).
    func chunked(_ entries: [SlotEntry]) -> [[SlotEntry]] {
        var chunks: [[SlotEntry]] = []
        var current: [SlotEntry] = []
        var bytes = 0
        for item in entries {
            let size = Self.wireSize(item.entry) + 8
            if !current.isEmpty, bytes + size > configuration.maxMessageBytes {
                chunks.append(current)
                current = []
                bytes = 0
            }
            current.append(item)
            bytes += size
        }
        if !current.isEmpty { chunks.append(current) }
        return chunks
    }

    /// Bytes `entry` takes in a message (LogWire's layout: a count, then per proposal its id and
    /// the length-prefixed command), which is what ``LogConfiguration/maxMessageBytes`` bounds.
    public static func wireSize(_ entry: LogEntry) -> Int {
        entry.reduce(4) { $0 + wireSize($1) }
    }

    /// Bytes one proposal takes in a message.
    public static func wireSize(_ proposal: Proposal) -> Int { 24 + 4 + proposal.command.count }

    mutating func resetElectionTimer() {
        let spread = UInt64(Swift.max(1, configuration.electionTicks))
        electionDeadline = now + spread + UInt64.random(in: 0..<spread, using: &random)
    }

    func reply(_ reply: LogReply) -> LogReplyEnvelope {
        LogReplyEnvelope(from: me, incarnation: memberIncarnation, reply: reply)
    }

    func outbound(to peer: NodeID, _ request: LogRequest) -> LogOutbound {
        LogOutbound(
            to: peer, envelope: LogRequestEnvelope(from: me, incarnation: memberIncarnation, request: request)
        )
    }

    /// Whether a message of `peer` presenting `incarnation` comes from the member the membership
    /// records (and the incarnation recorded for it, 0 when it is not a member). A node that
    /// knows no membership yet (it joins) takes every authenticated peer.
    func admits(_ peer: NodeID, _ incarnation: UInt64) -> (Bool, known: UInt64) {
        if membership.isUnknown { return (true, 0) }
        guard let member = membership.member(peer) else { return (false, 0) }
        return (member.incarnation == 0 || member.incarnation == incarnation, member.incarnation)
    }

    /// Whether this node is a voter of the membership in force, as the data directory it has.
    var canCampaign: Bool {
        guard let member = membership.member(me), member.isVoter else { return false }
        // A new cluster's first leader needs every bootstrap peer's promise, so competing
        // candidates would only spoil each other's campaigns (one refusal is enough), and more
        // often the more peers there are; the lowest id alone campaigns, which costs nothing: the
        // cluster cannot start without it anyway.
        if membership.isProvisional, membership.voters.min() != me { return false }
        return member.incarnation == 0 || member.incarnation == memberIncarnation
    }

    /// Whether `set` is a quorum of `voters`: a majority, or all of them for a new cluster's first
    /// leader (its phase 1; see the type's documentation).
    func isQuorum(_ set: Set<NodeID>, of voters: Set<NodeID>, unanimous: Bool) -> Bool {
        let count = set.intersection(voters).count
        return unanimous ? count == voters.count && count > 0 : count > voters.count / 2
    }
}
