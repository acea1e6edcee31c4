/// The pure Paxos protocol of one node: acceptor, proposer and learner for many instances, and the
/// 6.824 lab's `done` / `min` / `max` bookkeeping.
///
/// A `PaxosNode` does no I/O and reads no clock or global randomness. Each input — a local call
/// (``start(seq:value:)``, ``done(_:)``), a request from a peer (``onRequest(_:)``), a reply or a
/// transport failure (``onReply(_:)``, ``onSendFailure(_:)``), or the passage of time (``tick()``)
/// — changes the in-memory state and returns a ``Ready`` that lists what the driver must persist,
/// send and apply, in that order.
///
/// Invariants:
/// - An acceptor promises `b` only if `b` is above every ballot it promised; it accepts under `b`
///   only if `b` is at least its promise.
/// - Every ballot this node uses has round `maxRound + 1` at the time, and the new `maxRound` is in
///   the same ``Ready`` as the messages that carry the ballot.
/// - A proposer counts its own acceptor's vote only through ``Ready/localReplies``, which the
///   driver feeds back after that vote is durable.
/// - One value per instance: learning a second, different value for a decided instance is a
///   safety violation and stops the process.
/// - While ``isRecovering``, the acceptor votes in no instance and the proposer sends no ballot;
///   afterwards the acceptor never votes below ``voteFloor``, and the first ballot is above every
///   round the other nodes reported.
public struct PaxosNode: Sendable {
    /// This node.
    public let me: NodeID
    /// Every node of the cluster, this one included, in ascending order.
    public let peers: [NodeID]
    public let configuration: PaxosConfiguration

    /// The highest round seen or used. Persisted whenever a ballot of a new round is used.
    public private(set) var maxRound: UInt64
    /// The highest instance sequence number known to this node (`max()`); never decreases.
    public private(set) var maxSeq: Int
    /// `min()`: 1 + the minimum `done` over all peers. Instances below it are forgotten.
    public private(set) var floor: Int
    /// The acceptor never promises or accepts in an instance below this: set when a recovery of a
    /// lost acceptor state finished (see ``recover()``), 0 on a node that never recovered. Durable
    /// and never goes down. Decided values below it are still learned and passed on.
    public private(set) var voteFloor: Int
    /// Whether this node is recovering a lost acceptor state (see ``recover()``). Durable: a node
    /// that restarts in the middle of a recovery is recovering again.
    public private(set) var isRecovering: Bool
    /// A finished recovery is on disk (``DurableState/voteFloor`` is set): ``recover()`` does nothing.
    private var recoveryRecorded: Bool
    private var recovery: Recovery?

    private var doneByPeer: [NodeID: Int]
    private var instances: [Int: Instance]
    /// Instances with a live proposer or announcer: the only ones ``tick()`` looks at.
    private var active: Set<Int> = []
    private var now: UInt64 = 0
    private var random: SplitMix64

    /// The number of votes that make a majority.
    public var majority: Int { peers.count / 2 + 1 }

