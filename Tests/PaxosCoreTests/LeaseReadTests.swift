import PaxosCore
import Testing

/// Leader-lease reads (``LogConfiguration/leaseTicks``), on the pure core. As in
/// ``ReadIndexTests``, the simulation records a violation when a served read lacks a write a
/// client had seen acknowledged before the read began; each test sets up the situation in which
/// a lease that outlives its guarantee would serve such a read.
@Suite("Lease reads (LogReplica.read(clock:))")
struct LeaseReadTests {
    static var configuration: LogConfiguration {
        var configuration = LogConfiguration.simulation
        configuration.leaseTicks = LogConfiguration.maxLeaseTicks(electionTicks: configuration.electionTicks)
        return configuration
    }

    static func confirms(_ messages: [LogOutbound]) -> Int {
        messages.filter { if case .confirm = $0.envelope.request { true } else { false } }.count
    }

    /// An elected cluster whose leader holds a lease (its first read earned it).
    func leasedCluster(seed: UInt64 = 7) throws -> (LogSimulation, NodeID) {
        var simulation = LogSimulation.elected(3, seed: seed, configuration: Self.configuration)
        let leader = try #require(simulation.leaders.first)
        simulation.read(at: leader, clock: simulation.replicas[leader]!.ticks)
        simulation.deliverAll()
        #expect(simulation.readsServed == 1)
        let clock = simulation.replicas[leader]!.ticks
        #expect(simulation.replicas[leader]!.leaseHolds(at: clock), "the round did not earn a lease")
        return (simulation, leader)
    }

    /// With `old` cut off, ticks every clock together `ticks` times; the others write once they
    /// elect a leader, and `old` is asked a read (under its lease, if it holds) at every tick.
    static func cutOff(_ old: NodeID, _ simulation: inout LogSimulation, ticks: Int) -> (
        newLeader: NodeID?, servedWhileCutOff: Int, servedAfterElection: Int
    ) {
        var newLeader: NodeID?
        var servedWhileCutOff = 0
        var servedAfterElection = 0
        for _ in 0..<ticks {
            for node in simulation.peers { simulation.tick(node) }
            simulation.deliverAll()
            if newLeader == nil { newLeader = simulation.leaders.first { $0 != old } }
            if let newLeader {
                simulation.submit(at: newLeader)
                simulation.deliverAll()
            }
            let served = simulation.readsServed
            simulation.read(at: old, clock: simulation.replicas[old]!.ticks)
            if simulation.readsServed > served {
                servedWhileCutOff += 1
                if newLeader != nil { servedAfterElection += 1 }
            }
        }
        return (newLeader, servedWhileCutOff, servedAfterElection)
    }

    @Test("under a lease a read needs no round of messages: it is served at once")
    func leaseReadNeedsNoRound() async throws {
        try await simulating {
            var (simulation, leader) = try leasedCluster()
            let writtenResult = simulation.submit(at: leader)
            let written = try #require(writtenResult)
            simulation.deliverAll()
            #expect(simulation.results[written] != nil)

            var copy = simulation.replicas[leader]!
            let (id, ready) = copy.read(clock: copy.ticks)
            #expect(Self.confirms(ready.eagerMessages) == 0, "a read under a lease asked for confirmations")
            #expect(ready.reads == [id], "a read under a lease whose index is applied waits")
            #expect(ready.mutations.isEmpty && ready.messages.isEmpty)

            simulation.read(at: leader, clock: simulation.replicas[leader]!.ticks)
            #expect(simulation.readsServed == 2)
            #expect(simulation.violations.isEmpty, "\(simulation.violations)")
        }
    }

