import PaxosCore

/// The state machine of transcript clusters: it keeps every command in order (``ListMachine``'s
/// rows) and answers `#N`, the command's position, so results read as text in a transcript.
struct TranscriptMachine: StateMachine {
    func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
        let count = try rows.value(ListMachine.countKey).map(ListMachine.integer) ?? 0
        try rows.put(MachineKey(space: 1, key: ListMachine.bigEndian(count)), proposal.command)
        try rows.put(ListMachine.countKey, ListMachine.bigEndian(count + 1))
        return Array("#\(count + 1)".utf8)
    }
}

/// A cluster of ``LogReplica``s driven one explicit step at a time by a transcript script, the
/// way `LogPeer` drives one replica, and printing every ``LogReady`` each step produces:
///
/// - eager messages go on the wire at once (results are recorded at once, too);
/// - everything else of a Ready waits in the node's pending batch until `persist` commits the
///   batch's mutations to the node's in-memory durable state (``LogDurableState``); only then do
///   its messages and replies go on the wire, its local replies get fed back, and what it applied
///   is reported with `onApplied` (LogPeer's release order);
/// - the wire is one FIFO list; `deliver` hands over what is on it when the command starts (one
///   hop: the answers come in a later `deliver`); a request that cannot arrive (dropped, to a
///   node that is down, across a partition) is reported to its sender as a transport would;
/// - `crash` loses the pending batch, the in-memory replica and what the node had on the wire;
///   `restart` bumps the incarnation durably and builds a new replica from the durable state.
///
/// Everything runs in node-id order with fixed seeds, so one script prints the same bytes in
/// every process: a difference is nondeterminism in the core. After every command it checks
/// agreement (no slot known chosen with two entries; applied sequences are prefixes of one).
struct TranscriptCluster {
    enum Item {
        case request(LogOutbound)
        /// The reply to `request`, travelling back to its sender.
        case reply(LogOutbound, LogReplyEnvelope)

        var from: NodeID {
            switch self {
            case .request(let outbound): outbound.envelope.from
            case .reply(let outbound, _): outbound.to
            }
        }

        var to: NodeID {
            switch self {
            case .request(let outbound): outbound.to
            case .reply(let outbound, _): outbound.envelope.from
            }
        }

        var description: String {
            switch self {
            case .request(let outbound):
                "\(outbound.envelope.from)->\(outbound.to) \(outbound.envelope.request)"
            case .reply(let outbound, let reply): "\(outbound.to)->\(outbound.envelope.from) \(reply.reply)"
            }
        }
    }

    struct Pending {
        var mutations: [LogMutation] = []
        var messages: [LogOutbound] = []
        var replies: [(LogOutbound, LogReplyEnvelope)] = []
        var localReplies: [LogReplyEnvelope] = []

        var isEmpty: Bool { mutations.isEmpty && messages.isEmpty && replies.isEmpty && localReplies.isEmpty }
    }

    struct CommandError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    private(set) var configuration = LogConfiguration.simulation
    private(set) var peers: [NodeID] = []
    private var replicas: [NodeID: LogReplica] = [:]
    private var durable: [NodeID: LogDurableState] = [:]
    private var pending: [NodeID: Pending] = [:]
    private var network: [Item] = []
    private var ticks: [NodeID: Int] = [:]
    private var isolated: Set<NodeID> = []
    /// Snapshots each node is serving, by the peer fetching them (LogPeer keeps one read
    /// transaction open per transfer).
    private var snapshots: [NodeID: [NodeID: (token: UInt64, source: MemorySnapshotSource)]] = [:]
    private var nextToken: UInt64 = 0
    private var chosen: [Slot: LogEntry] = [:]
    private var longestApplied: [Value] = []
    private(set) var violations: [String] = []
    private var reportedViolations = 0
    private var output: [String] = []

    // MARK: Commands

    /// Runs one script command and returns what it printed.
    mutating func run(_ line: String) -> [String] {
        output = []
        let words = line.split(separator: " ").map(String.init)
        do {
            try execute(words)
        } catch let error as CommandError {
            emit("error: \(error)")
        } catch {
            emit("error: \(error)")
        }
        checkAgreement()
        return output
    }

