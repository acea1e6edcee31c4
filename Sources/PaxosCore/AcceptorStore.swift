/// One change to durable state. A ``Ready`` lists them; the driver commits them as one atomic,
/// durable batch before anything that depends on them leaves the process.
public enum StoreMutation: Hashable, Sendable, CustomStringConvertible {
    /// The acceptor promised `ballot` for `seq`.
    case promise(seq: Int, ballot: Ballot)
    /// The acceptor accepted `value` under `ballot` for `seq` (and so also promised `ballot`).
    case accept(seq: Int, ballot: Ballot, value: Value)
    /// `seq` is decided with `value` (and the accepted proposal is no longer needed).
    case decide(seq: Int, value: Value)
    /// The proposer's highest round seen or used. Never goes down.
    case maxRound(UInt64)
    /// The highest `done` value known for `peer`. Never goes down.
    case done(peer: NodeID, seq: Int)
    /// Everything about instances below `seq` is released. Never goes down.
    case forget(below: Int)
    /// This node's proposer used `ballot` for `seq` (an audit record: it changes no protocol state,
    /// but lets a checker prove that no ballot was ever used twice across restarts).
    case ballotUsed(seq: Int, ballot: Ballot)
    /// This node lost its acceptor state and begins to recover it: until ``endRecovery(voteFloor:maxRound:)``
    /// it votes in no instance, across restarts too. Ignored once a vote floor is recorded.
    case beginRecovery
    /// Recovery is over: instances below `voteFloor` are never voted on here again, and the
    /// proposer's round is at least `maxRound`. One mutation, so a crash leaves either the
    /// node still recovering or recovered with both bounds, never one without the other. The
    /// floor never goes down.
    case endRecovery(voteFloor: Int, maxRound: UInt64)

    public var description: String {
        switch self {
        case .promise(let seq, let ballot): "promise(seq: \(seq), ballot: \(ballot))"
        case .accept(let seq, let ballot, let value):
            "accept(seq: \(seq), ballot: \(ballot), value: \(renderValue(value)))"
        case .decide(let seq, let value): "decide(seq: \(seq), value: \(renderValue(value)))"
        case .maxRound(let round): "maxRound(\(round))"
        case .done(let peer, let seq): "done(peer: \(peer), seq: \(seq))"
        case .forget(let below): "forget(below: \(below))"
        case .ballotUsed(let seq, let ballot): "ballotUsed(seq: \(seq), ballot: \(ballot))"
        case .beginRecovery: "beginRecovery"
        case .endRecovery(let voteFloor, let maxRound):
            "endRecovery(voteFloor: \(voteFloor), maxRound: \(maxRound))"
        }
    }
}

/// The durable record of one instance at one node.
public struct InstanceRecord: Hashable, Sendable {
    /// The highest ballot this acceptor promised (phase 1) or accepted under (phase 2).
    public var promised: Ballot?
    /// The highest-ballot proposal this acceptor accepted.
    public var accepted: AcceptedProposal?
    /// The decided value, once known.
    public var decided: Value?

    public init(promised: Ballot? = nil, accepted: AcceptedProposal? = nil, decided: Value? = nil) {
        self.promised = promised
        self.accepted = accepted
        self.decided = decided
    }
}

/// Everything one node must find again after a crash. A store's ``AcceptorStore/load()`` returns
/// it; ``apply(_:)`` defines what each ``StoreMutation`` means, so every backend and every test
/// model agrees on it.
public struct DurableState: Hashable, Sendable {
    /// The proposer's highest round seen or used.
    public var maxRound: UInt64 = 0
    /// The highest `done` value known per peer (absent means -1, nothing done).
    public var doneByPeer: [NodeID: Int] = [:]
    /// Instances below this are forgotten: the acceptor never takes part in them again.
    public var forgottenBelow: Int = 0
    /// Instances at or above ``forgottenBelow``.
    public var instances: [Int: InstanceRecord] = [:]
    /// Set by a finished recovery of a lost acceptor state: instances below it are never voted on
    /// here again. `nil` when this store never recovered (a node that never lost its disk, or
    /// one still recovering).
    public var voteFloor: Int?
    /// A recovery of a lost acceptor state began and has not finished: the node must not vote in
    /// any instance until it finishes. Never true while ``voteFloor`` is recorded.
    public var recovering: Bool = false

    public init() {}

