/// Tuning of a ``LogReplica``. Time is in ticks; the driver decides how long a tick is.
public struct LogConfiguration: Hashable, Sendable {
    /// A follower that hears no leader for a random number of ticks in
    /// `electionTicks..<2*electionTicks` campaigns. Acceptors also refuse to depose a leader they
    /// heard from within `electionTicks` (leader stickiness: a node that was cut off cannot
    /// disrupt a healthy leader when it comes back).
    public var electionTicks = 30
    /// A leader sends a heartbeat (an empty accept carrying its first unchosen slot) this often.
    public var heartbeatTicks = 3
    /// A leader resends an accept to a peer that has not voted after this many ticks.
    public var resendTicks = 20
    /// Slots a leader may have proposed but not yet seen chosen (pipelining bound).
    public var maxSlotsInFlight = 4
    /// While a slot is in flight, a leader opens another one only for at least this many queued
    /// proposals. Every slot costs each replica a commit (an fsync), so under moderate load it is
    /// cheaper to let commands gather behind the slot in flight and share the next one; under
    /// heavy load full batches still pipeline up to ``maxSlotsInFlight``. 1: pipeline at once.
    public var minPipelinedBatch = 64
    /// Proposals per slot (batching bound).
    public var maxProposalsPerSlot = 512
    /// Command bytes per slot (batching bound).
    public var maxBytesPerSlot = 1 << 20
    /// Proposals a leader queues, or a follower holds while no leader is known.
    public var maxQueuedProposals = 20_000
    /// A proposal that finds no leader for this many ticks fails (it never entered the log).
    public var noLeaderTicks = 200
    /// Entries per catch-up answer.
    public var fetchLimit = 256
    /// A replica keeps at most this many applied entries for peers that lag; a peer that falls
    /// further behind catches up from a snapshot of the state machine.
    public var retainEntries = 10_000
    /// A replica keeps at most this many bytes of applied entries (as `LogReplica.wireSize` counts
    /// them), whatever their count: the retained log lives in memory and is read at start-up.
    public var retainBytes = 64 << 20
    /// Bytes of rows per snapshot chunk a replica sends, as the wire counts them (9 bytes per row,
    /// its key and its value); a chunk ends with the row that reaches this, so it exceeds it by
    /// one row at most.
    public var snapshotChunkBytes = 1 << 20
    /// A learner is promoted only when it has applied at least up to this many slots behind the
    /// leader (``LogReplica/changeMembership(_:)``).
    public var promoteLag = 256
    /// Applied entries are released in chunks of at least this many slots.
    public var releaseChunk = 16

    /// A leader steps down when none of its own votes (each durable only once its commit
    /// returns) has come back for this many ticks while some are due: its disk hangs, and its
    /// heartbeats must not keep followers from electing a working leader. Well above one
    /// commit's latency under load, so a slow disk keeps its leader.
    public var commitStallTicks = 60
    /// The most bytes a replica puts in one message it builds from many items (accepts, catch-up
    /// answers, forwarded proposals): it splits what does not fit into several messages. Keep it
    /// well below the transport's frame limit; one item larger than this still goes alone, so it
    /// must also exceed ``maxBytesPerSlot`` and the largest command by a margin.
    public var maxMessageBytes = 8 << 20
    /// Proposals in one forward message (a second bound beside ``maxMessageBytes``).
    public var maxProposalsPerForward = 4096

    /// Leader-lease reads (off: 0). A leader that a majority of its voters confirmed in a round
    /// it started at tick `s` answers linearizable reads without another round until its clock
    /// reaches `s + leaseTicks`; each acceptor that confirmed refuses, for ``electionTicks`` of
    /// its own ticks from receiving the confirmation, to promise any other node's ballot (and a
    /// replica refuses every ballot for ``electionTicks`` after it starts, since it may have
    /// confirmed one before a crash). Every replica of a cluster must run with the same tick length
    /// and ``electionTicks``. A replica restarted with leases turned off must still refuse after
    /// it starts: set ``refuseBallotsAfterStart`` in every run of a data directory that may ever
    /// have run with leases (paxos-node always does).
    ///
    /// The clock argument (a lease is only as safe as it):
    /// - an acceptor's ticks never run ahead of real time: each follows a full sleep of one tick
    ///   length after the one before, so its refusal lasts at least `electionTicks - 1` tick
    ///   lengths of its clock from the moment it received the confirmation;
    /// - the leader measures its lease from the tick the round started, which is no later than
    ///   when any confirmation request left, and checks it against its clock's reading at the
    ///   read (``LogReplica/read(clock:)``), never against its tick count, which lags behind
    ///   real time when the process stalls;
    /// - so a lease holds while `leaseTicks × (1 + ρ) ≤ (electionTicks − 1) × (1 − ρ)`, where ρ
    ///   bounds how far each node's monotonic clock runs fast or slow against real time. At most
    ///   ``maxLeaseTicks(electionTicks:)`` is allowed: 90% of `electionTicks − 1`, which
    ///   tolerates ρ up to 5%, fifty times what NTP may slew a clock (500 ppm) and far beyond a
    ///   crystal's drift. A clock that jumps or a VM that runs its clock faster than that breaks
    ///   leases; read-index reads (the default) do not depend on clocks at all.
    public var leaseTicks = 0

    /// Whether a replica refuses every ballot (other nodes' prepares and pre-votes, and its own
    /// campaign) for ``electionTicks`` after it starts, with leases off too. With leases on it
    /// always does: it may have granted a lease just before it stopped, and remembers nothing of
    /// it. A node restarted with leases turned off may have granted one in its previous run all
    /// the same, so `paxos-node` sets this whatever its flags; it costs a restarted node's vote
    /// for one election timeout.
    public var refuseBallotsAfterStart = false

    /// The longest lease the clock argument of ``leaseTicks`` allows for `electionTicks`.
    public static func maxLeaseTicks(electionTicks: Int) -> Int {
        Swift.max(0, (electionTicks - 1) * 9 / 10)
    }

    /// Whether leader-lease reads are on.
    public var leaseReads: Bool { leaseTicks > 0 }

    public init() {}
}