    @Test("without a clock, or with leases off, a read still takes its round")
    func noClockNoLease() async throws {
        try await simulating {
            let (simulation, leader) = try leasedCluster()
            var copy = simulation.replicas[leader]!
            let (_, ready) = copy.read()
            #expect(Self.confirms(ready.eagerMessages) == 2, "a read without a clock was served by the lease")

            var plain = LogSimulation.elected(3, seed: 7)
            let plainLeader = try #require(plain.leaders.first)
            plain.read(at: plainLeader, clock: plain.replicas[plainLeader]!.ticks)
            plain.deliverAll()
            var again = plain.replicas[plainLeader]!
            #expect(!again.leaseHolds(at: again.ticks))
            let (_, second) = again.read(clock: again.ticks)
            #expect(
                Self.confirms(second.eagerMessages) == 2,
                "a leader with leases off served a read without a round")
        }
    }

    @Test(
        "the lease is checked against the clock, not the tick count: a leader whose ticks lag behind its clock asks again"
    )
    func laggingTicksDoNotExtendTheLease() async throws {
        try await simulating {
            let (simulation, leader) = try leasedCluster()
            let replica = simulation.replicas[leader]!
            let ticks = replica.ticks
            let leaseTicks = UInt64(Self.configuration.leaseTicks)
            #expect(replica.leaseHolds(at: ticks + 1))
            // The process stalled: its clock moved a lease's length, its tick loop did not run.
            var copy = replica
            #expect(!copy.leaseHolds(at: ticks + leaseTicks))
            let (id, ready) = copy.read(clock: ticks + leaseTicks)
            #expect(!ready.reads.contains(id), "served under a lease its clock says is over")
            #expect(Self.confirms(ready.eagerMessages) == 2, "no round for a read whose lease is over")
        }
    }

    @Test(
        "a lease is measured on the clock: a leader whose tick count fell far behind its clock (as it does in a long run) still earns and uses one (found by benchmark)"
    )
    func leaseOnAClockFarAhead() async throws {
        try await simulating {
            var simulation = LogSimulation.elected(3, seed: 7, configuration: Self.configuration)
            let leader = try #require(simulation.leaders.first)
            let lag = UInt64(50 * Self.configuration.electionTicks)
            simulation.read(at: leader, clock: simulation.replicas[leader]!.ticks + lag)
            simulation.deliverAll()
            #expect(simulation.readsServed == 1)
            var replica = simulation.replicas[leader]!
            #expect(replica.leaseHolds(at: replica.ticks + lag), "the round earned no lease on the clock")
            let (id, ready) = replica.read(clock: replica.ticks + lag)
            #expect(Self.confirms(ready.eagerMessages) == 0 && ready.reads == [id])
            // And it still ends on the clock.
            let leaseTicks = UInt64(Self.configuration.leaseTicks)
            #expect(!replica.leaseHolds(at: replica.ticks + lag + leaseTicks))
        }
    }

    @Test("a lease ends leaseTicks after the round that earned it began, and reads under it keep it renewed")
    func leaseEndsAndRenews() async throws {
        try await simulating {
            var (simulation, leader) = try leasedCluster()
            let leaseTicks = Self.configuration.leaseTicks
            // Idle: nothing renews it.
            for _ in 0..<leaseTicks {
                for node in simulation.peers { simulation.tick(node) }
                simulation.deliverAll()
            }
            let idle = simulation.replicas[leader]!
            #expect(!idle.leaseHolds(at: idle.ticks), "an idle leader's lease did not end")

            // A read earns it again; reads at every tick keep it, with a round every so often.
            simulation.read(at: leader, clock: simulation.replicas[leader]!.ticks)
            simulation.deliverAll()
            let before = simulation.sent["confirm", default: 0]
            for _ in 0..<(4 * leaseTicks) {
                for node in simulation.peers { simulation.tick(node) }
                simulation.deliverAll()
                let replica = simulation.replicas[leader]!
                #expect(
                    replica.leaseHolds(at: replica.ticks), "the lease lapsed under a steady stream of reads")
                var copy = replica
                let (_, ready) = copy.read(clock: copy.ticks)
                #expect(Self.confirms(ready.eagerMessages) == 0)
                simulation.read(at: leader, clock: replica.ticks)
            }
            let rounds = (simulation.sent["confirm", default: 0] - before) / 2
            #expect(
                rounds >= 4 && rounds <= 4 * leaseTicks / (leaseTicks / 2 - 1), "renewal rounds: \(rounds)")
            #expect(simulation.violations.isEmpty, "\(simulation.violations)")
        }
    }

    @Test(
        "a leader cut off keeps serving under its lease only while no other leader can be elected: no stale read"
    )
    func cutOffLeaderServesNoStaleRead() async throws {
        try await simulating {
            for seed in UInt64(1)...UInt64(10) {
                var (simulation, old) = try leasedCluster(seed: seed)
                simulation.isolated = [old]
                let (newLeader, servedWhileCutOff, servedAfterElection) = Self.cutOff(
                    old, &simulation, ticks: 400)
                #expect(newLeader != nil, "seed \(seed): the others elected no leader")
                #expect(
                    servedWhileCutOff > 0, "seed \(seed): the lease served nothing (the test shows nothing)")
                #expect(
                    servedAfterElection == 0,
                    "seed \(seed): served under a lease after another leader was elected")
                #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations)")
            }
        }
    }

    @Test(
        "acceptors that restart keep a lease they may have granted: five nodes elect no other leader under it"
    )
    func restartedAcceptorsKeepTheLease() async throws {
        try await simulating {
            let electionTicks = Self.configuration.electionTicks
            for seed in UInt64(1)...UInt64(16) {
                var simulation = LogSimulation.elected(5, seed: seed, configuration: Self.configuration)
                let old = try #require(simulation.leaders.first)
                let others = simulation.peers.filter { $0 != old }
                let (a, b) = (others[0], others[1])
                // Two nodes lose the leader (and so heard it too long ago to refuse a campaign); the
                // leader keeps its lease with the other two.
                simulation.isolated = [others[2], others[3]]
                for _ in 0..<(3 * electionTicks) {
                    for node in simulation.peers { simulation.tick(node) }
                    simulation.deliverAll()
                    simulation.read(at: old, clock: simulation.replicas[old]!.ticks)
                    simulation.deliverAll()
                }
                #expect(simulation.replicas[old]!.isLeader, "seed \(seed)")
                let leased = simulation.replicas[old]!
                #expect(leased.leaseHolds(at: leased.ticks), "seed \(seed)")
                // The two that granted it restart, remembering nothing; the leader is cut off.
                simulation.isolated = [old]
                for node in [a, b] {
                    simulation.crash(node)
                    simulation.restart(node)
                }
                let (newLeader, _, servedAfterElection) = Self.cutOff(
                    old, &simulation, ticks: 10 * electionTicks)
                #expect(newLeader != nil, "seed \(seed): the others elected no leader")
                #expect(
                    servedAfterElection == 0,
                    "seed \(seed): served under a lease after another leader was elected")
                #expect(simulation.violations.isEmpty, "seed \(seed): \(simulation.violations)")
            }
        }
    }

    @Test(
        "an acceptor that granted a lease refuses another node's prepare, and so does one that just restarted"
    )
    func grantedLeaseRefusesOthers() async throws {
        try await simulating {
            var (simulation, leader) = try leasedCluster()
            let follower = simulation.peers.first { $0 != leader }!
            let other = simulation.peers.first { $0 != leader && $0 != follower }!
            let promised = try #require(simulation.replicas[follower]!.promised)
            let higher = Ballot(round: promised.round + 5, node: other)

            // Its leader is gone from its view (as when a forward to it fails), the lease is not.
            var acceptor = simulation.replicas[follower]!
            let confirm = LogRequestEnvelope(
                from: leader, incarnation: simulation.incarnations[leader]!,
                request: .confirm(ballot: promised, round: 99))
            let granted = acceptor.onRequest(confirm)
            #expect(granted.eagerReply?.reply == .leaseConfirmed(ballot: promised, round: 99))
            let prepare = LogRequestEnvelope(
                from: other, incarnation: simulation.incarnations[other]!,
                request: .prepare(ballot: higher, from: 1))
            var refused = acceptor.onRequest(prepare)
            #expect(refused.reply?.reply == .rejected(ballot: higher, promised: promised))
            #expect(refused.mutations.isEmpty, "promised while a lease it granted holds")
            // The lease's holder may campaign again: its old leadership (and lease) ended with it.
            var holderAcceptor = acceptor
            let own = holderAcceptor.onRequest(
                LogRequestEnvelope(
                    from: leader, incarnation: simulation.incarnations[leader]!,
                    request: .prepare(ballot: Ballot(round: promised.round + 5, node: leader), from: 1)))
            if case .promise = own.reply?.reply {
            } else {
                Issue.record("refused its lease holder: \(String(describing: own.reply))")
            }

            // An election timeout of its ticks later, it promises.
            for _ in 0..<Self.configuration.electionTicks { _ = acceptor.tick() }
            refused = acceptor.onRequest(prepare)
            if case .promise = refused.reply?.reply {
            } else {
                Issue.record("still refused: \(String(describing: refused.reply))")
            }

            // Restarted, it remembers no lease, and refuses for an election timeout all the same.
            simulation.crash(follower)
            simulation.restart(follower)
            var restarted = simulation.replicas[follower]!
            let afterRestart = restarted.onRequest(prepare)
            if case .rejected = afterRestart.reply?.reply {
            } else {
                Issue.record(
                    "a restarted acceptor promised at once: \(String(describing: afterRestart.reply))")
            }
            let preVote = restarted.onRequest(
                LogRequestEnvelope(
                    from: other, incarnation: simulation.incarnations[other]!,
                    request: .preVote(ballot: higher)))
            #expect(
                preVote.reply?.reply == .preVote(ballot: higher, granted: false, promised: restarted.promised)
            )
        }
    }

    @Test(
        "an acceptor grants one lease at a time: a second leader's confirmation gets no lease while the first one's holds (found by review)"
    )
    func oneLeaseAtATime() async throws {
        try await simulating {
            let (simulation, leader) = try leasedCluster()
            let follower = simulation.peers.first { $0 != leader }!
            let other = simulation.peers.first { $0 != leader && $0 != follower }!
            let promised = try #require(simulation.replicas[follower]!.promised)
            // A higher ballot's confirmation (another leader's, which this acceptor never promised).
            let higher = Ballot(round: promised.round + 5, node: other)
            var acceptor = simulation.replicas[follower]!
            let second = acceptor.onRequest(
                LogRequestEnvelope(
                    from: other, incarnation: simulation.incarnations[other]!,
                    request: .confirm(ballot: higher, round: 1)))
            #expect(second.eagerReply?.reply == .confirmed(ballot: higher, round: 1, promised: promised))
            // Still the first leader's: the other node's prepare is refused.
            let prepare = acceptor.onRequest(
                LogRequestEnvelope(
                    from: other, incarnation: simulation.incarnations[other]!,
                    request: .prepare(ballot: higher, from: 1)))
            #expect(prepare.reply?.reply == .rejected(ballot: higher, promised: promised))
        }
    }

    @Test(
        "with leases off and refuseBallotsAfterStart, a restarted acceptor refuses for an election timeout: it may have granted a lease before"
    )
    func refusalAfterStartWithLeasesOff() async throws {
        try await simulating {
            var configuration = LogConfiguration.simulation
            configuration.refuseBallotsAfterStart = true
            var simulation = LogSimulation.elected(3, seed: 7, configuration: configuration)
            let leader = try #require(simulation.leaders.first)
            let follower = simulation.peers.first { $0 != leader }!
            let other = simulation.peers.first { $0 != leader && $0 != follower }!
            simulation.crash(follower)
            simulation.restart(follower)
            var acceptor = simulation.replicas[follower]!
            let promised = try #require(acceptor.promised)
            let higher = Ballot(round: promised.round + 5, node: other)
            let prepare = LogRequestEnvelope(
                from: other, incarnation: simulation.incarnations[other]!,
                request: .prepare(ballot: higher, from: 1))
            #expect(acceptor.onRequest(prepare).reply?.reply == .rejected(ballot: higher, promised: promised))
            for _ in 0..<configuration.electionTicks { _ = acceptor.tick() }
            if case .promise = acceptor.onRequest(prepare).reply?.reply {
            } else {
                Issue.record("still refused after an election timeout")
            }
        }
    }

    @Test("a replica with leases off answers a confirmation with no lease, and the leader counts none")
    func leasesOffGrantNothing() async throws {
        try await simulating {
            let plain = LogSimulation.elected(3, seed: 7)
            let leader = try #require(plain.leaders.first)
            let follower = plain.peers.first { $0 != leader }!
            let ballot = try #require(plain.replicas[leader]!.promised)
            var acceptor = plain.replicas[follower]!
            let ready = acceptor.onRequest(
                LogRequestEnvelope(
                    from: leader, incarnation: plain.incarnations[leader]!,
                    request: .confirm(ballot: ballot, round: 1)))
            #expect(ready.eagerReply?.reply == .confirmed(ballot: ballot, round: 1, promised: ballot))
        }
    }
}
