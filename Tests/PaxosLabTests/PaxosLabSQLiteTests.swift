import Foundation
import Paxos
import PaxosCore
import PaxosSQLite
import PaxosTesting
import Testing

/// A temp directory that removes itself when the last reference goes.
final class ScratchDirectory: Sendable {
    let path: String

    init() throws {
        path =
            FileManager.default.temporaryDirectory.appendingPathComponent(
                "swift-paxos-lab-\(UUID().uuidString)"
            ).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// One SQLite file per peer.
    var stores: LabCluster.StoreFactory {
        { [self] index in try SQLiteStore(path: self.file("peer-\(index).db")) }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

extension ClusterSuites {
    /// The lab suite again, with every peer on its own SQLite file (fsync on every commit).
    @Suite("6.824 Paxos lab (SQLite stores)", .serialized)
    struct PaxosLabSQLiteTests {
        @Test("Out-of-order instances (after Single proposer and Many proposers), SQLite")
        func basic() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.basic(through: .outOfOrder, setup: LabSetup(stores: scratch.stores))
        }

        @Test("Deaf proposer, SQLite") func deaf() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.deaf(setup: LabSetup(stores: scratch.stores))
        }

        @Test("Forgetting, SQLite") func forgetting() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.forget(setup: LabSetup(stores: scratch.stores))
        }

        @Test("Lots of forgetting, SQLite") func lotsOfForgetting() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.manyForget(setup: LabSetup(stores: scratch.stores))
        }

        @Test("Minority proposal ignored, SQLite") func minority() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.old(setup: LabSetup(stores: scratch.stores))
        }

        @Test("Many instances, unreliable RPC, SQLite") func manyUnreliable() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.manyUnreliable(setup: LabSetup(stores: scratch.stores))
        }

        @Test("One peer switches partitions, unreliable (after all partition steps), SQLite")
        func partitions() async throws {
            let scratch = try ScratchDirectory()
            try await LabScenarios.partition(
                through: .oneSwitchesUnreliable, setup: LabSetup(stores: scratch.stores))
        }
    }
}

extension ClusterSuites {
    /// Peers dropped without shutdown and re-created on the same SQLite file.
    @Suite("Restart on SQLite", .serialized)
    struct RestartSQLiteTests {
        func request(_ cluster: LabCluster, from: Int, to: Int, _ request: Request) async throws -> Reply {
            let envelope = RequestEnvelope(from: NodeID(UInt32(from)), done: -1, request: request)
            return try await cluster.network.transport(for: NodeID(UInt32(from))).call(
                envelope, to: NodeID(UInt32(to))
            ).reply
        }

        @Test("a restarted acceptor keeps its promise: a lower prepare is still refused")
        func keepsPromises() async throws {
            let scratch = try ScratchDirectory()
            let cluster = try await LabCluster(3, seed: 31, stores: scratch.stores)
            defer { Task { await cluster.cleanup() } }
            let high = Ballot(round: 10, node: 2)
            #expect(
                try await request(cluster, from: 2, to: 1, .prepare(seq: 0, ballot: high))
                    == .promise(seq: 0, ballot: high, accepted: nil))
            await cluster.crash(1)
            try await cluster.make(1)
            let low = Ballot(round: 5, node: 0)
            #expect(
                try await request(cluster, from: 0, to: 1, .prepare(seq: 0, ballot: low))
                    == .rejected(seq: 0, ballot: low, promised: high))
            #expect(
                try await request(cluster, from: 0, to: 1, .accept(seq: 0, ballot: low, value: [1]))
                    == .rejected(seq: 0, ballot: low, promised: high))
        }

        @Test("a restarted acceptor keeps its accepted value, and a later proposer adopts it")
        func keepsAcceptedValues() async throws {
            let scratch = try ScratchDirectory()
            let cluster = try await LabCluster(3, seed: 32, stores: scratch.stores)
            defer { Task { await cluster.cleanup() } }
            let ballot = Ballot(round: 10, node: 2)
            _ = try await request(cluster, from: 2, to: 1, .prepare(seq: 0, ballot: ballot))
            #expect(
                try await request(cluster, from: 2, to: 1, .accept(seq: 0, ballot: ballot, value: .text("x")))
                    == .accepted(seq: 0, ballot: ballot))
            await cluster.crash(1)
            try await cluster.make(1)
            // Peer 2 (the only other holder of a vote) is cut off: 0 and 1 form the majority, and
            // 1's accepted "x" may already be chosen, so 0 must propose "x", not its own value.
            cluster.part([0, 1], [2])
            await cluster[0]!.start(0, .text("y"))
            try await cluster.waitn(0, 2)
            #expect(await cluster[0]!.status(0) == .decided(.text("x")))
        }

        @Test("a restarted node's next ballot is above every ballot it used before")
        func neverReusesBallots() async throws {
            let scratch = try ScratchDirectory()
            let cluster = try await LabCluster(3, seed: 33, stores: scratch.stores)
            defer { Task { await cluster.cleanup() } }
            for seq in 0..<10 {
                await cluster[1]!.start(seq, .text("v\(seq)"))
                try await cluster.waitn(seq, 3)
            }
            let usedBefore = await cluster[1]!.inspect { $0.maxRound }
            #expect(usedBefore >= 10)
            await cluster.crash(1)
            let restarted = try await cluster.make(1)
            #expect(await restarted.inspect { $0.maxRound } >= usedBefore)
            // Observe the ballot it now sends on the wire: peer 0 promises it, and reports it back
            // when asked with a lower ballot.
            cluster.part([1, 0])
            await restarted.start(10, .text("after"))
            try await cluster.waitn(10, 2)
            let probe = Ballot(round: 1, node: 2)
            cluster.part([0, 1, 2])
            let reply = try await request(cluster, from: 2, to: 0, .prepare(seq: 10, ballot: probe))
            // Decided instances answer with the value, so read the ballot from peer 0's durable record.
            #expect(reply == .decided(seq: 10, value: .text("after")))
            let state = try await SQLiteStore(path: scratch.file("peer-0.db")).load()
            let promised = state.instances[10]?.promised
            #expect(
                promised.map { $0.node == 1 && $0.round > usedBefore } == true,
                "promised \(String(describing: promised))")
        }

        @Test("a peer whose disk is full stops answering; the others still decide")
        func fullDiskPeerStops() async throws {
            let scratch = try ScratchDirectory()
            let cluster = try await LabCluster(3, seed: 34) { index in
                try SQLiteStore(
                    path: scratch.file("peer-\(index).db"),
                    options: .init(maxPageCount: index == 1 ? 40 : nil))
            }
            defer { Task { await cluster.cleanup() } }
            let big = Value(repeating: UInt8(ascii: "b"), count: 400 * 1024)
            await cluster[0]!.start(0, big)
            try await cluster.waitn(0, 2)
            let failure = await cluster[1]!.failure
            #expect(failure?.contains("full") == true, "\(String(describing: failure))")
            #expect(await cluster[1]!.status(0) == .pending)
            // Its file holds nothing it could not commit.
            let state = try await SQLiteStore(path: scratch.file("peer-1.db")).load()
            #expect(state.instances[0]?.accepted == nil && state.instances[0]?.decided == nil)
        }
    }
}