    /// Creates a node from its durable state (empty for a new node).
    ///
    /// - Parameters:
    ///   - me: this node; must be one of `peers`.
    ///   - peers: every node of the cluster, this one included.
    ///   - state: what the store returned from ``AcceptorStore/load()``.
    ///   - seed: seeds the randomized backoff, so runs are repeatable.
    public init(
        me: NodeID, peers: [NodeID], state: DurableState = DurableState(),
        configuration: PaxosConfiguration = PaxosConfiguration(), seed: UInt64
    ) {
        let sortedPeers = Array(Set(peers)).sorted()
        precondition(sortedPeers.contains(me), "node \(me) is not one of the peers \(sortedPeers)")
        self.me = me
        self.peers = sortedPeers
        self.configuration = configuration
        self.random = SplitMix64(seed: seed ^ (UInt64(me.rawValue) &* 0x9E37_79B9_7F4A_7C15))
        var doneByPeer: [NodeID: Int] = [:]
        for peer in sortedPeers { doneByPeer[peer] = state.doneByPeer[peer] ?? -1 }
        self.doneByPeer = doneByPeer
        let computedFloor = Self.floor(afterDone: doneByPeer.values.min() ?? -1)
        self.floor = Swift.max(state.forgottenBelow, computedFloor)
        var instances: [Int: Instance] = [:]
        // A promise or accept seen under a higher round also raises maxRound, so a restarted
        // proposer starts above everything its own acceptor knows about.
        var maxRound = state.maxRound
        let voteFloor = state.voteFloor ?? 0
        // Every instance below the vote floor was known to some node when the floor was set.
        var maxSeq = Swift.max(self.floor, voteFloor) - 1
        for (seq, record) in state.instances where seq >= self.floor {
            instances[seq] = Instance(record: record)
            maxRound = Swift.max(maxRound, record.promised?.round ?? 0)
            maxSeq = Swift.max(maxSeq, seq)
        }
        self.instances = instances
        self.maxRound = maxRound
        self.maxSeq = maxSeq
        self.voteFloor = voteFloor
        self.recoveryRecorded = state.voteFloor != nil
        self.isRecovering = state.recovering && state.voteFloor == nil
        // A recovery interrupted by a crash starts over: nothing of what was reported is durable,
        // so every other node is asked again (at the first tick, or at once by `recover()`).
        self.recovery = isRecovering ? Recovery(asking: sortedPeers.filter { $0 != me }) : nil
    }

    // MARK: - The lab API

    /// `min()`: instances below it are forgotten.
    public var min: Int { floor }

    /// `max()`: the highest instance sequence number known to this node, or -1.
    public var max: Int { maxSeq }

    /// This node's own highest `done` value (-1 before any `done`).
    public var ownDone: Int { doneByPeer[me] ?? -1 }

    /// The highest `done` value known for `peer`.
    public func done(of peer: NodeID) -> Int { doneByPeer[peer] ?? -1 }

    /// `status(seq)`: local only, never waits on the network.
    public func status(_ seq: Int) -> Fate {
        if seq < floor { return .forgotten }
        if let value = instances[seq]?.decided { return .decided(value) }
        return .pending
    }

    /// The durable acceptor state of one instance as this node holds it in memory.
    public func record(_ seq: Int) -> InstanceRecord? {
        guard let instance = instances[seq] else { return nil }
        return InstanceRecord(
            promised: instance.promised, accepted: instance.accepted, decided: instance.decided)
    }

    /// How many instances this node holds in memory (forgotten ones are released).
    public var instanceCount: Int { instances.count }

    /// Whether any proposer or announcer is still working, or a recovery is under way (a quiet,
    /// decided cluster has none).
    public var hasActiveWork: Bool { !active.isEmpty || recovery != nil }

    /// `start(seq, value)`: begin agreement on instance `seq`, proposing `value`.
    ///
    /// Ignored below `min()`, for an instance already decided here, and for one this node is
    /// already proposing in. While the node recovers (see ``recover()``), the start waits: the
    /// proposer is kept and sends its first prepare when the recovery is over. Below
    /// ``voteFloor`` the proposer runs as anywhere else; only this node's own acceptor refuses.
    public mutating func start(seq: Int, value: Value) -> Ready {
        var ready = Ready()
        guard seq >= floor else { return ready }
        noteSeq(seq)
        var instance = instances[seq] ?? Instance()
        guard instance.decided == nil, instance.proposer == nil else { return ready }
        instance.proposer = Proposer(ownValue: value, ballot: Ballot(round: 0, node: me))
        instances[seq] = instance
        active.insert(seq)
        guard recovery == nil else { return ready }
        beginPrepare(seq, &ready)
        return ready
    }

    // MARK: - Recovery of a lost acceptor state

