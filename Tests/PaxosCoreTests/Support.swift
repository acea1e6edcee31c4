import PaxosCore

extension Value {
    static func text(_ string: String) -> Value { Array(string.utf8) }
}

extension Ready {
    /// The requests this Ready sends, by kind, for assertions.
    var prepares: [OutboundRequest] {
        messages.filter { if case .prepare = $0.envelope.request { true } else { false } }
    }
    var accepts: [OutboundRequest] {
        messages.filter { if case .accept = $0.envelope.request { true } else { false } }
    }
    var decides: [OutboundRequest] {
        messages.filter { if case .decided = $0.envelope.request { true } else { false } }
    }
}

func node(_ me: NodeID, of count: UInt32 = 3, state: DurableState = DurableState(), seed: UInt64 = 1)
    -> PaxosNode
{
    PaxosNode(me: me, peers: (0..<count).map { NodeID($0) }, state: state, seed: seed)
}

/// A synchronous, deterministic driver for a few PaxosNodes: it applies each Ready's mutations to
/// the node's DurableState before releasing anything, as the contract demands, and delivers
/// messages from a pool in an order (and with losses and duplicates) chosen by a seeded generator.
struct SyncCluster {
    var nodes: [PaxosNode]
    var disks: [DurableState]
    var pool: [(OutboundRequest, NodeID)] = []  // (request, sender)
    var replies: [(ReplyEnvelope, NodeID)] = []  // (reply, to)
    var remoteRequests = 0
    var random: SplitMix64
    var dropPercent: UInt64 = 0
    var duplicatePercent: UInt64 = 0
    /// Every decision ever observed, per instance, at any node, across restarts.
    var decided: [Int: Value] = [:]
    var violations: [String] = []
    /// Nodes cut off from everyone: every request to or from them fails.
    var isolated: Set<Int> = []
    /// How many times each node lost its disk: a new disk is a new incarnation of the node.
    var diskIncarnation: [Int]
    /// For every ballot a node sent that another node received: the incarnations that sent it.
    /// Two incarnations behind one ballot is a reused ballot (harmless unless an acceptor holds it).
    var ballotSenders: [Ballot: Set<Int>] = [:]
    /// Ballots some other node promised or accepted, with the incarnation that sent them.
    var heldBallots: [Ballot: Set<Int>] = [:]
    /// Ballots sent by a second incarnation of their node, whether or not anyone held them.
    var resentBallots: [String] = []

    init(count: UInt32, seed: UInt64) {
        let ids = (0..<count).map { NodeID($0) }
        nodes = ids.map { PaxosNode(me: $0, peers: ids, seed: seed) }
        disks = Array(repeating: DurableState(), count: Int(count))
        diskIncarnation = Array(repeating: 0, count: Int(count))
        random = SplitMix64(seed: seed)
    }

    mutating func carryOut(_ ready: Ready, at index: Int) {
        for mutation in ready.mutations { disks[index].apply(mutation) }
        for message in ready.messages { pool.append((message, nodes[index].me)) }
        for reply in ready.localReplies { carryOut(nodes[index].onReply(reply), at: index) }
        for seq in ready.decisions {
            guard case .decided(let value) = nodes[index].status(seq) else { continue }
            if let earlier = decided[seq], earlier != value {
                violations.append("seq \(seq): node \(index) decided \(value), earlier \(earlier)")
            }
            decided[seq] = value
        }
    }

    mutating func start(_ index: Int, _ seq: Int, _ value: Value) {
        let ready = nodes[index].start(seq: seq, value: value)
        carryOut(ready, at: index)
    }