    private mutating func execute(_ words: [String]) throws {
        guard let command = words.first else { throw CommandError("empty command") }
        let arguments = Array(words.dropFirst())
        if command != "add-nodes", peers.isEmpty {
            throw CommandError("no nodes yet: start with add-nodes N")
        }
        switch command {
        case "add-nodes":
            try addNodes(arguments)
        case "submit":
            guard arguments.count >= 2 else { throw CommandError("usage: submit NODE TEXT") }
            let node = try upNode(arguments[0])
            let text = arguments.dropFirst().joined(separator: " ")
            let (id, ready) = replicas[node]!.submit(Array(text.utf8))
            carryOut(ready, at: node, header: "\(node) submit \"\(text)\" as \(id)")
        case "read":
            // A linearizable read by read index: a leader confirms its ballot with a round of
            // messages and reports the read ready once applied through its index; no log write.
            guard arguments.count == 1 else { throw CommandError("usage: read NODE") }
            let node = try upNode(arguments[0])
            let (id, ready) = replicas[node]!.read()
            carryOut(ready, at: node, header: "\(node) read \(id)")
        case "tick":
            guard (1...2).contains(arguments.count) else {
                throw CommandError("usage: tick NODE[,NODE…]|all [COUNT]")
            }
            let nodes =
                arguments[0] == "all"
                ? peers : try arguments[0].split(separator: ",").map { try node(String($0)) }
            let count = try arguments.count == 2 ? number(arguments[1]) : 1
            for _ in 0..<count {
                for node in nodes where replicas[node] != nil {
                    ticks[node, default: 0] += 1
                    let ready = replicas[node]!.tick()
                    // An empty tick says nothing: printing them would bury the ones that act.
                    if !ready.isEmpty { carryOut(ready, at: node, header: "\(node) tick \(ticks[node]!)") }
                }
            }
        case "deliver":
            let (link, count) = try linkAndCount(arguments, usage: "deliver [FROM->TO [COUNT]]")
            for item in take(link, count) { deliver(item) }
        case "drop":
            let (link, count) = try linkAndCount(arguments, usage: "drop FROM->TO [COUNT]")
            guard link != nil else { throw CommandError("usage: drop FROM->TO [COUNT]") }
            for item in take(link, count) { fail(item, because: "dropped") }
        case "persist":
            let nodes = arguments.isEmpty ? peers : try arguments.map(node)
            for node in nodes { persist(node) }
        case "stabilize":
            guard arguments.isEmpty else { throw CommandError("usage: stabilize") }
            try stabilize()
        case "advance":
            // Time passing on a working network: every node that is up ticks, then the cluster
            // settles, COUNT times.
            guard arguments.count == 1 else { throw CommandError("usage: advance COUNT") }
            for _ in 0..<(try number(arguments[0])) {
                for node in peers where replicas[node] != nil {
                    ticks[node, default: 0] += 1
                    let ready = replicas[node]!.tick()
                    if !ready.isEmpty { carryOut(ready, at: node, header: "\(node) tick \(ticks[node]!)") }
                }
                try stabilize()
            }
        case "crash":
            guard arguments.count == 1 else { throw CommandError("usage: crash NODE") }
            crash(try upNode(arguments[0]))
        case "restart":
            guard arguments.count == 1 else { throw CommandError("usage: restart NODE") }
            let node = try node(arguments[0])
            guard replicas[node] == nil else { throw CommandError("node \(node) is up: crash it first") }
            start(node)
        case "isolate":
            guard !arguments.isEmpty else { throw CommandError("usage: isolate NODE…") }
            for node in try arguments.map(node) { isolated.insert(node) }
            emit("isolated: \(isolated.sorted().map(\.description).joined(separator: ", "))")
        case "heal":
            isolated = []
            emit("isolated: none")
        case "status":
            for node in arguments.isEmpty ? peers : try arguments.map(node) { status(node) }
        case "log":
            guard arguments.count == 1 else { throw CommandError("usage: log NODE") }
            let replica = try replicas[upNode(arguments[0])]!
            for (slot, record) in replica.records.sorted(by: { $0.key < $1.key }) {
                emit("\(replica.me) \(ReportedRecord(slot: slot, record: record))")
            }
            if replica.records.isEmpty { emit("\(replica.me) holds no records") }
        case "inject":
            try inject(arguments)
        default:
            throw CommandError("unknown command \(command)")
        }
    }