    /// Begins, or resumes, the recovery of an acceptor state that was lost (an empty or wiped
    /// store of a node that took part before). Does nothing once a recovery finished on this
    /// store (``DurableState/voteFloor`` is recorded), so it is safe to call at every start.
    ///
    /// While recovering (``isRecovering``), the acceptor answers every prepare and accept with
    /// ``Reply/refused(seq:ballot:)`` (or the decision, when it knows it), ``start(seq:value:)``
    /// waits, and the node asks every other node with ``Request/recoveryQuery`` — resending on
    /// the tick schedule until each one answered. Once all did, it sets ``voteFloor`` to one
    /// above the highest instance anyone reported and raises ``maxRound`` to the highest round
    /// anyone reported, in one ``StoreMutation/endRecovery(voteFloor:maxRound:)``, and its
    /// acceptor goes back to work. The returned Ready holds ``StoreMutation/beginRecovery`` when
    /// the recovery begins here, so it is durable before the first query leaves.
    ///
    /// The waiting starts go ahead then, unless some node reported that it is recovering too (a
    /// new cluster whose nodes all start this way): they wait until each of those reports that
    /// it finished. So no instance gets an acceptor record before every node has taken its
    /// reports, and none sets its floor above an instance a new cluster is deciding.
    ///
    /// Needs an answer from every other node: a recovery waits for as long as one is down.
    public mutating func recover() -> Ready {
        var ready = Ready()
        guard !recoveryRecorded else { return ready }
        if !isRecovering {
            isRecovering = true
            recovery = Recovery(asking: peers.filter { $0 != me })
            ready.mutations.append(.beginRecovery)
            // Proposers already at work (volatile, so only if the driver calls this on a running
            // node) wait with the others: no ballot leaves while the round is unknown.
            for seq in active where instances[seq]?.proposer != nil {
                instances[seq]?.proposer?.phase = .waiting(until: 0)
            }
        } else if var recovery {
            for peer in recovery.askAt.keys { recovery.askAt[peer] = now }
            self.recovery = recovery
        }
        askRecoveryQueries(&ready)
        finishRecoveryIfAnswered(&ready)
        return ready
    }

    /// The highest instance in which this node holds an acceptor record (a promise, an accepted
    /// proposal, a decision) or which is below its `min()` or ``voteFloor``, -1 for none: what a
    /// recovery query reports. A proposer records its own acceptor's answer before its first
    /// request of an instance leaves, so every instance in which any node could count another's
    /// vote is covered. Instances only started here are not: no ballot of theirs left yet.
    private var knownSeq: Int {
        var known = Swift.max(floor - 1, voteFloor - 1)
        for (seq, instance) in instances where seq > known && instance.hasAcceptorRecord { known = seq }
        return known
    }

    private mutating func askRecoveryQueries(_ ready: inout Ready) {
        guard var recovery else { return }
        for peer in recovery.askAt.keys.sorted() {
            guard let at = recovery.askAt[peer], at <= now else { continue }
            // Ask again if no answer came within a phase timeout (a reply may hang, not fail).
            recovery.askAt[peer] = now + configuration.phaseTimeoutTicks
            ready.messages.append(outbound(to: peer, .recoveryQuery))
        }
        self.recovery = recovery
    }

    private mutating func onRecoveryReport(_ report: Recovery.Report, from: NodeID, _ ready: inout Ready) {
        guard var recovery, from != me else { return }
        if isRecovering {
            let earlier = recovery.reports[from]
            recovery.reports[from] = Recovery.Report(
                maxSeq: Swift.max(earlier?.maxSeq ?? -1, report.maxSeq),
                maxRound: Swift.max(earlier?.maxRound ?? 0, report.maxRound),
                recovering: report.recovering)
            recovery.askAt[from] = nil
            self.recovery = recovery
            finishRecoveryIfAnswered(&ready)
            return
        }
        // Recovered, and waiting for the nodes that were recovering too.
        guard recovery.askAt[from] != nil else { return }
        recovery.askAt[from] = report.recovering ? now + configuration.maxAnnounceRetryTicks : nil
        self.recovery = recovery
        releaseWaitingStartsIfNoneRecovers(&ready)
    }

