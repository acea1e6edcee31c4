import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A task executor that runs its jobs on one NIO event loop: paxos-node runs its replicas and
/// their peer connections under one (and its HTTP server under another), so a frame read from a
/// socket, the runtime actor that takes it and the write of the answer follow one another on one
/// thread, with no hand-off to a sleeping thread between them. Only the store's commits leave it
/// (they block for an fsync), and come back once.
///
/// A job enqueued from the loop's own thread is appended to the loop's queue with no wake-up;
/// from another thread (a store's queue, a timer) it wakes the loop once. The loop must outlive
/// every task that prefers it: NIO drops what is enqueued on a loop that has shut down.
public final class EventLoopExecutor: TaskExecutor {
    /// The loop that runs every job.
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

extension EventLoopExecutor {
    /// Sleeps on the loop's own timer: the sleeper wakes on the loop, with no timer thread
    /// between (Swift's `Task.sleep` fires on a thread of its own, which then wakes the loop).
    /// Throws when the calling task is cancelled, or when the loop has shut down.
    public func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        let scheduled = eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {}
        try await withTaskCancellationHandler {
            try await scheduled.futureResult.get()
        } onCancel: {
            scheduled.cancel()
        }
    }

    /// The clock leader-lease reads are checked against, as time since an arbitrary origin. On
    /// Linux, CLOCK_BOOTTIME: it runs as CLOCK_MONOTONIC, which NIO's deadlines and so
    /// ``sleep(for:)`` are measured on, and on through a suspend of the machine, so it never lags
    /// the ticks slept (a lease read on CLOCK_MONOTONIC would outlive a suspend).
    /// On Darwin, CLOCK_MONOTONIC_RAW, for the same reasons.
    public static func leaseClock() -> Duration {
        var spec = timespec()
        #if os(Linux)
            clock_gettime(CLOCK_BOOTTIME, &spec)
        #else
            // Darwin: NIO's deadlines are mach_absolute_time; this is the same clock, in
            // nanoseconds, never slewed, and running on through sleep (found by review).
            clock_gettime(CLOCK_MONOTONIC_RAW, &spec)
        #endif
        return .seconds(Int64(spec.tv_sec)) + .nanoseconds(Int64(spec.tv_nsec))
    }
}
