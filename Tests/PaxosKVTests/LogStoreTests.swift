import Foundation
import Paxos
import PaxosCore
import PaxosKV
import PaxosSQLite
import PaxosTesting
import Testing

/// A fresh directory under the system temp dir.
struct TempDir {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "swift-paxos-kv-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Random log mutations in an order a replica could produce them.
func randomLogMutations(_ random: inout SplitMix64, count: Int) -> [[LogMutation]] {
    var batches: [[LogMutation]] = []
    var slot = 1
    var round: UInt64 = 0
    for _ in 0..<count {
        var batch: [LogMutation] = []
        for _ in 0..<Int.random(in: 1...5, using: &random) {
            let node = NodeID(UInt32.random(in: 0..<3, using: &random))
            let entry: LogEntry = (0..<Int.random(in: 0...3, using: &random)).map { index in
                Proposal(
                    id: ProposalID(node: node, incarnation: 1, number: UInt64(slot * 10 + index)),
                    command: (0..<Int.random(in: 0...20, using: &random)).map { _ in
                        UInt8.random(in: 0...255, using: &random)
                    })
            }
            switch Int.random(in: 0..<9, using: &random) {
            case 0:
                round += 1
                batch.append(.promise(Ballot(round: round, node: node)))
            case 1:
                round += 1
                batch.append(.maxRound(round))
                batch.append(.ballotUsed(Ballot(round: round, node: node)))
            case 2, 3:
                batch.append(
                    .accept(
                        slot: slot + Int.random(in: 0..<4, using: &random),
                        ballot: Ballot(round: round, node: node), entry: entry))
            case 4:
                batch.append(.choose(slot: slot, entry: entry))
                slot += 1
            case 5:
                let key = MachineKey(
                    space: UInt8.random(in: 0...2, using: &random),
                    key: [UInt8.random(in: 0...9, using: &random)])
                let change: MachineMutation =
                    Bool.random(using: &random) ? .put(key, entry.first?.command ?? []) : .delete(key)
                batch.append(.apply(through: slot - 1, machine: [change]))
            case 6:
                batch.append(.release(below: Swift.max(1, slot - Int.random(in: 0..<5, using: &random))))
            case 7:
                if Int.random(in: 0..<4, using: &random) == 0 {
                    batch.append(
                        .installSnapshot(
                            applied: slot, rows: [MachineKey(space: 1, key: [1]): [UInt8(slot % 256)]]))
                    slot += 1
                }
            default:
                batch.append(.incarnation(UInt64(slot)))
            }
        }
        batches.append(batch)
    }
    return batches
}

@Suite("Log store conformance")
struct LogStoreConformanceTests {
    static let backends = ["memory", "sqlite"]

    func open(_ backend: String, _ dir: TempDir) throws -> any LogStore {
        backend == "memory" ? InMemoryLogStore() : try SQLiteStore(path: dir.path("node.db"))
    }

    @Test("committed batches load back exactly as the model says", arguments: backends)
    func roundTrip(backend: String) async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        var random = SplitMix64(seed: 42)
        let store = try open(backend, dir)
        var model = LogDurableState()
        for batch in randomLogMutations(&random, count: 300) {
            try await store.commitLog(batch)
            for mutation in batch { model.apply(mutation) }
        }
        #expect(try await store.loadLog() == model)
        if backend == "sqlite" {
            await (store as! SQLiteStore).close()
            let reopened = try SQLiteStore(path: dir.path("node.db"))
            #expect(try await reopened.loadLog() == model)
            await reopened.close()
        }
    }

    @Test("a failed commit leaves nothing behind and stops the store")
    func failedCommit() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try SQLiteStore(path: dir.path("node.db"), options: .init(maxPageCount: 40))
        try await store.commitLog([.promise(Ballot(round: 1, node: NodeID(0)))])
        let before = try await store.loadLog()
        let huge = Proposal(
            id: ProposalID(node: NodeID(0), incarnation: 1, number: 1),
            command: Array(repeating: 7, count: 1 << 20))
        await #expect(throws: (any Error).self) {
            try await store.commitLog([
                .maxRound(9), .accept(slot: 1, ballot: Ballot(round: 9, node: NodeID(0)), entry: [huge]),
            ])
        }
        await #expect(throws: (any Error).self) { try await store.commitLog([.maxRound(10)]) }
        await store.close()
        let reopened = try SQLiteStore(path: dir.path("node.db"))
        #expect(try await reopened.loadLog() == before)
        await reopened.close()
    }
}

@Suite("Replicated KV on SQLite", .serialized)
struct KVSQLiteTests {
    @Test("a whole-cluster restart neither skips nor re-applies an entry")
    func restartKeepsAppliedState() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let cluster = try await KVCluster(3) { index in try SQLiteStore(path: dir.path("node\(index).db")) }
        let clerk = cluster.clerk()
        for index in 0..<30 { try await clerk.append("log", "\(index),") }
        let expected = (0..<30).map { "\($0)," }.joined()
        #expect(try await clerk.get("log") == expected)
        for index in 0..<3 { await cluster.kill(index) }
        for index in 0..<3 { try await cluster.start(index) }
        // Applying an append twice, or skipping one, would change the value.
        #expect(try await cluster.clerk().get("log") == expected)
        for index in 0..<3 {
            let applied = await cluster.peer(index)!.inspect { $0.applied }
            let durable = try await cluster.store(index)!.loadLog()
            #expect(durable.applied <= applied)
            #expect(
                KVStateMachine(rows: durable.machine).data[Array("log".utf8)].map {
                    String(decoding: $0, as: UTF8.self)
                } == expected)
        }
        await cluster.shutdown()
    }
}
