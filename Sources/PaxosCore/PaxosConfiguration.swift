/// Timing of a ``PaxosNode``, in ticks. The driver decides how long a tick is.
public struct PaxosConfiguration: Hashable, Sendable {
    /// A phase (prepare or accept) that has not heard from a majority within this many ticks is
    /// abandoned and retried with a higher ballot. Only matters when replies hang; a transport
    /// that fails promptly lets the proposer give up as soon as a majority is out of reach.
    public var phaseTimeoutTicks: UInt64
    /// The upper bound of the randomized backoff between attempts, in ticks.
    public var maxBackoffTicks: UInt64
    /// The upper bound of the randomized delay before retrying a `decided` that did not arrive.
    public var maxAnnounceRetryTicks: UInt64

    public init(
        phaseTimeoutTicks: UInt64 = 100, maxBackoffTicks: UInt64 = 20, maxAnnounceRetryTicks: UInt64 = 30
    ) {
        precondition(phaseTimeoutTicks > 0 && maxBackoffTicks > 0 && maxAnnounceRetryTicks > 0)
        self.phaseTimeoutTicks = phaseTimeoutTicks
        self.maxBackoffTicks = maxBackoffTicks
        self.maxAnnounceRetryTicks = maxAnnounceRetryTicks
    }
}
