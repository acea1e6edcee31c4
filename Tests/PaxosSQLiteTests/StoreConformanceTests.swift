import Foundation
import PaxosCore
import Testing

@testable import PaxosSQLite

/// One suite for every AcceptorStore: each backend must behave as `DurableState.apply` says.
@Suite("Store conformance")
struct StoreConformanceTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case memory, sqlite
        var testDescription: String { rawValue }
    }

    /// A backend under test: `open` gives a store on the same backing data each time.
    final class Harness: @unchecked Sendable {
        let backend: Backend
        let dir: TempDir
        let memory = InMemoryStore()
        var open: [SQLiteStore] = []

        init(_ backend: Backend) throws {
            self.backend = backend
            self.dir = try TempDir()
        }

        func store() throws -> any AcceptorStore {
            switch backend {
            case .memory: return memory
            case .sqlite:
                let store = try SQLiteStore(path: dir.path("node.db"))
                open.append(store)
                return store
            }
        }

        func close(_ store: any AcceptorStore) async {
            if let store = store as? SQLiteStore { await store.close() }
        }

        /// Makes the next commit of `store` fail part-way, through the backend's real failure path.
        func breakNextCommit(_ store: any AcceptorStore) async throws -> any AcceptorStore {
            switch backend {
            case .memory:
                await memory.failNextCommit()
                return store
            case .sqlite:
                // A store limited to its current size: the next batch hits "database or disk is full".
                let pages = try sqlite(dir.path("node.db"), "PRAGMA page_count")[0][0]
                await close(store)
                let limited = try SQLiteStore(
                    path: dir.path("node.db"), options: .init(maxPageCount: Int(pages)! + 1))
                open.append(limited)
                return limited
            }
        }

        deinit { dir.remove() }
    }

    /// Commits seeded random batches and returns what the model says the store must now hold.
    func commitRandomBatches(to store: any AcceptorStore, seed: UInt64, count: Int) async throws
        -> DurableState
    {
        var model = DurableState()
        for batch in randomBatches(seed: seed, count: count) {
            try await store.commit(batch)
            for mutation in batch { model.apply(mutation) }
        }
        return model
    }

    @Test("committed batches load back exactly as the model applies them", arguments: Backend.allCases)
    func roundTrip(backend: Backend) async throws {
        let harness = try Harness(backend)
        let store = try harness.store()
        let model = try await commitRandomBatches(to: store, seed: 42, count: 300)
        #expect(try await store.load() == model)
        await harness.close(store)
    }

    @Test("a batch that fails leaves nothing of itself behind", arguments: Backend.allCases)
    func failedBatchIsAtomic(backend: Backend) async throws {
        let harness = try Harness(backend)
        var store = try harness.store()
        let model = try await commitRandomBatches(to: store, seed: 7, count: 50)
        store = try await harness.breakNextCommit(store)
        let big = Array(repeating: UInt8(7), count: 256 * 1024)
        await #expect(throws: (any Error).self) {
            try await store.commit([
                .maxRound(999), .promise(seq: 500, ballot: Ballot(round: 999, node: 1)),
                .accept(seq: 501, ballot: Ballot(round: 999, node: 1), value: big),
            ])
        }
        await harness.close(store)
        let reopened = backend == .memory ? store : try harness.store()
        #expect(try await reopened.load() == model)
        await harness.close(reopened)
    }

    @Test("a store reopened after close holds every committed batch", arguments: Backend.allCases)
    func reopenAfterClose(backend: Backend) async throws {
        let harness = try Harness(backend)
        let store = try harness.store()
        let model = try await commitRandomBatches(to: store, seed: 9, count: 100)
        await harness.close(store)
        let reopened = try harness.store()
        #expect(try await reopened.load() == model)
        await harness.close(reopened)
    }

    @Test(
        "a store reopened without closing the old one (a crash) holds every committed batch",
        arguments: Backend.allCases)
    func reopenAfterCrash(backend: Backend) async throws {
        let harness = try Harness(backend)
        let store = try harness.store()
        let model = try await commitRandomBatches(to: store, seed: 10, count: 100)
        // The old connection is abandoned, not closed.
        let reopened = try harness.store()
        #expect(try await reopened.load() == model)
        await harness.close(reopened)
    }

    @Test(
        "a recovery begun survives a restart; its end records the floor and the round at once; neither goes down",
        arguments: Backend.allCases)
    func recoveryRecord(backend: Backend) async throws {
        let harness = try Harness(backend)
        var store = try harness.store()
        var state = try await store.load()
        #expect(!state.recovering && state.voteFloor == nil, "a new store has no recovery record")
        try await store.commit([.beginRecovery, .decide(seq: 3, value: [3])])
        await harness.close(store)
        store = try harness.store()
        state = try await store.load()
        #expect(state.recovering && state.voteFloor == nil, "a restart in the middle of recovery resumes it")

        try await store.commit([.maxRound(50), .endRecovery(voteFloor: 12, maxRound: 40)])
        await harness.close(store)
        store = try harness.store()
        state = try await store.load()
        #expect(!state.recovering)
        #expect(state.voteFloor == 12)
        #expect(state.maxRound == 50, "the round bound only raises maxRound")

        try await store.commit([.endRecovery(voteFloor: 5, maxRound: 70), .beginRecovery])
        state = try await store.load()
        #expect(state.voteFloor == 12, "the floor never goes down")
        #expect(state.maxRound == 70)
        #expect(!state.recovering, "once a floor is recorded, the node is never recovering again")
        await harness.close(store)
    }

    @Test("a failed batch that ends a recovery leaves the node recovering", arguments: Backend.allCases)
    func failedRecoveryEndIsAtomic(backend: Backend) async throws {
        let harness = try Harness(backend)
        var store = try harness.store()
        try await store.commit([.beginRecovery, .maxRound(4)])
        store = try await harness.breakNextCommit(store)
        let big = Array(repeating: UInt8(7), count: 256 * 1024)
        await #expect(throws: (any Error).self) {
            try await store.commit([
                .endRecovery(voteFloor: 9, maxRound: 99),
                .accept(seq: 501, ballot: Ballot(round: 99, node: 1), value: big),
            ])
        }
        await harness.close(store)
        let reopened = backend == .memory ? store : try harness.store()
        let state = try await reopened.load()
        #expect(state.recovering && state.voteFloor == nil && state.maxRound == 4)
        await harness.close(reopened)
    }
}
