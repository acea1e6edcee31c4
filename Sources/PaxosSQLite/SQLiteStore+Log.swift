import Dispatch
import PaxosCore
import PaxosWire
import Synchronization

/// The replicated log's durable state, in the same file and with the same discipline as the
/// acceptor state: one `BEGIN IMMEDIATE … COMMIT` per batch on the store's queue, fsync on
/// commit, poison on failure.
///
/// The state machine's rows stay on disk: loading reads the log and a few fixed rows, never
/// `machine_rows`; applying reads and writes rows inside the batch's transaction; a snapshot for
/// a peer is a read transaction on a connection of its own, so commits go on meanwhile.
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
            // The replica takes these as given and asserts what they must satisfy: a file that
            // breaks it was damaged or edited, and is refused here rather than crashing it later.
            guard state.applied >= 0, state.applied < LogWire.maxSlot, state.logStart >= 1,
                state.logStart <= state.applied + 1
            else {
                throw SQLiteError(
                    .corrupt,
                    "\(self.path): log_state is inconsistent (applied \(state.applied), log_start \(state.logStart)): the file was damaged or edited"
                )
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
            try connection.run(
                "SELECT source, token, applied, after_space, after_key FROM snapshot_progress WHERE id = 1"
            ) { (row: SQLiteRow) throws(SQLiteError) in
                state.staging = SnapshotStaging(
                    source: NodeID(UInt32(truncatingIfNeeded: row.integer(0))),
                    token: UInt64(bitPattern: row.integer(1)), applied: Slot(row.integer(2)),
                    after: row.isNull(3)
                        ? nil : MachineKey(space: UInt8(truncatingIfNeeded: row.integer(3)), key: row.blob(4))
                )
            }
            // The membership: one row of the machine's, and of the staged snapshot's.
            let key = SQLiteValue.blob(Membership.rowKey.key)
            for table in ["machine_rows", "snapshot_staging"] {
                var found: Membership??
                try connection.run(
                    "SELECT value FROM \(table) WHERE space = \(Membership.rowKey.space) AND key = ?1", [key]
                ) { (row: SQLiteRow) throws(SQLiteError) in found = .some(Membership(encoded: row.blob(0))) }
                guard let found else { continue }
                guard let membership = found else {
                    throw SQLiteError(
                        .corrupt, "\(self.path): the membership row in \(table) cannot be decoded")
                }
                if table == "machine_rows" {
                    state.membership = membership
                } else if state.staging != nil {
                    state.staging!.membership = membership
                }
            }
            return state
        }
    }

    public func commitLog(
        _ mutations: [LogMutation], machine: some StateMachine, outputsFor node: NodeID, durable: Bool,
        beforeDurable: @escaping @Sendable ([(ProposalID, Value)]) -> Void
    ) async throws -> [(ProposalID, Value)] {
        guard !mutations.isEmpty else { return [] }
        let outputs = try await onQueue { () throws(SQLiteError) -> [Output] in
            try self.commitLogOnQueue(mutations, machine, node, durable, beforeDurable).map {
                Output(id: $0.0, value: $0.1)
            }
        }
        return outputs.map { ($0.id, $0.value) }
    }

    /// Makes the staged rows the state machine's, inside the caller's transaction, by renaming
    /// tables rather than copying rows: the cost does not grow with the store, and the old rows'
    /// pages go to the free list (reclaimed a few MiB per commit, or reused by the next staging).
    /// The views are dropped and re-created around it, so none is rewritten to name another table.
    private static func swapInStagedRows(_ connection: SQLiteConnection) throws(SQLiteError) {
        var views: [(name: String, sql: String)] = []
        try connection.run("SELECT name, sql FROM sqlite_schema WHERE type = 'view' ORDER BY name") {
            (row: SQLiteRow) throws(SQLiteError) in views.append((row.text(0), row.text(1)))
        }
        var staging = ""
        try connection.run("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'snapshot_staging'")
        {
            (row: SQLiteRow) throws(SQLiteError) in staging = row.text(0)
        }
        guard !staging.isEmpty else { throw SQLiteError(.sqlite, "the snapshot_staging table is missing") }
        for view in views { try connection.execute("DROP VIEW \"\(view.name)\"") }
        try connection.execute(
            """
            DROP TABLE machine_rows;
            ALTER TABLE snapshot_staging RENAME TO machine_rows;
            """)
        try connection.execute(staging)
        for view in views { try connection.execute(view.sql) }
    }

    private static func apply(
        _ proposal: Proposal, _ slot: Slot, _ machine: some StateMachine, _ rows: inout SQLiteRows,
        _ path: String
    ) throws(SQLiteError) -> Value {
        do {
            return try ClusterMachine(machine).apply(proposal, slot: slot, rows: &rows)
        } catch {
            if let error = error as? SQLiteError { throw error }
            throw SQLiteError(.sqlite, "\(path): applying slot \(slot) failed: \(error)")
        }
    }

    public func machineRows() async throws -> [MachineKey: [UInt8]] {
        try await onQueue { () throws(SQLiteError) -> [MachineKey: [UInt8]] in
            var rows: [MachineKey: [UInt8]] = [:]
            try self.openConnection().run("SELECT space, key, value FROM machine_rows") {
                (row: SQLiteRow) throws(SQLiteError) in
                rows[MachineKey(space: UInt8(truncatingIfNeeded: row.integer(0)), key: row.blob(1))] =
                    row.blob(2)
            }
            return rows
        }
    }

    /// From the primary key's index: a scrape of the sessions held costs no table scan.
    /// On the reader's connection: a scrape of `/metrics` counts without holding up the commits
    /// (and so the votes) queued behind it on the store's queue.
    public func machineRowCount(in space: UInt8) async throws -> Int {
        try reader.run { (connection) throws(SQLiteError) -> Int in
            Int(
                try connection.scalar(
                    "SELECT count(*) FROM machine_rows WHERE space = ?1", [.integer(Int64(space))]) ?? 0)
        }
    }

    public func openSnapshot() async throws -> any LogSnapshotSource {
        try await SQLiteSnapshotSource.open(path: path)
    }

    /// On the reader's read-only connection, so a read never waits behind a commit's fsync; in
    /// one read transaction, so a machine that reads several rows sees one state.
    public func read(_ command: Value, machine: some StateMachine) async throws -> Value? {
        let path = self.path
        return try reader.run { (connection) throws(SQLiteError) -> Value? in
            try connection.execute("BEGIN")
            defer { try? connection.execute("COMMIT") }
            do {
                return try machine.read(command, rows: SQLiteRows(connection: connection))
            } catch let error as SQLiteError {
                throw error
            } catch {
                throw SQLiteError(.sqlite, "\(path): reading failed: \(error)")
            }
        }
    }

    private func commitLogOnQueue(
        _ mutations: [LogMutation], _ machine: some StateMachine, _ node: NodeID, _ durable: Bool,
        _ beforeDurable: @Sendable ([(ProposalID, Value)]) -> Void
    ) throws(SQLiteError) -> [(ProposalID, Value)] {
        try transaction(sync: durable) { (connection) throws(SQLiteError) in
            // The same guards as LogDurableState.apply, so the file and the model never disagree.
            var bounds = (applied: Slot(0), logStart: Slot(1))
            try connection.run("SELECT applied, log_start FROM log_state") {
                (row: SQLiteRow) throws(SQLiteError) in
                bounds = (Slot(row.integer(0)), Slot(row.integer(1)))
            }
            let appliedBefore = bounds.applied
            var outputs: [(ProposalID, Value)] = []
            var released = false
            for mutation in mutations {
                if case .apply(let slot, let entry) = mutation {
                    guard slot > bounds.applied else { continue }
                    guard slot == bounds.applied + 1 else {
                        throw SQLiteError(
                            .sqlite, "\(path): \(LogStoreError.gap(slot: slot, applied: bounds.applied))")
                    }
                    var rows = SQLiteRows(connection: connection)
                    for proposal in entry {
                        let output = try Self.apply(proposal, slot, machine, &rows, path)
                        if proposal.id.node == node { outputs.append((proposal.id, output)) }
                    }
                    bounds.applied = slot
                    continue
                }
                try apply(mutation, connection, &bounds, released: &released)
            }
            if bounds.applied > appliedBefore {
                try connection.run(
                    "UPDATE log_state SET applied = max(applied, ?1)", [.integer(Int64(bounds.applied))])
            }
            // Computed from chosen entries only: the client need not wait for this fsync. A
            // commit without one ends within microseconds: its outputs go back with it, which
            // saves the runtime's thread a wake-up per batch.
            if !outputs.isEmpty, durable { beforeDurable(outputs) }
            return (outputs, reclaim: released)
        }
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
        case .apply:
            // Handled by the caller, which holds the machine.
            break
        case .release(let below):
            guard below > bounds.logStart else { return }
            bounds.logStart = below
            released = true
            try connection.run("DELETE FROM log_entries WHERE slot < ?1", [.integer(Int64(below))])
            try connection.run(
                "UPDATE log_state SET log_start = max(log_start, ?1)", [.integer(Int64(below))])
        case .stageSnapshot(let chunk):
            if chunk.first {
                try connection.execute("DELETE FROM snapshot_staging")
                try connection.run(
                    """
                    INSERT INTO snapshot_progress (id, source, token, applied, after_space, after_key)
                    VALUES (1, ?1, ?2, ?3, NULL, NULL)
                    ON CONFLICT (id) DO UPDATE SET source = ?1, token = ?2, applied = ?3, after_space = NULL,
                        after_key = NULL
                    """,
                    [
                        .integer(Int64(chunk.source.rawValue)), .integer(Int64(bitPattern: chunk.token)),
                        .integer(Int64(chunk.applied)),
                    ])
            }
            let current = try connection.scalar(
                "SELECT count(*) FROM snapshot_progress WHERE source = ?1 AND token = ?2",
                [.integer(Int64(chunk.source.rawValue)), .integer(Int64(bitPattern: chunk.token))])
            guard current == 1, let last = chunk.rows.last else { return }
            for row in chunk.rows {
                try connection.run(
                    "INSERT INTO snapshot_staging (space, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (space, key) DO UPDATE SET value = ?3",
                    [.integer(Int64(row.key.space)), .blob(row.key.key), .blob(row.value)])
            }
            try connection.run(
                "UPDATE snapshot_progress SET after_space = ?1, after_key = ?2",
                [.integer(Int64(last.key.space)), .blob(last.key.key)])
        case .installSnapshot(let applied):
            let staged = try connection.scalar("SELECT applied FROM snapshot_progress WHERE id = 1")
            if staged == Int64(applied), applied > bounds.applied {
                bounds.applied = applied
                bounds.logStart = Swift.max(bounds.logStart, applied + 1)
                released = true
                try Self.swapInStagedRows(connection)
                try connection.run("DELETE FROM log_entries WHERE slot <= ?1", [.integer(Int64(applied))])
                try connection.run(
                    "UPDATE log_state SET applied = ?1, log_start = max(log_start, ?1 + 1)",
                    [.integer(Int64(applied))])
            }
            try connection.execute("DELETE FROM snapshot_staging; DELETE FROM snapshot_progress;")
        case .discardSnapshot:
            try connection.execute("DELETE FROM snapshot_staging; DELETE FROM snapshot_progress;")
        case .incarnation(let value):
            try connection.run(
                "UPDATE log_state SET incarnation = max(incarnation, ?1)",
                [.integer(Int64(bitPattern: value))])
        }
    }
}

