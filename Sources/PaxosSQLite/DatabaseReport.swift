import CSQLite

/// What a node's database holds, read without writing anything: `paxosctl inspect` prints it.
/// Safe while the node runs (WAL readers never block the writer).
public struct DatabaseReport: Sendable {
    public struct Instance: Sendable {
        public var seq: Int
        public var fate: String
        public var promised: String?
        public var accepted: String?
        public var acceptedText: String?
        public var decidedText: String?
        public var decidedBytes: Int?
    }

    public var path: String
    public var schemaVersion: Int
    public var nodeID: Int?
    public var clusterID: String?
    public var createdAt: String?
    public var maxRound: UInt64
    public var min: Int
    public var doneByPeer: [(peer: Int, done: Int)]
    public var instanceCount: Int
    public var decidedCount: Int
    /// The instances with the highest sequence numbers, up to the limit asked for.
    public var recent: [Instance]

    /// The replicated log's side (schema 4 on).
    public struct Log: Sendable {
        public struct Slot: Sendable {
            public var slot: Int
            public var ballot: String?
            /// `applied`, `chosen` or `accepted`.
            public var status: String
            public var commands: Int
            public var bytes: Int
        }
        public var promised: String?
        public var maxRound: UInt64
        public var applied: Int
        public var logStart: Int
        public var entries: Int
        public var keys: Int
        public var sessions: Int
        public var stagedRows: Int
        public var incarnation: UInt64?
        /// The newest slots kept, oldest first.
        public var recent: [Slot]
        /// The first keys (as text, lossy) and their value sizes.
        public var sampleKeys: [(key: String, bytes: Int)]
    }
    public var log: Log?

    /// Reads the database at `path` read-only.
    public static func read(path: String, recent limit: Int = 20) throws -> DatabaseReport {
        let connection = try SQLiteConnection(path: path, readOnly: true)
        defer { connection.close() }
        let application = try connection.scalar("PRAGMA application_id") ?? 0
        guard application == SQLiteStore.applicationID else {
            throw SQLiteError(.notADatabase, "\(path) is not a swift-paxos database")
        }
        let version = Int(try connection.scalar("PRAGMA user_version") ?? 0)
        guard version <= Migrations.latestVersion else {
            throw SQLiteError(
                .newerSchema,
                "\(path) has schema version \(version), newer than this build reads (\(Migrations.latestVersion))"
            )
        }
        var report = DatabaseReport(
            path: path, schemaVersion: version, maxRound: 0, min: 0, doneByPeer: [], instanceCount: 0,
            decidedCount: 0, recent: [])
        try connection.run("SELECT max_round, min, instances_stored, decided_stored FROM node_summary") {
            (row: SQLiteRow) throws(SQLiteError) in
            report.maxRound = UInt64(row.integer(0))
            report.min = Int(row.integer(1))
            report.instanceCount = Int(row.integer(2))
            report.decidedCount = Int(row.integer(3))
        }
        if version >= 2 {
            try connection.run("SELECT node_id, cluster_id, created_at FROM node_identity") {
                (row: SQLiteRow) throws(SQLiteError) in
                report.nodeID = Int(row.integer(0))
                report.clusterID = row.text(1)
                report.createdAt = row.text(2)
            }
        }
        try connection.run("SELECT peer_id, done_seq FROM peer_done ORDER BY peer_id") {
            (row: SQLiteRow) throws(SQLiteError) in
            report.doneByPeer.append((Int(row.integer(0)), Int(row.integer(1))))
        }
        try connection.run(
            """
            SELECT seq, fate, promised, accepted, accepted_text, decided_text, decided_bytes
            FROM instance_state ORDER BY seq DESC LIMIT ?1
            """, [.integer(Int64(limit))]
        ) { (row: SQLiteRow) throws(SQLiteError) in
            func optionalText(_ column: Int32) -> String? { row.isNull(column) ? nil : row.text(column) }
            report.recent.append(
                Instance(
                    seq: Int(row.integer(0)), fate: row.text(1), promised: optionalText(2),
                    accepted: optionalText(3),
                    acceptedText: optionalText(4), decidedText: optionalText(5),
                    decidedBytes: row.isNull(6) ? nil : Int(row.integer(6))))
        }
        report.recent.reverse()
        if version >= 5 { report.log = try readLog(connection, version: version, limit: limit) }
        return report
    }

    static func readLog(_ connection: SQLiteConnection, version: Int, limit: Int) throws -> Log {
        var log = Log(
            maxRound: 0, applied: 0, logStart: 1, entries: 0, keys: 0, sessions: 0, stagedRows: 0, recent: [],
            sampleKeys: [])
        try connection.run(
            "SELECT promised, max_round, applied, log_start, entries, keys, sessions, staged_rows FROM log_summary"
        ) { (row: SQLiteRow) throws(SQLiteError) in
            log.promised = row.isNull(0) ? nil : row.text(0)
            log.maxRound = UInt64(row.integer(1))
            log.applied = Int(row.integer(2))
            log.logStart = Int(row.integer(3))
            log.entries = Int(row.integer(4))
            log.keys = Int(row.integer(5))
            log.sessions = Int(row.integer(6))
            log.stagedRows = Int(row.integer(7))
        }
        if version >= 6 {
            try connection.run("SELECT incarnation FROM node_identity") {
                (row: SQLiteRow) throws(SQLiteError) in
                log.incarnation = UInt64(bitPattern: row.integer(0))
            }
        }
        // The view's status column comes with migration 0008; before it, the same rule here.
        let status =
            version >= 8
            ? "status"
            : "CASE WHEN slot <= (SELECT applied FROM log_state) THEN 'applied' WHEN chosen = 1 THEN 'chosen' ELSE 'accepted' END"
        try connection.run(
            "SELECT slot, ballot, \(status), commands, bytes FROM log ORDER BY slot DESC LIMIT ?1",
            [.integer(Int64(limit))]
        ) { (row: SQLiteRow) throws(SQLiteError) in
            log.recent.append(
                Log.Slot(
                    slot: Int(row.integer(0)), ballot: row.isNull(1) ? nil : row.text(1), status: row.text(2),
                    commands: Int(row.integer(3)), bytes: Int(row.integer(4))))
        }
        log.recent.reverse()
        try connection.run("SELECT key, bytes FROM kv ORDER BY key LIMIT ?1", [.integer(Int64(limit))]) {
            (row: SQLiteRow) throws(SQLiteError) in
            log.sampleKeys.append((row.text(0), Int(row.integer(1))))
        }
        return log
    }
}