    private mutating func finishRecoveryIfAnswered(_ ready: inout Ready) {
        guard isRecovering, var recovery, recovery.askAt.isEmpty else { return }
        // Any instance where this node's lost vote or promise could still count is known to the
        // proposer that counts it, or to another acceptor of the quorum it counted: one of the
        // reports covers it. What this node learned meanwhile counts too.
        let highest = recovery.reports.values.map(\.maxSeq).reduce(knownSeq, Swift.max)
        voteFloor = Swift.max(voteFloor, highest + 1)
        maxRound = recovery.reports.values.map(\.maxRound).reduce(maxRound, Swift.max)
        maxSeq = Swift.max(maxSeq, voteFloor - 1)
        ready.mutations.append(.endRecovery(voteFloor: voteFloor, maxRound: maxRound))
        isRecovering = false
        recoveryRecorded = true
        // Nodes still recovering are asked again, on the announcer's retry schedule, until they
        // report they finished.
        recovery.askAt = [:]
        for (peer, report) in recovery.reports where report.recovering {
            recovery.askAt[peer] = now + configuration.maxAnnounceRetryTicks
        }
        self.recovery = recovery
        releaseWaitingStartsIfNoneRecovers(&ready)
    }

    private mutating func releaseWaitingStartsIfNoneRecovers(_ ready: inout Ready) {
        guard !isRecovering, let recovery, recovery.askAt.isEmpty else { return }
        self.recovery = nil
        // The starts that waited go ahead, with ballots above every reported round.
        for seq in active.sorted() where instances[seq]?.proposer != nil && instances[seq]?.decided == nil {
            beginPrepare(seq, &ready)
        }
    }

    /// `done(seq)`: this node's application will not call `status` for any instance `<= seq`.
    public mutating func done(_ seq: Int) -> Ready {
        var ready = Ready()
        observeDone(of: me, seq, &ready)
        return ready
    }

    // MARK: - Inputs from the network and from time

    /// A request from another node (or, through the driver, never from this node: this node's
    /// own requests are handled inline). The reply is in ``Ready/reply``; it is `nil` when the
    /// sender is not a member of the cluster.
    public mutating func onRequest(_ envelope: RequestEnvelope) -> Ready {
        var ready = Ready()
        guard envelope.from != me, doneByPeer[envelope.from] != nil else { return ready }
        observeDone(of: envelope.from, envelope.done, &ready)
        let reply = acceptorHandle(envelope.request, &ready)
        ready.reply = ReplyEnvelope(from: me, done: ownDone, reply: reply)
        return ready
    }

    /// A reply to one of this node's requests (or a local reply fed back by the driver).
    public mutating func onReply(_ envelope: ReplyEnvelope) -> Ready {
        var ready = Ready()
        guard doneByPeer[envelope.from] != nil else { return ready }
        if envelope.from != me { observeDone(of: envelope.from, envelope.done, &ready) }
        let from = envelope.from
        switch envelope.reply {
        case .promise(let seq, let ballot, let accepted):
            onPromise(seq, ballot, accepted, from: from, &ready)
        case .accepted(let seq, let ballot):
            onAccepted(seq, ballot, from: from, &ready)
        case .rejected(let seq, let ballot, let promised):
            maxRound = Swift.max(maxRound, promised.round)
            onRefusal(seq, ballot, inPhase1: nil, from: from)
        case .decided(let seq, let value):
            // A proposer that learns the decision from an acceptor tells the others: the node
            // that decided may be cut off from some of them (or gone), and only proposers that
            // were still trying get here, so a quiet cluster stays quiet.
            let wasProposing = instances[seq]?.proposer != nil && instances[seq]?.decided == nil
            learn(seq, value, &ready)
            if wasProposing, seq >= floor { announce(seq, value, except: from, &ready) }
        case .decidedAck(let seq):
            onDecidedAck(seq, from: from)
        case .forgotten(let seq):
            // The responder is past `seq`, so every peer (this one too) called done on it.
            stopWork(seq)
        case .refused(let seq, let ballot):
            onRefusal(seq, ballot, inPhase1: nil, from: from)
        case .recoveryReport(let maxSeq, let maxRound, let recovering):
            let report = Recovery.Report(maxSeq: maxSeq, maxRound: maxRound, recovering: recovering)
            onRecoveryReport(report, from: from, &ready)
        }
        return ready
    }