/// One output of a commit, as it crosses from the store's queue.
private struct Output: Sendable {
    var id: ProposalID
    var value: Value
}

/// The state machine's rows inside the transaction that applies: reads see the writes of the
/// commands applied before in the same batch.
struct SQLiteRows: MachineRows {
    let connection: SQLiteConnection

    func value(_ key: MachineKey) throws(SQLiteError) -> [UInt8]? {
        var value: [UInt8]?
        try connection.run(
            "SELECT value FROM machine_rows WHERE space = ?1 AND key = ?2",
            [.integer(Int64(key.space)), .blob(key.key)]
        ) { (row: SQLiteRow) throws(SQLiteError) in value = row.blob(0) }
        return value
    }

    func first(in space: UInt8) throws(SQLiteError) -> MachineKey? {
        var key: MachineKey?
        try connection.run(
            "SELECT key FROM machine_rows WHERE space = ?1 ORDER BY key LIMIT 1", [.integer(Int64(space))]
        ) { (row: SQLiteRow) throws(SQLiteError) in key = MachineKey(space: space, key: row.blob(0)) }
        return key
    }

    func count(in space: UInt8) throws(SQLiteError) -> Int {
        Int(
            try connection.scalar(
                "SELECT count(*) FROM machine_rows WHERE space = ?1", [.integer(Int64(space))]) ?? 0)
    }

