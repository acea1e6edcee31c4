import PaxosCore
import PaxosWire

/// The replicated log's durable state, in the same file and with the same discipline as the
/// acceptor state: one `BEGIN IMMEDIATE … COMMIT` per batch on the store's queue, fsync on
/// commit, poison on failure.
extension SQLiteStore: LogStore {
    public func loadLog() async throws -> LogDurableState {
        try await onQueue { () throws(SQLiteError) -> LogDurableState in
            let connection = try self.openConnection()
            var state = LogDurableState()
            try connection.run(
                "SELECT promised_round, promised_node, max_round, applied, log_start, incarnation FROM log_state"
            ) { (row: SQLiteRow) throws(SQLiteError) in
                if !row.isNull(0) {
                    state.promised = Ballot(
                        round: UInt64(bitPattern: row.integer(0)),
                        node: NodeID(UInt32(truncatingIfNeeded: row.integer(1))))
                }
                state.maxRound = UInt64(bitPattern: row.integer(2))
                state.applied = Slot(row.integer(3))
                state.logStart = Slot(row.integer(4))
                state.incarnation = UInt64(bitPattern: row.integer(5))
            }
            var undecodable: Slot?
            try connection.run("SELECT slot, ballot_round, ballot_node, chosen, entry FROM log_entries") {
                (row: SQLiteRow) throws(SQLiteError) in
                let slot = Slot(row.integer(0))
                guard let entry = try? LogWire.decodeEntry(row.blob(4)) else {
                    undecodable = slot
                    return
                }
                let ballot =
                    row.isNull(1)
                    ? nil
                    : Ballot(
                        round: UInt64(bitPattern: row.integer(1)),
                        node: NodeID(UInt32(truncatingIfNeeded: row.integer(2))))
                state.records[slot] = LogRecord(ballot: ballot, entry: entry, chosen: row.integer(3) == 1)
            }
            if let undecodable {
                throw SQLiteError(
                    .corrupt, "\(self.path): the log entry in slot \(undecodable) cannot be decoded")
            }
            try connection.run("SELECT space, key, value FROM machine_rows") {
                (row: SQLiteRow) throws(SQLiteError) in
                state.machine[
                    MachineKey(space: UInt8(truncatingIfNeeded: row.integer(0)), key: row.blob(1))] =
                    row.blob(2)
            }
            return state
        }
    }

    public func commitLog(_ mutations: [LogMutation]) async throws {
        guard !mutations.isEmpty else { return }
        try await onQueue { () throws(SQLiteError) in try self.commitLogOnQueue(mutations) }
    }

    private func commitLogOnQueue(_ mutations: [LogMutation]) throws(SQLiteError) {
        if let poison {
            throw SQLiteError(
                .poisoned, "\(path): an earlier commit failed (\(poison.message)); refusing to continue")
        }
        let connection = try openConnection()
        var released = false
        do {
            try connection.execute("BEGIN IMMEDIATE")
            // The same guards as LogDurableState.apply, so the file and the model never disagree.
            var bounds = (applied: Slot(0), logStart: Slot(1))
            try connection.run("SELECT applied, log_start FROM log_state") {
                (row: SQLiteRow) throws(SQLiteError) in
                bounds = (Slot(row.integer(0)), Slot(row.integer(1)))
            }
            for mutation in mutations { try apply(mutation, connection, &bounds, released: &released) }
            try connection.execute("COMMIT")
        } catch {
            try? connection.execute("ROLLBACK")
            poison = error
            throw error
        }
        if released { reclaimSpace(connection) }
    }

