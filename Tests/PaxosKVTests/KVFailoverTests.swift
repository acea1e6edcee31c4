import Paxos
import PaxosCore
import PaxosKV
import PaxosTesting
import Testing

@Suite("Replicated KV: failover, catch-up, exactly-once", .serialized)
struct KVFailoverTests {
    @Test("the leader crashes: another replica takes over and keeps every acknowledged write")
    func leaderFailover() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let clerk = cluster.clerk()
        for index in 0..<20 { try await clerk.append("k", "\(index);") }
        let first = try await cluster.waitForLeader()
        await cluster.kill(first)
        let others = (0..<3).filter { $0 != first }
        for index in 20..<40 { try await cluster.clerk(others).append("k", "\(index);") }
        let second = try await cluster.waitForLeader(among: others)
        #expect(second != first)
        let expected = (0..<40).map { "\($0);" }.joined()
        #expect(try await cluster.clerk(others).get("k") == expected)
        // The old leader comes back as a follower and catches up.
        try await cluster.start(first)
        #expect(try await cluster.clerk([first]).get("k") == expected)
    }

    @Test(
        "applying chosen entries skips the fsync, and a power loss of every node loses no acknowledged write")
    func powerLossAfterUnsyncedApplies() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let clerk = cluster.clerk()
        for index in 0..<30 { try await clerk.append("k", "\(index);") }
        let expected = (0..<30).map { "\($0);" }.joined()
        #expect(try await clerk.get("k") == expected)
        let stores = (0..<3).map { cluster.store($0) as! InMemoryLogStore }
        var unsynced = 0
        for store in stores {
            for commit in await store.unsyncedCommits {
                unsynced += 1
                for mutation in commit {
                    switch mutation {
                    case .choose, .apply: break
                    default: Issue.record("\(mutation) was committed without an fsync")
                    }
                }
            }
        }
        #expect(unsynced > 0, "the applies of the clients' commands did not each cost an fsync")
        // Power goes out while some replica holds applies that had no fsync: its replica is
        // stopped first, right when that is seen (a later fsynced commit, say of an election,
        // would make them durable). Each append below is applied without an fsync on the leader.
        var exposed: Int?
        var written = expected
        for index in 0..<20 where exposed == nil {
            try await clerk.append("k", "more\(index);")
            written += "more\(index);"
            for (replica, store) in stores.enumerated() where exposed == nil {
                guard await store.unsyncedSinceSync > 0 else { continue }
                exposed = replica
                await cluster.kill(replica)
            }
        }
        let first = try #require(exposed, "no replica held an apply without an fsync after 20 appends")
        for index in 0..<3 where index != first { await cluster.kill(index) }
        var lost = 0
        var seen: [String] = []
        for store in stores {
            let before = await store.loadLog().applied
            await store.losePower()
            let after = await store.loadLog().applied
            if after < before { lost += 1 }
            seen.append("applied \(before) → \(after), \(await store.unsyncedCommitCount) unsynced")
        }
        #expect(lost > 0, "the power loss took applies that had no fsync: \(seen)")
        for index in 0..<3 { try await cluster.start(index) }
        // Re-learned from the entries durable at a majority, applied once each.
        #expect(try await cluster.clerk().get("k") == written)
        try await cluster.clerk().append("k", "after;")
        #expect(try await cluster.clerk().get("k") == written + "after;")
    }

    @Test("proposals whose clients were given up on are not tracked forever")
    func givenUpProposalsAreForgotten() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let leader = try await cluster.waitForLeader()
        let follower = (0..<3).first { $0 != leader }!
        let peer = try #require(cluster.peer(follower))
        for _ in 0..<400 where await peer.inspect(\.leader) != NodeID(UInt32(leader)) {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(await peer.inspect(\.leader) == NodeID(UInt32(leader)))
        // Cut the follower off: its forwards are lost, and nothing ever tells its core what
        // became of them. Every client waits out its timeout and hears "unknown".
        cluster.network.partition([
            [NodeID(UInt32(follower))], (0..<3).filter { $0 != follower }.map { NodeID(UInt32($0)) },
        ])
        let outcomes = await withTaskGroup(of: SubmitOutcome.self) { group in
            for index in 0..<20 { group.addTask { await peer.submit(Array("lost \(index)".utf8)) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.count == 20)
        #expect(outcomes.allSatisfy { if case .applied = $0 { false } else { true } })
        // Past the no-leader timeout too, so what sat in the outbox has been given up as well.
        try await Task.sleep(for: .milliseconds(1500))
        #expect(await peer.inspect(\.trackedProposals) == 0)
        cluster.network.heal()
    }

    @Test("a replica down for thousands of entries catches up through a snapshot, without restarting")
    func snapshotCatchUp() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        // Cut replica 2 off; the others choose far more entries than they retain (200 in tests).
        cluster.network.partition([[NodeID(0), NodeID(1)], [NodeID(2)]])
        let clerks = (0..<8).map { _ in cluster.clerk([0, 1]) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (client, clerk) in clerks.enumerated() {
                group.addTask {
                    for index in 0..<250 { try await clerk.put("key\(client)-\(index % 10)", "\(index)") }
                }
            }
            try await group.waitForAll()
        }
        let leaderStart = await cluster.peer(0)!.inspect { $0.logStart }
        let laggard = await cluster.peer(2)!.inspect { $0.firstUnchosen }
        #expect(leaderStart > laggard, "the others released the entries replica 2 lacks")
        cluster.network.heal()
        // Replica 2 answers only after it has the whole state: reads go through the log. The rows
        // are compared once both stores have applied the same prefix, durably.
        let deadline = ContinuousClock.now + .seconds(20)
        var caughtUp = false
        while ContinuousClock.now < deadline, !caughtUp {
            let (applied2, applied0) = (
                try await cluster.store(2)!.loadLog().applied, try await cluster.store(0)!.loadLog().applied
            )
            caughtUp = applied2 == applied0 && applied2 > laggard
            if !caughtUp { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(caughtUp)
        let data0 = MemoryMachine(KVStateMachine(), rows: try await cluster.peer(0)!.machineRows()).data
        let data2 = MemoryMachine(KVStateMachine(), rows: try await cluster.peer(2)!.machineRows()).data
        #expect(data0 == data2)
        #expect(data2[Array("key7-9".utf8)] == Array("249".utf8))
    }

    @Test("a request retried after the leader crashed is applied once")
    func exactlyOnceAcrossLeaderCrash() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let leader = try await cluster.waitForLeader()
        let register = await cluster.service(leader)!.register()
        guard case .done(let answer) = register, let client = answer.clientID else {
            Issue.record("register failed: \(register)")
            return
        }
        let follower = (leader + 1) % 3
        let command = KVCommand(
            client: client, request: 1, operation: .append(key: Array("x".utf8), value: Array("once".utf8)))
        // Sent to the leader, which crashes right after it is chosen.
        let first = await cluster.service(leader)!.execute(command)
        #expect(first == .done(KVResult(.ok, Array("once".utf8))))
        await cluster.kill(leader)
        // The client did not see the answer (say) and retries elsewhere: same answer, not applied again.
        var retry = await cluster.service(follower)!.execute(command)
        for _ in 0..<20 where retry != first {
            // Until a new leader is elected the outcome may be unknown; a client keeps retrying.
            retry = await cluster.service(follower)!.execute(command)
        }
        #expect(retry == .done(KVResult(.ok, Array("once".utf8))))
        let again = await cluster.service(follower)!.execute(command)
        #expect(again == first)
        let read = await cluster.service(follower)!.execute(KVCommand(operation: .get(key: Array("x".utf8))))
        #expect(read == .done(KVResult(.ok, Array("once".utf8))))
        // An older request number is refused without running.
        let next = KVCommand(
            client: client, request: 2, operation: .append(key: Array("x".utf8), value: Array("2".utf8)))
        _ = await cluster.service(follower)!.execute(next)
        #expect(await cluster.service(follower)!.execute(command) == .done(KVResult(.staleRequest)))
    }
}

@Suite("KV state machine")
struct KVStateMachineTests {
    func apply(_ machine: inout MemoryMachine<KVStateMachine>, _ command: KVCommand, slot: Slot) -> KVResult {
        let proposal = Proposal(
            id: ProposalID(node: NodeID(0), incarnation: 1, number: UInt64(slot)), command: command.encode())
        return try! KVResult.decode(machine.apply(proposal, slot: slot).output)
    }

    @Test("sessions are bounded; an evicted client is refused, never executed twice")
    func boundedSessions() {
        var machine = MemoryMachine(KVStateMachine())
        var slot = 0
        func next() -> Slot {
            slot += 1
            return slot
        }
        let first = apply(&machine, KVCommand(operation: .register), slot: next()).clientID!
        let put = KVCommand(client: first, request: 1, operation: .append(key: [1], value: [2]))
        #expect(apply(&machine, put, slot: next()).status == .ok)
        for _ in 0..<KVStateMachine.defaultMaxSessions {
            _ = apply(&machine, KVCommand(operation: .register), slot: next())
        }
        #expect(machine.sessionCount == KVStateMachine.defaultMaxSessions)
        // The first client's session was the least recently used: its retry is refused.
        #expect(apply(&machine, put, slot: next()).status == .sessionExpired)
        #expect(machine.data[[1]] == [2])
    }

    @Test("the row changes rebuild the rows, and a machine on the rebuilt rows answers the same")
    func rowsRoundTrip() throws {
        var machine = MemoryMachine(KVStateMachine())
        var rows: [MachineKey: [UInt8]] = [:]
        var random = SplitMix64(seed: 5)
        var clients: [UInt64] = []
        var rebuilt: MemoryMachine<KVStateMachine>?
        for slot in 1...600 {
            if slot == 501 {
                // What a restart or a snapshot sees: only the rows the changes wrote.
                #expect(rows == machine.rows)
                rebuilt = MemoryMachine(KVStateMachine(), rows: rows)
            }
            let command: KVCommand
            switch Int.random(in: 0..<5, using: &random) {
            case 0: command = KVCommand(operation: .register)
            case 1:
                command = KVCommand(
                    operation: .put(
                        key: [UInt8.random(in: 0..<8, using: &random)], value: [UInt8(slot % 256)]))
            case 2: command = KVCommand(operation: .delete(key: [UInt8.random(in: 0..<8, using: &random)]))
            case 3:
                command = KVCommand(
                    client: clients.randomElement(using: &random) ?? 0, request: UInt64(slot),
                    operation: .append(key: [UInt8.random(in: 0..<8, using: &random)], value: [1]))
            default:
                command = KVCommand(
                    operation: .compareAndSet(
                        key: [UInt8.random(in: 0..<8, using: &random)], expected: nil, new: [9]))
            }
            let proposal = Proposal(
                id: ProposalID(node: NodeID(0), incarnation: 1, number: UInt64(slot)),
                command: command.encode())
            let (output, changes) = try machine.apply(proposal, slot: slot)
            if rebuilt != nil { #expect(try rebuilt!.apply(proposal, slot: slot).output == output) }
            if let id = try? KVResult.decode(output).clientID, case .register = command.operation {
                clients.append(id)
            }
            for change in changes {
                switch change {
                case .put(let key, let value): rows[key] = value
                case .delete(let key): rows[key] = nil
                }
            }
        }
        #expect(rows == machine.rows)
        #expect(rebuilt?.rows == machine.rows)
    }
}
