import NIOCore
import NIOPosix
import PaxosNIO
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

    final class Outcome: Sendable {
        let result = Mutex<Result<Void, any Error>?>(nil)
    }
}
