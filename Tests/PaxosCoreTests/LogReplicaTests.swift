import PaxosCore
import Testing

/// Claims about the Multi-Paxos replica, one per test, on the pure core.
@Suite("Replicated log (LogReplica)")
struct LogReplicaTests {
    func stableCluster(_ count: Int = 3, seed: UInt64 = 7, configuration: LogConfiguration = .simulation)
        -> LogSimulation
    {
        LogSimulation.elected(count, seed: seed, configuration: configuration)
    }

    func ballot(_ round: UInt64, _ node: UInt32) -> Ballot { Ballot(round: round, node: NodeID(node)) }

    /// Node 2 of {1, 2, 3}, with nothing promised or accepted yet.
    func freshAcceptor() -> LogReplica {
        LogReplica(me: 2, peers: [1, 2, 3], state: LogDurableState(), configuration: .simulation)
    }

    func prepare(_ ballot: Ballot) -> LogRequestEnvelope {
        LogRequestEnvelope(from: ballot.node, request: .prepare(ballot: ballot, from: 1))
    }

    /// An accept of `entry("x")` in slot 1.
    func acceptX(_ ballot: Ballot) -> LogRequestEnvelope {
        LogRequestEnvelope(
            from: ballot.node,
            request: .accept(
                ballot: ballot, entries: [SlotEntry(slot: 1, entry: entry("x"))], firstUnchosen: 1,
                releasable: 1))
    }

    func entry(_ text: String, node: UInt32 = 9) -> LogEntry {
        [Proposal(id: ProposalID(node: NodeID(node), incarnation: 1, number: 1), command: Array(text.utf8))]
    }