    private mutating func addNodes(_ arguments: [String]) throws {
        guard peers.isEmpty else { throw CommandError("add-nodes runs once, first") }
        guard let first = arguments.first, let count = Int(first), (1...9).contains(count) else {
            throw CommandError("usage: add-nodes N [SETTING=VALUE…] with N in 1...9")
        }
        for setting in arguments.dropFirst() {
            let parts = setting.split(separator: "=").map(String.init)
            guard parts.count == 2 else { throw CommandError("a setting is NAME=NUMBER: \(setting)") }
            let value = try number(parts[1])
            switch parts[0] {
            case "electionTicks": configuration.electionTicks = value
            case "heartbeatTicks": configuration.heartbeatTicks = value
            case "resendTicks": configuration.resendTicks = value
            case "maxSlotsInFlight": configuration.maxSlotsInFlight = value
            case "minPipelinedBatch": configuration.minPipelinedBatch = value
            case "maxProposalsPerSlot": configuration.maxProposalsPerSlot = value
            case "fetchLimit": configuration.fetchLimit = value
            case "retainEntries": configuration.retainEntries = value
            case "releaseChunk": configuration.releaseChunk = value
            default: throw CommandError("unknown setting \(parts[0])")
            }
        }
        peers = (1...count).map { NodeID(UInt32($0)) }
        for node in peers { start(node) }
    }

    /// `node` starts (again) from its durable state, its incarnation bumped durably first, as
    /// the real driver commits it before creating the replica.
    private mutating func start(_ node: NodeID) {
        var state = durable[node] ?? LogDurableState()
        state.apply(.incarnation(state.incarnation + 1))
        durable[node] = state
        ticks[node] = 0
        // A fixed seed per life: each restart draws other election timeouts, the same in every run.
        replicas[node] = LogReplica(
            me: node, peers: peers, state: state, configuration: configuration, seed: state.incarnation)
        emit(
            "\(node) started: incarnation \(state.incarnation), applied \(state.applied), promised \(state.promised.map(\.description) ?? "-")"
        )
    }

    private mutating func crash(_ node: NodeID) {
        let lost = pending[node] ?? Pending()
        replicas[node] = nil
        pending[node] = nil
        snapshots[node] = nil
        // Its connections die with it: what it had sent is lost, and so are the answers to its
        // requests. Requests to it stay on the wire and fail when delivered while it is down.
        let before = network.count
        network.removeAll { item in
            if case .reply = item { return item.from == node || item.to == node }
            return item.from == node
        }
        emit(
            "\(node) crashed: lost \(lost.mutations.count) unpersisted mutations, \(lost.messages.count + lost.replies.count + lost.localReplies.count) unreleased messages, \(before - network.count) on the wire"
        )
    }

    private mutating func stabilize() throws {
        for _ in 0..<10_000 {
            if let node = peers.first(where: { replicas[$0] != nil && !(pending[$0]?.isEmpty ?? true) }) {
                persist(node)
            } else if !network.isEmpty {
                deliver(network.removeFirst())
            } else {
                return
            }
        }
        throw CommandError("did not stabilize within 10000 steps")
    }

    private mutating func status(_ node: NodeID) {
        guard let replica = replicas[node] else {
            emit("\(node) down")
            return
        }
        let state = durable[node]!
        let commands = ListMachine.commands(state.machine).map { String(decoding: $0, as: UTF8.self) }
        emit(
            "\(node) \(replica.role), leader \(replica.leader.map(\.description) ?? "-"), firstUnchosen \(replica.firstUnchosen), applied \(replica.applied), logStart \(replica.logStart), promised \(replica.promised.map(\.description) ?? "-"); durable: applied \(state.applied), promised \(state.promised.map(\.description) ?? "-"), maxRound \(state.maxRound), commands [\(commands.joined(separator: ", "))]"
        )
    }

    /// Puts a request on the wire as if FROM had sent it (what a surprising but correct peer may
    /// send; a forged accept only to show that an acceptor refuses it below its promise).
    private mutating func inject(_ arguments: [String]) throws {
        let usage =
            "usage: inject FROM->TO prepare ROUND | preVote ROUND | fetch SLOT | accept ROUND SLOT TEXT"
        guard arguments.count >= 3, let (from, to) = try link(arguments[0]) else { throw CommandError(usage) }
        let value = try number(arguments[2])
        let request: LogRequest
        switch arguments[1] {
        case "prepare": request = .prepare(ballot: Ballot(round: UInt64(value), node: from), from: 1)
        case "preVote": request = .preVote(ballot: Ballot(round: UInt64(value), node: from))
        case "fetch": request = .fetch(from: Slot(value))
        case "accept":
            guard arguments.count >= 5 else { throw CommandError(usage) }
            let slot = Slot(try number(arguments[3]))
            let proposal = Proposal(
                id: ProposalID(node: from, incarnation: 1, number: 1),
                command: Array(arguments[4...].joined(separator: " ").utf8))
            request = .accept(
                ballot: Ballot(round: UInt64(value), node: from),
                entries: [SlotEntry(slot: slot, entry: [proposal])], firstUnchosen: slot, releasable: 1)
        default: throw CommandError(usage)
        }
        // The incarnation the membership records for FROM (LogReplica's default for tests).
        let envelope = LogRequestEnvelope(
            from: from, incarnation: 0x1_0000_0000 | UInt64(from.rawValue), request: request)
        network.append(.request(LogOutbound(to: to, envelope: envelope)))
        emit("injected \(from)->\(to) \(request)")
    }

