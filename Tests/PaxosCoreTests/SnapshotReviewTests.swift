import PaxosCore
import Testing

/// Review of issue 12 (streamed snapshots, state machine in the store): each test is one finding.
@Suite("Snapshot review (issue 12)")
struct SnapshotReviewTests {
    func row(_ index: UInt8) -> MachineRow {
        MachineRow(key: MachineKey(space: 1, key: [index]), value: [index])
    }

    func from(_ node: NodeID, _ reply: LogReply) -> LogReplyEnvelope {
        LogReplyEnvelope(from: node, reply: reply)
    }

    @Test("a chunk answering an older request is never taken as the first chunk of a new transfer")
    func staleChunkIsNotAFirstChunk() throws {
        // Node 2, behind: nothing applied. Node 1 has a snapshot at slot 10 with rows 1...4.
        var replica = LogReplica(
            me: 2, peers: [1, 2, 3], state: LogDurableState(), configuration: .simulation)
        var durable = LogDurableState()
        func carryOut(_ ready: LogReady) { for mutation in ready.mutations { durable.apply(mutation) } }
        carryOut(replica.onReply(from(1, .snapshotAvailable(applied: 10))))
        carryOut(
            replica.onReply(
                from(
                    1,
                    .snapshotChunk(token: 77, applied: 10, after: nil, rows: [row(1), row(2)], done: false))))
        // Request X = (77, after row 2) is out, and slow. The download times out; the next fetch
        // resumes with the same request (Y).
        for _ in 0..<LogConfiguration.simulation.resendTicks { carryOut(replica.tick()) }
        let resumed = replica.onReply(from(1, .snapshotAvailable(applied: 10)))
        carryOut(resumed)
        #expect(
            resumed.eagerMessages.map(\.envelope.request) == [.snapshotChunk(token: 77, after: row(2).key)])
        // Node 1 served X first: the last chunk, so it closed snapshot 77 and told Y it is gone.
        // The two answers come back in the other order; the replica starts over (token 0)...
        carryOut(replica.onReply(from(1, .snapshotGone)))
        // ... and X's answer (rows 3 and 4, the end of snapshot 77) arrives now.
        carryOut(
            replica.onReply(
                from(
                    1,
                    .snapshotChunk(
                        token: 77, applied: 10, after: row(2).key, rows: [row(3), row(4)], done: true))))
        // Either nothing is installed yet, or all four rows are.
        #expect(
            durable.applied == 0 || durable.machine.count == 4,
            "installed a snapshot at \(durable.applied) with only \(durable.machine.keys.sorted()) of rows 1...4"
        )
    }

    @Test("a chunk answering an older request of another transfer from the same peer is not a first chunk")
    func staleChunkAfterSwitchingSources() throws {
        var replica = LogReplica(
            me: 2, peers: [1, 2, 3], state: LogDurableState(), configuration: .simulation)
        var durable = LogDurableState()
        func carryOut(_ ready: LogReady) { for mutation in ready.mutations { durable.apply(mutation) } }
        func timeOut() { for _ in 0..<LogConfiguration.simulation.resendTicks { carryOut(replica.tick()) } }
        // From node 1: first chunk, then request (77, after row 2) goes out and is slow.
        carryOut(replica.onReply(from(1, .snapshotAvailable(applied: 10))))
        carryOut(
            replica.onReply(
                from(
                    1,
                    .snapshotChunk(token: 77, applied: 10, after: nil, rows: [row(1), row(2)], done: false))))
        timeOut()
        // Node 3 offers a snapshot; one chunk of it is staged, then that transfer stalls too.
        carryOut(replica.onReply(from(3, .snapshotAvailable(applied: 10))))
        carryOut(
            replica.onReply(
                from(3, .snapshotChunk(token: 55, applied: 10, after: nil, rows: [row(1)], done: false))))
        timeOut()
        // Back to node 1: the staging is node 3's, so this starts a new snapshot (token 0)...
        carryOut(replica.onReply(from(1, .snapshotAvailable(applied: 10))))
        // ... and the slow answer to (77, after row 2) arrives: the last rows of snapshot 77.
        carryOut(
            replica.onReply(
                from(
                    1,
                    .snapshotChunk(
                        token: 77, applied: 10, after: row(2).key, rows: [row(3), row(4)], done: true))))
        #expect(
            durable.applied == 0 || durable.machine.count == 4,
            "installed a snapshot at \(durable.applied) with only \(durable.machine.keys.sorted()) of rows 1...4"
        )
    }

    @Test(
        "a replica whose log starts above the releasable slot does not emit a release of nothing at every input"
    )
    func noEmptyReleases() throws {
        var simulation = LogSimulation(count: 3, seed: 7, configuration: .simulation)
        for _ in 0..<200 where simulation.leaders.isEmpty {
            for node in simulation.peers { simulation.tick(node) }
            simulation.deliverAll()
        }
        let leader = try #require(simulation.leaders.first)
        let follower = simulation.peers.first { $0 != leader }!
        simulation.crash(follower)
        for _ in 0..<100 {
            simulation.submit(at: leader)
            for node in simulation.up { simulation.tick(node) }
            simulation.deliverAll()
        }
        var replica = try #require(simulation.replicas[leader])
        let logStart = replica.logStart
        #expect(logStart > 1, "retainEntries released the log past the down follower")
        // Nothing new: one tick, one heartbeat reply.
        var mutations = replica.tick().mutations
        mutations += replica.tick().mutations
        let empty = mutations.filter {
            if case .release(let below) = $0 { return below <= logStart }
            return false
        }
        #expect(empty.isEmpty, "\(empty) with logStart \(logStart)")
    }

    @Test("a staged snapshot the replica has applied past is dropped, not kept on disk for good")
    func staleStagingIsDropped() throws {
        var replica = LogReplica(
            me: 2, peers: [1, 2, 3], state: LogDurableState(), configuration: .simulation)
        var durable = LogDurableState()
        func carryOut(_ ready: LogReady) throws {
            var through: Slot?
            var outputs: [(ProposalID, Value)] = []
            for mutation in ready.mutations {
                if case .apply(let slot, _) = mutation { through = slot }
                outputs += try durable.apply(mutation, machine: ListMachine(), outputsFor: 2)
            }
            if let through { try carryOut(replica.onApplied(through: through, outputs: outputs)) }
        }
        // Half of node 1's snapshot at slot 10 is staged; then node 1 goes away.
        try carryOut(replica.onReply(from(1, .snapshotAvailable(applied: 10))))
        try carryOut(
            replica.onReply(
                from(
                    1,
                    .snapshotChunk(token: 77, applied: 10, after: nil, rows: [row(1), row(2)], done: false))))
        for _ in 0..<LogConfiguration.simulation.resendTicks { try carryOut(replica.tick()) }
        // Node 3 still holds the log: the replica catches up from it, past slot 10.
        let entries = (1...12).map { slot in
            SlotEntry(
                slot: slot,
                entry: [
                    Proposal(
                        id: ProposalID(node: 3, incarnation: 1, number: UInt64(slot)), command: [UInt8(slot)])
                ])
        }
        try carryOut(replica.onReply(from(3, .chosen(entries: entries, firstUnchosen: 13))))
        #expect(durable.applied == 12)
        #expect(
            durable.staging == nil && durable.stagedRows.isEmpty,
            "staging of a snapshot at 10 kept with \(durable.stagedRows.count) rows at applied \(durable.applied)"
        )
    }
}
