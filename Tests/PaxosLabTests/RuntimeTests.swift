import Logging
import Paxos
import PaxosCore
import PaxosTesting
import ServiceLifecycle
import Synchronization
import Testing

/// A store whose commits sleep until cancelled, as a store that honours cancellation does.
actor CancellableStore: AcceptorStore {
    private let inner = InMemoryStore()
    private(set) var commitsStarted = 0

    func load() async throws -> DurableState { await inner.load() }

    func commit(_ mutations: [StoreMutation]) async throws {
        commitsStarted += 1
        try await Task.sleep(for: .seconds(60))
        try await inner.commit(mutations)
    }
}

extension ClusterSuites {
    @Suite("ReplicaRuntime", .serialized)
    struct RuntimeTests {
        static let prepare = RequestEnvelope(
            from: 1, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 1)))

        /// A service group that runs only `peer`'s runtime, quietly.
        static func group(running peer: PaxosPeer) -> ServiceGroup {
            ServiceGroup(
                configuration: .init(
                    services: [.init(service: peer.service)],
                    logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
        }

        /// The outcome of `call` if it finishes within 10 s (a hang is the bug); nil if not. Polls
        /// rather than waits, so a call that never returns cannot hang the test.
        func settled(_ call: @escaping @Sendable () async throws -> ReplyEnvelope) async -> Result<
            ReplyEnvelope, any Error
        >? {
            let outcome = Mutex<Result<ReplyEnvelope, any Error>?>(nil)
            Task {
                let result: Result<ReplyEnvelope, any Error>
                do { result = .success(try await call()) } catch { result = .failure(error) }
                outcome.withLock { $0 = result }
            }
            for _ in 0..<1000 {
                if let done = outcome.withLock({ $0 }) { return done }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return nil
        }

        @Test("a peer released without kill answers its waiting and later requests with nothing")
        func releasedPeerAnswersEveryRequest() async throws {
            let network = SimulatedNetwork(seed: 1)
            let gated = GatedStore()
            var peer: PaxosPeer? = try await PaxosPeer.make(
                me: 0, peers: [0, 1], store: gated, transport: network.transport(for: 0))
            #expect(peer?.me == 0)
            let caller = network.transport(for: 1)
            // The prepare's commit never returns: its reply waits for it.
            let waiting = Task { try await caller.call(Self.prepare, to: 0) }
            while await gated.commitsStarted == 0 { try await Task.sleep(for: .milliseconds(5)) }
            peer = nil
            let first = await settled { try await waiting.value }
            #expect(first != nil, "the waiting request was never answered")
            if case .success(let reply)? = first { Issue.record("answered \(reply) from state not on disk") }
            let later = await settled { try await caller.call(Self.prepare, to: 0) }
            #expect(later != nil, "a request after the release was never answered")
            await gated.openGate()
        }

        @Test("a kill while a commit is in flight is a stop, not a failed commit")
        func killDuringCommit() async throws {
            let network = SimulatedNetwork(seed: 2)
            let store = CancellableStore()
            let peer = try await PaxosPeer.make(
                me: 0, peers: [0], store: store, transport: network.transport(for: 0))
            await peer.start(0, .text("v"))
            while await store.commitsStarted == 0 { try await Task.sleep(for: .milliseconds(5)) }
            await peer.kill()
            try await Task.sleep(for: .milliseconds(100))
            #expect(await peer.failure == nil, "a kill was reported as a failed commit")
            #expect(await peer.isServing == false)
        }

        @Test("a stopped peer starts nothing")
        func startAfterKill() async throws {
            let network = SimulatedNetwork(seed: 3)
            let peer = try await PaxosPeer.make(
                me: 0, peers: [0, 1, 2], store: InMemoryStore(), transport: network.transport(for: 0))
            let before = await peer.max()
            await peer.kill()
            await peer.start(7, .text("v"))
            #expect(await peer.max() == before)
            #expect(await peer.status(7) == .pending)
        }

        @Test(
            "run by a service group, a peer serves only once the group runs it, and a graceful shutdown stops it as kill does"
        )
        func serviceGroupRunsAndStopsThePeer() async throws {
            let network = SimulatedNetwork(seed: 4)
            let peer = try await PaxosPeer.make(
                me: 0, peers: [0], store: InMemoryStore(), transport: network.transport(for: 0), start: false)
            await peer.start(1, .text("v"))
            try await Task.sleep(for: .milliseconds(100))
            #expect(await peer.status(1) == .pending, "decided before anything ran the peer")
            let group = Self.group(running: peer)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var decided = false
                for _ in 0..<500 where !decided {
                    decided = await peer.status(1) == .decided(.text("v"))
                    if !decided { try await Task.sleep(for: .milliseconds(10)) }
                }
                #expect(decided, "the group ran the peer, which decided nothing")
                await group.triggerGracefulShutdown()
                // The group ends only once the runtime's run() returned.
                try await tasks.next()
            }
            #expect(await peer.isServing == false)
            #expect(await peer.failure == nil)
            await peer.start(2, .text("w"))
            #expect(await peer.max() == 1, "a peer shut down gracefully went on starting instances")
            await peer.kill()
        }

        @Test("a graceful shutdown while a commit is in flight is a stop, not a failed commit")
        func gracefulShutdownDuringCommit() async throws {
            let network = SimulatedNetwork(seed: 6)
            let store = CancellableStore()
            let peer = try await PaxosPeer.make(
                me: 0, peers: [0], store: store, transport: network.transport(for: 0), start: false)
            let group = Self.group(running: peer)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                await peer.start(0, .text("v"))
                while await store.commitsStarted == 0 { try await Task.sleep(for: .milliseconds(5)) }
                await group.triggerGracefulShutdown()
                try await tasks.next()
            }
            #expect(await peer.failure == nil, "a graceful shutdown was reported as a failed commit")
            #expect(await peer.isServing == false)
            // Stopped already: returns at once.
            await peer.kill()
        }

        @Test("a service group that is cancelled stops the peer it runs")
        func cancelledServiceGroupStopsThePeer() async throws {
            let network = SimulatedNetwork(seed: 5)
            let peer = try await PaxosPeer.make(
                me: 0, peers: [0], store: InMemoryStore(), transport: network.transport(for: 0), start: false)
            let group = Self.group(running: peer)
            let running = Task { try await group.run() }
            try await Task.sleep(for: .milliseconds(50))
            running.cancel()
            _ = await running.result
            #expect(await peer.isServing == false)
        }
    }
}
