import Foundation
import PaxosCore
import Testing

/// Membership changes through the log, and nodes that lost their disk, on the pure core.
/// The random runs' seeds: 1…24, or 1…N with `SEEDS=N`, or the one `SEED=N`.
let seeds: [UInt64] =
    ProcessInfo.processInfo.environment["SEED"].flatMap(UInt64.init).map { [$0] }
    ?? Array(1...(ProcessInfo.processInfo.environment["SEEDS"].flatMap(UInt64.init) ?? 24))

@Suite("Membership (LogReplica)")
struct MembershipTests {
    func settle(_ simulation: inout LogSimulation, rounds: Int = 1) {
        for _ in 0..<rounds {
            for node in simulation.up { simulation.tick(node) }
            simulation.deliverAll()
        }
    }

    /// Runs until `done` holds (at most `rounds` rounds).
    func run(_ simulation: inout LogSimulation, rounds: Int = 500, until done: (LogSimulation) -> Bool) {
        for _ in 0..<rounds where !done(simulation) { settle(&simulation) }
    }

    func leader(_ simulation: inout LogSimulation) throws -> NodeID {
        run(&simulation) { $0.leaders.count == 1 }
        return try #require(simulation.leaders.first)
    }

    /// Submits a command at the leader and returns its id once every node in `nodes` applied it.
    @discardableResult
    func write(_ simulation: inout LogSimulation, appliedAt nodes: [NodeID]? = nil) throws -> ProposalID {
        let at = try leader(&simulation)
        let idSubmitted = simulation.submit(at: at)
        let id = try #require(idSubmitted)
        run(&simulation) { simulation in
            simulation.results[id] != nil
                && (nodes ?? []).allSatisfy {
                    simulation.replicas[$0].map { $0.applied == simulation.replicas[at]?.applied } ?? false
                }
        }
        #expect(simulation.results[id] != nil, "\(simulation.summary)")
        return id
    }

    func change(_ simulation: inout LogSimulation, _ change: MembershipChange) throws -> String {
        let at = try leader(&simulation)
        let idSubmitted = simulation.changeMembership(at: at, change)
        let id = try #require(idSubmitted)
        run(&simulation) { $0.results[id] != nil }
        let output = try #require(simulation.results[id], "\(change): \(simulation.summary)")
        return String(decoding: output, as: UTF8.self)
    }

    func voters(_ simulation: LogSimulation) -> Set<NodeID> {
        simulation.replicas[simulation.leaders.first ?? simulation.up[0]]!.membership.voters
    }

    @Test("a new cluster's first entry records every bootstrap peer with its incarnation")
    func bootstrapRecordsIncarnations() throws {
        let simulation = LogSimulation(count: 3, seed: 1, configuration: .simulation)
        for node in simulation.peers {
            let membership = simulation.replicas[node]!.membership
            #expect(!membership.isProvisional)
            #expect(membership.voters == [1, 2, 3])
            #expect(membership.member(node)?.incarnation == simulation.incarnations[node])
        }
    }

    @Test("a new cluster with a node that never comes up elects nobody and chooses nothing")
    func bootstrapNeedsEveryPeer() {
        var simulation = LogSimulation(count: 3, seed: 2, configuration: .simulation, bootstrapped: false)
        simulation.lose(3)
        settle(&simulation, rounds: 300)
        #expect(simulation.leaders.isEmpty)
        #expect(simulation.chosen.isEmpty)
    }