    /// Applies one mutation with the rules every store must follow: rounds, done values, the
    /// forget floor and the vote floor never go down, nothing below the forget floor is kept or
    /// recreated, and once a vote floor is recorded the node is never recovering again.
    public mutating func apply(_ mutation: StoreMutation) {
        switch mutation {
        case .promise(let seq, let ballot):
            guard seq >= forgottenBelow else { return }
            instances[seq, default: InstanceRecord()].promised = ballot
        case .accept(let seq, let ballot, let value):
            guard seq >= forgottenBelow else { return }
            instances[seq, default: InstanceRecord()].promised = ballot
            instances[seq, default: InstanceRecord()].accepted = AcceptedProposal(
                ballot: ballot, value: value)
        case .decide(let seq, let value):
            guard seq >= forgottenBelow else { return }
            // The decision supersedes the accepted proposal: once decided, the acceptor answers
            // with the decision and never needs the proposal again.
            instances[seq, default: InstanceRecord()].decided = value
            instances[seq, default: InstanceRecord()].accepted = nil
        case .maxRound(let round):
            maxRound = Swift.max(maxRound, round)
        case .done(let peer, let seq):
            doneByPeer[peer] = Swift.max(doneByPeer[peer] ?? -1, seq)
        case .forget(let below):
            guard below > forgottenBelow else { return }
            forgottenBelow = below
            instances = instances.filter { $0.key >= below }
        case .ballotUsed:
            // An audit record for durable backends that keep one; not part of the protocol state.
            break
        case .beginRecovery:
            // A recorded floor means a recovery finished: starting another cannot make the node
            // safer (its state is not lost again), so it is not restarted.
            guard voteFloor == nil else { return }
            recovering = true
        case .endRecovery(let floor, let round):
            voteFloor = Swift.max(voteFloor ?? 0, floor)
            maxRound = Swift.max(maxRound, round)
            recovering = false
        }
    }
}

/// Durable storage for one node's acceptor, learner and proposer state.
///
/// The protocol core never calls a store: it returns ``StoreMutation``s in a ``Ready`` and the
/// driver commits them. A backend must make ``commit(_:)`` atomic (all of a batch or none of it
/// survives a crash) and durable (when it returns, the batch survives power loss). Batches from
/// many inputs may be merged into one commit (group commit); that is the driver's choice.
public protocol AcceptorStore: Sendable {
    /// Reads everything that was committed, for a node that (re)starts on this store.
    func load() async throws -> DurableState
    /// Atomically and durably applies a batch, in order. When this throws, nothing that depends
    /// on the batch may be released: the driver stops answering as an acceptor.
    func commit(_ mutations: [StoreMutation]) async throws
}

/// The in-memory ``AcceptorStore`` for tests. "Durable" here means it outlives the peer that
/// wrote to it, so a test can drop a peer without shutdown and start a new one on the same store.
public actor InMemoryStore: AcceptorStore {
    /// An error injected by a test to exercise the driver's handling of failed commits.
    public struct InjectedFailure: Error, Hashable, Sendable {
        public var message: String
        public init(_ message: String) { self.message = message }
    }

    private var state = DurableState()
    private var failures: [InjectedFailure] = []
    private var targetedFailures: [(@Sendable ([StoreMutation]) -> Bool, InjectedFailure)] = []
    /// How many batches were committed (empty batches are not committed).
    public private(set) var commitCount = 0

    public init(state: DurableState = DurableState()) { self.state = state }

    public func load() -> DurableState { state }

    public func commit(_ mutations: [StoreMutation]) throws {
        if !failures.isEmpty { throw failures.removeFirst() }
        if let index = targetedFailures.firstIndex(where: { $0.0(mutations) }) {
            throw targetedFailures.remove(at: index).1
        }
        // Apply to a copy so a batch is all-or-nothing even if a later step were to fail.
        var next = state
        for mutation in mutations { next.apply(mutation) }
        state = next
        commitCount += 1
    }

    /// Makes the next commit fail with `failure` and leave the state untouched.
    public func failNextCommit(_ failure: InjectedFailure = InjectedFailure("injected commit failure")) {
        failures.append(failure)
    }

    /// Makes the first commit whose batch satisfies `matching` fail and leave the state untouched.
    public func failNextCommit(
        matching: @escaping @Sendable ([StoreMutation]) -> Bool,
        _ failure: InjectedFailure = InjectedFailure("injected commit failure")
    ) {
        targetedFailures.append((matching, failure))
    }

    /// A copy of the committed state, for assertions.
    public var snapshot: DurableState { state }
}
