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
        let idSubmitted = simulation.submit(at: follower)
        let id = try #require(idSubmitted)
        run(&simulation, simulation.peers, rounds: 50) { $0.results[id] != nil }
        #expect(simulation.results[id] != nil)
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
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
        let idSubmitted = simulation.submit(at: leader)
        let id = try #require(idSubmitted)
        run(&simulation, simulation.peers, rounds: 50) { $0.results[id] != nil }
        #expect(simulation.results[id] != nil)
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
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
}
