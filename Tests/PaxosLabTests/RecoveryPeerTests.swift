import Foundation
import Paxos
import PaxosCore
import PaxosSQLite
import PaxosTesting
import Testing

extension ClusterSuites {
    /// `PaxosPeer.make(..., recover: true)`: peers that lost their disk, and new clusters.
    @Suite("Recovery of a lost disk (PaxosPeer)", .serialized)
    struct RecoveryPeerTests {
        func request(_ cluster: LabCluster, from: Int, to: Int, _ request: Request) async throws -> Reply {
            let envelope = RequestEnvelope(from: NodeID(UInt32(from)), done: -1, request: request)
            return try await cluster.network.transport(for: NodeID(UInt32(from))).call(
                envelope, to: NodeID(UInt32(to))
            ).reply
        }

        /// Polls `condition` every 10 ms for up to 30 s.
        func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
            for _ in 0..<3000 {
                if try await condition() { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            throw LabFailure("timed out: \(what)")
        }

        @Test(
            "a peer that lost its disk votes only once every other peer answered, never below their instances"
        )
        func lostDiskPeer() async throws {
            let cluster = try await LabCluster(3, seed: 41)
            defer { Task { await cluster.cleanup() } }
            // Instance 0 chosen by {1, 2}; peer 0 never hears of it.
            cluster.part([1, 2], [0])
            await cluster[1]!.start(0, .text("A"))
            try await cluster.waitn(0, 2)
            await cluster.crash(1)
            cluster.dropStore(1)
            // {0, 1} is a majority, and peer 2 (the other holder of A) is away.
            cluster.part([0, 1], [2])
            let peer = try await cluster.make(1, recover: true)
            let store = try #require(cluster.store(1) as? InMemoryStore)
            #expect(await store.snapshot.recovering, "the mark is durable before make returns")
            #expect(await peer.inspect { $0.isRecovering })
            await cluster[0]!.start(0, .text("B"))
            let probe = Ballot(round: 50, node: 0)
            #expect(
                try await request(cluster, from: 0, to: 1, .prepare(seq: 7, ballot: probe))
                    == .refused(seq: 7, ballot: probe))
            try await Task.sleep(for: .seconds(1))
            // Peer 0 may have learned A from an announcement the old peer 1 still had in flight;
            // it must not have chosen B with the new peer 1's vote. (ndecided throws on two values.)
            #expect(await cluster[0]!.status(0) != .decided(.text("B")), "{0, 1} chose B without peer 2")
            _ = try await cluster.ndecided(0)
            #expect(await store.snapshot.instances.values.allSatisfy { $0.promised == nil })
            // Peer 2 back: peer 1 finishes; proposing below its floor (its own acceptor refuses)
            // it learns A, as everyone has.
            cluster.part([0, 1, 2])
            try await eventually("peer 1 recovered") { await !peer.inspect { $0.isRecovering } }
            #expect(await peer.inspect { $0.voteFloor } == 1)
            await peer.start(0, .text("late"))
            try await cluster.waitn(0, 3)
            for index in 0..<3 { #expect(await cluster[index]!.status(0) == .decided(.text("A"))) }
            // The core stops recovering when it emits `endRecovery`, before the peer committed it.
            try await eventually("the end of the recovery is in the store") {
                await store.snapshot.voteFloor != nil
            }
            let recovered = await store.snapshot
            #expect(recovered.voteFloor == 1 && !recovered.recovering)
            await peer.start(1, .text("C"))
            try await cluster.waitn(1, 3)
            // A recovered store stays recovered: recover: true again changes nothing.
            await cluster.crash(1)
            let again = try await cluster.make(1, recover: true)
            #expect(await !again.inspect { $0.isRecovering })
            #expect(await again.inspect { $0.voteFloor } == 1)
            #expect(
                try await request(cluster, from: 0, to: 1, .prepare(seq: 9, ballot: probe))
                    != .refused(seq: 9, ballot: probe))
        }

        @Test("a new cluster whose peers all start with recover: true decides once every peer is up")
        func freshCluster() async throws {
            let cluster = try await LabCluster(3, seed: 42, make: false)
            defer { Task { await cluster.cleanup() } }
            for index in 0..<2 { try await cluster.make(index, recover: true) }
            await cluster[0]!.start(0, .text("v"))
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await cluster.ndecided(0) == 0, "decided before every peer was up")
            try await cluster.make(2, recover: true)
            try await cluster.waitn(0, 3)
            for index in 0..<3 {
                #expect(await !cluster[index]!.inspect { $0.isRecovering })
                #expect(await cluster[index]!.inspect { $0.voteFloor } == 0)
            }
            for seq in 1..<4 {
                await cluster[seq % 3]!.start(seq, .text("v\(seq)"))
                try await cluster.waitn(seq, 3)
            }
        }

        @Test("a peer whose database was deleted recovers on SQLite, and a crash in the middle resumes it")
        func wipedDatabase() async throws {
            let scratch = try ScratchDirectory()
            let cluster = try await LabCluster(3, seed: 43, stores: scratch.stores)
            defer { Task { await cluster.cleanup() } }
            cluster.part([1, 2], [0])
            for seq in 0..<3 {
                await cluster[1]!.start(seq, .text("A\(seq)"))
                try await cluster.waitn(seq, 2)
            }
            await cluster.crash(1)
            cluster.dropStore(1)
            let file = scratch.file("peer-1.db")
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
            // Peer 2 away, so the recovery cannot finish.
            cluster.part([0, 1], [2])
            try await cluster.make(1, recover: true)
            let marked = try SQLiteStore(path: file)
            #expect(try await marked.load().recovering, "the mark is on disk before make returns")
            await marked.close()
            try await Task.sleep(for: .milliseconds(300))
            // A crash in the middle; the store exists now, so it is opened as any existing one.
            await cluster.crash(1)
            cluster.dropStore(1)
            let resumed = try await cluster.make(1)
            #expect(await resumed.inspect { $0.isRecovering })
            await cluster[0]!.start(0, .text("B"))
            try await Task.sleep(for: .seconds(1))
            #expect(
                await cluster[0]!.status(0) != .decided(.text("B")), "{0, 1} chose B while peer 1 recovered")
            _ = try await cluster.ndecided(0)
            cluster.part([0, 1, 2])
            try await eventually("peer 1 recovered") { await !resumed.inspect { $0.isRecovering } }
            await resumed.start(0, .text("late"))
            try await cluster.waitn(0, 3)
            #expect(await cluster[0]!.status(0) == .decided(.text("A0")))
            // The core stops recovering when it emits `endRecovery`; the peer commits it a moment
            // later (nothing is released before). Peer 1 may have learned instance 0 while still
            // recovering, in an earlier batch, so neither wait above implies that commit: wait for
            // the floor to be on disk, then check it is exactly the one the recovery set.
            let state = try SQLiteStore(path: file)
            var loaded = try await state.load()
            try await eventually("the end of the recovery is on disk") {
                loaded = try await state.load()
                return loaded.voteFloor != nil
            }
            #expect(loaded.voteFloor == 3 && !loaded.recovering, "\(String(describing: loaded.voteFloor))")
            await state.close()
        }
    }
}
