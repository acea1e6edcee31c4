/// The acceptor and the follower: requests from peers (prepare, pre-vote, accept, fetch, confirm, snapshot chunks, forwards).
extension LogReplica {
    // MARK: - Requests from peers

    /// A request from another replica; the reply is in the Ready's ``LogReady/reply``.
    public mutating func onRequest(_ envelope: LogRequestEnvelope) -> LogReady {
        var ready = LogReady()
        let from = envelope.from
        guard from != me else { return ready }
        switch envelope.request {
        case .fetch, .snapshotChunk:
            // Chosen entries and snapshots are facts, served to any authenticated peer: a node
            // that joins needs them before it is anything, and they change nothing here.
            break
        default:
            let (admitted, known) = admits(from, envelope.incarnation)
            guard admitted else {
                ready.reply = reply(.refused(known: known))
                ready.events.append(.refusedPeer(from, incarnation: envelope.incarnation, known: known))
                if case .accept(_, _, let leaderFirstUnchosen, _) = envelope.request,
                    leaderFirstUnchosen > firstUnchosen
                {
                    // A leader this replica does not know as a member (it lags behind the change
                    // that made it one): its chosen entries bring that change.
                    requestFetch(from: from, &ready)
                }
                finish(&ready)
                return ready
            }
        }
        switch envelope.request {
        case .prepare(let ballot, let fromSlot):
            ready.reply = reply(onPrepare(ballot, fromSlot, &ready))
        case .accept(let ballot, let entries, let leaderFirstUnchosen, let leaderReleasable):
            ready.reply = reply(onAccept(ballot, entries, leaderFirstUnchosen, leaderReleasable, &ready))
        case .fetch(let fromSlot):
            ready.reply = reply(onFetch(fromSlot))
        case .preVote(let ballot):
            ready.reply = reply(onPreVote(ballot))
        case .confirm(let ballot, let round):
            // Nothing durable changes, nothing to persist; sent at once (see LogReady.eagerReply).
            observe(ballot.round)
            if configuration.leaseReads, let promised, ballot >= promised, !leaseForbids(ballot.node) {
                // A lease only from a replica that promised something (one that promised nothing
                // could not refuse a prepare: a refusal names the promise it keeps), and not
                // while a lease it granted another node holds (or since it started): that one
                // forbids this node's ballots, which a second lease would allow.
                grantLease(to: ballot.node)
                ready.eagerReply = reply(.leaseConfirmed(ballot: ballot, round: round))
            } else {
                ready.eagerReply = reply(.confirmed(ballot: ballot, round: round, promised: promised))
            }
        case .snapshotChunk:
            // The driver answers these from its store.
            break
        case .forward(let proposals):
            ready.reply = reply(.forwarded(taken: leadership != nil))
            if leadership != nil {
                enqueue(proposals, &ready)
            } else if let leader, leader != me, leader != from {
                forward(proposals, to: leader, &ready)
            } else {
                // Never proposed yet, so holding them until a leader is known cannot duplicate them.
                outbox += proposals.prefix(Swift.max(0, configuration.maxQueuedProposals - outbox.count)).map
                { ($0, now) }
            }
        }
        finish(&ready)
        return ready
    }

    mutating func onPrepare(_ ballot: Ballot, _ fromSlot: Slot, _ ready: inout LogReady) -> LogReply {
        observe(ballot.round)
        if let promised, ballot < promised { return .rejected(ballot: ballot, promised: promised) }
        if let promised, ballot > promised,
            heardLeaderRecently(other: ballot.node) || leaseForbids(ballot.node)
        {
            // Leader stickiness (we heard a live leader recently), or a lease this replica
            // granted: refusing is always safe.
            return .rejected(ballot: ballot, promised: promised)
        }
        if promised == nil, leaseForbids(ballot.node) {
            // Just started: it may have granted a lease before it stopped (with a promise that
            // was not durable yet). A round-0 ballot names no promise and deposes nobody.
            return .rejected(ballot: ballot, promised: Ballot(round: 0, node: me))
        }
        promise(ballot, &ready)
        preVote = nil
        resetElectionTimer()
        return .promise(
            ballot: ballot, firstUnchosen: firstUnchosen, records: report(from: fromSlot),
            membershipSlot: membership.slot)
    }