    // MARK: Carrying out Readys

    private mutating func emit(_ line: String) { output.append(line) }

    /// Prints `ready` under `header` and carries it out as the Ready contract says: eager
    /// messages at once, the rest into the node's pending batch.
    private mutating func carryOut(
        _ ready: LogReady, at node: NodeID, header: String, answering request: LogOutbound? = nil
    ) {
        emit(header + (ready.isEmpty ? ": nothing" : ":"))
        if !ready.isEmpty {
            for line in ready.description.split(separator: "\n") { emit("  " + line) }
        }
        for message in ready.eagerMessages { network.append(.request(message)) }
        if let reply = ready.eagerReply {
            if let request {
                network.append(.reply(request, reply))
            } else {
                violations.append("\(header): a reply with no request to answer")
            }
        }
        var batch = pending[node] ?? Pending()
        batch.mutations += ready.mutations
        batch.messages += ready.messages
        if let reply = ready.reply {
            if let request {
                batch.replies.append((request, reply))
            } else {
                violations.append("\(header): a reply with no request to answer")
            }
        }
        batch.localReplies += ready.localReplies
        pending[node] = batch
    }

    /// Commits `node`'s pending mutations, then releases what waited for them.
    private mutating func persist(_ node: NodeID) {
        guard replicas[node] != nil, let batch = pending[node], !batch.isEmpty else { return }
        pending[node] = Pending()
        var outputs: [(ProposalID, Value)] = []
        var appliedThrough: Slot?
        for mutation in batch.mutations {
            do {
                outputs += try durable[node]!.apply(mutation, machine: TranscriptMachine(), outputsFor: node)
            } catch {
                violations.append("\(node) could not persist \(mutation): \(error)")
            }
            if case .apply(let slot, _) = mutation { appliedThrough = Swift.max(appliedThrough ?? 0, slot) }
            if case .installSnapshot(let slot) = mutation {
                appliedThrough = Swift.max(appliedThrough ?? 0, slot)
            }
        }
        emit(
            "\(node) persisted \(batch.mutations.count) mutations; releases \(batch.messages.count) messages, \(batch.replies.count) replies, \(batch.localReplies.count) local replies"
        )
        for message in batch.messages { network.append(.request(message)) }
        for (request, reply) in batch.replies { network.append(.reply(request, reply)) }
        for reply in batch.localReplies {
            carryOut(replicas[node]!.onReply(reply), at: node, header: "\(node) handles own \(reply)")
        }
        if let appliedThrough {
            carryOut(
                replicas[node]!.onApplied(through: appliedThrough, outputs: outputs), at: node,
                header: "\(node) applied through \(appliedThrough)")
        }
    }

