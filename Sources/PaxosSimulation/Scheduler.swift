import PaxosCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The simulation's one thread of execution and its virtual clock.
///
/// Every task of a simulated run prefers this executor, so every job of every task (the
/// replicas' runtimes, their stores, the clients, the nemesis) lands in one queue here. The
/// thread that calls ``run(until:maxSteps:)`` runs them one at a time, picking the next at
/// random with the run's seeded generator: any order is one Swift's concurrency allows, and the
/// same seed picks the same order.
///
/// Time moves only when no job is ready: the clock jumps to the earliest timer (a sleeper, a
/// message arriving, a call timing out). So the CPU is infinitely fast and everything that takes
/// time (ticks, latency, fsyncs) is a timer: one seed gives one exact run, whatever the machine.
public final class Scheduler: TaskExecutor, @unchecked Sendable {
    private enum Fire {
        case resume(UInt64)
        case action(@Sendable () -> Void)
    }

    private struct Timer {
        var deadline: UInt64
        var sequence: UInt64
        var fire: Fire

        func precedes(_ other: Timer) -> Bool {
            (deadline, sequence) < (other.deadline, other.sequence)
        }
    }

    private struct State {
        var ready: [UnownedJob] = []
        var now: UInt64 = 0
        var timers: [Timer] = []
        var sequence: UInt64 = 0
        var sleepers: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        var random: SplitMix64
        var steps = 0
        /// Jobs enqueued from a thread other than the one that creates the scheduler and runs
        /// it: work that escaped it (to the global executor, a real timer, a NIO thread), which
        /// makes a run unrepeatable.
        var escaped = 0
    }

    // Jobs are enqueued only by the thread that runs them (a continuation resumed, a task
    // created): the lock guards against a task that escaped to another executor by mistake.
    private let state: Mutex<State>

    private let thread = pthread_self()

    /// Whether this process iterates dictionaries in a fixed order (SWIFT_DETERMINISTIC_HASHING
    /// set when it started): without it, a seed repeats no run exactly.
    public static var hashingIsDeterministic: Bool {
        guard let value = getenv("SWIFT_DETERMINISTIC_HASHING") else { return false }
        return ["1", "true", "TRUE", "yes"].contains(String(cString: value))
    }

    /// Made on the thread that will call ``run(until:maxSteps:)``.
    public init(seed: UInt64) { state = Mutex(State(random: SplitMix64(seed: seed))) }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let foreign = pthread_equal(thread, pthread_self()) == 0
        state.withLock { state in
            state.ready.append(job)
            if foreign { state.escaped += 1 }
        }
    }

    /// Whether no job is ready and no timer set: nothing inside the simulation can move.
    public var isIdle: Bool { state.withLock { $0.ready.isEmpty && $0.timers.isEmpty } }

    /// Jobs that reached the scheduler from another thread (none in a repeatable run).
    public var escaped: Int { state.withLock { $0.escaped } }

    /// Virtual nanoseconds since the run began.
    public var now: UInt64 { state.withLock { $0.now } }

    /// Jobs run and timers fired so far.
    public var steps: Int { state.withLock { $0.steps } }

    /// A number drawn from the run's generator, in `range`.
    public func random(in range: ClosedRange<UInt64>) -> UInt64 {
        state.withLock { UInt64.random(in: range, using: &$0.random) }
    }

    /// True with probability `probability`.
    public func chance(_ probability: Double) -> Bool {
        guard probability > 0 else { return false }
        return state.withLock { Double.random(in: 0..<1, using: &$0.random) } < probability
    }

    /// Runs `action` on the scheduler's thread `delay` from now.
    public func after(_ delay: Duration, _ action: @escaping @Sendable () -> Void) {
        state.withLock { state in
            Self.push(
                &state, Timer(deadline: state.now + delay.nanoseconds, sequence: 0, fire: .action(action)))
        }
    }

    /// Suspends the calling task for `duration` of virtual time; throws if it is cancelled.
    public func sleep(_ duration: Duration) async throws {
        let id = state.withLock { state in
            state.sequence += 1
            return state.sequence
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                state.withLock { state in
                    state.sleepers[id] = continuation
                    Self.push(
                        &state,
                        Timer(deadline: state.now + duration.nanoseconds, sequence: 0, fire: .resume(id)))
                }
            }
        } onCancel: {
            state.withLock { $0.sleepers.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }

    /// Runs ready jobs, and fires timers when none is, until `done` holds, nothing is left to
    /// run, or `maxSteps` more steps ran; calls `between` after every job (the simulation
    /// crashes nodes there). Returns whether `done` holds.
    @discardableResult
    public func run(until done: () -> Bool, maxSteps: Int, between: () -> Void = {}) -> Bool {
        var left = maxSteps
        while left > 0 {
            if done() { return true }
            left -= 1
            if let job = takeJob() {
                job.runSynchronously(on: asUnownedTaskExecutor())
                between()
                continue
            }
            guard let fire = popTimer() else { break }
            switch fire {
            case .resume(let id):
                state.withLock { $0.sleepers.removeValue(forKey: id) }?.resume()
            case .action(let action):
                action()
            }
        }
        return done()
    }

    /// Ends a run: wakes every sleeper (cancelled), runs what that wakes until nothing is ready,
    /// and drops the timers left (messages in flight), whose closures would otherwise keep the
    /// world alive.
    public func finish() {
        for _ in 0..<1_000 {
            let sleepers = state.withLock { state in
                defer { state.sleepers = [:] }
                return state.sleepers
            }
            for (_, sleeper) in sleepers.sorted(by: { $0.key < $1.key }) {
                sleeper.resume(throwing: CancellationError())
            }
            while let job = takeJob() { job.runSynchronously(on: asUnownedTaskExecutor()) }
            if state.withLock({ $0.sleepers.isEmpty && $0.ready.isEmpty }) { break }
        }
        state.withLock { $0.timers = [] }
    }

    private func takeJob() -> UnownedJob? {
        state.withLock { state in
            guard !state.ready.isEmpty else { return nil }
            state.steps += 1
            let index = Int.random(in: 0..<state.ready.count, using: &state.random)
            state.ready.swapAt(index, state.ready.count - 1)
            return state.ready.removeLast()
        }
    }

    private func popTimer() -> Fire? {
        state.withLock { state in
            guard !state.timers.isEmpty else { return nil }
            state.steps += 1
            let first = state.timers[0]
            let last = state.timers.removeLast()
            if !state.timers.isEmpty {
                state.timers[0] = last
                Self.siftDown(&state.timers, from: 0)
            }
            state.now = Swift.max(state.now, first.deadline)
            return first.fire
        }
    }

    // A binary min-heap on (deadline, sequence): timers due at the same instant fire in the
    // order they were set.
    private static func push(_ state: inout State, _ timer: Timer) {
        var timer = timer
        state.sequence += 1
        timer.sequence = state.sequence
        state.timers.append(timer)
        var child = state.timers.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard state.timers[child].precedes(state.timers[parent]) else { break }
            state.timers.swapAt(child, parent)
            child = parent
        }
    }

    private static func siftDown(_ heap: inout [Timer], from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < heap.count, heap[left].precedes(heap[first]) { first = left }
            if right < heap.count, heap[right].precedes(heap[first]) { first = right }
            guard first != parent else { return }
            heap.swapAt(parent, first)
            parent = first
        }
    }
}

extension Duration {
    /// Whole nanoseconds (negative durations count as zero).
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}