    @Test("the leader keeps at most maxSlotsInFlight slots open and puts at most maxProposalsPerSlot in one")
    func pipeliningAndBatchingAreBounded() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        // 40 commands before any answer: the window fills, the rest queue up and go in full slots.
        let ids = (0..<40).compactMap { _ in simulation.submit(at: leader) }
        simulation.deliverAll()
        #expect(ids.allSatisfy { simulation.results[$0] != nil })
        #expect(simulation.mostSlotsInFlight == LogConfiguration.simulation.maxSlotsInFlight)
        #expect(simulation.largestBatch == LogConfiguration.simulation.maxProposalsPerSlot)
        #expect(simulation.violations.isEmpty)
    }

    @Test("an acceptor refuses an accept below its promise, and says what it promised")
    func acceptBelowPromiseIsRefused() {
        var acceptor = freshAcceptor()
        let promise = acceptor.onRequest(prepare(ballot(5, 3)))
        #expect(promise.mutations.contains(.promise(ballot(5, 3))))
        let refused = acceptor.onRequest(acceptX(ballot(4, 1)))
        #expect(refused.reply?.reply == .rejected(ballot: ballot(4, 1), promised: ballot(5, 3)))
        #expect(refused.mutations.isEmpty)
        #expect(acceptor.records[1] == nil)
    }

    @Test("a promise and a vote leave only with the mutations they depend on, never eagerly")
    func repliesDependOnTheirMutations() {
        var acceptor = freshAcceptor()
        let promise = acceptor.onRequest(prepare(ballot(1, 1)))
        #expect(promise.reply != nil)
        #expect(promise.mutations == [.promise(ballot(1, 1))])
        #expect(promise.eagerMessages.isEmpty)
        let vote = acceptor.onRequest(acceptX(ballot(1, 1)))
        #expect(
            vote.reply?.reply == .accepted(ballot: ballot(1, 1), slots: [1], firstUnchosen: 1, applied: 0))
        #expect(vote.mutations.contains(.accept(slot: 1, ballot: ballot(1, 1), entry: entry("x"))))
        #expect(vote.eagerMessages.isEmpty)
    }

    @Test("a new leader re-proposes the highest-ballot accepted entry it finds, and a no-op in a hole")
    func newLeaderAdoptsTheHighestAcceptedEntry() throws {
        var higher = LogDurableState()
        higher.apply(.promise(ballot(2, 2)))
        higher.apply(.accept(slot: 1, ballot: ballot(2, 2), entry: entry("x")))
        higher.apply(.accept(slot: 3, ballot: ballot(2, 2), entry: entry("z")))
        var lower = LogDurableState()
        lower.apply(.promise(ballot(1, 3)))
        lower.apply(.accept(slot: 1, ballot: ballot(1, 3), entry: entry("y")))
        var simulation = LogSimulation(count: 3, seed: 3, configuration: .simulation, bootstrapped: false)
        simulation.durable[2] = higher
        simulation.durable[3] = lower
        for node: NodeID in [2, 3] {
            simulation.crash(node)
            simulation.restart(node)
        }
        // Only node 1 campaigns. Its first ballot is below both promises (it saw none yet): it
        // must learn of them first; their refusals raise its rounds, and a later campaign wins.
        for _ in 0..<500 where !simulation.replicas[1]!.isLeader {
            simulation.tick(1)
            simulation.deliverAll()
        }
        #expect(simulation.replicas[1]!.isLeader)
        #expect(simulation.chosen[1] == entry("x"))
        #expect(simulation.chosen[2] == [])
        #expect(simulation.chosen[3] == entry("z"))
        #expect(simulation.violations.isEmpty)
    }

    // Serialized: each seed is seconds of synchronous work. Run side by side they would hold
    // every thread of Swift's cooperative pool (one per core), and the suites whose clusters run
    // on timers (the KV and lab tests) would find no leader before their deadlines.
    @Test("applied entries are released by bytes as well as by count: large entries never pile up")
    func retainedBytesAreBounded() {
        var configuration = LogConfiguration.simulation
        configuration.retainEntries = 10_000
        configuration.retainBytes = 2_000
        var simulation = LogSimulation(count: 3, seed: 3, configuration: configuration)
        simulation.commandBytes = 300
        for _ in 0..<300 where simulation.leaders.isEmpty {
            for node in simulation.up { simulation.tick(node) }
            simulation.deliverAll()
        }
        // A follower down: nothing is released because everyone applied it, only by the bounds.
        simulation.crash(simulation.peers.first { !simulation.leaders.contains($0) }!)
        for _ in 0..<60 {
            if let leader = simulation.leaders.first { simulation.submit(at: leader) }
            for node in simulation.up { simulation.tick(node) }
            simulation.deliverAll()
        }
        for node in simulation.up {
            let replica = simulation.replicas[node]!
            #expect(replica.applied >= 50)
            #expect(replica.logStart > 1)
            // One entry over the bound at most: release stops at the first that brings it under.
            #expect(
                replica.retainedBytes <= 2_000
                    + LogReplica.wireSize([
                        Proposal(
                            id: ProposalID(node: node, incarnation: 1, number: 1),
                            command: Array(repeating: 0, count: 300 * 4))
                    ]))
            let held = (replica.logStart...replica.applied).reduce(0) { total, slot in
                total + (replica.records[slot].map { LogReplica.wireSize($0.entry) } ?? 0)
            }
            #expect(held == replica.retainedBytes, "the running count matches the records")
        }
        #expect(simulation.violations.isEmpty)
    }

    @Test(
        "a replica behind the released log catches up from a snapshot in many chunks; a crash of the receiver or the sender in the middle leaves its old rows, and the transfer resumes or starts over",
        arguments: Array(UInt64(1)...UInt64(12)))
    func chunkedSnapshotUnderCrashes(seed: UInt64) async throws {
        try await simulating {
            var simulation = LogSimulation(count: 3, seed: seed, configuration: .simulation)
            func settle(_ rounds: Int = 1) {
                for _ in 0..<rounds {
                    for node in simulation.up { simulation.tick(node) }
                    simulation.deliverAll()
                }
            }
            for _ in 0..<300 where simulation.leaders.isEmpty { settle() }
            let leader = try #require(simulation.leaders.first)
            let follower = simulation.peers.first { $0 != leader }!
            simulation.crash(follower)
            for _ in 0..<150 {
                simulation.submit(at: leader)
                settle()
            }
            #expect(simulation.replicas[leader]!.logStart > 2, "the log was released")
            var before = simulation.durable[follower]!
            simulation.restart(follower)
            // Step by step until the follower has staged part of the snapshot, durably. (It may first
            // apply the entries it held accepted, such as the membership entry in slot 1, once it
            // hears they are chosen; `before` is its state when the staging began.)
            var random = SplitMix64(seed: seed)
            var stagingBegan = false
            for _ in 0..<20_000 where simulation.durable[follower]!.staging?.after == nil {
                if !stagingBegan, simulation.durable[follower]!.staging == nil {
                    before = simulation.durable[follower]!
                } else {
                    stagingBegan = true
                }
                switch Int.random(in: 0..<3, using: &random) {
                case 0: simulation.deliverOne()
                case 1: simulation.commitOne()
                default: simulation.tick(simulation.up.randomElement(using: &random)!)
                }
            }
            let staged = try #require(simulation.durable[follower]!.staging)
            #expect(!simulation.durable[follower]!.stagedRows.isEmpty)
            // The state machine is untouched by the staging.
            #expect(simulation.durable[follower]!.machine == before.machine)
            #expect(simulation.durable[follower]!.applied == before.applied)
            if seed % 2 == 0 {
                simulation.crash(follower)
                simulation.restart(follower)
                #expect(
                    simulation.replicas[follower]!.staging == staged, "the restart resumes from the staging")
                #expect(simulation.replicas[follower]!.applied == before.applied)
            } else {
                // The sender goes away: another replica leads and serves the snapshot.
                simulation.crash(staged.source)
            }
            for _ in 0..<2000 {
                settle()
                let up = simulation.up
                if Set(up.map { simulation.replicas[$0]!.applied }).count == 1, simulation.leaders.count == 1
                {
                    break
                }
            }
            if seed % 2 == 1 {
                simulation.restart(staged.source)
                settle(200)
            }
            let applied = simulation.up.map { simulation.replicas[$0]!.applied }
            #expect(Set(applied).count == 1, "\(simulation.summary)")
            #expect(simulation.appliedCommands[follower] == simulation.appliedCommands[leader])
            #expect(simulation.snapshotsInstalled >= 1)
            #expect(simulation.snapshotChunks > 3, "the snapshot took several chunks")
            // The follower reports the transfer's start (and, after a restart, its resumption)
            // and its installation, for the operator's log.
            let reported = simulation.events.filter { $0.0 == follower }.map(\.1)
            #expect(
                reported.contains {
                    if case .snapshotStarted(_, _, resuming: false) = $0 { true } else { false }
                })
            #expect(
                seed % 2 == 1
                    || reported.contains {
                        if case .snapshotStarted(_, _, resuming: true) = $0 { true } else { false }
                    })
            #expect(reported.contains { if case .snapshotInstalled = $0 { true } else { false } })
            #expect(simulation.durable[follower]!.staging == nil)
            #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
        }
    }

    @Test(
        "agreement holds, no failed proposal is chosen, and every read served sees every write acknowledged before it began, under loss, duplication, reordering, partitions, crashes between any two steps, stalled disks, a node lost for good and surprising ballots and slots from peers; the healed cluster makes progress and a returning follower deposes nobody",
        .serialized, arguments: Array(UInt64(1)...UInt64(40)))
    func agreementUnderFaults(seed: UInt64) async throws {
        try await simulating {
            var simulation = LogSimulation(
                count: seed % 2 == 0 ? 3 : 5, seed: seed, configuration: .simulation)
            simulation.dropPercent = 30
            simulation.duplicatePercent = 10
            simulation.crashPercent = 1
            var random = SplitMix64(seed: seed &* 7919)
            func anyNode() -> NodeID { simulation.peers.randomElement(using: &random)! }
            for _ in 0..<20_000 {
                switch Int.random(in: 0..<100, using: &random) {
                case 0..<35:
                    simulation.deliverOne()
                case 35..<50:
                    simulation.commitOne()
                case 50..<78:
                    simulation.tick(anyNode())
                case 78..<89:
                    simulation.submit(at: anyNode(), resendable: Bool.random(using: &random))
                case 89..<93:
                    // Often at the leader, which serves it; elsewhere it fails, or the leader's
                    // confirmation round is what a partition or a new leader cuts short.
                    simulation.read(
                        at: Bool.random(using: &random) ? (simulation.leaders.first ?? anyNode()) : anyNode())
                case 93:
                    // Surprising values from a peer: a campaign at a far higher round (its replies
                    // reach a node that never ran it), a pre-vote, or a fetch from any slot.
                    let from = anyNode()
                    let to = anyNode()
                    guard from != to else { break }
                    let round = UInt64.random(in: 1...(1 << 20), using: &random)
                    let slot = Slot.random(in: 0...200, using: &random)
                    switch Int.random(in: 0..<5, using: &random) {
                    case 4:
                        // A confirmation nobody asked for, at any ballot and round.
                        simulation.inject(
                            .confirm(ballot: Ballot(round: round, node: from), round: UInt64(slot)),
                            from: from,
                            to: to)
                    case 0:
                        simulation.inject(
                            .prepare(ballot: Ballot(round: round, node: from), from: slot), from: from, to: to
                        )
                    case 1:
                        simulation.inject(
                            .preVote(ballot: Ballot(round: round, node: from)), from: from, to: to)
                    case 2:
                        // A snapshot chunk asked for out of turn: a new one, or a token nobody gave.
                        simulation.inject(
                            .snapshotChunk(
                                token: Bool.random(using: &random) ? 0 : round,
                                after: MachineKey(space: 1, key: ListMachine.bigEndian(UInt64(slot)))),
                            from: from, to: to)
                    default: simulation.inject(.fetch(from: slot), from: from, to: to)
                    }
                case 94:
                    if Bool.random(using: &random) { simulation.crash(anyNode()) }
                case 95, 96:
                    if let node = simulation.peers.filter({ simulation.replicas[$0] == nil }).randomElement(
                        using: &random)
                    {
                        simulation.restart(node)
                    }
                case 97:
                    // A node whose disk died: it never returns (one per run, so the rest still
                    // make progress under the other faults).
                    let node = anyNode()
                    if simulation.lost.isEmpty, Int.random(in: 0..<4, using: &random) == 0 {
                        simulation.lose(node)
                    }
                case 98:
                    // A disk that hangs, often the leader's; or one that recovers.
                    let node = simulation.leaders.first ?? anyNode()
                    if simulation.stalled.isEmpty {
                        simulation.stalled = [Bool.random(using: &random) ? node : anyNode()]
                    } else {
                        simulation.stalled = []
                    }
                default:
                    // Cut one replica off (often the leader, which then keeps proposing to nobody
                    // while the others elect another), or heal.
                    if simulation.isolated.isEmpty {
                        let leader = simulation.leaders.first ?? anyNode()
                        simulation.isolated = [Bool.random(using: &random) ? leader : anyNode()]
                    } else {
                        simulation.isolated = []
                    }
                }
            }
            #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
            #expect(simulation.readsServed > 0, "no read was served: the run checks no read")

            // Heal: every node that is not lost up, no faults. A command submitted now is applied on
            // every replica that is up within a bound of ticks.
            simulation.dropPercent = 0
            simulation.duplicatePercent = 0
            simulation.crashPercent = 0
            simulation.isolated = []
            simulation.stalled = []
            for node in simulation.peers where simulation.replicas[node] == nil { simulation.restart(node) }
            let up = simulation.up
            var probe: ProposalID?
            for _ in 0..<2000 {
                for node in up { simulation.tick(node) }
                simulation.deliverAll()
                if probe == nil, let leader = simulation.leaders.first {
                    probe = simulation.submit(at: leader)
                }
                if let probe, simulation.results[probe] != nil,
                    Set(up.map { simulation.replicas[$0]!.applied }).count == 1
                {
                    break
                }
            }
            let id = try #require(probe)
            #expect(simulation.results[id] != nil)
            let applied = up.map { simulation.replicas[$0]!.applied }
            #expect(Set(applied).count == 1, "\(simulation.summary)")
            let machines = up.map { simulation.appliedCommands[$0] ?? [] }
            #expect(Set(machines.map(\.count)).count == 1)
            #expect(machines.allSatisfy { $0 == machines[0] })
            #expect(simulation.chosen.count > 10, "the run chose too little to mean anything")

            // A follower cut off (or paused) for many election timeouts returns: the leader, still
            // connected to a majority, keeps leading under the same ballot.
            let leader = try #require(simulation.leaders.first)
            let ballot = simulation.replicas[leader]!.role
            let follower = try #require(up.first { $0 != leader })
            if up.count - 1 >= simulation.peers.count / 2 + 1 {
                simulation.isolated = [follower]
                for _ in 0..<(8 * LogConfiguration.simulation.electionTicks) {
                    for node in up { simulation.tick(node) }
                    simulation.deliverAll()
                }
                simulation.isolated = []
                for _ in 0..<(8 * LogConfiguration.simulation.electionTicks) {
                    for node in up { simulation.tick(node) }
                    simulation.deliverAll()
                }
                #expect(simulation.replicas[leader]!.role == ballot, "\(simulation.summary)")
                #expect(simulation.replicas[follower]!.leader == leader)
            }
            #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
        }
    }
}
