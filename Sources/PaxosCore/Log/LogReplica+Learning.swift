/// Learning chosen entries, installing snapshots, and what the driver reports applied.
extension LogReplica {
    // MARK: - Learning and applying

    mutating func learn(_ slot: Slot, _ entry: LogEntry, _ ready: inout LogReady) {
        guard slot >= firstUnchosen, slot >= logStart else { return }
        if let known = records[slot], known.chosen, known.entry != entry {
            // Two entries chosen in one slot is what Paxos rules out: whoever reports another
            // one is broken or hostile. Keep the one known; never apply both. (An input, so
            // reported, not asserted.)
            ready.events.append(.conflictingChosen(slot: slot))
            return
        }
        let held = records[slot]?.entry == entry
        records[slot] = LogRecord(ballot: held ? records[slot]?.ballot : nil, entry: entry, chosen: true)
        // When the slot already holds this entry, knowing it is chosen is a cache: the applied
        // index covers it once applied, and a restart re-learns it before that. Writing the
        // entry is needed only when the store holds another one (or none).
        if !held { ready.mutations.append(.choose(slot: slot, entry: entry)) }
        advanceFirstUnchosen()
    }

    mutating func advanceFirstUnchosen() {
        while let record = records[firstUnchosen], record.chosen {
            for proposal in record.entry where MembershipChange.isChange(proposal.command) {
                // The same rule the store applies the change by (``MembershipChange/apply``).
                let change = MembershipChange(command: proposal.command) ?? .refused("")
                let (next, refusal) = membership.applying(change, slot: firstUnchosen)
                if refusal == nil {
                    membership = next
                    membershipChanged = true
                }
            }
            firstUnchosen += 1
        }
    }

    /// One chunk of the snapshot being fetched: staged durably; the next one is asked for once
    /// it is, so a transfer keeps one chunk in flight and resumes after the last durable one.
    mutating func onSnapshotChunk(
        _ from: NodeID, _ token: UInt64, _ snapshotApplied: Slot, _ answeredAfter: MachineKey?,
        _ rows: [MachineRow],
        _ done: Bool, _ ready: inout LogReady
    ) {
        // Only the answer to the request in flight: replies may overtake each other, and a late
        // one to an older request (another `after`, or another transfer) would leave a gap.
        guard var current = download, current.source == from, token != 0,
            current.token == 0 || current.token == token,
            answeredAfter == (current.token == 0 ? nil : current.after)
        else { return }
        // Rows come from a peer: they must follow the last staged one, in strictly rising order.
        var previous = current.token == 0 ? nil : current.after
        for row in rows {
            if let previous, !(previous < row.key) {
                download = nil
                return
            }
            previous = row.key
        }
        let first = current.token == 0
        if !first, let staging, staging.applied != snapshotApplied {
            download = nil
            return
        }
        var stagedMembership = first ? nil : staging?.membership
        if let row = rows.first(where: { $0.key == Membership.rowKey }) {
            guard let decoded = Membership(encoded: row.value) else {
                // A damaged membership row: never install a snapshot whose membership is unknown.
                download = nil
                return
            }
            stagedMembership = decoded
        }
        ready.mutations.append(
            .stageSnapshot(
                SnapshotChunk(source: from, token: token, applied: snapshotApplied, rows: rows, first: first))
        )
        current.token = token
        current.after = previous
        current.deadline = now + UInt64(configuration.resendTicks)
        staging = SnapshotStaging(
            source: from, token: token, applied: snapshotApplied, after: previous,
            membership: stagedMembership)
        guard done else {
            download = current
            ready.messages.append(outbound(to: from, .snapshotChunk(token: token, after: previous)))
            return
        }
        download = nil
        staging = nil
        // Installs only if it is ahead of what was handed out; otherwise it just drops the staging.
        ready.mutations.append(.installSnapshot(applied: snapshotApplied))
        guard snapshotApplied > handedOut else { return }
        ready.events.append(.snapshotInstalled(from: from, applied: snapshotApplied))
        if let leadership, snapshotApplied >= leadership.catchUpTarget {
            // A leader learns slots it may have proposed in only from its own quorums.
            stepDown("a snapshot carried it past its catch-up target", &ready)
        }
        applied = snapshotApplied
        handedOut = snapshotApplied
        retainedBytes = 0
        records = records.filter { $0.key > snapshotApplied }
        logStart = Swift.max(logStart, snapshotApplied + 1)
        if firstUnchosen <= snapshotApplied + 1 {
            // The membership in force after the snapshot's slot is the one its rows hold.
            let installed = stagedMembership ?? bootstrapMembership
            if installed != membership {
                membership = installed
                membershipChanged = true
            }
        }
        firstUnchosen = Swift.max(firstUnchosen, snapshotApplied + 1)
        advanceFirstUnchosen()
        if let leadership, firstUnchosen < leadership.catchUpTarget { requestFetch(from: from, &ready) }
    }

    /// The driver committed the `apply` mutations through `slot` (or an `installSnapshot` of
    /// the state after `slot`); `outputs` are the state machine's answers to this replica's
    /// proposals among them.
    public mutating func onApplied(through slot: Slot, outputs: [(ProposalID, Value)]) -> LogReady {
        var ready = LogReady()
        let through = Swift.min(slot, handedOut)
        committedApplied = Swift.max(committedApplied, through)
        if through > applied {
            for applying in (applied + 1)...through {
                retainedBytes += records[applying].map { Self.wireSize($0.entry) } ?? 0
            }
            applied = through
        }
        for (id, output) in outputs where id.node == me && id.incarnation == incarnation {
            if outstandingProposals.remove(id) != nil { ready.results.append((id, output)) }
            resendableProposals.remove(id)
            forwardedProposals.remove(id)
        }
        finish(&ready)
        return ready
    }
}
