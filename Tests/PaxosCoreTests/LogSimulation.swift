import PaxosCore

/// A state machine that keeps every applied command in order, so replicas can be compared by
/// their applied sequence. Row `i` of space 1 (8 bytes, big-endian) holds the `i`-th command;
/// space 0 holds the count.
struct ListMachine: StateMachine {
    static let countKey = MachineKey(space: 0, key: [])

    func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
        let count = try rows.value(Self.countKey).map(Self.integer) ?? 0
        try rows.put(MachineKey(space: 1, key: Self.bigEndian(count)), proposal.command)
        try rows.put(Self.countKey, Self.bigEndian(count + 1))
        return Self.bigEndian(count + 1)
    }

    /// The commands `rows` hold, in the order they were applied.
    static func commands(_ rows: [MachineKey: [UInt8]]) -> [Value] {
        rows.filter { $0.key.space == 1 }.sorted { $0.key < $1.key }.map(\.value)
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    static func integer(_ bytes: [UInt8]) -> UInt64 { bytes.reduce(0) { $0 << 8 | UInt64($1) } }
}

/// A whole cluster of ``LogReplica``s driven synchronously from a seed, the way ``LogPeer``
/// drives one: eager messages and results leave at once; the rest of every Ready waits in the
/// replica's pending batch, and a separate commit step (group commit: everything pending, as
/// one batch) makes its mutations durable (applying chosen entries to the durable rows) and only
/// then releases its messages, replies and local votes, and reports what it applied. Snapshot
/// chunk requests are answered the way LogPeer does, from a copy of the responder's durable rows
/// taken at the first chunk (one read transaction), kept until the last chunk or a crash. Faults: loss (the sender is told, as a transport timeout would), duplication,
/// any delivery order, partitions that heal, crashes between any two steps (pending mutations
/// are lost), nodes lost for good, and stalled disks (a replica whose commits never finish).
///
/// After every step it checks agreement (no slot is ever known chosen with two entries, and
/// every replica's applied commands are a prefix of one sequence), and that no proposal a
/// replica reported `failed` is ever chosen. A linearizable read (``read(at:)``) is served, as
/// LogPeer serves it, from the replica's durable rows when its Ready hands it out; it must hold
/// every command whose result any client had before the read began.
struct LogSimulation {
    enum Item {
        case request(LogOutbound)
        case reply(LogOutbound, LogReplyEnvelope)
        case local(NodeID, LogReplyEnvelope)

        var destination: NodeID {
            switch self {
            case .request(let outbound): outbound.to
            case .reply(let outbound, _): outbound.envelope.from
            case .local(let node, _): node
            }
        }
    }

    /// What a replica's driver holds between a Ready and the commit that releases it.
    struct Pending {
        var mutations: [LogMutation] = []
        var messages: [LogOutbound] = []
        var replies: [(LogOutbound, LogReplyEnvelope)] = []
        var localReplies: [LogReplyEnvelope] = []

        var isEmpty: Bool { mutations.isEmpty && messages.isEmpty && replies.isEmpty && localReplies.isEmpty }
    }

