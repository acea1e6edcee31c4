import PaxosCore
import Testing

/// Scripted fault scenarios on the pure replicated log, each one a bug a production cluster
/// met: a catch-up source lost for good, a forward whose reply is lost, a returning follower,
/// a leader whose disk hangs, and messages larger than a frame.
@Suite("Replicated log under faults")
struct LogFaultTests {
    /// Ticks `nodes` and delivers everything, `rounds` times, or until `done` holds.
    func run(
        _ simulation: inout LogSimulation, _ nodes: [NodeID], rounds: Int,
        until done: (LogSimulation) -> Bool = { _ in false }
    ) {
        for _ in 0..<rounds where !done(simulation) {
            for node in nodes { simulation.tick(node) }
            simulation.deliverAll()
        }
    }

    /// A command submitted at `node` is applied within a few rounds, and nothing was violated.
    func expectServes(
        _ simulation: inout LogSimulation, at node: NodeID, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let submitted = simulation.submit(at: node)
        let id = try #require(submitted, sourceLocation: sourceLocation)
        run(&simulation, simulation.peers, rounds: 50) { $0.results[id] != nil }
        #expect(simulation.results[id] != nil, sourceLocation: sourceLocation)
        #expect(
            simulation.violations.isEmpty, "\(simulation.violations.prefix(3))",
            sourceLocation: sourceLocation)
    }

    func stableCluster(_ count: Int = 3, seed: UInt64 = 7, configuration: LogConfiguration = .simulation)
        -> LogSimulation
    {
        var simulation = LogSimulation(count: count, seed: seed, configuration: configuration)
        run(&simulation, simulation.peers, rounds: 500) { !$0.leaders.isEmpty }
        // Until every follower has heard the leader's heartbeat.
        run(&simulation, simulation.peers, rounds: 2 * configuration.heartbeatTicks)
        return simulation
    }

    @Test("a new leader whose only catch-up source is lost for good recovers from the majority that is up")
    func catchUpSourceLostForGood() throws {
        let (p, q, l): (NodeID, NodeID, NodeID) = (1, 2, 3)
        var simulation = LogSimulation(count: 3, seed: 11, configuration: .simulation)
        // P leads while L is cut off.
        simulation.isolated = [l]
        run(&simulation, [p], rounds: 500) { $0.replicas[p]!.isLeader }
        try #require(simulation.replicas[p]!.isLeader)
        // P gets a slot chosen with Q's vote; Q never hears that it is chosen.
        let slot = simulation.replicas[p]!.firstUnchosen
        let idSubmitted = simulation.submit(at: p)
        let id = try #require(idSubmitted)
        for _ in 0..<10_000 where simulation.replicas[p]!.firstUnchosen <= slot {
            simulation.deliverAll(limit: 1)
        }
        try #require(simulation.replicas[p]!.firstUnchosen == slot + 1)
        simulation.network.removeAll()
        simulation.commit(p)
        simulation.network.removeAll()
        #expect(simulation.replicas[q]!.firstUnchosen == slot)
        // P restarts (it knows the slot chosen: its first unchosen is past it). Q is cut off; L
        // campaigns and wins with P's promise.
        simulation.crash(p)
        simulation.restart(p)
        #expect(simulation.replicas[p]!.firstUnchosen == slot + 1)
        simulation.isolated = [q]
        for _ in 0..<10_000 where !simulation.replicas[l]!.isLeader {
            if simulation.network.isEmpty, simulation.pending.values.allSatisfy(\.isEmpty) {
                simulation.tick(l)
            }
            simulation.deliverAll(limit: 1)
        }
        try #require(simulation.replicas[l]!.isLeader)
        // P dies for good before it answers L's catch-up; Q returns. {L, Q} is a majority.
        simulation.lose(p)
        simulation.isolated = []
        run(&simulation, [l, q], rounds: 50 * LogConfiguration.simulation.electionTicks) {
            $0.results[id] != nil && $0.replicas[l]!.applied >= slot && $0.replicas[q]!.applied >= slot
        }
        #expect(simulation.replicas[l]!.applied >= slot, "\(simulation.summary)")
        #expect(simulation.replicas[q]!.applied >= slot, "\(simulation.summary)")
        // And the cluster serves: a new command is applied on both.
        let leader = try #require(simulation.leaders.first)
        let nextSubmitted = simulation.submit(at: leader)
        let next = try #require(nextSubmitted)
        run(&simulation, [l, q], rounds: 20 * LogConfiguration.simulation.electionTicks) {
            $0.results[next] != nil
        }
        #expect(simulation.results[next] != nil, "\(simulation.summary)")
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
    }

    @Test(
        "a forwarded proposal whose reply was lost is never reported failed, though it finds no leader for long"
    )
    func forwardedProposalIsNeverReportedFailed() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        let follower = try #require(simulation.peers.first { $0 != leader })
        let idSubmitted = simulation.submit(at: follower, resendable: true)
        let id = try #require(idSubmitted)
        // The leader takes the forward; the reply is lost (the follower is cut off before it is
        // released), and the follower hears no leader for longer than noLeaderTicks.
        let forwarded = simulation.deliverFirst {
            if case .request(let outbound) = $0, case .forward = outbound.envelope.request { return true }
            return false
        }
        try #require(forwarded)
        simulation.isolated = [follower]
        run(
            &simulation, simulation.peers,
            rounds: 2 * LogConfiguration.simulation.noLeaderTicks)
        #expect(simulation.chosenProposals.contains(id), "the leader chose it")
        #expect(!simulation.failed.contains(id))
        #expect(simulation.unknown.contains(id) || simulation.results[id] != nil)
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
    }

    @Test("a follower cut off, or whose timer fires without news, returns without deposing the leader")
    func returningFollowerDeposesNobody() throws {
        var simulation = stableCluster()
        let leader = try #require(simulation.leaders.first)
        let role = simulation.replicas[leader]!.role
        let follower = try #require(simulation.peers.first { $0 != leader })
        let prepares = simulation.sent["prepare"] ?? 0
        // Cut off for many election timeouts, then healed.
        simulation.isolated = [follower]
        run(&simulation, simulation.peers, rounds: 10 * LogConfiguration.simulation.electionTicks)
        simulation.isolated = []
        run(&simulation, simulation.peers, rounds: 10 * LogConfiguration.simulation.electionTicks)
        #expect(simulation.replicas[leader]!.role == role)
        #expect(simulation.replicas[follower]!.leader == leader)
        // Paused: its clock runs on while nothing reaches it (a stall, a slow disk), then it
        // sees everything at once.
        for _ in 0..<(5 * LogConfiguration.simulation.electionTicks) { simulation.tick(follower) }
        run(&simulation, simulation.peers, rounds: 10 * LogConfiguration.simulation.electionTicks)
        #expect(simulation.replicas[leader]!.role == role)
        #expect(simulation.sent["prepare"] ?? 0 == prepares, "nobody campaigned for real")
        try expectServes(&simulation, at: follower)
    }

    @Test("a leader whose disk hangs steps down, and the others elect a leader that serves")
    func leaderWithAHungDiskStepsDown() throws {
        var simulation = stableCluster()
        let stuck = try #require(simulation.leaders.first)
        let others = simulation.peers.filter { $0 != stuck }
        simulation.stalled = [stuck]
        _ = simulation.submit(at: stuck)
        run(&simulation, simulation.peers, rounds: 10 * LogConfiguration.simulation.electionTicks) { sim in
            !sim.replicas[stuck]!.isLeader && others.contains { node in sim.replicas[node]!.isLeader }
        }
        #expect(!simulation.replicas[stuck]!.isLeader, "\(simulation.summary)")
        let leader = try #require(others.first { simulation.replicas[$0]!.isLeader }, "\(simulation.summary)")
        try expectServes(&simulation, at: leader)
    }

    @Test(
        "elections, leaders and step-downs are reported as events with their reasons: the operator's log can tell who leads and why that changed"
    )
    func consensusEvents() throws {
        var simulation = stableCluster()
        let first = try #require(simulation.leaders.first)
        let others = simulation.peers.filter { $0 != first }
        func reported(_ node: NodeID, since: Int = 0, _ match: (ReplicaEvent) -> Bool) -> Bool {
            simulation.events.dropFirst(since).contains { $0.0 == node && match($0.1) }
        }
        #expect(
            reported(first) {
                if case .electionStarted(let ballot, voters: 3) = $0 { ballot.node == first } else { false }
            })
        #expect(
            reported(first) {
                if case .electionWon(let ballot, _) = $0 { ballot.node == first } else { false }
            })
        for node in simulation.peers {
            #expect(reported(node) { $0 == .leaderChanged(first) }, "node \(node) reports the leader")
        }
        // Its disk hangs: it steps down and says why; the others report the new leader.
        let mark = simulation.events.count
        simulation.stalled = [first]
        _ = simulation.submit(at: first)
        run(&simulation, simulation.peers, rounds: 10 * LogConfiguration.simulation.electionTicks) { sim in
            others.contains { sim.replicas[$0]!.isLeader }
        }
        let second = try #require(others.first { simulation.replicas[$0]!.isLeader }, "\(simulation.summary)")
        // Until the other follower has heard the new leader's heartbeat.
        run(&simulation, others, rounds: 2 * LogConfiguration.simulation.heartbeatTicks)
        #expect(
            reported(first, since: mark) {
                if case .steppedDown(_, let reason) = $0 {
                    reason.contains("made no progress")
                } else {
                    false
                }
            })
        #expect(reported(second, since: mark) { if case .electionWon = $0 { true } else { false } })
        for node in others { #expect(reported(node, since: mark) { $0 == .leaderChanged(second) }) }
        // Nothing is reported twice in a row for a quiet cluster: the events are transitions.
        let quiet = simulation.events.count
        simulation.stalled = []
        run(&simulation, simulation.peers, rounds: 3 * LogConfiguration.simulation.electionTicks)
        #expect(
            !simulation.events.dropFirst(quiet).contains {
                if case .electionStarted = $0.1 { true } else { false }
            })
    }

    @Test("no message exceeds maxMessageBytes: forwards, accepts and catch-up answers are split")
    func messagesAreBoundedByBytes() throws {
        var configuration = LogConfiguration.simulation
        configuration.maxBytesPerSlot = 150
        configuration.maxMessageBytes = 400
        configuration.retainEntries = 1000
        var simulation = LogSimulation(count: 3, seed: 21, configuration: configuration)
        simulation.commandBytes = 60
        // Before any leader is known, node 2 holds many proposals; it forwards them once it hears one.
        let early = (0..<20).compactMap { _ in simulation.submit(at: 2, resendable: true) }
        run(&simulation, simulation.peers, rounds: 500) { !$0.leaders.isEmpty }
        let leader = try #require(simulation.leaders.first)
        let behind = try #require(
            simulation.peers.first { $0 != leader && $0 != 2 } ?? simulation.peers.first { $0 != leader })
        // One node falls behind and catches up by fetch.
        simulation.isolated = [behind]
        let later = (0..<30).compactMap { _ in simulation.submit(at: leader) }
        run(&simulation, simulation.peers.filter { $0 != behind }, rounds: 200) { sim in
            (early + later).allSatisfy { sim.results[$0] != nil }
        }
        simulation.isolated = []
        run(&simulation, simulation.peers, rounds: 300) {
            $0.replicas[behind]!.applied == $0.replicas[leader]!.applied
        }
        #expect((early + later).allSatisfy { simulation.results[$0] != nil })
        #expect(simulation.replicas[behind]!.applied == simulation.replicas[leader]!.applied)
        #expect(simulation.sent["fetch"] ?? 0 > 1, "the lagging node caught up by fetch")
        #expect(simulation.largestMessageBytes <= configuration.maxMessageBytes)
        #expect(
            simulation.largestMessageBytes > configuration.maxMessageBytes / 2, "the bound was approached")
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
    }

    func isPreVote(_ item: LogSimulation.Item, from node: NodeID) -> Bool {
        if case .request(let outbound) = item, case .preVote = outbound.envelope.request {
            return outbound.envelope.from == node
        }
        return false
    }

    @Test("a leader cut off while catching up asks for pre-votes, and deposes nobody when it returns")
    func stalledCatchUpCampaignsWithAPreVote() throws {
        let (x, y, l): (NodeID, NodeID, NodeID) = (1, 2, 3)
        let electionTicks = LogConfiguration.simulation.electionTicks
        var simulation = LogSimulation(count: 3, seed: 5, configuration: .simulation)
        // X leads while L is cut off and falls behind.
        simulation.isolated = [l]
        for _ in 0..<500 where !simulation.replicas[x]!.isLeader {
            simulation.tick(x)
            simulation.network.removeAll { isPreVote($0, from: y) }
            simulation.deliverAll()
        }
        try #require(simulation.replicas[x]!.isLeader)
        for _ in 0..<5 { simulation.submit(at: x) }
        run(&simulation, [x, y], rounds: 20)
        try #require(simulation.replicas[y]!.firstUnchosen > simulation.replicas[l]!.firstUnchosen)
        // X crashes; L returns and wins with Y's promise, which is ahead of it.
        simulation.crash(x)
        simulation.isolated = []
        for _ in 0..<100_000 where !simulation.replicas[l]!.isLeader {
            if simulation.network.isEmpty, simulation.pending.values.allSatisfy(\.isEmpty) {
                simulation.tick(l)
                simulation.tick(y)
                simulation.network.removeAll { isPreVote($0, from: y) }
            }
            simulation.deliverAll(limit: 1)
        }
        try #require(simulation.replicas[l]!.isLeader)
        // L is cut off before its catch-up is answered: its catch-up stalls, and it must not
        // raise its promise on its own.
        simulation.isolated = [l]
        let promised = simulation.replicas[l]!.promised
        run(&simulation, [l], rounds: 3 * electionTicks)
        #expect(simulation.replicas[l]!.promised == promised)
        // The majority {X, Y} elects a leader; then L returns.
        simulation.restart(x)
        run(&simulation, [x, y], rounds: 500) { !$0.leaders.filter { $0 != l }.isEmpty }
        let leader = try #require(simulation.leaders.first { $0 != l })
        let role = simulation.replicas[leader]!.role
        run(&simulation, [x, y], rounds: 3 * electionTicks)
        simulation.isolated = []
        run(&simulation, [leader], rounds: 2)
        run(&simulation, simulation.peers, rounds: 3 * electionTicks)
        #expect(simulation.replicas[leader]!.role == role, "\(simulation.summary)")
        #expect(simulation.violations.isEmpty)
    }

    @Test(
        "slow disks that still complete commits keep their leader and the cluster serves",
        arguments: [4, 8, 12])
    func slowDisksKeepTheirLeader(latency: Int) async {
        await simulating {
            var simulation = stableCluster(seed: 9)
            // Every commit takes `latency` ticks, as LogPeer's group commit does: the batch is taken
            // when the commit starts; what arrives meanwhile waits for the next one.
            var inFlight: [NodeID: (batch: LogSimulation.Pending, since: Int)] = [:]
            var ids: [ProposalID] = []
            let prepares = simulation.sent["prepare"] ?? 0
            simulation.stalled = Set(simulation.peers)
            for round in 0..<1500 {
                if round % 3 == 0, let leader = simulation.leaders.first,
                    let id = simulation.submit(at: leader)
                {
                    ids.append(id)
                }
                for node in simulation.peers { simulation.tick(node) }
                for node in simulation.up {
                    if let (batch, since) = inFlight[node], round - since >= latency {
                        let newer = simulation.pending[node] ?? LogSimulation.Pending()
                        simulation.pending[node] = batch
                        simulation.stalled.remove(node)
                        simulation.commit(node, mayCrash: false)
                        simulation.stalled.insert(node)
                        simulation.pending[node] = newer
                        inFlight[node] = nil
                    }
                    if inFlight[node] == nil, let batch = simulation.pending[node], !batch.isEmpty {
                        inFlight[node] = (batch, round)
                        simulation.pending[node] = LogSimulation.Pending()
                    }
                }
                simulation.deliverAll()
            }
            let applied = ids.filter { simulation.results[$0] != nil }.count
            #expect(applied * 10 >= ids.count * 9, "\(applied) of \(ids.count) applied")
            #expect((simulation.sent["prepare"] ?? 0) - prepares <= 2, "a slow disk cost elections")
            #expect(simulation.violations.isEmpty)
        }
    }
}
