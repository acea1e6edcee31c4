/// Election with pre-vote, taking over as leader, and stepping down.
extension LogReplica {
    // MARK: - Election

    /// Asks every peer whether it would promise the next ballot. Nothing is persisted or
    /// promised: a node that cannot reach a majority keeps its promise where the leader left it.
    mutating func startPreVote(_ ready: inout LogReady) {
        if leaseForbids(me) {
            // It granted another leader a lease (or may have, before it started): its own
            // promise would break it as surely as one to another candidate.
            resetElectionTimer()
            return
        }
        if let candidacy {
            ready.events.append(
                .electionLost(candidacy.ballot, reason: "no quorum of promises within an election timeout"))
        }
        candidacy = nil
        leader = nil
        let ballot = Ballot(round: maxRound + 1, node: me)
        let voters = membership.voters
        preVote = PreVote(ballot: ballot, grants: [me], voters: voters, unanimous: membership.isProvisional)
        resetElectionTimer()
        if isQuorum([me], of: voters, unanimous: membership.isProvisional) {
            startElection(&ready)
            return
        }
        for peer in voters.sorted() where peer != me {
            ready.eagerMessages.append(outbound(to: peer, .preVote(ballot: ballot)))
        }
    }

    mutating func startElection(_ ready: inout LogReady) {
        preVote = nil
        if leaseForbids(me) {
            // It granted a lease while its pre-vote was out.
            resetElectionTimer()
            return
        }
        let ballot = Ballot(round: maxRound + 1, node: me)
        maxRound = ballot.round
        ready.mutations.append(.maxRound(ballot.round))
        ready.mutations.append(.ballotUsed(ballot))
        promise(ballot, &ready)
        leader = nil
        let voters = membership.voters
        candidacy = Candidacy(
            ballot: ballot, from: firstUnchosen, voters: voters, unanimous: membership.isProvisional,
            membershipSlot: membership.slot)
        ready.events.append(.electionStarted(ballot, voters: voters.count))
        resetElectionTimer()
        for peer in voters.sorted() where peer != me {
            ready.messages.append(outbound(to: peer, .prepare(ballot: ballot, from: firstUnchosen)))
        }
        ready.localReplies.append(
            reply(
                .promise(
                    ballot: ballot, firstUnchosen: firstUnchosen, records: report(from: firstUnchosen),
                    membershipSlot: membership.slot)))
    }

    mutating func becomeLeader(_ ready: inout LogReady) {
        guard let candidacy else { return }
        self.candidacy = nil
        // In id order, so the peer named (and fetched from) does not depend on hash order.
        let promisers = candidacy.promises.sorted(by: { $0.key < $1.key })
        if let (peer, _) = promisers.first(where: {
            $0.value.membershipSlot > candidacy.membershipSlot
        }) ?? (membership.slot != candidacy.membershipSlot ? promisers.first : nil) {
            // A promiser knows a membership change chosen at or above the first unchosen slot
            // this campaign started from, or this replica learned one while campaigning: the
            // quorum was counted in a membership no longer in force there. Catch up first (the
            // change comes with the chosen entries) and campaign again.
            ready.events.append(
                .electionLost(
                    candidacy.ballot,
                    reason: "node \(peer.rawValue) knows a later membership: catching up to campaign again"))
            leader = nil
            resetElectionTimer()
            requestFetch(from: peer, &ready)
            return
        }
        let ballot = candidacy.ballot
        var catchUpTarget = firstUnchosen
        var catchUpSource = me
        // In id order: among promisers equally far ahead, the one fetched from must not depend on
        // the dictionary's hash order (one run, one transcript).
        for (peer, promise) in candidacy.promises.sorted(by: { $0.key < $1.key })
        where promise.firstUnchosen > catchUpTarget {
            catchUpTarget = promise.firstUnchosen
            catchUpSource = peer
        }
        // The highest-ballot accepted entry per slot; chosen ones are simply learned.
        var highest: [Slot: LogRecord] = [:]
        var maxSlot = firstUnchosen - 1
        // In id order: the chosen slots promisers report are learned in this order, which orders
        // the `choose` mutations; hash order would make them differ from process to process.
        for (_, promise) in candidacy.promises.sorted(by: { $0.key < $1.key }) {
            for reported in promise.records {
                maxSlot = Swift.max(maxSlot, reported.slot)
                if reported.record.chosen {
                    if reported.slot >= firstUnchosen, records[reported.slot]?.chosen != true {
                        learn(reported.slot, reported.record.entry, &ready)
                    }
                    continue
                }
                guard let ballot = reported.record.ballot else { continue }
                if let current = highest[reported.slot], let currentBallot = current.ballot,
                    currentBallot >= ballot
                {
                    continue
                }
                highest[reported.slot] = reported.record
            }
        }
        if membership.slot != candidacy.membershipSlot {
            // The chosen entries the promises reported carried this replica past a membership
            // change: the slots after it may belong to voters this phase 1 was not counted in
            // (two changes on, their majorities need not meet). Propose nothing; campaign again.
            leader = nil
            resetElectionTimer()
            return
        }
        let takeoverEnd = Swift.max(maxSlot + 1, catchUpTarget, firstUnchosen)
        var leadership = Leadership(
            ballot: ballot, voters: candidacy.voters, incarnations: candidacy.incarnations,
            nextSlot: takeoverEnd, catchUpTarget: catchUpTarget, lastHeartbeat: now, ownVoteProgress: now,
            catchUpSlot: firstUnchosen, catchUpSince: now, takeoverEnd: takeoverEnd)
        leadership.incarnations[me] = memberIncarnation
        let waiting = outbox.map(\.proposal)
        outbox = []
        var entries: [SlotEntry] = []
        var slot = Swift.max(catchUpTarget, firstUnchosen)
        while slot <= maxSlot {
            let entry = records[slot]?.chosen == true ? records[slot]!.entry : (highest[slot]?.entry ?? [])
            if records[slot]?.chosen != true {
                entries.append(SlotEntry(slot: slot, entry: entry))
            }
            if entry.contains(where: { MembershipChange.isChange($0.command) }) {
                // The slots after a membership change may belong to another membership, which
                // this phase 1 was not counted in: propose nothing there until the change is
                // chosen, then campaign again in the membership it makes.
                leadership.changeSlot = slot
                leadership.campaignAgain = slot < maxSlot
                leadership.nextSlot = slot + 1
                break
            }
            slot += 1
        }
        self.leadership = leadership
        leader = me
        lastHeardLeader = now
        ready.events.append(
            .electionWon(ballot, catchUpTo: catchUpTarget > firstUnchosen ? catchUpTarget : nil))
        enqueue(waiting, &ready)
        propose(entries, &ready)
        if firstUnchosen < catchUpTarget { requestFetch(from: catchUpSource, &ready) }
    }

    /// Ends this replica's leadership or candidacy; `reason` goes into the event the driver logs.
    mutating func stepDown(_ reason: String, _ ready: inout LogReady) {
        if let leadership {
            outbox += (leadership.changes + leadership.queue).map { ($0, now) }
            ready.failedReads += leadership.reads.map(\.id)
            ready.events.append(.steppedDown(leadership.ballot, reason: reason))
        }
        if let candidacy { ready.events.append(.electionLost(candidacy.ballot, reason: reason)) }
        leadership = nil
        candidacy = nil
        preVote = nil
        leader = nil
        resetElectionTimer()
    }
}