    /// The driver could not deliver `request` to `to`, or got no reply.
    public mutating func onSendFailure(_ outbound: OutboundRequest) -> Ready {
        let ready = Ready()
        switch outbound.envelope.request {
        case .prepare(let seq, let ballot):
            onRefusal(seq, ballot, inPhase1: true, from: outbound.to)
        case .accept(let seq, let ballot, _):
            onRefusal(seq, ballot, inPhase1: false, from: outbound.to)
        case .decided(let seq, _):
            guard var announcer = instances[seq]?.announcer, announcer.pending.contains(outbound.to) else {
                return ready
            }
            announcer.failures += 1
            announcer.retryAt[outbound.to] =
                now
                + backoff(
                    attempts: announcer.failures,
                    cap: configuration.maxAnnounceRetryTicks)
            instances[seq]?.announcer = announcer
        case .recoveryQuery:
            guard var recovery, recovery.askAt[outbound.to] != nil else { return ready }
            recovery.failures += 1
            recovery.askAt[outbound.to] =
                now + backoff(attempts: recovery.failures, cap: configuration.maxAnnounceRetryTicks)
            self.recovery = recovery
        }
        return ready
    }

    /// One unit of time passed: start delayed retries, abandon phases that timed out.
    public mutating func tick() -> Ready {
        now += 1
        var ready = Ready()
        askRecoveryQueries(&ready)
        guard !active.isEmpty else { return ready }
        for seq in active.sorted() {
            guard let instance = instances[seq] else {
                active.remove(seq)
                continue
            }
            // While recovering, proposers wait (see `start`); they begin when recovery is over.
            if let proposer = instance.proposer, recovery == nil {
                switch proposer.phase {
                case .waiting(let until) where now >= until:
                    beginPrepare(seq, &ready)
                case .preparing, .accepting:
                    if now >= proposer.deadline { backOff(seq) }
                case .waiting:
                    break
                }
            }
            if var announcer = instances[seq]?.announcer {
                let due = announcer.retryAt.filter { $0.value <= now }.map(\.key).sorted()
                guard !due.isEmpty, let value = instances[seq]?.decided else { continue }
                for peer in due {
                    announcer.retryAt[peer] = nil
                    ready.messages.append(outbound(to: peer, .decided(seq: seq, value: value)))
                }
                instances[seq]?.announcer = announcer
            }
        }
        return ready
    }

    // MARK: - Acceptor

    /// Whether this node's acceptor may promise or accept in `seq`: not while it recovers a lost
    /// state, and never below the floor that recovery set (its lost votes there may count).
    private func mayVote(_ seq: Int) -> Bool { !isRecovering && seq >= voteFloor }

    private mutating func acceptorHandle(_ request: Request, _ ready: inout Ready) -> Reply {
        if case .recoveryQuery = request {
            // Answered while recovering too: a recovering node reports what it has.
            return .recoveryReport(maxSeq: knownSeq, maxRound: maxRound, recovering: isRecovering)
        }
        let seq = request.seq
        guard seq >= floor else { return .forgotten(seq: seq) }
        noteSeq(seq)
        switch request {
        case .prepare(_, let ballot):
            maxRound = Swift.max(maxRound, ballot.round)
            var instance = instances[seq] ?? Instance()
            if let value = instance.decided { return .decided(seq: seq, value: value) }
            guard mayVote(seq) else { return .refused(seq: seq, ballot: ballot) }
            if let promised = instance.promised, ballot <= promised {
                return .rejected(seq: seq, ballot: ballot, promised: promised)
            }
            instance.promised = ballot
            instances[seq] = instance
            ready.mutations.append(.promise(seq: seq, ballot: ballot))
            return .promise(seq: seq, ballot: ballot, accepted: instance.accepted)
        case .accept(_, let ballot, let value):
            maxRound = Swift.max(maxRound, ballot.round)
            var instance = instances[seq] ?? Instance()
            if let decided = instance.decided { return .decided(seq: seq, value: decided) }
            guard mayVote(seq) else { return .refused(seq: seq, ballot: ballot) }
            if let promised = instance.promised, ballot < promised {
                return .rejected(seq: seq, ballot: ballot, promised: promised)
            }
            instance.promised = ballot
            instance.accepted = AcceptedProposal(ballot: ballot, value: value)
            instances[seq] = instance
            ready.mutations.append(.accept(seq: seq, ballot: ballot, value: value))
            return .accepted(seq: seq, ballot: ballot)
        case .decided(_, let value):
            learn(seq, value, &ready)
            return .decidedAck(seq: seq)
        case .recoveryQuery:
            // Answered before the instance checks, above: it is about no instance.
            preconditionFailure("recoveryQuery reached the per-instance acceptor")
        }
    }