    /// Delivers one pending message (or reply) chosen at random; returns false when none is left.
    mutating func step() -> Bool {
        let total = pool.count + replies.count
        guard total > 0 else { return false }
        let pick = Int(random.next() % UInt64(total))
        if pick < pool.count {
            let (message, sender) = pool.remove(at: pick)
            let to = Int(message.to.rawValue)
            let senderIndex = Int(sender.rawValue)
            if isolated.contains(to) || isolated.contains(senderIndex) || random.next() % 100 < dropPercent {
                carryOut(nodes[senderIndex].onSendFailure(message), at: senderIndex)
                return true
            }
            if random.next() % 100 < duplicatePercent { pool.append((message, sender)) }
            if case .decided(let seq, let value) = message.envelope.request, conflicts(to, seq, value) {
                carryOut(nodes[senderIndex].onSendFailure(message), at: senderIndex)
                return true
            }
            remoteRequests += 1
            var sentBallot: Ballot?
            switch message.envelope.request {
            case .prepare(_, let ballot), .accept(_, let ballot, _):
                let incarnation = diskIncarnation[senderIndex]
                sentBallot = ballot
                ballotSenders[ballot, default: []].insert(incarnation)
                if ballotSenders[ballot]!.count > 1 {
                    resentBallots.append(
                        "ballot \(ballot) sent by incarnations \(ballotSenders[ballot]!.sorted())")
                }
                // The reuse that matters: a ballot an acceptor holds for an earlier disk.
                if let holders = heldBallots[ballot], holders.contains(where: { $0 != incarnation }) {
                    violations.append(
                        "ballot \(ballot) reused by incarnation \(incarnation), held for \(holders.sorted())")
                }
            default: break
            }
            let ready = nodes[to].onRequest(message.envelope)
            let held = ready.mutations.contains { mutation in
                switch mutation {
                case .promise(_, let ballot), .accept(_, let ballot, _): ballot == sentBallot
                default: false
                }
            }
            if let sentBallot, held {
                heldBallots[sentBallot, default: []].insert(diskIncarnation[senderIndex])
            }
            carryOut(ready, at: to)
            if let reply = ready.reply {
                if random.next() % 100 < dropPercent {
                    carryOut(nodes[senderIndex].onSendFailure(message), at: senderIndex)
                } else {
                    replies.append((reply, sender))
                }
            }
        } else {
            let (reply, to) = replies.remove(at: pick - pool.count)
            let index = Int(to.rawValue)
            if case .decided(let seq, let value) = reply.reply, conflicts(index, seq, value) { return true }
            carryOut(nodes[index].onReply(reply), at: index)
        }
        return true
    }

    /// Whether telling node `index` that `seq` is decided with `value` contradicts what it decided.
    /// The core stops the process on that (a safety violation); the harness records it instead and
    /// drops the message, so a test can report it.
    mutating func conflicts(_ index: Int, _ seq: Int, _ value: Value) -> Bool {
        guard case .decided(let have) = nodes[index].status(seq), have != value else { return false }
        violations.append("seq \(seq): node \(index) decided \(have), told \(value)")
        return true
    }

    mutating func tick() {
        for index in nodes.indices { carryOut(nodes[index].tick(), at: index) }
    }

    /// Drops node `index`'s memory and rebuilds it from what it committed, as a crash would.
    mutating func crashAndRestart(_ index: Int, seed: UInt64) {
        let me = nodes[index].me
        nodes[index] = PaxosNode(me: me, peers: nodes[index].peers, state: disks[index], seed: seed)
        // Messages in flight to or from it may still arrive, as on a real network.
    }

    /// Node `index` loses its disk and restarts on an empty one, recovering when `recover` says so.
    /// The calls its old process had in flight die with it (requests it sent, replies owed to it:
    /// an RPC's answer goes to the process that asked); what it answered may still arrive.
    mutating func loseDisk(_ index: Int, recover: Bool, seed: UInt64) {
        let me = nodes[index].me
        disks[index] = DurableState()
        diskIncarnation[index] += 1
        pool.removeAll { $0.1 == me }
        replies.removeAll { $0.1 == me }
        nodes[index] = PaxosNode(me: me, peers: nodes[index].peers, state: disks[index], seed: seed)
        if recover { carryOut(nodes[index].recover(), at: index) }
    }

    /// Begins (or resumes) node `index`'s recovery, as the driver does at start.
    mutating func recover(_ index: Int) {
        carryOut(nodes[index].recover(), at: index)
    }

    /// Delivers (ticking when idle) for `steps` steps, whether or not work remains.
    mutating func run(steps: Int) {
        for _ in 0..<steps where !step() { tick() }
    }

    /// Runs until no message is pending, ticking when the network is idle, up to `limit` steps.
    mutating func run(limit: Int = 100_000) {
        var steps = 0
        while steps < limit {
            steps += 1
            if !step() {
                if nodes.allSatisfy({ !$0.hasActiveWork }) { return }
                tick()
            }
        }
    }
}

extension Membership {
    /// The membership a cluster of `ids` records once bootstrapped: every node a voter, with no
    /// incarnation recorded (so hand-built messages need none).
    static func bootstrapped(_ ids: [NodeID]) -> Membership {
        Membership(members: ids.map { Member(id: $0, incarnation: 0, address: "", isVoter: true) }, slot: 1)
    }
}
