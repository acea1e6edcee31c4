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
        return report
    }
}
