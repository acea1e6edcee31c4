/// The leader: proposing, counting votes, membership changes, resends and catching peers up.
extension LogReplica {
    // MARK: - Leading

    mutating func drive(_ ready: inout LogReady) {
        guard let leadership, leadership.changeSlot == nil else { return }
        if membership.isProvisional || !leadership.changes.isEmpty || !leadership.heard.isEmpty {
            // A membership change goes alone, once every slot before it is chosen (so it is
            // judged against the membership in force), and nothing follows it until it is chosen.
            guard leadership.nextSlot == firstUnchosen else { return }
            if let change = nextChange(leadership) {
                let slot = leadership.nextSlot
                self.leadership!.changeSlot = slot
                propose([SlotEntry(slot: slot, entry: [change])], &ready)
                return
            }
        }
        var entries: [SlotEntry] = []
        var queue = leadership.queue[...]
        var nextSlot = leadership.nextSlot
        while !queue.isEmpty, nextSlot - firstUnchosen < configuration.maxSlotsInFlight {
            // A slot in flight: open another only for a batch worth its fsync on every replica.
            if nextSlot > firstUnchosen, queue.count < configuration.minPipelinedBatch { break }
            var batch: LogEntry = []
            var bytes = 0
            while let next = queue.first, batch.count < configuration.maxProposalsPerSlot,
                batch.isEmpty || bytes + next.command.count <= configuration.maxBytesPerSlot
            {
                batch.append(next)
                bytes += next.command.count
                queue.removeFirst()
            }
            entries.append(SlotEntry(slot: nextSlot, entry: batch))
            nextSlot += 1
        }
        guard !entries.isEmpty else { return }
        self.leadership!.queue = Array(queue)
        propose(entries, &ready)
    }

    /// The membership change to propose next, if any (taken off the queue): a new cluster's first
    /// entry records its voters' incarnations; then learners' incarnations once heard; then the
    /// operator's changes, in order.
    mutating func nextChange(_ leadership: Leadership) -> Proposal? {
        if membership.isProvisional {
            let members = membership.members.map { member in
                var member = member
                member.incarnation = leadership.incarnations[member.id] ?? 0
                return member
            }
            return leaderProposal(.bootstrap(members))
        }
        for (id, heard) in leadership.heard.sorted(by: { $0.key < $1.key }) {
            self.leadership!.heard[id] = nil
            if membership.member(id)?.incarnation == 0 { return leaderProposal(.pin(id, incarnation: heard)) }
        }
        guard var proposal = leadership.changes.first else { return nil }
        self.leadership!.changes.removeFirst()
        if case .promote(let id) = MembershipChange(command: proposal.command),
            membership.member(id)?.isVoter == false
        {
            let peerApplied = leadership.appliedByPeer[id] ?? 0
            if peerApplied + configuration.promoteLag < applied {
                // Promoted now, it would count in quorums while it cannot vote for new entries
                // (it lacks the slots before them) and the cluster would lose a voter's worth of
                // tolerance. Refused through the log, so its proposer hears why.
                proposal.command = MembershipChange.refused(
                    "node \(id.rawValue) has not caught up: it applied slot \(peerApplied), the leader \(applied)"
                ).encoded()
            }
        }
        return proposal
    }

    mutating func leaderProposal(_ change: MembershipChange) -> Proposal {
        nextNumber += 1
        return Proposal(
            id: ProposalID(node: me, incarnation: incarnation, number: nextNumber), command: change.encoded())
    }

    /// Proposes `entries` under the current ballot: this replica's acceptor accepts them (its
    /// vote counts once durable) and every peer is asked at once.
    mutating func propose(_ entries: [SlotEntry], _ ready: inout LogReady) {
        guard let ballot = leadership?.ballot, !entries.isEmpty else { return }
        for item in entries {
            records[item.slot] = LogRecord(ballot: ballot, entry: item.entry, chosen: false)
            ready.mutations.append(.accept(slot: item.slot, ballot: ballot, entry: item.entry))
            leadership!.inFlight[item.slot] = InFlight(entry: item.entry, sentAt: now)
            leadership!.ownVotePending[item.slot] = leadership!.ownVotePending[item.slot] ?? now
            leadership!.nextSlot = Swift.max(leadership!.nextSlot, item.slot + 1)
        }
        let chunks = chunked(entries)
        for peer in membership.ids where peer != me {
            for chunk in chunks {
                ready.eagerMessages.append(outbound(to: peer, acceptRequest(ballot, chunk)))
            }
        }
        ready.localReplies.append(
            reply(
                .accepted(
                    ballot: ballot, slots: entries.map(\.slot), firstUnchosen: firstUnchosen, applied: applied
                )))
    }