    /// Every node the simulation runs (bootstrap peers first, then nodes that joined later).
    private(set) var peers: [NodeID]
    /// The bootstrap peers: a new cluster's provisional membership.
    let bootstrapPeers: [NodeID]
    /// Each node's data-directory incarnation (a wiped disk draws a new one).
    private(set) var incarnations: [NodeID: UInt64] = [:]
    /// Nodes whose data directory was created to join an existing cluster.
    private(set) var joiners: Set<NodeID> = []
    /// Every membership any replica was in, by the slot of the entry that made it.
    private(set) var memberships: [Slot: Membership] = [:]
    /// What replicas noticed (refusals, membership changes), in order.
    private(set) var events: [(NodeID, ReplicaEvent)] = []
    let configuration: LogConfiguration
    var replicas: [NodeID: LogReplica] = [:]
    var durable: [NodeID: LogDurableState] = [:]
    /// Each replica's applied commands, as its durable rows hold them.
    private(set) var appliedCommands: [NodeID: [Value]] = [:]
    /// Snapshots each replica is serving, by the peer fetching them.
    private var snapshotSources: [NodeID: [NodeID: (token: UInt64, source: MemorySnapshotSource)]] = [:]
    /// Snapshots installed (a chunked transfer completed and replaced a replica's rows).
    private(set) var snapshotsInstalled = 0
    /// Snapshot chunks sent.
    private(set) var snapshotChunks = 0
    var pending: [NodeID: Pending] = [:]
    var network: [Item] = []
    var random: SplitMix64
    var dropPercent = 0
    var duplicatePercent = 0
    /// Chance that a commit crashes its replica instead (its pending batch is lost).
    var crashPercent = 0
    /// Replicas cut off from every other: what they send or are sent is lost.
    var isolated: Set<NodeID> = []
    /// Replicas whose disk hangs: their commits never finish while they are here.
    var stalled: Set<NodeID> = []
    /// Replicas lost for good: never restarted.
    var lost: Set<NodeID> = []
    /// Every entry any replica ever knew as chosen, by slot.
    private(set) var chosen: [Slot: LogEntry] = [:]
    /// Every proposal in a chosen entry.
    private(set) var chosenProposals: Set<ProposalID> = []
    /// The longest applied sequence seen.
    private(set) var longestApplied: [Value] = []
    private(set) var violations: [String] = []
    private(set) var results: [ProposalID: Value] = [:]
    /// Proposals their replica reported as certainly not executed, and as of unknown outcome.
    private(set) var failed: Set<ProposalID> = []
    private(set) var unknown: Set<ProposalID> = []
    private(set) var sent: [String: Int] = [:]
    /// The most slots a leader had proposed beyond its first unchosen one, and the largest batch.
    private(set) var mostSlotsInFlight = 0
    private(set) var largestBatch = 0
    /// The largest message sent, in bytes (as ``LogReplica`` counts them).
    private(set) var largestMessageBytes = 0
    private var submitted = 0
    /// Each proposal's command, to tell which commands a read must see.
    private var commands: [ProposalID: Value] = [:]
    /// Reads in flight at each replica: the commands whose results clients had when each began.
    private var openReads: [NodeID: [ReadID: Set<Value>]] = [:]
    /// Reads served, and reads a replica could not confirm.
    private(set) var readsServed = 0
    private(set) var readsFailed = 0
    /// Commands are padded to at least this many bytes (for tests of message bounds).
    var commandBytes = 0

    /// - Parameter bootstrapped: first run the new cluster, without faults, until every replica
    ///   knows its first membership entry chosen (a new cluster needs all of its nodes once), then
    ///   restart every replica, so the test starts from a bootstrapped cluster with no leader.
    init(count: Int, seed: UInt64, configuration: LogConfiguration, bootstrapped: Bool = true) {
        peers = (1...count).map { NodeID(UInt32($0)) }
        bootstrapPeers = peers
        self.configuration = configuration
        random = SplitMix64(seed: seed)
        for peer in peers {
            incarnations[peer] = random.next() | 1
            restart(peer)
        }
        guard bootstrapped else { return }
        for _ in 0..<2000 where peers.contains(where: { replicas[$0]!.membership.isProvisional }) {
            for peer in peers { tick(peer) }
            deliverAll()
        }
        precondition(
            !peers.contains { replicas[$0]!.membership.isProvisional }, "the cluster did not bootstrap")
        for peer in peers { crash(peer) }
        network.removeAll()
        for peer in peers { restart(peer) }
    }

    /// A cluster with a leader elected and every message delivered.
    static func elected(_ count: Int = 3, seed: UInt64 = 7, configuration: LogConfiguration = .simulation)
        -> LogSimulation
    {
        var simulation = LogSimulation(count: count, seed: seed, configuration: configuration)
        for _ in 0..<200 where simulation.leaders.isEmpty {
            for node in simulation.peers { simulation.tick(node) }
            simulation.deliverAll()
        }
        return simulation
    }

    var up: [NodeID] { peers.filter { replicas[$0] != nil } }

    var leaders: [NodeID] { up.filter { replicas[$0]!.isLeader } }

    // MARK: Faults

    mutating func crash(_ node: NodeID) {
        replicas[node] = nil
        openReads[node] = nil
        pending[node] = nil
        snapshotSources[node] = nil
        network.removeAll { item in
            switch item {
            case .local(let owner, _): owner == node
            case .reply(let outbound, _): outbound.envelope.from == node
            case .request: false
            }
        }
    }

