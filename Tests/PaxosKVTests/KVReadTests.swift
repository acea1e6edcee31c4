import Paxos
import PaxosCore
import PaxosKV
import PaxosTesting
import Testing

/// Gets without a log write: linearizable by read index on the leader, serializable anywhere.
@Suite("KV reads (read index and serializable)", .serialized)
struct KVReadTests {
    func get(_ service: KVService, _ key: String, _ consistency: ReadConsistency = .linearizable) async
        -> KVOutcome
    {
        await service.execute(KVCommand(operation: .get(key: Array(key.utf8))), consistency: consistency)
    }

    func put(_ service: KVService, _ key: String, _ value: String) async -> KVOutcome {
        await service.execute(KVCommand(operation: .put(key: Array(key.utf8), value: Array(value.utf8))))
    }

    @Test(
        "the machine's read of a get answers exactly what applying it would, sessions included, and applying a get changes no row"
    )
    func readMatchesApply() throws {
        var random = SplitMix64(seed: 2026)
        var machine = MemoryMachine(KVStateMachine())
        var slot = 0
        var number: UInt64 = 0
        func proposal(_ command: KVCommand) -> Proposal {
            number += 1
            return Proposal(
                id: ProposalID(node: 1, incarnation: 1, number: number), command: command.encode())
        }
        let clients: [UInt64] = [0, 11, 12, 13]
        var requests: [UInt64: UInt64] = [:]
        var compared = Set<KVResult.Status>()
        for step in 0..<3000 {
            let client = clients.randomElement(using: &random)!
            let key: [UInt8] = [UInt8.random(in: 0..<6, using: &random)]
            // Request numbers: the next one, a repeat, or an old one.
            let last = requests[client] ?? 0
            let request: UInt64 =
                client == 0 ? 0 : [last + 1, last, Swift.max(1, last) - 1].randomElement(using: &random)!
            let operation: KVOperation =
                switch Int.random(in: 0..<5, using: &random) {
                case 0: .put(key: key, value: [UInt8(truncatingIfNeeded: step)])
                case 1: .append(key: key, value: [7])
                case 2: .delete(key: key)
                case 3 where client != 0 && Int.random(in: 0..<20, using: &random) == 0:
                    .openSession(id: client)
                default: .get(key: key)
                }
            let command = KVCommand(client: client, request: request, operation: operation)
            if case .get = operation {
                let read = try #require(try machine.machine.read(command.encode(), rows: machine.memory))
                var copy = machine
                slot += 1
                let (applied, mutations) = try copy.apply(proposal(command), slot: slot)
                #expect(read == applied, "step \(step): \(command)")
                #expect(mutations.isEmpty, "step \(step): applying a get changed rows")
                compared.insert(try KVResult.decode(read).status)
                continue
            }
            slot += 1
            let (output, _) = try machine.apply(proposal(command), slot: slot)
            if client != 0, (try? KVResult.decode(output))?.status == .ok { requests[client] = request }
        }
        #expect(
            try machine.machine.read(KVCommand(operation: .delete(key: [1])).encode(), rows: machine.memory)
                == nil)
        #expect(
            compared.isSuperset(of: [.ok, .notFound, .sessionExpired, .requestMismatch, .staleRequest]),
            "\(compared)")
    }

    @Test(
        "a get at the leader reads the latest write, wherever it was made, and takes no slot of the log (read index, and under a lease)",
        arguments: [false, true])
    func leaderReadTakesNoSlot(leaseReads: Bool) async throws {
        let cluster = try await KVCluster(3, leaseReads: leaseReads)
        defer { Task { await cluster.shutdown() } }
        let leader = try await cluster.waitForLeader()
        let follower = (leader + 1) % 3
        let service = try #require(cluster.service(leader))
        #expect(await put(service, "k", "first") == .done(KVResult(.ok)))
        let slots = await cluster.peer(leader)!.inspect { $0.firstUnchosen }
        for round in 0..<20 {
            // Written through a follower (forwarded), answered by the leader at once after.
            let value = "v\(round)"
            #expect(await put(cluster.service(follower)!, "k", value) == .done(KVResult(.ok)))
            #expect(await get(service, "k") == .done(KVResult(.ok, Array(value.utf8))))
        }
        #expect(await get(service, "absent") == .done(KVResult(.notFound)))
        let after = await cluster.peer(leader)!.inspect { $0.firstUnchosen }
        #expect(after - slots == 20, "20 writes took 20 slots; 21 reads took none")
        // Whether any of them found the lease held depends on how fast this machine runs them
        // (SimulatedLeaseTests counts lease reads in virtual time); with leases off, none did.
        if !leaseReads { #expect(await cluster.peer(leader)!.inspect { $0.leaseReads } == 0) }
    }

    @Test(
        "a linearizable get at a follower sees the leader's last write (through the log); a serializable one reads the follower's own state, even cut off"
    )
    func followerReads() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let leader = try await cluster.waitForLeader()
        let follower = (leader + 1) % 3
        #expect(await put(cluster.service(leader)!, "k", "old") == .done(KVResult(.ok)))
        #expect(await get(cluster.service(follower)!, "k") == .done(KVResult(.ok, Array("old".utf8))))
        // Cut off, the follower still answers a serializable read, from what it applied.
        let others = cluster.ids.filter { $0 != NodeID(UInt32(follower)) }
        cluster.network.partition([[NodeID(UInt32(follower))], others])
        #expect(await put(cluster.service(leader)!, "k", "new") == .done(KVResult(.ok)))
        let stale = await get(cluster.service(follower)!, "k", .serializable)
        #expect(stale == .done(KVResult(.ok, Array("old".utf8))), "it cannot have heard of the new write")
        cluster.network.heal()
        var fresh = await get(cluster.service(follower)!, "k")
        for _ in 0..<20 where fresh != .done(KVResult(.ok, Array("new".utf8))) {
            // Until the follower hears the leader again, its read may fail; it never reads "old".
            #expect(fresh != .done(KVResult(.ok, Array("old".utf8))), "a linearizable read was stale")
            try await Task.sleep(for: .milliseconds(50))
            fresh = await get(cluster.service(follower)!, "k")
        }
        #expect(fresh == .done(KVResult(.ok, Array("new".utf8))))
    }

    @Test(
        "a leader cut off from the others answers no linearizable get, even when it does not know it was deposed (read index, and under a lease)",
        arguments: [false, true])
    func cutOffLeaderAnswersNoRead(leaseReads: Bool) async throws {
        let cluster = try await KVCluster(3, leaseReads: leaseReads)
        defer { Task { await cluster.shutdown() } }
        let leader = try await cluster.waitForLeader()
        #expect(await put(cluster.service(leader)!, "k", "old") == .done(KVResult(.ok)))
        let me = NodeID(UInt32(leader))
        cluster.network.partition([[me], cluster.ids.filter { $0 != me }])
        let newLeader = try await cluster.waitForLeader(among: (0..<3).filter { $0 != leader })
        #expect(await put(cluster.service(newLeader)!, "k", "new") == .done(KVResult(.ok)))
        // The old leader may still think it leads; its read must not answer "old".
        let read = await get(cluster.service(leader)!, "k")
        #expect(read != .done(KVResult(.ok, Array("old".utf8))))
        if case .done = read { Issue.record("a cut-off node answered a linearizable read: \(read)") }
    }
}
