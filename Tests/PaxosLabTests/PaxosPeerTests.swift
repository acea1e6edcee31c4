import Paxos
import PaxosCore
import PaxosTesting
import Synchronization
import Testing

/// A store whose commits wait until the test opens the gate: lets a test observe what a peer does
/// while its state is not yet durable.
actor GatedStore: AcceptorStore {
    private let inner = InMemoryStore()
    private var open = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private(set) var commitsStarted = 0

    func load() async throws -> DurableState { await inner.load() }

    func commit(_ mutations: [StoreMutation]) async throws {
        commitsStarted += 1
        if !open { await withCheckedContinuation { waiting.append($0) } }
        try await inner.commit(mutations)
    }

    func openGate() {
        open = true
        for continuation in waiting { continuation.resume() }
        waiting = []
    }
}

extension ClusterSuites {
    @Suite("PaxosPeer shell", .serialized)
    struct PaxosPeerTests {
        @Test("no vote leaves a peer before its commit returns")
        func noReplyBeforeCommit() async throws {
            let gated = [GatedStore(), GatedStore()]
            let cluster = try await LabCluster(3, seed: 3) { index in
                index == 0 ? InMemoryStore() as any AcceptorStore : gated[index - 1]
            }
            defer { Task { await cluster.cleanup() } }
            await cluster[0]!.start(0, .text("v"))
            // Peers 1 and 2 received the prepare (their commits started) but cannot answer yet, and
            // peer 0 alone is not a majority.
            for store in gated {
                while await store.commitsStarted == 0 { try await Task.sleep(for: .milliseconds(5)) }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(await cluster[0]!.status(0) == .pending)
            #expect(try await cluster.ndecided(0) == 0)
            for store in gated { await store.openGate() }
            try await cluster.waitn(0, 3)
        }

        @Test("status reports a decision only once it is durable here")
        func statusWaitsForCommit() async throws {
            let gated = GatedStore()
            let cluster = try await LabCluster(3, seed: 5) { index in
                index == 2 ? gated as any AcceptorStore : InMemoryStore()
            }
            defer { Task { await cluster.cleanup() } }
            await cluster[0]!.start(0, .text("v"))
            // Peers 0 and 1 decide without peer 2, whose first commit (the prepare) never returns;
            // the accept and the decision reach its core behind it.
            for index in 0..<2 {
                while await cluster[index]!.status(0) == .pending {
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(await cluster[2]!.status(0) == .pending, "a decision not yet on disk was reported")
            await gated.openGate()
            try await cluster.waitn(0, 3)
            #expect(await cluster[2]!.status(0) == .decided(.text("v")))
        }

        @Test("done returns only once it is durable")
        func doneWaitsForCommit() async throws {
            let gated = GatedStore()
            let cluster = try await LabCluster(1, seed: 8) { _ in gated }
            defer { Task { await cluster.cleanup() } }
            let peer = cluster[0]!
            let finished = Mutex(false)
            let call = Task {
                await peer.done(3)
                finished.withLock { $0 = true }
            }
            while await gated.commitsStarted == 0 { try await Task.sleep(for: .milliseconds(5)) }
            try await Task.sleep(for: .milliseconds(200))
            #expect(finished.withLock { $0 } == false, "done returned before its commit")
            await gated.openGate()
            await call.value
            #expect(finished.withLock { $0 })
            #expect(await peer.min() == 4)
        }

        @Test("a peer whose commit failed never votes again, and the others still decide")
        func failedCommitIsCrashStop() async throws {
            let failing = InMemoryStore()
            let cluster = try await LabCluster(3, seed: 4) { index in
                index == 1 ? failing : InMemoryStore() as any AcceptorStore
            }
            defer { Task { await cluster.cleanup() } }
            // Peer 1's first commit holding an accept fails.
            await failing.failNextCommit(matching: { batch in
                batch.contains { if case .accept = $0 { true } else { false } }
            })
            // Peer 0 can reach only peer 1, so it has a majority only with peer 1's vote. Peer 1
            // promises (durably), then its accept fails to commit: if it answered anyway (from
            // state not on disk), peer 0 would decide inside this partition.
            cluster.part([0, 1], [2])
            await cluster[0]!.start(0, .text("v"))
            try await eventually("peer 1 stops after its failed commit") { await cluster[1]!.failure != nil }
            #expect(await cluster[1]!.failure?.contains("injected commit failure") == true)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await cluster.ndecided(0) == 0, "peer 1 voted after its commit failed")
            #expect(await failing.snapshot.instances[0]?.accepted == nil)
            #expect(await cluster[1]!.isServing == false)
            // With peer 2 back, peers 0 and 2 decide without peer 1, which takes no part.
            cluster.part([0, 1, 2])
            try await cluster.waitn(0, 2)
            let before = cluster.network.rpcCount(1)
            await cluster[2]!.start(1, .text("w"))
            try await cluster.waitn(1, 2)
            #expect(cluster.network.rpcCount(1) > before, "requests still reach it")
            #expect(await cluster[1]!.status(1) == .pending, "but it takes no part")
            #expect(await failing.snapshot.instances[1] == nil)
        }

        /// Polls `condition` every 10 ms for up to 30 s.
        func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
            for _ in 0..<3000 {
                if try await condition() { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            throw LabFailure("timed out: \(what)")
        }

        @Test("a peer re-created on its store after a crash keeps its decisions, promises and rounds")
        func restartOnSameStore() async throws {
            let cluster = try await LabCluster(3, seed: 5)
            defer { Task { await cluster.cleanup() } }
            for seq in 0..<5 {
                await cluster[seq % 3]!.start(seq, .text("v\(seq)"))
                try await cluster.waitn(seq, 3)
            }
            let roundBefore = await cluster[1]!.inspect { $0.maxRound }
            var records: [InstanceRecord?] = []
            for seq in 0..<5 { records.append(await cluster[1]!.inspect { $0.record(seq) }) }
            await cluster.crash(1)
            let restarted = try await cluster.make(1)
            for seq in 0..<5 {
                #expect(await restarted.status(seq) == .decided(.text("v\(seq)")))
                #expect(await restarted.inspect { $0.record(seq) } == records[seq])
            }
            #expect(await restarted.inspect { $0.maxRound } >= roundBefore)
            await restarted.start(5, .text("after"))
            try await cluster.waitn(5, 3)
        }

        @Test("a decided, quiet cluster sends nothing")
        func noIdleChatter() async throws {
            let cluster = try await LabCluster(3, seed: 6)
            defer { Task { await cluster.cleanup() } }
            for seq in 0..<3 {
                await cluster[0]!.start(seq, .text("v"))
                try await cluster.waitn(seq, 3)
            }
            try await cluster.waitQuiet()
            let count = cluster.network.totalRPCCount
            try await Task.sleep(for: .seconds(1))
            #expect(cluster.network.totalRPCCount == count)
        }

        @Test("concurrent inputs share commits (group commit)")
        func groupCommit() async throws {
            let gated = GatedStore()
            let cluster = try await LabCluster(1, seed: 7) { _ in gated }
            defer { Task { await cluster.cleanup() } }
            let peer = cluster[0]!
            // The first start's commit blocks; the next 50 starts pile up behind it.
            for seq in 0..<51 { await peer.start(seq, .text("v\(seq)")) }
            await gated.openGate()
            try await cluster.waitn(50, 1)
            for seq in 0..<51 { try await cluster.waitn(seq, 1) }
            let commits = await peer.commits
            #expect(commits < 51, "\(commits) commits for 51 agreements")
        }
    }
}