    /// Crashes `node` and never lets it return.
    mutating func lose(_ node: NodeID) {
        crash(node)
        lost.insert(node)
    }

    mutating func restart(_ node: NodeID) {
        guard !lost.contains(node) else { return }
        var state = durable[node] ?? LogDurableState()
        state.apply(.incarnation(state.incarnation + 1))
        durable[node] = state
        replicas[node] = LogReplica(
            me: node, peers: bootstrapPeers, state: state, configuration: configuration, seed: random.next(),
            memberIncarnation: incarnations[node], joining: joiners.contains(node))
        check(node)
    }

    /// `node`'s disk is lost: it comes back with an empty data directory (a new incarnation), as
    /// a joiner when `joining`, else as a bootstrap peer would (the operator's mistake).
    mutating func wipe(_ node: NodeID, joining: Bool) {
        crash(node)
        durable[node] = nil
        appliedCommands[node] = nil
        lost.remove(node)
        incarnations[node] = random.next() | 1
        // A node that was not a bootstrap peer has no --peers entry of its own to bootstrap from.
        if joining || !bootstrapPeers.contains(node) { joiners.insert(node) } else { joiners.remove(node) }
        if !peers.contains(node) { peers.append(node) }
        restart(node)
    }

    /// Proposes `change` at `node`.
    @discardableResult
    mutating func changeMembership(at node: NodeID, _ change: MembershipChange) -> ProposalID? {
        guard replicas[node] != nil else { return nil }
        let (id, ready) = replicas[node]!.changeMembership(change)
        carryOut(ready, at: node, answering: nil)
        return id
    }

    // MARK: Inputs

    @discardableResult
    mutating func submit(at node: NodeID, resendable: Bool = false) -> ProposalID? {
        guard replicas[node] != nil else { return nil }
        submitted += 1
        var command = Array("c\(submitted)".utf8)
        if command.count < commandBytes {
            command += Array(repeating: UInt8(ascii: "."), count: commandBytes - command.count)
        }
        let (id, ready) = replicas[node]!.submit(command, resendable: resendable)
        commands[id] = command
        carryOut(ready, at: node, answering: nil)
        return id
    }

    /// Starts a linearizable read at `node` (``LogReplica/read(clock:)``), checked against a
    /// lease at `clock` when given.
    @discardableResult
    mutating func read(at node: NodeID, clock: UInt64? = nil) -> ReadID? {
        guard replicas[node] != nil else { return nil }
        let (id, ready) = replicas[node]!.read(clock: clock)
        openReads[node, default: [:]][id] = Set(results.keys.compactMap { commands[$0] })
        carryOut(ready, at: node, answering: nil)
        return id
    }

    mutating func tick(_ node: NodeID) {
        guard replicas[node] != nil else { return }
        carryOut(replicas[node]!.tick(), at: node, answering: nil)
    }

    /// Delivers (or loses, or duplicates) one message in flight, picked at random.
    mutating func deliverOne() {
        guard !network.isEmpty else { return }
        let item = network.remove(at: Int.random(in: 0..<network.count, using: &random))
        if case .local = item {
            deliver(item)
            return
        }
        if Int.random(in: 0..<100, using: &random) < dropPercent || crossesPartition(item) {
            fail(item)
            return
        }
        if Int.random(in: 0..<100, using: &random) < duplicatePercent { network.append(item) }
        deliver(item)
    }

    /// Puts a request on the wire as if `from` had sent it: what a correct but surprising peer
    /// may send (a prepare with a round far above everyone's, a fetch from any slot), not a
    /// forged accept, which no protocol survives without authentication.
    mutating func inject(_ request: LogRequest, from: NodeID, to: NodeID) {
        network.append(
            .request(
                LogOutbound(
                    to: to,
                    envelope: LogRequestEnvelope(
                        from: from, incarnation: incarnations[from] ?? 0, request: request)
                )))
    }

    /// Delivers the first message in flight that `matches`, without faults (partitions hold).
    /// Returns whether there was one.
    @discardableResult
    mutating func deliverFirst(where matches: (Item) -> Bool) -> Bool {
        guard let index = network.firstIndex(where: matches) else { return false }
        let item = network.remove(at: index)
        if crossesPartition(item) { fail(item) } else { deliver(item) }
        return true
    }