    mutating func put(_ key: MachineKey, _ value: [UInt8]) throws(SQLiteError) {
        try connection.run(
            "INSERT INTO machine_rows (space, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (space, key) DO UPDATE SET value = ?3",
            [.integer(Int64(key.space)), .blob(key.key), .blob(value)])
    }

    mutating func delete(_ key: MachineKey) throws(SQLiteError) {
        try connection.run(
            "DELETE FROM machine_rows WHERE space = ?1 AND key = ?2",
            [.integer(Int64(key.space)), .blob(key.key)])
    }
}

/// A read-only connection of its own, for reads that must not wait behind the store's commits
/// (WAL lets them run while a commit writes). A read runs on the caller's thread under a lock:
/// a point read of rows the page cache holds takes microseconds, less than the two thread hops
/// a queue of its own would cost. A large value read from disk can take far longer, so callers
/// must not be a replica's thread (paxos-node reads on its HTTP loop, never on the replicas').
/// Opened at the first read; closed with the store.
final class SQLiteReader: @unchecked Sendable {
    private let path: String
    private let lock = Mutex(())
    // Guarded by `lock`.
    private var connection: SQLiteConnection?
    private var closed = false

    init(path: String) { self.path = path }

    func run<T: Sendable>(_ body: (SQLiteConnection) throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        let result: Result<T, SQLiteError> = lock.withLock { _ in
            Result { () throws(SQLiteError) -> T in
                guard !closed else { throw SQLiteError(.sqlite, "\(path): the store is closed") }
                if connection == nil { connection = try SQLiteConnection(path: path, readOnly: true) }
                return try body(connection!)
            }
        }
        return try result.get()
    }