    /// Whether a lease this replica granted (or may have granted before it started) forbids
    /// promising a ballot of `node`; while it leads with leases on, no other node's either.
    func leaseForbids(_ node: NodeID) -> Bool {
        if leadership != nil, configuration.leaseReads { return node != me }
        guard let leaseGuard, now < leaseGuard.until else { return false }
        return leaseGuard.holder != node
    }

    /// Refuses other nodes' ballots for an election timeout from now: `holder` may serve reads
    /// under a lease counted from before now.
    mutating func grantLease(to holder: NodeID) {
        let until = now + UInt64(configuration.electionTicks)
        leaseGuard = (holder: holder, until: Swift.max(until, leaseGuard?.until ?? 0))
    }

    /// Whether a leader other than `node` was heard from within an election timeout.
    func heardLeaderRecently(other node: NodeID) -> Bool {
        guard let lastHeardLeader, let leader, leader != node else { return false }
        return now - lastHeardLeader < UInt64(configuration.electionTicks)
    }

    /// Answers whether a prepare for `ballot` would be promised now, by the same rules as
    /// ``onPrepare``, and changes nothing: a refused or abandoned pre-vote leaves no trace.
    func onPreVote(_ ballot: Ballot) -> LogReply {
        let granted =
            (promised.map { ballot > $0 } ?? true) && leadership == nil
            && !heardLeaderRecently(other: ballot.node) && !leaseForbids(ballot.node)
        return .preVote(ballot: ballot, granted: granted, promised: promised)
    }

    func report(from fromSlot: Slot) -> [ReportedRecord] {
        let start = Swift.max(fromSlot, firstUnchosen)
        return records.filter { $0.key >= start }.sorted { $0.key < $1.key }
            .map { ReportedRecord(slot: $0.key, record: $0.value) }
    }

    mutating func onAccept(
        _ ballot: Ballot, _ entries: [SlotEntry], _ leaderFirstUnchosen: Slot, _ leaderReleasable: Slot,
        _ ready: inout LogReady
    ) -> LogReply {
        observe(ballot.round)
        if let promised, ballot < promised { return .rejected(ballot: ballot, promised: promised) }
        promise(ballot, &ready)
        preVote = nil
        if leader != ballot.node {
            leader = ballot.node
            flushOutbox(&ready)
        }
        lastHeardLeader = now
        resetElectionTimer()
        var voted: [Slot] = []
        for item in entries {
            if let existing = records[item.slot], existing.chosen || item.slot < firstUnchosen {
                // Already chosen here: vote only for the chosen entry itself, never "for" a
                // different one without recording it.
                if existing.entry == item.entry { voted.append(item.slot) }
                continue
            }
            guard item.slot >= firstUnchosen, item.slot >= logStart else { continue }
            records[item.slot] = LogRecord(ballot: ballot, entry: item.entry, chosen: false)
            ready.mutations.append(.accept(slot: item.slot, ballot: ballot, entry: item.entry))
            voted.append(item.slot)
        }
        // Everything accepted under this ballot below the leader's first unchosen slot is chosen:
        // the leader proposed exactly that entry in that slot under this ballot.
        var slot = firstUnchosen
        while slot < leaderFirstUnchosen {
            if let record = records[slot], !record.chosen, record.ballot == ballot {
                learn(slot, record.entry, &ready)
            }
            slot += 1
        }
        releasable = Swift.max(releasable, leaderReleasable)
        if firstUnchosen < leaderFirstUnchosen { requestFetch(from: ballot.node, &ready) }
        return .accepted(ballot: ballot, slots: voted, firstUnchosen: firstUnchosen, applied: applied)
    }

    func onFetch(_ fromSlot: Slot) -> LogReply {
        if fromSlot < logStart {
            return .snapshotAvailable(applied: applied)
        }
        var entries: [SlotEntry] = []
        var bytes = 0
        var slot = fromSlot
        while slot < firstUnchosen, entries.count < configuration.fetchLimit, let record = records[slot] {
            let size = Self.wireSize(record.entry)
            if !entries.isEmpty, bytes + size > configuration.maxMessageBytes { break }
            bytes += size
            entries.append(SlotEntry(slot: slot, entry: record.entry))
            slot += 1
        }
        return .chosen(entries: entries, firstUnchosen: firstUnchosen)
    }
}