    @Test(
        "a node that lost its disk is refused as a voter and as a leader: the acknowledged write survives; the documented replacement makes the cluster whole"
    )
    func lostDiskIsRefusedThenReplaced() throws {
        var simulation = LogSimulation(count: 3, seed: 3, configuration: .simulation)
        // Node 2 down; X acknowledged with the quorum {1, 3}.
        simulation.crash(2)
        let x = try write(&simulation)
        let found = simulation.chosen.first { slot, entry in entry.contains { proposal in proposal.id == x } }
        let slotOfX = try #require(found?.key)
        // Nodes 1 and 3 stop; node 1's data directory is deleted; nodes 1 and 2 start.
        simulation.crash(1)
        simulation.crash(3)
        simulation.wipe(1, joining: false)
        simulation.restart(2)
        settle(&simulation, rounds: 300)
        #expect(simulation.leaders.isEmpty, "\(simulation.summary)")
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
        #expect(
            simulation.events.contains { node, event in
                if node == 2, case .refusedPeer(1, _, let known) = event { return known != 0 }
                return false
            }, "node 2 says it refused node 1")
        #expect(
            simulation.events.contains { node, event in
                if node == 1, case .refusedBy(2, _) = event { return true }
                return false
            }, "node 1 hears it is refused")
        // Node 3 returns: {2, 3} elect; X is still chosen in its slot.
        simulation.restart(3)
        try write(&simulation)
        #expect(simulation.chosen[slotOfX]?.contains { $0.id == x } == true)
        #expect(simulation.leaders.first != 1)
        #expect(simulation.replicas[1]!.membership.member(1)?.incarnation != simulation.incarnations[1])

        // Replacing it: remove node 1, start it again empty with --join, add it as a learner,
        // promote it once it caught up.
        #expect(try change(&simulation, .remove(1)) == "ok")
        simulation.wipe(1, joining: true)
        #expect(try change(&simulation, .addLearner(1, address: "sim:1")) == "ok")
        run(&simulation) {
            $0.replicas[$0.leaders.first ?? 2]!.membership.member(1)?.incarnation == $0.incarnations[1]
        }
        try write(&simulation, appliedAt: [1, 2, 3])
        #expect(try change(&simulation, .promote(1)) == "ok")
        #expect(voters(simulation) == [1, 2, 3])
        // Node 1 now counts: with node 2 down, {1, 3} serve.
        simulation.crash(2)
        try write(&simulation, appliedAt: [1, 3])
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
        #expect(simulation.membershipJumps.isEmpty)
    }

    @Test(
        "a candidate whose promises carry it past membership changes does not lead with the old voters (review finding: two changes on, majorities need not meet)"
    )
    func candidateCarriedPastChangesDoesNotLead() throws {
        func change(_ number: UInt64, _ change: MembershipChange) -> LogEntry {
            [Proposal(id: ProposalID(node: 3, incarnation: 1, number: number), command: change.encoded())]
        }
        // Node 1 knows slot 1 chosen and the membership {1, 2, 3}. Node 2 lacks slot 1 (so its
        // own membership is as old as node 1's) but knows slots 2…7 chosen: two learners added,
        // recorded and promoted, so the voters of slot 8 on are {1, …, 5}. It accepted x in slot 9.
        var state = LogDurableState()
        state.membership = .bootstrapped([1, 2, 3])
        state.apply(.choose(slot: 1, entry: []))
        var replica = LogReplica(me: 1, peers: [1, 2, 3], state: state, configuration: .simulation)
        let chosen: [LogEntry] = [
            change(1, .addLearner(4, address: "h:4")), change(2, .pin(4, incarnation: 44)),
            change(3, .promote(4)),
            change(4, .addLearner(5, address: "h:5")), change(5, .pin(5, incarnation: 55)),
            change(6, .promote(5)),
        ]
        var reported = chosen.enumerated().map {
            ReportedRecord(
                slot: $0.offset + 2, record: LogRecord(ballot: nil, entry: $0.element, chosen: true))
        }
        reported.append(
            ReportedRecord(
                slot: 9,
                record: LogRecord(
                    ballot: Ballot(round: 1, node: 3),
                    entry: [Proposal(id: ProposalID(node: 9, incarnation: 1, number: 1), command: [120])],
                    chosen: false)))
        var prepared: Ballot?
        for _ in 0..<200 where prepared == nil {
            var ready = replica.tick()
            for message in ready.eagerMessages where message.to == 2 {
                if case .preVote(let asked) = message.envelope.request {
                    ready = replica.onReply(
                        LogReplyEnvelope(
                            from: 2, reply: .preVote(ballot: asked, granted: true, promised: nil)))
                }
            }
            for message in ready.messages {
                if case .prepare(let ballot, _) = message.envelope.request { prepared = ballot }
            }
        }
        let ballot = try #require(prepared)
        // Its own promise counts once durable; then node 2's, which makes a majority of {1, 2, 3}.
        _ = replica.onReply(
            LogReplyEnvelope(
                from: 1, reply: .promise(ballot: ballot, firstUnchosen: 2, records: [], membershipSlot: 1)))
        let ready = replica.onReply(
            LogReplyEnvelope(
                from: 2,
                reply: .promise(ballot: ballot, firstUnchosen: 1, records: reported, membershipSlot: 1)))
        let accepts = (ready.eagerMessages + ready.messages).filter {
            if case .accept(_, let entries, _, _) = $0.envelope.request { return !entries.isEmpty }
            return false
        }
        #expect(accepts.isEmpty, "it proposed under a phase 1 counted in {1, 2, 3}: \(accepts)")
        #expect(!replica.isLeader)
        #expect(replica.membership.voters == [1, 2, 3, 4, 5], "it learned the changes")
    }

    @Test("a learner never counts in a quorum")
    func learnerNeverCounts() throws {
        var simulation = LogSimulation(count: 3, seed: 4, configuration: .simulation)
        simulation.wipe(4, joining: true)
        #expect(try change(&simulation, .addLearner(4, address: "sim:4")) == "ok")
        try write(&simulation, appliedAt: [1, 2, 3, 4])
        let leader = try leader(&simulation)
        // The leader and the learner alone: 2 of 4 nodes, 1 of 3 voters. Nothing is chosen.
        for node in simulation.bootstrapPeers where node != leader { simulation.crash(node) }
        let chosenBefore = simulation.chosen.count
        let idSubmitted = simulation.submit(at: leader)
        let id = try #require(idSubmitted)
        settle(&simulation, rounds: 200)
        #expect(simulation.results[id] == nil)
        #expect(simulation.chosen.count == chosenBefore)
        #expect(simulation.replicas[4]!.membership.isVoter(4) == false)
        // Promoting it needs a quorum too; one voter back, and the write goes through.
        simulation.restart(simulation.bootstrapPeers.first { $0 != leader }!)
        run(&simulation) { $0.results[id] != nil }
        #expect(simulation.results[id] != nil)
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
    }

    @Test("a learner that has not caught up is not promoted, and says why")
    func promoteNeedsCaughtUp() throws {
        var configuration = LogConfiguration.simulation
        configuration.promoteLag = 2
        var simulation = LogSimulation(count: 3, seed: 5, configuration: configuration)
        simulation.wipe(4, joining: true)
        #expect(try change(&simulation, .addLearner(4, address: "sim:4")) == "ok")
        settle(&simulation, rounds: 20)
        simulation.crash(4)
        for _ in 0..<10 { try write(&simulation) }
        let answer = try change(&simulation, .promote(4))
        #expect(answer.hasPrefix("refused: node 4 has not caught up"), "\(answer)")
        #expect(try change(&simulation, .promote(9)) == "refused: node 9 is not a member")
        #expect(voters(simulation) == [1, 2, 3])
    }

    @Test("grow 3 → 5 under load, shrink 5 → 3, replace the leader, the leader removes itself")
    func growShrinkReplace() throws {
        var simulation = LogSimulation(count: 3, seed: 6, configuration: .simulation)
        for node: NodeID in [4, 5] {
            simulation.wipe(node, joining: true)
            #expect(try change(&simulation, .addLearner(node, address: "sim:\(node)")) == "ok")
            for _ in 0..<5 { simulation.submit(at: try leader(&simulation)) }
            try write(&simulation, appliedAt: [node])
            #expect(try change(&simulation, .promote(node)) == "ok")
        }
        #expect(voters(simulation) == [1, 2, 3, 4, 5])
        // Five voters: two down, and it still serves.
        let first = try leader(&simulation)
        let others = simulation.peers.filter { $0 != first }
        simulation.crash(others[0])
        simulation.crash(others[1])
        try write(&simulation)
        simulation.restart(others[0])
        simulation.restart(others[1])
        // The leader removes itself: it stops leading and voting; another leads.
        #expect(try change(&simulation, .remove(first)) == "ok")
        settle(&simulation, rounds: 5)
        #expect(!simulation.replicas[first]!.isLeader)
        let next = try leader(&simulation)
        #expect(next != first)
        #expect(!voters(simulation).contains(first))
        try write(&simulation)
        // Shrink to 3.
        for node in voters(simulation).sorted().reversed() where voters(simulation).count > 3 && node != next
        {
            #expect(try change(&simulation, .remove(node)) == "ok")
        }
        #expect(voters(simulation).count == 3)
        // A removed node is refused: its campaign gets nowhere.
        for _ in 0..<100 { simulation.tick(first) }
        settle(&simulation, rounds: 50)
        #expect(!simulation.replicas[first]!.isLeader)
        try write(&simulation)
        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
        #expect(simulation.membershipJumps.isEmpty, "\(simulation.membershipJumps)")
    }

    @Test(
        "membership changes interleaved with loss, reordering, crashes, partitions, lost disks and leader changes: agreement holds after every step, consecutive memberships differ by one voter, and the healed cluster serves",
        .serialized, arguments: seeds)
    func changesUnderFaults(seed: UInt64) async throws {
        try await simulating {
            var simulation = LogSimulation(
                count: seed % 2 == 0 ? 3 : 5, seed: seed, configuration: .simulation)
            simulation.dropPercent = 20
            simulation.duplicatePercent = 5
            simulation.crashPercent = 1
            var random = SplitMix64(seed: seed &* 104_729)
            var nextID = UInt32(simulation.peers.count + 1)
            var wiped = false
            func anyNode() -> NodeID { simulation.peers.randomElement(using: &random)! }
            // The latest membership any replica was in (some may all be down at a moment).
            func current() -> Membership { simulation.memberships.max { $0.key < $1.key }!.value }
            // The operator makes one change at a time, and never removes a voter the cluster needs:
            // the voters whose disk is intact stay a majority (a node that lost its disk counts as
            // gone until it is replaced).
            var lastChange: ProposalID?
            func changeDone() -> Bool {
                guard let id = lastChange else { return true }
                return simulation.results[id] != nil || simulation.failed.contains(id)
                    || simulation.unknown.contains(id)
            }
            func intact(_ membership: Membership) -> Int {
                membership.voters.count { membership.member($0)?.incarnation == simulation.incarnations[$0] }
            }
            for _ in 0..<15_000 {
                switch Int.random(in: 0..<100, using: &random) {
                case 0..<35: simulation.deliverOne()
                case 35..<50: simulation.commitOne()
                case 50..<78: simulation.tick(anyNode())
                case 78..<90: simulation.submit(at: anyNode(), resendable: Bool.random(using: &random))
                case 90:
                    guard changeDone() else { break }
                    // Add a new node as a learner.
                    let node = NodeID(nextID)
                    nextID += 1
                    simulation.wipe(node, joining: true)
                    lastChange = simulation.changeMembership(
                        at: anyNode(), .addLearner(node, address: "sim:\(node)"))
                case 91:
                    if changeDone(), let learner = current().members.first(where: { !$0.isVoter }) {
                        lastChange = simulation.changeMembership(at: anyNode(), .promote(learner.id))
                    }
                case 92:
                    let membership = current()
                    if changeDone(), membership.voters.count > 3,
                        let node = membership.voters.sorted().randomElement(using: &random),
                        intact(membership) - 1 > (membership.voters.count - 1) / 2
                    {
                        lastChange = simulation.changeMembership(at: anyNode(), .remove(node))
                    }
                case 93:
                    // A node loses its disk and comes back as it should not: under its old id, not
                    // joining. It must never vote.
                    if !wiped, Int.random(in: 0..<3, using: &random) == 0 {
                        // One per run: a majority of lost disks is beyond what any majority
                        // protocol survives.
                        wiped = true
                        simulation.wipe(
                            simulation.bootstrapPeers.randomElement(using: &random)!, joining: false)
                    }
                case 94: if Bool.random(using: &random) { simulation.crash(anyNode()) }
                case 95, 96:
                    if let node = simulation.peers.filter({ simulation.replicas[$0] == nil }).randomElement(
                        using: &random)
                    {
                        simulation.restart(node)
                    }
                default:
                    if simulation.isolated.isEmpty {
                        simulation.isolated = [simulation.leaders.first ?? anyNode()]
                    } else {
                        simulation.isolated = []
                    }
                }
            }
            #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
            #expect(simulation.membershipJumps.isEmpty, "\(simulation.membershipJumps)")

            // Heal: everyone up, no faults; a node whose disk was lost is replaced as the README
            // says (removed, started empty with --join, added, promoted) when needed for a majority.
            simulation.dropPercent = 0
            simulation.duplicatePercent = 0
            simulation.crashPercent = 0
            simulation.isolated = []
            for node in simulation.peers where simulation.replicas[node] == nil { simulation.restart(node) }
            var probe: ProposalID?
            for _ in 0..<3000 {
                settle(&simulation)
                // A client tries again when its command certainly failed or its outcome is unknown
                // (the leader it went to stepped down: a membership change makes it campaign again).
                if let id = probe, simulation.failed.contains(id) || simulation.unknown.contains(id) {
                    probe = nil
                }
                if probe == nil, let leader = simulation.leaders.first {
                    probe = simulation.submit(at: leader)
                }
                if let probe, simulation.results[probe] != nil { break }
            }
            let id = try #require(probe, "no leader after healing: \(simulation.summary)")
            #expect(
                simulation.results[id] != nil,
                "\(simulation.summary) \(simulation.events.suffix(12).map { "\($0.0): \($0.1)" })")
            let membership = current()
            let voters = membership.voters.filter {
                membership.member($0)?.incarnation == simulation.incarnations[$0]
            }
            settle(&simulation, rounds: 50)
            let applied = Set(voters.map { simulation.replicas[$0]!.applied })
            #expect(applied.count == 1, "\(simulation.summary)")
            #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(3))")
        }
    }
}