    /// Commits one replica's pending batch, picked at random among those that have one.
    mutating func commitOne() {
        let ready = up.filter { !(pending[$0]?.isEmpty ?? true) && !stalled.contains($0) }
        guard let node = ready.randomElement(using: &random) else { return }
        commit(node)
    }

    private func crossesPartition(_ item: Item) -> Bool {
        let from: NodeID
        switch item {
        case .request(let outbound): from = outbound.envelope.from
        case .reply(let outbound, _): from = outbound.to
        case .local: return false
        }
        return isolated.contains(from) != isolated.contains(item.destination)
    }

    /// Commits and delivers everything, and whatever that produces, without loss or crashes;
    /// partitions and stalled disks still hold.
    mutating func deliverAll(limit: Int = 100_000) {
        var steps = 0
        while steps < limit {
            if let node = up.first(where: { !(pending[$0]?.isEmpty ?? true) && !stalled.contains($0) }) {
                commit(node, mayCrash: false)
            } else if !network.isEmpty {
                let item = network.removeFirst()
                if crossesPartition(item) { fail(item) } else { deliver(item) }
            } else {
                return
            }
            steps += 1
        }
    }

    private mutating func deliver(_ item: Item) {
        switch item {
        case .request(let outbound):
            guard replicas[outbound.to] != nil else {
                fail(item)
                return
            }
            if case .snapshotChunk(let token, let after) = outbound.envelope.request {
                serveSnapshotChunk(outbound, token: token, after: after)
                return
            }
            let ready = replicas[outbound.to]!.onRequest(outbound.envelope)
            carryOut(ready, at: outbound.to, answering: outbound)
        case .reply(let outbound, let reply):
            let node = outbound.envelope.from
            guard replicas[node] != nil else { return }
            carryOut(replicas[node]!.onReply(reply), at: node, answering: nil)
        case .local(let node, let reply):
            guard replicas[node] != nil else { return }
            carryOut(replicas[node]!.onReply(reply), at: node, answering: nil)
        }
    }

    /// What LogPeer does with a snapshot chunk request: token 0 takes a new snapshot of the
    /// durable rows; another token continues the open one, or is told it is gone.
    private mutating func serveSnapshotChunk(_ outbound: LogOutbound, token: UInt64, after: MachineKey?) {
        let node = outbound.to
        let peer = outbound.envelope.from
        let reply: LogReply
        var open = snapshotSources[node]?[peer]
        if token == 0 {
            let state = durable[node]!
            open = (random.next() | 1, MemorySnapshotSource(applied: state.applied, rows: state.machine))
        }
        if let open, token == 0 || open.token == token {
            let (rows, done) = open.source.chunk(
                after: token == 0 ? nil : after, maxBytes: configuration.snapshotChunkBytes)
            snapshotSources[node, default: [:]][peer] = done ? nil : open
            reply = .snapshotChunk(
                token: open.token, applied: open.source.applied, after: token == 0 ? nil : after, rows: rows,
                done: done)
            snapshotChunks += 1
            largestMessageBytes = Swift.max(
                largestMessageBytes, rows.reduce(0) { $0 + 9 + $1.key.key.count + $1.value.count })
        } else {
            reply = .snapshotGone
        }
        network.append(
            .reply(
                outbound,
                LogReplyEnvelope(from: node, incarnation: replicas[node]!.memberIncarnation, reply: reply)))
    }

    /// The transport reports a lost request or reply to the sender, as a timeout would.
    private mutating func fail(_ item: Item) {
        let outbound: LogOutbound
        switch item {
        case .request(let request): outbound = request
        case .reply(let request, _): outbound = request
        case .local: return
        }
        let node = outbound.envelope.from
        guard replicas[node] != nil else { return }
        carryOut(replicas[node]!.onSendFailure(outbound), at: node, answering: nil)
    }