    private func apply(
        _ mutation: LogMutation, _ connection: SQLiteConnection,
        _ bounds: inout (applied: Slot, logStart: Slot),
        released: inout Bool
    ) throws(SQLiteError) {
        switch mutation {
        case .promise(let ballot):
            try connection.run(
                """
                UPDATE log_state SET promised_round = ?1, promised_node = ?2
                WHERE promised_round IS NULL OR promised_round < ?1 OR (promised_round = ?1 AND promised_node < ?2)
                """,
                [try Self.round(ballot.round), .integer(Int64(ballot.node.rawValue))])
        case .maxRound(let round):
            try connection.run(
                "UPDATE log_state SET max_round = max(max_round, ?1)", [try Self.round(round)])
        case .ballotUsed(let ballot):
            try connection.run(
                "INSERT INTO log_ballots (ballot_round, ballot_node) VALUES (?1, ?2)",
                [try Self.round(ballot.round), .integer(Int64(ballot.node.rawValue))])
        case .accept(let slot, let ballot, let entry):
            guard slot >= bounds.logStart else { return }
            try connection.run(
                """
                INSERT INTO log_entries (slot, ballot_round, ballot_node, chosen, commands, entry)
                VALUES (?1, ?2, ?3, 0, ?4, ?5)
                ON CONFLICT (slot) DO UPDATE SET ballot_round = ?2, ballot_node = ?3, commands = ?4, entry = ?5
                WHERE chosen = 0
                """,
                [
                    .integer(Int64(slot)), try Self.round(ballot.round),
                    .integer(Int64(ballot.node.rawValue)), .integer(Int64(entry.count)),
                    .blob(LogWire.encodeEntry(entry)),
                ])
        case .choose(let slot, let entry):
            guard slot >= bounds.logStart else { return }
            try connection.run(
                """
                INSERT INTO log_entries (slot, ballot_round, ballot_node, chosen, commands, entry)
                VALUES (?1, NULL, NULL, 1, ?2, ?3)
                ON CONFLICT (slot) DO UPDATE SET chosen = 1, commands = ?2,
                    ballot_round = CASE WHEN entry = ?3 THEN ballot_round END,
                    ballot_node = CASE WHEN entry = ?3 THEN ballot_node END, entry = ?3
                """, [.integer(Int64(slot)), .integer(Int64(entry.count)), .blob(LogWire.encodeEntry(entry))])
        case .apply(let through, let changes):
            guard through > bounds.applied else { return }
            bounds.applied = through
            for change in changes { try write(change, connection) }
            try connection.run("UPDATE log_state SET applied = max(applied, ?1)", [.integer(Int64(through))])
        case .release(let below):
            guard below > bounds.logStart else { return }
            bounds.logStart = below
            released = true
            try connection.run("DELETE FROM log_entries WHERE slot < ?1", [.integer(Int64(below))])
            try connection.run(
                "UPDATE log_state SET log_start = max(log_start, ?1)", [.integer(Int64(below))])
        case .installSnapshot(let applied, let rows):
            guard applied > bounds.applied else { return }
            bounds.applied = applied
            bounds.logStart = Swift.max(bounds.logStart, applied + 1)
            released = true
            try connection.execute("DELETE FROM machine_rows")
            for (key, value) in rows { try write(.put(key, value), connection) }
            try connection.run("DELETE FROM log_entries WHERE slot <= ?1", [.integer(Int64(applied))])
            try connection.run(
                "UPDATE log_state SET applied = ?1, log_start = max(log_start, ?1 + 1)",
                [.integer(Int64(applied))])
        case .incarnation(let value):
            try connection.run(
                "UPDATE log_state SET incarnation = max(incarnation, ?1)",
                [.integer(Int64(bitPattern: value))])
        }
    }

    private func write(_ change: MachineMutation, _ connection: SQLiteConnection) throws(SQLiteError) {
        switch change {
        case .put(let key, let value):
            try connection.run(
                "INSERT INTO machine_rows (space, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (space, key) DO UPDATE SET value = ?3",
                [.integer(Int64(key.space)), .blob(key.key), .blob(value)])
        case .delete(let key):
            try connection.run(
                "DELETE FROM machine_rows WHERE space = ?1 AND key = ?2",
                [.integer(Int64(key.space)), .blob(key.key)])
        }
    }
}