    mutating func vote(_ slot: Slot, _ from: NodeID, _ ready: inout LogReady) {
        guard leadership?.inFlight[slot] != nil, leadership!.voters.contains(from) else { return }
        leadership!.inFlight[slot]!.votes.insert(from)
        countVotes(&ready)
    }

    /// Learns this leader's slots chosen in slot order: a slot's quorum is counted only once every
    /// slot before it is chosen, so the membership it is counted in is exactly the one in force
    /// there; when that is no longer the one this leader's phase 1 was counted in, it stops.
    mutating func countVotes(_ ready: inout LogReady) {
        while let leadership, let inFlight = leadership.inFlight[firstUnchosen],
            membership.voters == leadership.voters,
            isQuorum(inFlight.votes, of: leadership.voters, unanimous: false)
        {
            self.leadership!.inFlight[firstUnchosen] = nil
            learn(firstUnchosen, inFlight.entry, &ready)
        }
    }

    /// After a membership change is chosen: a leader whose voters changed (or whose takeover
    /// stopped at the change) campaigns again, in the membership now in force; one whose voters
    /// stay goes on.
    mutating func checkMembership(_ ready: inout LogReady) {
        guard let leadership else { return }
        if membership.voters != leadership.voters {
            stepDown("the voters changed: campaigning in the new membership", &ready)
            if canCampaign { startPreVote(&ready) }
        } else if let changeSlot = leadership.changeSlot, firstUnchosen > changeSlot {
            if leadership.campaignAgain {
                stepDown("the membership change it re-proposed is chosen: campaigning again", &ready)
                if canCampaign { startPreVote(&ready) }
            } else {
                self.leadership!.changeSlot = nil
            }
        }
    }

    /// Asks again the voters that have not confirmed the read round in flight: the confirmations
    /// may be lost. The round keeps its number: every read it serves arrived before it started.
    mutating func resendReadRound(_ ready: inout LogReady) {
        // A round whose reads were all given up on waits for the next read to ask again.
        guard let leadership, leadership.readRound > leadership.confirmedRound,
            !leadership.reads.isEmpty || configuration.leaseReads,
            now - leadership.readRoundSentAt >= UInt64(configuration.resendTicks)
        else { return }
        self.leadership!.readRoundSentAt = now
        for peer in leadership.voters.sorted()
        where peer != me && !leadership.readConfirmations.contains(peer) {
            ready.eagerMessages.append(
                outbound(to: peer, .confirm(ballot: leadership.ballot, round: leadership.readRound)))
        }
    }

    mutating func resendStale(_ ready: inout LogReady) {
        guard let leadership else { return }
        var stale: [Slot] = []
        for (slot, inFlight) in leadership.inFlight
        where now - inFlight.sentAt >= UInt64(configuration.resendTicks) {
            stale.append(slot)
        }
        guard !stale.isEmpty else { return }
        stale.sort()
        for peer in membership.ids where peer != me {
            let missing = stale.filter { !leadership.inFlight[$0]!.votes.contains(peer) }
            guard !missing.isEmpty else { continue }
            let entries = missing.map { SlotEntry(slot: $0, entry: leadership.inFlight[$0]!.entry) }
            for chunk in chunked(entries) {
                ready.eagerMessages.append(outbound(to: peer, acceptRequest(leadership.ballot, chunk)))
            }
        }
        for slot in stale { self.leadership!.inFlight[slot]!.sentAt = now }
    }

    /// A peer to fetch the slots below the catch-up target from: one that has applied them, as
    /// far as this leader knows, or any other when none is known to have.
    mutating func catchUpPeer(_ leadership: Leadership) -> NodeID {
        let others = membership.voters.sorted().filter { $0 != me }
        let ahead = others.filter { (leadership.appliedByPeer[$0] ?? 0) + 1 >= leadership.catchUpTarget }
        return (ahead.isEmpty ? others : ahead).randomElement(using: &random) ?? me
    }

    func acceptRequest(_ ballot: Ballot, _ entries: [SlotEntry]) -> LogRequest {
        .accept(ballot: ballot, entries: entries, firstUnchosen: firstUnchosen, releasable: leaderReleasable)
    }

    /// The slot below which every replica has applied, as far as the leader knows.
    var leaderReleasable: Slot {
        guard let leadership else { return releasable }
        var lowest = applied
        for peer in membership.ids where peer != me {
            lowest = Swift.min(lowest, leadership.appliedByPeer[peer] ?? 0)
        }
        return lowest + 1
    }
}
