import NIOCore
import NIOPosix
import Paxos
import PaxosCore
import PaxosNIO
import PaxosTesting
import Synchronization
import Testing

@Suite("Event loop executor")
struct EventLoopExecutorTests {
    @Test("a task that prefers it runs on the loop, and wakes there after a sleep on the loop's clock")
    func runsOnTheLoop() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let executor = EventLoopExecutor(group.next())
        let places = try await Task(executorPreference: executor) {
            let before = executor.eventLoop.inEventLoop
            try await executor.sleep(for: .milliseconds(2))
            return [before, executor.eventLoop.inEventLoop]
        }.value
        #expect(places == [true, true])
        try await group.shutdownGracefully()
    }

    @Test(
        "the lease clock never lags the loop's sleeps: each sleep of a tick length moves it a tick length at least"
    )
    func leaseClockKeepsUpWithSleeps() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let executor = EventLoopExecutor(group.next())
        let start = EventLoopExecutor.leaseClock()
        for _ in 0..<20 { try await executor.sleep(for: .milliseconds(3)) }
        // A sleep never ends before its deadline on NIO's clock; the lease clock must not read less.
        #expect(EventLoopExecutor.leaseClock() - start >= .milliseconds(60))
        try await group.shutdownGracefully()
    }

    @Test("a cancelled sleep throws at once: a stopping runtime's tick loop never hangs on one")
    func cancelledSleepEnds() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let executor = EventLoopExecutor(group.next())
        let long = Task(executorPreference: executor) { try await executor.sleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(20))
        long.cancel()
        // Watched from a task of its own, so a sleep that does not end fails this test instead
        // of hanging it.
        let outcome = Outcome()
        Task {
            let result = await long.result
            outcome.result.withLock { $0 = result }
        }
        for _ in 0..<1000 where outcome.result.withLock({ $0 == nil }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        let result = try #require(outcome.result.withLock { $0 }, "a cancelled sleep of an hour still sleeps")
        #expect(throws: (any Error).self) { try result.get() }
        try await group.shutdownGracefully()
    }

    @Test(
        "a replica given the loop as its serial executor runs there whoever calls it; without, it runs where its caller does"
    )
    func replicaRunsOnItsSerialExecutor() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let network = SimulatedNetwork(seed: 5)
        let pinned = try await PaxosPeer.make(
            me: 0, peers: [0], store: InMemoryStore(), transport: network.transport(for: 0),
            serialExecutor: loop.executor)
        let free = try await PaxosPeer.make(
            me: 1, peers: [1], store: InMemoryStore(), transport: network.transport(for: 1))
        // Called from this test's task, which prefers no executor: Swift's pool.
        #expect(await pinned.inspect { _ in loop.inEventLoop })
        #expect(!(await free.inspect { _ in loop.inEventLoop }))
        // It still works as a replica there: a value proposed on the loop is decided.
        await pinned.start(0, .text("on the loop"))
        var status = await pinned.status(0)
        for _ in 0..<500 where status != .decided(.text("on the loop")) {
            try await Task.sleep(for: .milliseconds(10))
            status = await pinned.status(0)
        }
        #expect(status == .decided(.text("on the loop")))
        await pinned.kill()
        await free.kill()
        try await group.shutdownGracefully()
    }

    final class Outcome: Sendable {
        let result = Mutex<Result<Void, any Error>?>(nil)
    }
}
