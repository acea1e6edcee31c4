import PaxosCore
import Testing

/// Linearizable reads without a log write (``LogReplica/read()``), on the pure core. The
/// simulation serves a read from the replica's durable rows when its Ready hands it out, and
/// records a violation when those rows lack a write whose result a client had before the read
/// began: each test below sets up the situation in which a wrong read index or a missing
/// confirmation would serve such a read.
@Suite("Read index (LogReplica.read)")
struct ReadIndexTests {
    func stableCluster(_ count: Int = 3, seed: UInt64 = 7) -> LogSimulation {
        LogSimulation.elected(count, seed: seed)
    }

    @Test("a read at the leader costs one round of confirmations: no log write, no slot, no fsync")
    func readCostsOneRound() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        let writtenResult = simulation.submit(at: leader)
        let written = try #require(writtenResult)
        simulation.deliverAll()
        #expect(simulation.results[written] != nil)
        let firstUnchosen = simulation.replicas[leader]!.firstUnchosen
        let durable = simulation.durable

        var copy = simulation.replicas[leader]!
        let (_, ready) = copy.read()
        #expect(ready.mutations.isEmpty && ready.messages.isEmpty && ready.localReplies.isEmpty)
        let asked = ready.eagerMessages.compactMap { message -> NodeID? in
            if case .confirm = message.envelope.request { message.to } else { nil }
        }
        #expect(Set(asked) == Set(simulation.peers.filter { $0 != leader }))
        #expect(ready.reads.isEmpty, "served before any peer confirmed")