    // MARK: - Proposer

    private mutating func beginPrepare(_ seq: Int, _ ready: inout Ready) {
        guard var proposer = instances[seq]?.proposer else { return }
        maxRound += 1
        proposer.ballot = Ballot(round: maxRound, node: me)
        ready.mutations.append(.maxRound(maxRound))
        ready.mutations.append(.ballotUsed(seq: seq, ballot: proposer.ballot))
        proposer.phase = .preparing
        proposer.votes = []
        proposer.refusals = []
        proposer.highestAccepted = nil
        proposer.deadline = now + configuration.phaseTimeoutTicks
        instances[seq]?.proposer = proposer
        broadcast(.prepare(seq: seq, ballot: proposer.ballot), &ready)
    }

    private mutating func onPromise(
        _ seq: Int, _ ballot: Ballot, _ accepted: AcceptedProposal?, from: NodeID, _ ready: inout Ready
    ) {
        guard var proposer = instances[seq]?.proposer, proposer.ballot == ballot, proposer.isPreparing else {
            return
        }
        proposer.votes.insert(from)
        if let accepted, accepted.ballot > (proposer.highestAccepted?.ballot ?? Ballot(round: 0, node: 0)) {
            proposer.highestAccepted = accepted
        }
        guard proposer.votes.count >= majority else {
            instances[seq]?.proposer = proposer
            return
        }
        // Phase 2 must propose the value of the highest-ballot accepted proposal, if any: it may
        // already be chosen.
        let value = proposer.highestAccepted?.value ?? proposer.ownValue
        proposer.phase = .accepting(value)
        proposer.votes = []
        proposer.refusals = []
        proposer.highestAccepted = nil
        proposer.deadline = now + configuration.phaseTimeoutTicks
        instances[seq]?.proposer = proposer
        broadcast(.accept(seq: seq, ballot: ballot, value: value), &ready)
    }

    private mutating func onAccepted(_ seq: Int, _ ballot: Ballot, from: NodeID, _ ready: inout Ready) {
        guard var proposer = instances[seq]?.proposer, proposer.ballot == ballot,
            let value = proposer.acceptingValue
        else { return }
        proposer.votes.insert(from)
        instances[seq]?.proposer = proposer
        guard proposer.votes.count >= majority else { return }
        // A majority accepted durably: the value is chosen.
        learn(seq, value, &ready)
        announce(seq, value, except: me, &ready)
    }

    /// A node refused (or could not be reached) in the phase that used `ballot`.
    /// `inPhase1` is nil when the reply itself does not say which phase it answers.
    private mutating func onRefusal(_ seq: Int, _ ballot: Ballot, inPhase1: Bool?, from: NodeID) {
        guard var proposer = instances[seq]?.proposer, proposer.ballot == ballot else { return }
        switch proposer.phase {
        case .preparing where inPhase1 != false, .accepting where inPhase1 != true:
            break
        default:
            return
        }
        proposer.refusals.insert(from)
        instances[seq]?.proposer = proposer
        // Give up on this ballot as soon as a majority is out of reach.
        if proposer.refusals.count > peers.count - majority { backOff(seq) }
    }