    /// Carries out `ready` as the driver contract says: eager messages and results at once; the
    /// rest waits for the next commit of this replica.
    private mutating func carryOut(_ ready: LogReady, at node: NodeID, answering request: LogOutbound?) {
        for event in ready.events { events.append((node, event)) }
        for message in ready.eagerMessages { send(message) }
        if let reply = ready.eagerReply, let request { network.append(.reply(request, reply)) }
        for (id, output) in ready.results { results[id] = output }
        for id in ready.reads {
            guard let mustSee = openReads[node]?.removeValue(forKey: id) else {
                violations.append(
                    "node \(node) served read \(id), which it was never asked or already served")
                continue
            }
            readsServed += 1
            // What LogPeer's store read returns: the durable rows, as of this moment.
            let seen = Set(ListMachine.commands(durable[node]?.machine ?? [:]))
            let missed = mustSee.subtracting(seen)
            if !missed.isEmpty {
                violations.append(
                    "node \(node) served read \(id) without \(missed.count) acknowledged writes (e.g. \(String(decoding: missed.first!, as: UTF8.self)))"
                )
            }
        }
        for id in ready.failedReads {
            if openReads[node]?.removeValue(forKey: id) == nil {
                violations.append("node \(node) failed read \(id), which it was never asked or already ended")
            }
            readsFailed += 1
        }
        for id in ready.unknown { unknown.insert(id) }
        for id in ready.failed {
            failed.insert(id)
            if chosenProposals.contains(id) { violations.append("proposal \(id) reported failed but chosen") }
        }
        var batch = pending[node] ?? Pending()
        batch.mutations += ready.mutations
        batch.messages += ready.messages
        if let reply = ready.reply, let request { batch.replies.append((request, reply)) }
        batch.localReplies += ready.localReplies
        pending[node] = batch
        check(node)
    }

    /// Makes `node`'s pending mutations durable as one batch, then releases what waited for them.
    mutating func commit(_ node: NodeID, mayCrash: Bool = true) {
        guard replicas[node] != nil, let batch = pending[node], !batch.isEmpty, !stalled.contains(node) else {
            return
        }
        if mayCrash, !batch.mutations.isEmpty, Int.random(in: 0..<100, using: &random) < crashPercent {
            crash(node)
            return
        }
        pending[node] = Pending()
        var outputs: [(ProposalID, Value)] = []
        var appliedThrough: Slot?
        var sequence = appliedCommands[node] ?? []
        for mutation in batch.mutations {
            let before = durable[node]!.applied
            outputs += try! durable[node]!.apply(mutation, machine: ListMachine(), outputsFor: node)
            let after = durable[node]!.applied
            switch mutation {
            case .apply(let slot, let entry):
                appliedThrough = Swift.max(appliedThrough ?? 0, slot)
                if after > before {
                    sequence += entry.map(\.command).filter { !MembershipChange.isChange($0) }
                }
            case .installSnapshot(let slot):
                // Reported like an apply through its slot: reads wait for it.
                appliedThrough = Swift.max(appliedThrough ?? 0, slot)
                if after > before {
                    snapshotsInstalled += 1
                    sequence = ListMachine.commands(durable[node]!.machine)
                }
            default:
                break
            }
        }
        appliedCommands[node] = sequence
        for message in batch.messages { send(message) }
        for (request, reply) in batch.replies {
            noteReplyBytes(reply)
            network.append(.reply(request, reply))
        }
        for reply in batch.localReplies { network.append(.local(node, reply)) }
        check(node)
        if let appliedThrough {
            carryOut(
                replicas[node]!.onApplied(through: appliedThrough, outputs: outputs), at: node, answering: nil
            )
        }
    }

    private mutating func send(_ message: LogOutbound) {
        let kind: String
        var bytes = 0
        switch message.envelope.request {
        case .prepare: kind = "prepare"
        case .preVote: kind = "preVote"
        case .accept(_, let entries, _, _):
            kind = entries.isEmpty ? "heartbeat" : "accept"
            bytes = entries.reduce(0) { $0 + LogReplica.wireSize($1.entry) + 8 }
        case .fetch: kind = "fetch"
        case .confirm: kind = "confirm"
        case .snapshotChunk: kind = "snapshotChunk"
        case .forward(let proposals):
            kind = "forward"
            bytes = LogReplica.wireSize(proposals)
        }
        largestMessageBytes = Swift.max(largestMessageBytes, bytes)
        sent[kind, default: 0] += 1
        let from = message.envelope.from
        if case .accept(_, let entries, _, _) = message.envelope.request, let top = entries.map(\.slot).max(),
            let replica = replicas[from], replica.isLeader
        {
            mostSlotsInFlight = Swift.max(mostSlotsInFlight, top - replica.firstUnchosen + 1)
            largestBatch = Swift.max(largestBatch, entries.map(\.entry.count).max() ?? 0)
        }
        network.append(.request(message))
    }