    private func link(_ text: String) throws -> (NodeID, NodeID)? {
        let parts = text.split(separator: "->", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 else { return nil }
        return (try node(parts[0]), try node(parts[1]))
    }

    private func linkAndCount(_ arguments: [String], usage: String) throws -> ((NodeID, NodeID)?, Int?) {
        guard arguments.count <= 2 else { throw CommandError(usage) }
        guard let first = arguments.first else { return (nil, nil) }
        guard let link = try link(first) else { throw CommandError(usage) }
        return (link, try arguments.count == 2 ? number(arguments[1]) : nil)
    }

    /// Takes off the wire what is on `link` (everything when `nil`), the first `count` when given.
    private mutating func take(_ link: (NodeID, NodeID)?, _ count: Int?) -> [Item] {
        var taken: [Item] = []
        var kept: [Item] = []
        for item in network {
            let matches = link.map { item.from == $0.0 && item.to == $0.1 } ?? true
            if matches, taken.count < (count ?? Int.max) { taken.append(item) } else { kept.append(item) }
        }
        network = kept
        if taken.isEmpty { emit("nothing on the wire\(link.map { " from \($0.0) to \($0.1)" } ?? "")") }
        return taken
    }

    private mutating func deliver(_ item: Item) {
        if isolated.contains(item.from) != isolated.contains(item.to) {
            fail(item, because: "partitioned")
            return
        }
        switch item {
        case .request(let outbound):
            guard replicas[outbound.to] != nil else {
                fail(item, because: "\(outbound.to) is down")
                return
            }
            if case .snapshotChunk(let token, let after) = outbound.envelope.request {
                serveSnapshotChunk(outbound, token: token, after: after)
                return
            }
            carryOut(
                replicas[outbound.to]!.onRequest(outbound.envelope), at: outbound.to,
                header: "\(outbound.to) handles \(outbound.envelope)", answering: outbound)
        case .reply(let outbound, let reply):
            let node = outbound.envelope.from
            guard replicas[node] != nil else {
                emit("\(node) is down: \(item.description) lost")
                return
            }
            carryOut(replicas[node]!.onReply(reply), at: node, header: "\(node) handles \(reply)")
        }
    }

    /// The transport tells the sender of a request that it (or its reply) was lost.
    private mutating func fail(_ item: Item, because reason: String) {
        let outbound: LogOutbound
        switch item {
        case .request(let request): outbound = request
        case .reply(let request, _): outbound = request
        }
        let node = outbound.envelope.from
        guard replicas[node] != nil else {
            emit("\(item.description) \(reason); its sender \(node) is down")
            return
        }
        carryOut(
            replicas[node]!.onSendFailure(outbound), at: node,
            header: "\(node) send failure (\(item.description): \(reason))")
    }

    /// What LogPeer does with a snapshot chunk request: token 0 takes a new snapshot of the
    /// durable rows; another token continues the open one, or is told it is gone.
    private mutating func serveSnapshotChunk(_ outbound: LogOutbound, token: UInt64, after: MachineKey?) {
        let node = outbound.to
        let peer = outbound.envelope.from
        var open = snapshots[node]?[peer]
        if token == 0 {
            nextToken += 1
            let state = durable[node]!
            open = (nextToken, MemorySnapshotSource(applied: state.applied, rows: state.machine))
        }
        let reply: LogReply
        if let open, token == 0 || open.token == token {
            let (rows, done) = open.source.chunk(
                after: token == 0 ? nil : after, maxBytes: configuration.snapshotChunkBytes)
            snapshots[node, default: [:]][peer] = done ? nil : open
            reply = .snapshotChunk(
                token: open.token, applied: open.source.applied, after: token == 0 ? nil : after, rows: rows,
                done: done)
        } else {
            reply = .snapshotGone
        }
        emit("\(node) serves \(outbound.envelope): \(reply)")
        network.append(
            .reply(
                outbound,
                LogReplyEnvelope(from: node, incarnation: replicas[node]!.memberIncarnation, reply: reply)))
    }

    // MARK: Checks

    private mutating func checkAgreement() {
        for node in peers {
            var known: [(Slot, LogEntry)] = []
            if let replica = replicas[node] {
                known += replica.records.filter(\.value.chosen).map { ($0.key, $0.value.entry) }
            }
            if let state = durable[node] {
                known += state.records.filter(\.value.chosen).map { ($0.key, $0.value.entry) }
                let applied = ListMachine.commands(state.machine)
                let shorter = Swift.min(applied.count, longestApplied.count)
                if applied[..<shorter] != longestApplied[..<shorter] {
                    violations.append("node \(node) applied a sequence that diverges from another replica's")
                }
                if applied.count > longestApplied.count { longestApplied = applied }
            }
            for (slot, entry) in known {
                if let seen = chosen[slot], seen != entry {
                    violations.append("slot \(slot) chosen twice: \(seen) and \(entry) (node \(node))")
                }
                chosen[slot] = chosen[slot] ?? entry
            }
        }
        for violation in violations[reportedViolations...] { emit("VIOLATION \(violation)") }
        reportedViolations = violations.count
    }

    // MARK: Parsing

    private func node(_ text: String) throws -> NodeID {
        guard let value = UInt32(text), peers.contains(NodeID(value)) else {
            throw CommandError("no node \(text) (nodes: \(peers.map(\.description).joined(separator: ", ")))")
        }
        return NodeID(value)
    }

    private func upNode(_ text: String) throws -> NodeID {
        let node = try node(text)
        guard replicas[node] != nil else { throw CommandError("node \(node) is down") }
        return node
    }

    private func number(_ text: String) throws -> Int {
        guard let value = Int(text), (0...1_000_000).contains(value) else {
            throw CommandError("not a number in 0...1000000: \(text)")
        }
        return value
    }
}