    private mutating func backOff(_ seq: Int) {
        guard var proposer = instances[seq]?.proposer else { return }
        proposer.attempts += 1
        proposer.phase = .waiting(
            until: now + backoff(attempts: proposer.attempts, cap: configuration.maxBackoffTicks))
        instances[seq]?.proposer = proposer
    }

    /// A random delay in `1...min(cap, 2^attempts)` ticks.
    private mutating func backoff(attempts: UInt64, cap: UInt64) -> UInt64 {
        let window = attempts >= 16 ? cap : Swift.min(cap, UInt64(1) << attempts)
        return UInt64.random(in: 1...Swift.max(1, window), using: &random)
    }

    // MARK: - Learner

    private mutating func learn(_ seq: Int, _ value: Value, _ ready: inout Ready) {
        guard seq >= floor else { return }
        noteSeq(seq)
        var instance = instances[seq] ?? Instance()
        if let decided = instance.decided {
            // Two different values for one instance: continuing could only spread the damage.
            precondition(decided == value, "agreement violated at node \(me), seq \(seq)")
            return
        }
        instance.decided = value
        instance.proposer = nil
        // The acceptor role is over for this instance; keep one copy of the value, not two.
        instance.accepted = nil
        instances[seq] = instance
        if !instance.isActive { active.remove(seq) }
        ready.mutations.append(.decide(seq: seq, value: value))
        ready.decisions.append(seq)
    }

    private mutating func announce(_ seq: Int, _ value: Value, except informed: NodeID, _ ready: inout Ready)
    {
        let others = peers.filter { $0 != me && $0 != informed }
        guard !others.isEmpty else { return }
        instances[seq]?.announcer = Announcer(pending: Set(others))
        active.insert(seq)
        for peer in others { ready.messages.append(outbound(to: peer, .decided(seq: seq, value: value))) }
    }

    private mutating func onDecidedAck(_ seq: Int, from: NodeID) {
        guard var announcer = instances[seq]?.announcer else { return }
        announcer.pending.remove(from)
        announcer.retryAt[from] = nil
        instances[seq]?.announcer = announcer.pending.isEmpty ? nil : announcer
        if instances[seq]?.isActive == false { active.remove(seq) }
    }

    private mutating func stopWork(_ seq: Int) {
        instances[seq]?.proposer = nil
        instances[seq]?.announcer = nil
        active.remove(seq)
    }

    // MARK: - Done, min, max

    private mutating func observeDone(of peer: NodeID, _ seq: Int, _ ready: inout Ready) {
        guard let known = doneByPeer[peer], seq > known else { return }
        doneByPeer[peer] = seq
        ready.mutations.append(.done(peer: peer, seq: seq))
        let newFloor = Self.floor(afterDone: doneByPeer.values.min() ?? -1)
        guard newFloor > floor else { return }
        floor = newFloor
        ready.mutations.append(.forget(below: newFloor))
        instances = instances.filter { $0.key >= newFloor }
        active = active.filter { $0 >= newFloor }
    }

    /// The first instance not forgotten when every peer is done through `done`. Saturating: a done
    /// value at `Int.max` (a caller's, or one a file kept from before inputs were range-checked)
    /// must not trap the node at every start.
    static func floor(afterDone done: Int) -> Int {
        done == Int.max ? Int.max : done + 1
    }

    private mutating func noteSeq(_ seq: Int) {
        if seq > maxSeq { maxSeq = seq }
    }

    // MARK: - Messages

    private func outbound(to peer: NodeID, _ request: Request) -> OutboundRequest {
        OutboundRequest(to: peer, envelope: RequestEnvelope(from: me, done: ownDone, request: request))
    }

    /// Sends `request` to every node; this node's own acceptor is called inline and its reply is
    /// held in ``Ready/localReplies`` until the driver has made the vote durable.
    private mutating func broadcast(_ request: Request, _ ready: inout Ready) {
        for peer in peers {
            if peer == me {
                let reply = acceptorHandle(request, &ready)
                ready.localReplies.append(ReplyEnvelope(from: me, done: ownDone, reply: reply))
            } else {
                ready.messages.append(outbound(to: peer, request))
            }
        }
    }
}
