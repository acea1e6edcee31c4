import Foundation
import Testing

/// A task executor with one thread of its own, for the long, synchronous simulations.
///
/// Swift Testing runs test cases on the cooperative pool, which has one thread per core. A
/// simulation is seconds of synchronous work: a few of them at once (a parameterized test runs
/// its seeds in parallel) took every thread of the pool on a 2-core CI machine, and the suites
/// that run real replicas in the same process starved — their 5 ms ticks and messages waited for
/// the simulations to end, and a new cluster found no leader within its 20 s (CI, issue 13's
/// stop). Here the simulations run one at a time, on their own thread, and leave the pool free;
/// the thread is SCHED_IDLE, so it takes only the CPU the other suites leave.
final class SimulationThread: TaskExecutor, @unchecked Sendable {
    static let shared = SimulationThread()

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var thread: pthread_t?

    private init() {
        let thread = Thread { [self] in run() }
        thread.name = "simulations"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The thread's scheduling policy (5: SCHED_IDLE), for the test below.
    var policy: Int32 {
        condition.lock()
        let thread = self.thread
        condition.unlock()
        var policy: Int32 = -1
        var parameters = sched_param()
        if let thread { _ = pthread_getschedparam(thread, &policy, &parameters) }
        return policy
    }

    /// Whether the caller runs on this executor's thread.
    var isCurrent: Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
    }

    private func run() {
        // SCHED_IDLE (5 on Linux; Glibc's module does not export the name): the simulations take
        // only the CPU that nothing else wants. One more busy thread beside the pool's two made
        // the timing-bound suites (TLS handshakes, HTTP timeouts) fail on 2 cores.
        var parameters = sched_param()
        parameters.sched_priority = 0
        _ = pthread_setschedparam(pthread_self(), 5, &parameters)
        condition.lock()
        thread = pthread_self()
        condition.unlock()
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs `body` (a simulation) on ``SimulationThread``: one simulation at a time in the whole test
/// process, never on the cooperative pool.
func simulating<T>(_ body: () throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(SimulationThread.shared) {
        // The preference applies from the first suspension on: hop there before the work starts.
        await Task.yield()
        return try body()
    }
}

@Suite("Test support")
struct SimulationThreadTests {
    @Test("simulations run on their own thread at SCHED_IDLE, off the cooperative pool")
    func simulationsRunOnTheirThread() async {
        let onThread = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 { group.addTask { await simulating { SimulationThread.shared.isCurrent } } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(onThread == Array(repeating: true, count: 4))
        #expect(!SimulationThread.shared.isCurrent)
        #expect(SimulationThread.shared.policy == 5, "the simulations run at SCHED_IDLE")
    }
}
