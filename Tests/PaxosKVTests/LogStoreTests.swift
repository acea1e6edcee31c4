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

/// A machine for store tests: each command puts itself under a key named by its first byte, or,
/// when empty, deletes the key named by the slot; it answers with the key's old value.
struct EchoMachine: StateMachine {
    func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
        let key = MachineKey(space: 1, key: [proposal.command.first ?? UInt8(truncatingIfNeeded: slot)])
        let old = try rows.value(key) ?? []
        if proposal.command.isEmpty { try rows.delete(key) } else { try rows.put(key, proposal.command) }
        return old
    }

    /// A read of the key named by the command's only byte (its value, empty when absent); `nil`
    /// for any other command, which must go through the log.
    func read<Rows: MachineRows>(_ command: Value, rows: Rows) throws -> Value? {
        guard command.count == 1 else { return nil }
        return try rows.value(MachineKey(space: 1, key: command)) ?? []
    }
}

/// Random log mutations in an order a replica could produce them: applies right after the
/// applied index, snapshots staged in chunks of rising keys from one source at a time and then
/// installed (or abandoned for a new one).
func randomLogMutations(_ random: inout SplitMix64, count: Int) -> [[LogMutation]] {
    var batches: [[LogMutation]] = []
    var slot = 1
    var applied = 0
    var staging: (source: NodeID, token: UInt64, applied: Slot, next: UInt8)?
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
                applied += 1
                batch.append(.apply(slot: applied, entry: entry))
            case 6:
                // A replica releases only what it applied (below applied + 1): the store refuses a
                // log_state past that when it loads it.
                batch.append(
                    .release(
                        below: Swift.max(
                            1, Swift.min(slot, applied + 1) - Int.random(in: 0..<5, using: &random))))
            case 7:
                if staging == nil || Int.random(in: 0..<5, using: &random) == 0 {
                    // A new snapshot, ahead of the applied index or (sometimes) stale.
                    let ahead = applied + Int.random(in: -1...6, using: &random)
                    staging = (NodeID(UInt32.random(in: 0..<3, using: &random)), random.next(), ahead, 0)
                }
                let rows = (0..<Int.random(in: 0...3, using: &random)).map { index -> MachineRow in
                    MachineRow(
                        key: MachineKey(space: 1, key: [staging!.next &+ UInt8(index)]),
                        value: [UInt8.random(in: 0...255, using: &random)])
                }
                batch.append(
                    .stageSnapshot(
                        SnapshotChunk(
                            source: staging!.source, token: staging!.token, applied: staging!.applied,
                            rows: rows,
                            first: staging!.next == 0)))
                staging!.next &+= UInt8(rows.count) + 1
                if Int.random(in: 0..<8, using: &random) == 0 {
                    batch.append(.discardSnapshot)
                    staging = nil
                } else if Int.random(in: 0..<3, using: &random) == 0 {
                    batch.append(.installSnapshot(applied: staging!.applied))
                    applied = Swift.max(applied, staging!.applied)
                    slot = Swift.max(slot, applied + 1)
                    staging = nil
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
        var installed = 0
        for batch in randomLogMutations(&random, count: 300) {
            let before = model.applied
            // Some commits skip their fsync: they must still be atomic, visible and kept by a
            // clean close (only a power loss may take them).
            let outputs = try await store.commitLog(
                batch, machine: EchoMachine(), outputsFor: NodeID(1), durable: random.next() % 3 != 0,
                beforeDurable: { _ in })
            var expected: [(ProposalID, Value)] = []
            for mutation in batch {
                expected += try model.apply(mutation, machine: EchoMachine(), outputsFor: NodeID(1))
                if case .installSnapshot = mutation, model.applied > before { installed += 1 }
            }
            #expect(outputs.map(\.0) == expected.map(\.0))
            #expect(outputs.map(\.1) == expected.map(\.1))
            // A read after the commit returned sees it (SQLite: on the reader's own connection).
            let key = UInt8.random(in: 0...255, using: &random)
            let read = try await store.read([key], machine: EchoMachine())
            #expect(read == (model.machine[MachineKey(space: 1, key: [key])] ?? []), "key \(key)")
        }
        #expect(try await store.read([], machine: EchoMachine()) == nil)
        #expect(try await store.read([1], machine: NoStateMachine()) == nil, "the default reads nothing")
        #expect(installed > 5, "the generator installs snapshots")
        #expect(try await store.loadLog().withoutRows == model.withoutRows)
        #expect(try await store.machineRows() == model.machine)
        // What a metrics scrape counts (the sessions held), per space, empty ones included.
        let spaces = Set(model.machine.keys.map(\.space)).union([0, 2, 255])
        for space in spaces {
            let expected = model.machine.keys.count(where: { $0.space == space })
            #expect(try await store.machineRowCount(in: space) == expected, "space \(space)")
        }
        #expect(model.machine.keys.contains { $0.space == 1 }, "the machine wrote rows")
        if backend == "sqlite" {
            await (store as! SQLiteStore).close()
            await #expect(throws: SQLiteError.self) { try await store.read([1], machine: EchoMachine()) }
            let reopened = try SQLiteStore(path: dir.path("node.db"))
            #expect(try await reopened.loadLog() == model.withoutRows)
            #expect(try await reopened.machineRows() == model.machine)
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
            let durable = try await cluster.store(index)!.loadLog()
            // The store applies only what the replica handed out, in order.
            let handedOut = await cluster.peer(index)!.inspect { $0.handedOut }
            #expect(durable.applied <= handedOut)
            #expect(
                MemoryMachine(KVStateMachine(), rows: try await cluster.store(index)!.machineRows()).data[
                    Array("log".utf8)
                ].map {
                    String(decoding: $0, as: UTF8.self)
                } == expected)
        }
        await cluster.shutdown()
    }
}
