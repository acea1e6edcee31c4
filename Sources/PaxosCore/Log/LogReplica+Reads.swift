/// Linearizable reads without a log write: the read index and its confirmation rounds (etcd/raft's ReadIndex).
extension LogReplica {
    /// Starts a linearizable read without a log write (etcd/raft's ReadIndex). The read comes
    /// back in a later Ready's ``LogReady/reads`` once this replica, as leader, has (1) heard a
    /// majority of its voters confirm, in a round that started after the read arrived, that none
    /// promised a ballot above its own (so no later leader can have chosen anything before the
    /// read arrived), and (2) applied every slot that may have been chosen before it arrived.
    /// The driver then reads the state machine's committed rows. A replica that does not lead
    /// reports the read in ``LogReady/failedReads`` (at once, or when it stops leading).
    ///
    /// Reads that arrive while a round is in flight wait for the next one, which starts when
    /// that one completes: one round of messages serves every read that arrived during the last.
    ///
    /// With leader-lease reads on (``LogConfiguration/leaseTicks``), a read that arrives while
    /// this leader's lease holds needs no round: it waits only for its index to be applied. The
    /// lease is checked against `clock`, the driver's reading of its monotonic clock in ticks
    /// since before this replica's first tick (`nil`: no lease read). It must never be below
    /// the true number of tick lengths elapsed, which the tick count may be after a stall: the
    /// lease argument (see ``LogConfiguration/leaseTicks``) holds only for a clock that does not
    /// lag.
    public mutating func read(clock: UInt64? = nil) -> (ReadID, LogReady) {
        nextReadID += 1
        let id = nextReadID
        if let clock, clock > now { clockAhead = Swift.max(clockAhead, clock - now) }
        var ready = LogReady()
        guard let leadership, leadership.reads.count < configuration.maxQueuedProposals else {
            ready.failedReads.append(id)
            return (id, ready)
        }
        // Every slot a client may have heard about before now: below this leader's first unchosen
        // slot (it learns its own slots chosen first), or an earlier leader's (its takeover).
        let index = Swift.max(firstUnchosen, leadership.takeoverEnd) - 1
        let round: UInt64
        if let clock, leaseHolds(at: clock) {
            // No other leader can have chosen anything yet, nor can before the lease ends.
            round = leadership.confirmedRound
            self.leadership!.leaseWanted = true
            leaseReads += 1
        } else if leadership.readRound == leadership.confirmedRound {
            startReadRound(&ready)
            round = self.leadership!.readRound
        } else {
            // The round in flight may have been answered before this read arrived.
            self.leadership!.readRoundWanted = true
            round = leadership.readRound + 1
        }
        self.leadership!.reads.append(PendingRead(id: id, index: index, round: round))
        finish(&ready)
        return (id, ready)
    }

    /// The clock's reading, as far as this replica can tell without one, never above the real one:
    /// the tick count plus the most the clock was seen ahead of it, less one tick. Between two
    /// readings the tick count grows by at most one tick more than the clock (the sleep of the
    /// first tick after a reading may have begun before it); before any, the tick count itself,
    /// which never runs ahead of a clock read from before the first tick.
    var clockEstimate: UInt64 {
        Swift.max(now, now + clockAhead - Swift.min(clockAhead, 1))
    }

    /// Whether this leader's lease holds at `clock` (ticks, as ``read(clock:)`` takes it).
    public func leaseHolds(at clock: UInt64) -> Bool {
        guard configuration.leaseReads, let leadership else { return false }
        return Swift.max(now, clock) < leadership.leaseEnd
    }

    /// The lowest read index a read waits to see applied (`nil`: none waits for an apply), so
    /// a driver commits the apply that serves it at once instead of with a later batch.
    public var waitingReadIndex: Slot? {
        leadership?.reads.lazy.map(\.index).filter { $0 > committedApplied }.min()
    }

    /// The driver stopped waiting for read `id`.
    public mutating func forgetRead(_ id: ReadID) {
        leadership?.reads.removeAll { $0.id == id }
    }

    /// Asks every voter to confirm this leader's ballot, in a new round.
    mutating func startReadRound(_ ready: inout LogReady) {
        guard let leadership else { return }
        let round = leadership.readRound + 1
        self.leadership!.readRound = round
        self.leadership!.readConfirmations = [me]
        self.leadership!.readRoundSentAt = now
        // On the clock, not the tick count: the tick count lags behind it more and more as the
        // process runs, and a lease measured from it would be over before it began.
        self.leadership!.readRoundStartedAt = clockEstimate
        self.leadership!.readRoundWanted = false
        self.leadership!.leaseWanted = false
        self.leadership!.leaseConfirmations = [me]
        if isQuorum([me], of: leadership.voters, unanimous: false) {
            self.leadership!.confirmedRound = round
            // Alone, it refuses every other node's ballot while it leads.
            if configuration.leaseReads {
                self.leadership!.leaseEnd = clockEstimate + UInt64(configuration.leaseTicks)
            }
            return
        }
        // May leave at once: it depends on this leader's promise, durable before it led.
        for peer in leadership.voters.sorted() where peer != me {
            ready.eagerMessages.append(outbound(to: peer, .confirm(ballot: leadership.ballot, round: round)))
        }
    }

    mutating func onConfirmed(
        _ from: NodeID, _ ballot: Ballot, _ round: UInt64, _ theirPromise: Ballot?, lease: Bool,
        _ ready: inout LogReady
    ) {
        if let theirPromise { observe(theirPromise.round) }
        guard let leadership, leadership.ballot == ballot else { return }
        if let theirPromise, theirPromise > ballot {
            stepDown("node \(from.rawValue) promised the higher ballot \(theirPromise)", &ready)
            return
        }
        if lease, configuration.leaseReads, round == leadership.readRound, leadership.voters.contains(from) {
            // Counted for the round in flight only: its start is what the lease is measured from.
            self.leadership!.leaseConfirmations.insert(from)
            if isQuorum(self.leadership!.leaseConfirmations, of: leadership.voters, unanimous: false) {
                let end = leadership.readRoundStartedAt + UInt64(configuration.leaseTicks)
                self.leadership!.leaseEnd = Swift.max(leadership.leaseEnd, end)
            }
        }
        guard round == leadership.readRound, round > leadership.confirmedRound,
            leadership.voters.contains(from)
        else { return }
        self.leadership!.readConfirmations.insert(from)
        guard isQuorum(self.leadership!.readConfirmations, of: leadership.voters, unanimous: false) else {
            return
        }
        self.leadership!.confirmedRound = round
        if self.leadership!.readRoundWanted { startReadRound(&ready) }
    }

    /// Lease reads: starts a round that renews the lease when reads were served under it since
    /// the last round and half of it is gone, so a steady stream of reads never waits for one.
    mutating func renewLease(_ ready: inout LogReady) {
        guard configuration.leaseReads, let leadership, leadership.leaseWanted,
            leadership.readRound == leadership.confirmedRound,
            leadership.leaseEnd <= clockEstimate + UInt64(configuration.leaseTicks / 2)
        else { return }
        startReadRound(&ready)
    }

    /// Hands out the reads whose round is confirmed and whose index is applied.
    mutating func serveReads(_ ready: inout LogReady) {
        guard let leadership, !leadership.reads.isEmpty else { return }
        var waiting: [PendingRead] = []
        for read in leadership.reads {
            if read.round <= leadership.confirmedRound, read.index <= committedApplied {
                ready.reads.append(read.id)
            } else {
                waiting.append(read)
            }
        }
        self.leadership!.reads = waiting
    }
}
