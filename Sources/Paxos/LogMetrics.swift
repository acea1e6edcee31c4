import CoreMetrics
import PaxosCore
import Synchronization

/// What a ``LogPeer`` records as it runs: counters and histograms of swift-metrics, made with
/// an explicit factory (not the process-wide `MetricsSystem`), so that several replicas in one
/// process (the tests) each report their own.
///
/// Gauges that mirror the replica's state (leader, applied index) are not here: whoever serves
/// the metrics reads them from ``LogPeer/inspect(_:)`` when it is scraped.
public final class LogMetrics: Sendable {
    /// Times this replica saw a new leader (none → some, or one → another): etcd's
    /// `etcd_server_leader_changes_seen_total`.
    let leaderChanges: Counter
    /// Commands in slots this replica learned chosen (committed: durable at a majority).
    let proposalsCommitted: Counter
    /// Commands in entries this replica durably applied to its state machine.
    let proposalsApplied: Counter
    /// This replica's own proposals that ended without being applied: certainly failed, or with
    /// an unknown outcome (timed out, stopped).
    let proposalsFailed: Counter
    /// Linearizable reads this replica, as leader, took under its lease: no round of messages.
    let leaseReads: Counter
    /// One store commit (a SQLite transaction with its fsync), as the replica waits for it.
    let commitDuration: CoreMetrics.Timer
    /// Mutations (promises, accepts, chosen marks, applies…) one commit carried: how much group
    /// commit shares an fsync.
    let mutationsPerCommit: Recorder
    /// Snapshots this replica sent to a peer to the last chunk, and installed from a peer.
    let snapshotSends: Counter
    let snapshotReceives: Counter
    private let factory: any MetricsFactory
    /// One round-trip histogram per peer, made once: a follower forwards every client request.
    private let roundTrips = Mutex<[NodeID: CoreMetrics.Timer]>([:])

    /// Metrics recorded through `factory` (swift-prometheus' `PrometheusMetricsFactory` in
    /// `paxos-node`).
    public init(factory: any MetricsFactory) {
        self.factory = factory
        leaderChanges = Counter(label: "paxos_server_leader_changes_seen_total", factory: factory)
        proposalsCommitted = Counter(label: "paxos_server_proposals_committed_total", factory: factory)
        proposalsApplied = Counter(label: "paxos_server_proposals_applied_total", factory: factory)
        proposalsFailed = Counter(label: "paxos_server_proposals_failed_total", factory: factory)
        leaseReads = Counter(label: "paxos_server_lease_reads_total", factory: factory)
        commitDuration = CoreMetrics.Timer(label: Self.commitDurationName, factory: factory)
        mutationsPerCommit = Recorder(label: Self.mutationsPerCommitName, aggregate: true, factory: factory)
        snapshotSends = Counter(label: "paxos_snapshot_sends_total", factory: factory)
        snapshotReceives = Counter(label: "paxos_snapshot_receives_total", factory: factory)
    }

    /// Records nothing (the default for tests and tools that do not serve metrics).
    public static var disabled: LogMetrics { LogMetrics(factory: NOOPMetricsHandler.instance) }

    /// The histogram names whose buckets a factory should set (see ``LogMetrics``'s users).
    public static let commitDurationName = "paxos_disk_commit_duration_seconds"
    public static let mutationsPerCommitName = "paxos_disk_mutations_per_commit"
    public static let peerRoundTripName = "paxos_network_peer_round_trip_time_seconds"

    /// The round trip of log RPCs to `peer` that write nothing there by themselves (see
    /// ``measuresRoundTrip(_:)``).
    func peerRoundTrip(_ peer: NodeID) -> CoreMetrics.Timer {
        roundTrips.withLock { timers in
            if let timer = timers[peer] { return timer }
            let timer = CoreMetrics.Timer(
                label: Self.peerRoundTripName, dimensions: [("peer", "\(peer.rawValue)")], factory: factory)
            timers[peer] = timer
            return timer
        }
    }

    /// Whether `request` writes nothing at the peer by itself, so that its round trip measures
    /// the network and the peer's queue: a heartbeat (an accept without entries), a pre-vote, a
    /// read confirmation or a fetch. (One that arrives while the peer has mutations waiting still waits for their
    /// commit.) An accept with entries or a prepare waits for the peer's fsync, a forward for
    /// the leader's accept of it, a snapshot chunk for a read of the peer's disk.
    static func measuresRoundTrip(_ request: LogRequest) -> Bool {
        switch request {
        case .accept(_, let entries, _, _): entries.isEmpty
        case .preVote, .fetch, .confirm: true
        case .prepare, .forward, .snapshotChunk: false
        }
    }

    /// What the replica was last seen with: its leader and first unchosen slot.
    struct Observed {
        var leader: NodeID?
        var firstUnchosen: Slot
    }

    /// Counts a new leader and the commands of the slots learned chosen since `observed`.
    func observe(_ core: LogReplica, since observed: inout Observed) {
        if core.leader != observed.leader {
            if core.leader != nil { leaderChanges.increment() }
            observed.leader = core.leader
        }
        let now = core.firstUnchosen
        guard now > observed.firstUnchosen else {
            observed.firstUnchosen = Swift.min(observed.firstUnchosen, now)
            return
        }
        var chosen = 0
        if now - observed.firstUnchosen <= core.recordCount {
            for slot in observed.firstUnchosen..<now { chosen += core.records[slot]?.entry.count ?? 0 }
        } else {
            // A jump past the records held (a snapshot installed): count the ones there are.
            for (slot, record) in core.records where slot >= observed.firstUnchosen && slot < now {
                chosen += record.entry.count
            }
        }
        observed.firstUnchosen = now
        if chosen > 0 { proposalsCommitted.increment(by: Int64(chosen)) }
    }

    /// Counts what a successful commit of `mutations` made durable.
    /// `duration` is `nil` for a batch committed without an fsync: the histogram is the fsynced
    /// commits' latency.
    func committed(_ mutations: [LogMutation], duration: Duration?) {
        if let duration { commitDuration.recordNanoseconds(Self.nanoseconds(duration)) }
        mutationsPerCommit.record(mutations.count)
        var applied = 0
        for mutation in mutations {
            switch mutation {
            case .apply(_, let entry): applied += entry.count
            case .installSnapshot: snapshotReceives.increment()
            default: break
            }
        }
        if applied > 0 { proposalsApplied.increment(by: Int64(applied)) }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