    func close() {
        lock.withLock { _ in
            closed = true
            connection?.close()
            connection = nil
        }
    }
}

/// A snapshot of the state machine for a peer: one read transaction on a read-only connection of
/// its own, used on its own queue, so the store's commits go on (WAL keeps the pages this
/// transaction sees until it ends).
final class SQLiteSnapshotSource: LogSnapshotSource, @unchecked Sendable {
    let applied: Slot
    private let queue: DispatchQueue
    // Guarded by `queue`.
    private var connection: SQLiteConnection?

    private init(applied: Slot, connection: SQLiteConnection, queue: DispatchQueue) {
        self.applied = applied
        self.connection = connection
        self.queue = queue
    }

    static func open(path: String) async throws -> SQLiteSnapshotSource {
        let queue = DispatchQueue(label: "swift-paxos.sqlite-snapshot")
        let result: Result<SQLiteSnapshotSource, SQLiteError> = await withCheckedContinuation {
            continuation in
            queue.async {
                continuation.resume(
                    returning: Result { () throws(SQLiteError) -> SQLiteSnapshotSource in
                        let connection = try SQLiteConnection(path: path, readOnly: true)
                        do throws(SQLiteError) {
                            try connection.execute("BEGIN")
                            // The first read starts the transaction: everything after sees this state.
                            let applied = Slot(try connection.scalar("SELECT applied FROM log_state") ?? 0)
                            return SQLiteSnapshotSource(
                                applied: applied, connection: connection, queue: queue)
                        } catch {
                            connection.close()
                            throw error
                        }
                    })
            }
        }
        return try result.get()
    }

    func chunk(after: MachineKey?, maxBytes: Int) async throws -> (rows: [MachineRow], done: Bool) {
        let result: Result<Chunk, SQLiteError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(
                    returning: Result { () throws(SQLiteError) -> Chunk in try self.read(after, maxBytes) })
            }
        }
        let chunk = try result.get()
        return (chunk.rows, chunk.done)
    }

    private struct Chunk: Sendable {
        var rows: [MachineRow]
        var done: Bool
    }

    private func read(_ after: MachineKey?, _ maxBytes: Int) throws(SQLiteError) -> Chunk {
        guard let connection else { throw SQLiteError(.sqlite, "the snapshot is closed") }
        var rows: [MachineRow] = []
        var bytes = 0
        var done = true
        try connection.each(
            "SELECT space, key, value FROM machine_rows WHERE (space, key) > (?1, ?2) ORDER BY space, key",
            [.integer(Int64(after.map { Int($0.space) } ?? -1)), .blob(after?.key ?? [])]
        ) { (row: SQLiteRow) throws(SQLiteError) -> Bool in
            if !rows.isEmpty, bytes >= maxBytes {
                done = false
                return false
            }
            let key = MachineKey(space: UInt8(truncatingIfNeeded: row.integer(0)), key: row.blob(1))
            let value = row.blob(2)
            bytes += 9 + key.key.count + value.count
            rows.append(MachineRow(key: key, value: value))
            return true
        }
        return Chunk(rows: rows, done: done)
    }

    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                try? self.connection?.execute("ROLLBACK")
                self.connection?.close()
                self.connection = nil
                continuation.resume()
            }
        }
    }
}