    /// Records the largest catch-up answer, which ``send(_:)`` does not see (it is a reply).
    private mutating func noteReplyBytes(_ reply: LogReplyEnvelope) {
        if case .chosen(let entries, _) = reply.reply {
            let bytes = entries.reduce(0) { $0 + LogReplica.wireSize($1.entry) + 8 }
            largestMessageBytes = Swift.max(largestMessageBytes, bytes)
        }
    }

    /// Every replica's protocol state, one line each, for failure messages.
    var summary: String {
        peers.map { node in
            replicas[node].map {
                "\(node): \($0.membership.voters.sorted().map(\.rawValue)) \($0.role) leader \($0.leader.map(\.description) ?? "-") promised \($0.promised.map(\.description) ?? "-") applied \($0.applied) firstUnchosen \($0.firstUnchosen) logStart \($0.logStart)"
            } ?? "\(node): \(lost.contains(node) ? "lost" : "down")"
        }.joined(separator: "; ")
    }

    // MARK: Checks

    /// Consecutive memberships whose voters differ by more than one (whose majorities might not
    /// intersect): none may exist. Checked on every membership any replica was in.
    var membershipJumps: [String] {
        let ordered = memberships.sorted { $0.key < $1.key }.map(\.value)
        return zip(ordered, ordered.dropFirst()).compactMap { earlier, later in
            earlier.voters.symmetricDifference(later.voters).count > 1 ? "\(earlier) then \(later)" : nil
        }
    }

    private mutating func check(_ node: NodeID) {
        var known: [(Slot, LogEntry)] = []
        if let replica = replicas[node] {
            known += replica.records.filter(\.value.chosen).map { ($0.key, $0.value.entry) }
        }
        if let applied = appliedCommands[node] {
            let shorter = Swift.min(applied.count, longestApplied.count)
            if applied[..<shorter] != longestApplied[..<shorter] {
                violations.append("node \(node) applied a sequence that diverges from another replica's")
            }
            if applied.count > longestApplied.count { longestApplied = applied }
        }
        if let state = durable[node] {
            known += state.records.filter(\.value.chosen).map { ($0.key, $0.value.entry) }
        }
        // One membership per slot, whoever knows it; each differs from the one before it by at
        // most one voter, so a majority of one and a majority of the next always intersect.
        if let membership = replicas[node]?.membership, !membership.isProvisional {
            if let seen = memberships[membership.slot], seen != membership {
                violations.append("two memberships at slot \(membership.slot): \(seen) and \(membership)")
            }
            memberships[membership.slot] = membership
        }
        for (slot, entry) in known {
            if let seen = chosen[slot] {
                if seen != entry {
                    violations.append("slot \(slot) chosen twice: \(seen) and \(entry) (node \(node))")
                }
            } else {
                chosen[slot] = entry
                for proposal in entry {
                    chosenProposals.insert(proposal.id)
                    if failed.contains(proposal.id) {
                        violations.append(
                            "proposal \(proposal.id) reported failed but chosen in slot \(slot)")
                    }
                }
            }
        }
    }
}

extension LogConfiguration {
    /// Small timeouts and bounds, so a short simulation elects, pipelines, releases and snapshots.
    static var simulation: LogConfiguration {
        var configuration = LogConfiguration()
        configuration.electionTicks = 10
        configuration.heartbeatTicks = 2
        configuration.resendTicks = 6
        configuration.maxSlotsInFlight = 3
        configuration.minPipelinedBatch = 2
        configuration.maxProposalsPerSlot = 4
        configuration.noLeaderTicks = 60
        configuration.commitStallTicks = 20
        configuration.fetchLimit = 8
        configuration.retainEntries = 24
        configuration.releaseChunk = 4
        // A few rows per chunk, so a snapshot takes several.
        configuration.snapshotChunkBytes = 64
        return configuration
    }
}
