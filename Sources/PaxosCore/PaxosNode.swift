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
        var maxSeq = self.floor - 1
        for (seq, record) in state.instances where seq >= self.floor {
            instances[seq] = Instance(record: record)
            maxRound = Swift.max(maxRound, record.promised?.round ?? 0)
            maxSeq = Swift.max(maxSeq, seq)
        }
        self.instances = instances
        self.maxRound = maxRound
        self.maxSeq = maxSeq
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

    /// Whether any proposer or announcer is still working (a quiet, decided cluster has none).
    public var hasActiveWork: Bool { !active.isEmpty }

    /// `start(seq, value)`: begin agreement on instance `seq`, proposing `value`.
    ///
    /// Ignored below `min()`, for an instance already decided here, and for one this node is
    /// already proposing in.
    public mutating func start(seq: Int, value: Value) -> Ready {
        var ready = Ready()
        guard seq >= floor else { return ready }
        noteSeq(seq)
        var instance = instances[seq] ?? Instance()
        guard instance.decided == nil, instance.proposer == nil else { return ready }
        instance.proposer = Proposer(ownValue: value, ballot: Ballot(round: 0, node: me))
        instances[seq] = instance
        active.insert(seq)
        beginPrepare(seq, &ready)
        return ready
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
        }
        return ready
    }

    /// One unit of time passed: start delayed retries, abandon phases that timed out.
    public mutating func tick() -> Ready {
        now += 1
        var ready = Ready()
        guard !active.isEmpty else { return ready }
        for seq in active.sorted() {
            guard let instance = instances[seq] else {
                active.remove(seq)
                continue
            }
            if let proposer = instance.proposer {
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

    private mutating func acceptorHandle(_ request: Request, _ ready: inout Ready) -> Reply {
        let seq = request.seq
        guard seq >= floor else { return .forgotten(seq: seq) }
        noteSeq(seq)
        switch request {
        case .prepare(_, let ballot):
            maxRound = Swift.max(maxRound, ballot.round)
            var instance = instances[seq] ?? Instance()
            if let value = instance.decided { return .decided(seq: seq, value: value) }
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