        simulation.read(at: leader)
        simulation.deliverAll()
        #expect(simulation.readsServed == 1)
        #expect(simulation.replicas[leader]!.firstUnchosen == firstUnchosen, "the read took a slot")
        #expect(simulation.durable == durable, "the read changed durable state somewhere")
        #expect(simulation.violations.isEmpty, "\(simulation.violations)")
    }

    @Test(
        "a leader cut off from the majority serves no read while the others elect a leader and write, and fails it once it hears"
    )
    func deposedLeaderServesNoStaleRead() throws {
        var simulation = stableCluster()
        let old = try #require(simulation.leaders.first)
        let others = simulation.peers.filter { $0 != old }
        simulation.isolated = [old]
        var newLeader: NodeID?
        for _ in 0..<300 where newLeader == nil {
            for node in others { simulation.tick(node) }
            simulation.deliverAll()
            newLeader = simulation.leaders.first { $0 != old }
        }
        let leader = try #require(newLeader)
        let writtenResult = simulation.submit(at: leader)
        let written = try #require(writtenResult)
        simulation.deliverAll()
        #expect(simulation.results[written] != nil, "the new leader's write was acknowledged")
        #expect(simulation.replicas[old]!.isLeader, "the cut-off leader does not know it was deposed")

        simulation.read(at: old)
        for _ in 0..<(3 * LogConfiguration.simulation.resendTicks) {
            simulation.tick(old)
            simulation.deliverAll()
        }
        #expect(simulation.readsServed == 0, "a cut-off leader answered a read")
        simulation.isolated = []
        for _ in 0..<(2 * LogConfiguration.simulation.resendTicks) {
            simulation.tick(old)
            simulation.deliverAll()
        }
        #expect(simulation.readsServed == 0)
        #expect(
            simulation.readsFailed == 1, "the old leader fails the read once a peer names the higher ballot")
        #expect(!simulation.replicas[old]!.isLeader)
        #expect(simulation.violations.isEmpty, "\(simulation.violations)")
    }

    @Test(
        "a read that arrives while a confirmation round is in flight waits for a round that starts after it")
    func lateReadWaitsForTheNextRound() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        let firstResult = simulation.read(at: leader)
        let first = try #require(firstResult)
        let confirms = simulation.network.count
        let secondResult = simulation.read(at: leader)
        let second = try #require(secondResult)
        #expect(simulation.network.count == confirms, "the second read started a round of its own")
        // The followers answer the first round; the second read arrived after they were asked.
        while simulation.deliverFirst(where: {
            if case .request(let outbound) = $0, case .confirm = outbound.envelope.request {
                true
            } else {
                false
            }
        }) {}
        for node in simulation.peers where node != leader { simulation.commit(node, mayCrash: false) }
        while simulation.deliverFirst(where: { if case .reply = $0 { true } else { false } }) {}
        #expect(simulation.readsServed == 1, "the first read is served by the first round")
        let nextRound = simulation.network.contains {
            if case .request(let outbound) = $0, case .confirm(_, let round) = outbound.envelope.request {
                round == 2
            } else {
                false
            }
        }
        #expect(nextRound, "the first round's end starts the second")
        simulation.deliverAll()
        #expect(simulation.readsServed == 2)
        #expect(first != second)
        #expect(simulation.violations.isEmpty, "\(simulation.violations)")
    }

    @Test(
        "a new leader serves a read only once it has applied the slot its predecessor chose and acknowledged")
    func newLeaderWaitsForItsTakeover() throws {
        for seed in UInt64(1)...UInt64(8) {
            var simulation = stableCluster(seed: seed)
            let old = try #require(simulation.leaders.first)
            // The old leader has a write chosen and acknowledged, and crashes before its followers
            // hear that it is chosen (they hold it only as accepted).
            let writtenResult = simulation.submit(at: old)
            let written = try #require(writtenResult)
            while simulation.deliverFirst(where: {
                if case .request(let outbound) = $0, case .accept = outbound.envelope.request {
                    true
                } else {
                    false
                }
            }) {}
            for node in simulation.peers where node != old { simulation.commit(node, mayCrash: false) }
            while simulation.results[written] == nil {
                if !simulation.deliverFirst(where: {
                    switch $0 {
                    case .reply, .local: true
                    default: false
                    }
                }) {
                    simulation.commit(old, mayCrash: false)
                }
            }
            let slot = simulation.replicas[old]!.firstUnchosen - 1
            simulation.crash(old)
            simulation.network.removeAll()
            let others = simulation.peers.filter { $0 != old }
            #expect(others.allSatisfy { simulation.replicas[$0]!.firstUnchosen <= slot }, "seed \(seed)")
            // Step until a new leader exists, and read at once: its re-proposal is not chosen yet.
            var newLeader: NodeID?
            for _ in 0..<100_000 where newLeader == nil {
                if let node = others.first(where: { !(simulation.pending[$0]?.isEmpty ?? true) }) {
                    simulation.commit(node, mayCrash: false)
                } else if !simulation.deliverFirst(where: { _ in true }) {
                    for node in others { simulation.tick(node) }
                }
                newLeader = simulation.leaders.first
            }
            let leader = try #require(newLeader)
            #expect(simulation.replicas[leader]!.applied < slot, "seed \(seed): applied the slot already")
            simulation.read(at: leader)
            // The confirmations first, before the re-proposal's accepts: the round completes while
            // the slot is not yet chosen again.
            while simulation.deliverFirst(where: {
                if case .request(let outbound) = $0, case .confirm = outbound.envelope.request {
                    true
                } else {
                    false
                }
            }) {}
            for node in others where node != leader { simulation.commit(node, mayCrash: false) }
            while simulation.deliverFirst(where: {
                if case .reply(_, let reply) = $0, case .confirmed = reply.reply { true } else { false }
            }) {}
            #expect(simulation.readsServed == 0, "seed \(seed): served before the takeover slot was applied")
            simulation.deliverAll()
            #expect(simulation.readsServed == 1, "seed \(seed): \(simulation.summary)")
            #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations)")
        }
    }

    @Test(
        "a leader that catches up by snapshot serves no read from the rows before the install is committed (found by review)"
    )
    func snapshotOnLeaderWaitsForTheInstall() throws {
        var reached = 0
        for seed in UInt64(1)...UInt64(40) {
            var simulation = stableCluster(seed: seed)
            let old = try #require(simulation.leaders.first)
            let lagging = simulation.peers.first { $0 != old }!
            let other = simulation.peers.first { $0 != old && $0 != lagging }!
            // The lagging node misses 80 writes, which the others release.
            simulation.isolated = [lagging]
            for _ in 0..<80 {
                simulation.submit(at: old)
                simulation.deliverAll()
            }
            for _ in 0..<4 {
                simulation.tick(old)
                simulation.deliverAll()
            }
            #expect(simulation.replicas[other]!.logStart > simulation.replicas[lagging]!.firstUnchosen)
            // The old leader is cut off; when the lagging node wins, it reads at once, and catches
            // up from the other's snapshot while the read's round completes.
            simulation.isolated = [old]
            var issued = false
            for _ in 0..<200_000 {
                if let node = simulation.peers.first(where: {
                    $0 != old && !(simulation.pending[$0]?.isEmpty ?? true)
                }) {
                    simulation.commit(node, mayCrash: false)
                } else if !simulation.deliverFirst(where: { _ in true }) {
                    if issued, simulation.readsServed + simulation.readsFailed > 0 { break }
                    simulation.tick(lagging)
                    simulation.tick(other)
                }
                if !issued, simulation.replicas[lagging]!.isLeader {
                    if simulation.replicas[lagging]!.applied + 1 >= simulation.replicas[other]!.firstUnchosen
                    {
                        break
                    }
                    simulation.read(at: lagging)
                    issued = true
                }
                if !issued, simulation.replicas[other]!.isLeader { break }
            }
            if issued, simulation.snapshotsInstalled > 0 { reached += 1 }
            #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations.prefix(2))")
        }
        #expect(reached >= 5, "only \(reached) seeds read at a leader that installed a snapshot")
    }

    @Test("lost confirmations are asked again after resendTicks, under the same round")
    func lostConfirmationsAreResent() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        simulation.read(at: leader)
        simulation.dropPercent = 100
        while !simulation.network.isEmpty { simulation.deliverOne() }
        simulation.dropPercent = 0
        #expect(simulation.readsServed == 0)
        for _ in 0..<LogConfiguration.simulation.resendTicks { simulation.tick(leader) }
        let resent = simulation.network.filter {
            if case .request(let outbound) = $0, case .confirm(_, let round) = outbound.envelope.request {
                round == 1
            } else {
                false
            }
        }
        #expect(resent.count == simulation.peers.count - 1)
        simulation.deliverAll()
        #expect(simulation.readsServed == 1)
        #expect(simulation.violations.isEmpty, "\(simulation.violations)")
    }

    @Test(
        "a follower does not confirm reads: it reports them failed at once, and a single-node cluster serves them at once"
    )
    func followerAndSingleNode() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        let follower = try #require(simulation.peers.first { $0 != leader })
        let (id, ready) = simulation.replicas[follower]!.read()
        #expect(ready.failedReads == [id] && ready.eagerMessages.isEmpty)

        var single = stableCluster(1)
        let only = try #require(single.leaders.first)
        let (alone, answered) = single.replicas[only]!.read()
        #expect(answered.reads == [alone] && answered.eagerMessages.isEmpty)
    }

    @Test(
        "every read served sees every write acknowledged before it began, while leaders are cut off for long enough that others replace them and write, and nodes crash and return",
        .serialized, arguments: seeds)
    func readsUnderLongPartitions(seed: UInt64) async {
        await simulating {
            var simulation = LogSimulation(
                count: seed % 2 == 0 ? 3 : 5, seed: seed, configuration: .simulation)
            simulation.dropPercent = 10
            simulation.duplicatePercent = 5
            var random = SplitMix64(seed: seed &* 104_729)
            func anyNode() -> NodeID { simulation.peers.randomElement(using: &random)! }
            var healAt = 0
            var cutAt = 500
            var servedAtCutOff = 0
            for step in 0..<12_000 {
                if !simulation.isolated.isEmpty, step >= healAt {
                    simulation.isolated = []
                    cutAt = step + Int.random(in: 200..<1500, using: &random)
                }
                switch Int.random(in: 0..<100, using: &random) {
                case 0..<35: simulation.deliverOne()
                case 35..<50: simulation.commitOne()
                case 50..<80: simulation.tick(anyNode())
                case 80..<90: simulation.submit(at: anyNode(), resendable: Bool.random(using: &random))
                case 90..<97:
                    // At a cut-off node (which may still think it leads), at a leader that is not
                    // cut off, or anywhere.
                    let connected = simulation.leaders.first { !simulation.isolated.contains($0) }
                    let node =
                        switch Int.random(in: 0..<3, using: &random) {
                        case 0: simulation.isolated.first ?? anyNode()
                        case 1: connected ?? anyNode()
                        default: anyNode()
                        }
                    let served = simulation.readsServed
                    simulation.read(at: node)
                    if simulation.isolated.contains(node), simulation.readsServed > served {
                        servedAtCutOff += 1
                    }
                case 97:
                    if let node = simulation.peers.filter({ simulation.replicas[$0] == nil }).randomElement(
                        using: &random)
                    {
                        simulation.restart(node)
                    } else if Int.random(in: 0..<3, using: &random) == 0 {
                        simulation.crash(anyNode())
                    }
                default:
                    // Cut off the leader (or anyone) for long enough that the others elect another
                    // and write, often.
                    if simulation.isolated.isEmpty, step >= cutAt {
                        simulation.isolated = [simulation.leaders.first ?? anyNode()]
                        healAt = step + Int.random(in: 300..<2000, using: &random)
                    }
                }
            }
            #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations.prefix(3))")
            #expect(simulation.readsServed >= 10, "seed \(seed): too few reads served to mean anything")
            #expect(servedAtCutOff == 0, "seed \(seed): a cut-off node served a read at once")
        }
    }

    @Test(
        "a peer that reports another entry chosen in a slot known chosen is reported, and the known entry stays"
    )
    func conflictingChosenIsRefused() {
        let known: LogEntry = [Proposal(id: ProposalID(node: 1, incarnation: 1, number: 1), command: [1])]
        let other: LogEntry = [Proposal(id: ProposalID(node: 3, incarnation: 1, number: 1), command: [2])]
        var state = LogDurableState()
        state.apply(.choose(slot: 3, entry: known))
        var replica = LogReplica(me: 2, peers: [1, 2, 3], state: state, configuration: .simulation)
        let ready = replica.onReply(
            LogReplyEnvelope(
                from: 3, reply: .chosen(entries: [SlotEntry(slot: 3, entry: other)], firstUnchosen: 4)))
        #expect(ready.events.contains(.conflictingChosen(slot: 3)))
        #expect(!ready.mutations.contains(.choose(slot: 3, entry: other)))
        #expect(replica.records[3]?.entry == known)
    }

    @Test("an acceptor answers a confirmation with its promise and changes nothing")
    func acceptorAnswersFromItsPromise() {
        var acceptor = LogReplica(
            me: 2, peers: [1, 2, 3], state: LogDurableState(), configuration: .simulation)
        let promise = Ballot(round: 5, node: 3)
        _ = acceptor.onRequest(LogRequestEnvelope(from: 3, request: .prepare(ballot: promise, from: 1)))
        for (ballot, round) in [(Ballot(round: 4, node: 1), UInt64(1)), (Ballot(round: 6, node: 1), 9)] {
            let ready = acceptor.onRequest(
                LogRequestEnvelope(from: 1, request: .confirm(ballot: ballot, round: round)))
            #expect(ready.mutations.isEmpty)
            #expect(ready.reply == nil, "a confirmation waits for no commit")
            #expect(ready.eagerReply?.reply == .confirmed(ballot: ballot, round: round, promised: promise))
        }
        #expect(acceptor.promised == promise)
    }
}
