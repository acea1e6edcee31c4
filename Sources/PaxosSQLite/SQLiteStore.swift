import Dispatch
import PaxosCore

/// The production ``AcceptorStore``: one SQLite file per node.
///
/// Durability: `journal_mode=WAL` with `synchronous=FULL`, so every commit fsyncs the WAL before
/// it returns (WAL with `NORMAL` may lose the last commits on power loss). Each batch is one
/// `BEGIN IMMEDIATE … COMMIT` transaction: all of it survives a crash or none of it does.
///
/// Threading: the connection is used only on the store's own serial dispatch queue, never on
/// the Swift concurrency pool or an event loop, because SQLite calls block (fsync).
///
/// Failure: after a failed commit the store is poisoned and refuses every later commit, because
/// after a failed write or fsync the state of the file is unknown; the peer stops serving.
public final class SQLiteStore: AcceptorStore, @unchecked Sendable {
    /// Marks a file as a swift-paxos database (`PRAGMA application_id`; "Paxs").
    public static let applicationID: Int64 = 0x5061_7873

    /// Options for opening a store.
    public struct Options: Sendable {
        /// Limits the file to this many pages (tests use it to make the disk "full").
        public var maxPageCount: Int?
        /// How long a writer waits for a lock held by another connection, e.g. `sqlite3` reading.
        public var busyTimeoutMilliseconds: Int

        public init(maxPageCount: Int? = nil, busyTimeoutMilliseconds: Int = 5000) {
            self.maxPageCount = maxPageCount
            self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        }
    }

    /// The database file.
    public let path: String
    private let queue: DispatchQueue
    /// Reads that bypass the log (``read(_:machine:)``), beside the commits.
    let reader: SQLiteReader
    // Guarded by `queue`.
    var connection: SQLiteConnection?
    private var forgottenBelow: Int
    var poison: SQLiteError?

    /// Opens (creating if needed) the database at `path`, refuses a file that is not one of ours,
    /// is corrupt, or has a newer schema, and applies the pending migrations.
    public convenience init(path: String, options: Options = Options()) throws {
        try self.init(path: path, options: options, migrations: Migrations.all)
    }

    /// Opens with an explicit migration list (tests use it to exercise upgrades).
    init(path: String, options: Options, migrations: [Migration]) throws {
        self.path = path
        self.queue = DispatchQueue(label: "swift-paxos.sqlite-store")
        self.reader = SQLiteReader(path: path)
        let connection = try SQLiteConnection(
            path: path, busyTimeoutMilliseconds: Int32(clamping: options.busyTimeoutMilliseconds))
        do {
            try Self.prepare(connection, options: options, migrations: migrations)
            self.forgottenBelow = Int(try connection.scalar("SELECT forgotten_below FROM node_state") ?? 0)
        } catch {
            connection.close()
            throw error
        }
        self.connection = connection
    }

    /// Closes the connection. Later calls fail.
    public func close() async {
        reader.close()
        await onQueue {
            self.connection?.close(); self.connection = nil
        }
    }

    // MARK: - Identity

    /// Who a data file is: recorded when it was created, checked at every start.
    public struct Identity: Hashable, Sendable {
        /// Drawn at random when the file was created (``Member/incarnation``); never 0.
        public var incarnation: UInt64
        /// The file was created to join an existing cluster (`paxos-node --join`).
        public var joined: Bool
        /// The identity was recorded by this call: the file is new (or was empty).
        public var created: Bool
    }

    /// Records which node of which cluster owns this file, or checks it when already recorded.
    /// A new file draws its incarnation and records whether it was created to join a cluster.
    /// - Throws: ``SQLiteError/Code/wrongIdentity`` when the file belongs to another node or cluster.
    @discardableResult
    public func claimIdentity(nodeID: NodeID, clusterID: String, joining: Bool = false) async throws
        -> Identity
    {
        try await onQueue { () throws(SQLiteError) -> Identity in
            let connection = try self.openConnection()
            var recorded: (Int64, String, UInt64, Bool)?
            try connection.run(
                "SELECT node_id, cluster_id, incarnation, joined FROM node_identity WHERE id = 1"
            ) {
                (row: SQLiteRow) throws(SQLiteError) in
                recorded = (
                    row.integer(0), row.text(1), UInt64(bitPattern: row.integer(2)), row.integer(3) == 1
                )
            }
            if let (node, cluster, incarnation, joined) = recorded {
                guard node == Int64(nodeID.rawValue), cluster == clusterID else {
                    throw SQLiteError(
                        .wrongIdentity,
                        "\(self.path) belongs to node \(node) of cluster '\(cluster)', not node \(nodeID) of cluster '\(clusterID)'"
                    )
                }
                return Identity(incarnation: incarnation, joined: joined, created: false)
            }
            let incarnation = UInt64.random(in: 1...UInt64.max)
            try connection.run(
                "INSERT INTO node_identity (id, node_id, cluster_id, incarnation, joined) VALUES (1, ?1, ?2, ?3, ?4)",
                [
                    .integer(Int64(nodeID.rawValue)), .text(clusterID),
                    .integer(Int64(bitPattern: incarnation)),
                    .integer(joining ? 1 : 0),
                ])
            return Identity(incarnation: incarnation, joined: joining, created: true)
        }
    }

    // MARK: - AcceptorStore

    public func load() async throws -> DurableState {
        try await onQueue { () throws(SQLiteError) -> DurableState in
            let connection = try self.openConnection()
            var state = DurableState()
            try connection.run("SELECT max_round, forgotten_below, recovering, vote_floor FROM node_state") {
                (row: SQLiteRow) throws(SQLiteError) in
                state.maxRound = UInt64(row.integer(0))
                state.forgottenBelow = Int(row.integer(1))
                state.recovering = row.integer(2) != 0
                state.voteFloor = row.isNull(3) ? nil : Int(row.integer(3))
            }
            try connection.run("SELECT peer_id, done_seq FROM peer_done") {
                (row: SQLiteRow) throws(SQLiteError) in
                state.doneByPeer[NodeID(UInt32(truncatingIfNeeded: row.integer(0)))] = Int(row.integer(1))
            }
            try connection.run(
                """
                SELECT seq, promised_round, promised_node, accepted_round, accepted_node, accepted_value,
                       decided_value
                FROM instances WHERE seq >= ?
                """, [.integer(Int64(state.forgottenBelow))]
            ) { (row: SQLiteRow) throws(SQLiteError) in
                var record = InstanceRecord()
                if !row.isNull(1) {
                    record.promised = Ballot(
                        round: UInt64(row.integer(1)),
                        node: NodeID(UInt32(truncatingIfNeeded: row.integer(2))))
                }
                if !row.isNull(3) {
                    record.accepted = AcceptedProposal(
                        ballot: Ballot(
                            round: UInt64(row.integer(3)),
                            node: NodeID(UInt32(truncatingIfNeeded: row.integer(4)))),
                        value: row.blob(5))
                }
                if !row.isNull(6) { record.decided = row.blob(6) }
                state.instances[Int(row.integer(0))] = record
            }
            return state
        }
    }

    public func commit(_ mutations: [StoreMutation]) async throws {
        guard !mutations.isEmpty else { return }
        try await onQueue { () throws(SQLiteError) in try self.commitOnQueue(mutations) }
    }

    // MARK: - Commit

    private func commitOnQueue(_ mutations: [StoreMutation]) throws(SQLiteError) {
        // The floor moves only once the batch is committed.
        forgottenBelow = try transaction { (connection) throws(SQLiteError) in
            var floor = forgottenBelow
            var forgot = false
            for mutation in mutations {
                try apply(mutation, connection, floor: &floor, forgot: &forgot)
            }
            return (floor, reclaim: forgot)
        }
    }

    /// The one way a batch of either protocol reaches the file: one `BEGIN IMMEDIATE … COMMIT`
    /// (the commit is the fsync, `synchronous = FULL`, unless `sync` is false). A batch that fails
    /// is rolled back and poisons the store: every later commit is refused, since the process can
    /// no longer tell what the disk holds (see ``SQLiteError/Code/poisoned``). `body` says whether
    /// the batch freed pages worth reclaiming after the commit.
    func transaction<T>(
        sync: Bool = true, _ body: (SQLiteConnection) throws(SQLiteError) -> (T, reclaim: Bool)
    ) throws(SQLiteError) -> T {
        if let poison {
            throw SQLiteError(
                .poisoned, "\(path): an earlier commit failed (\(poison.message)); refusing to continue")
        }
        let connection = try openConnection()
        let result: T
        let reclaim: Bool
        do throws(SQLiteError) {
            // `synchronous` is a connection setting, read at COMMIT. NORMAL in WAL mode writes
            // the frames without an fsync; the next FULL commit's fsync of the WAL covers them,
            // and a crash keeps a prefix of the commits (the frames are checksummed in order).
            // FULL comes back at once, so nothing else ever runs without an fsync; if either
            // pragma fails, the store is poisoned like after any failed commit.
            if !sync { try connection.execute("PRAGMA synchronous = NORMAL") }
            try connection.execute("BEGIN IMMEDIATE")
            (result, reclaim) = try body(connection)
            try connection.execute("COMMIT")
            if !sync { try connection.execute("PRAGMA synchronous = FULL") }
        } catch {
            try? connection.execute("ROLLBACK")
            // Poisoned, the store commits nothing more; FULL again all the same, for whatever
            // else writes through this connection (closing checkpoints).
            if !sync { try? connection.execute("PRAGMA synchronous = FULL") }
            poison = error
            throw error
        }
        if reclaim { reclaimSpace(connection) }
        return result
    }

    private func apply(
        _ mutation: StoreMutation, _ connection: SQLiteConnection, floor: inout Int, forgot: inout Bool
    ) throws(SQLiteError) {
        switch mutation {
        case .promise(let seq, let ballot):
            guard seq >= floor else { return }
            try connection.run(
                """
                INSERT INTO instances (seq, promised_round, promised_node) VALUES (?1, ?2, ?3)
                ON CONFLICT (seq) DO UPDATE SET promised_round = ?2, promised_node = ?3
                """,
                [
                    .integer(Int64(seq)), try Self.round(ballot.round),
                    .integer(Int64(ballot.node.rawValue)),
                ])
        case .accept(let seq, let ballot, let value):
            guard seq >= floor else { return }
            let round = try Self.round(ballot.round)
            let node = SQLiteValue.integer(Int64(ballot.node.rawValue))
            try connection.run(
                """
                INSERT INTO instances (seq, promised_round, promised_node, accepted_round, accepted_node,
                                       accepted_value, accepted_is_text)
                VALUES (?1, ?2, ?3, ?2, ?3, ?4, ?5)
                ON CONFLICT (seq) DO UPDATE SET promised_round = ?2, promised_node = ?3, accepted_round = ?2,
                    accepted_node = ?3, accepted_value = ?4, accepted_is_text = ?5
                """, [.integer(Int64(seq)), round, node, .blob(value), .integer(Self.isText(value) ? 1 : 0)])
        case .decide(let seq, let value):
            guard seq >= floor else { return }
            try connection.run(
                """
                INSERT INTO instances (seq, decided_value, decided_is_text) VALUES (?1, ?2, ?3)
                ON CONFLICT (seq) DO UPDATE SET decided_value = ?2, decided_is_text = ?3, accepted_round = NULL,
                    accepted_node = NULL, accepted_value = NULL, accepted_is_text = 0
                """, [.integer(Int64(seq)), .blob(value), .integer(Self.isText(value) ? 1 : 0)])
        case .maxRound(let round):
            try connection.run(
                "UPDATE node_state SET max_round = max(max_round, ?1)", [try Self.round(round)])
        case .done(let peer, let seq):
            try connection.run(
                """
                INSERT INTO peer_done (peer_id, done_seq) VALUES (?1, ?2)
                ON CONFLICT (peer_id) DO UPDATE SET done_seq = max(done_seq, ?2)
                """, [.integer(Int64(peer.rawValue)), .integer(Int64(seq))])
        case .forget(let below):
            guard below > floor else { return }
            floor = below
            forgot = true
            try connection.run("UPDATE node_state SET forgotten_below = ?1", [.integer(Int64(below))])
            try connection.run("DELETE FROM instances WHERE seq < ?1", [.integer(Int64(below))])
            try connection.run("DELETE FROM ballot_log WHERE seq < ?1", [.integer(Int64(below))])
        case .beginRecovery:
            try connection.run("UPDATE node_state SET recovering = 1 WHERE vote_floor IS NULL")
        case .endRecovery(let voteFloor, let round):
            guard voteFloor >= 0 else {
                throw SQLiteError(.sqlite, "vote floor \(voteFloor) is negative; refusing to store it")
            }
            // coalesce: SQLite's max() of NULL and a number is NULL, and the floor never goes down.
            try connection.run(
                """
                UPDATE node_state SET recovering = 0, vote_floor = max(coalesce(vote_floor, 0), ?1),
                    max_round = max(max_round, ?2)
                """, [.integer(Int64(voteFloor)), try Self.round(round)])
        case .ballotUsed(let seq, let ballot):
            guard seq >= floor else { return }
            try connection.run(
                "INSERT INTO ballot_log (seq, ballot_round, ballot_node) VALUES (?1, ?2, ?3)",
                [
                    .integer(Int64(seq)), try Self.round(ballot.round),
                    .integer(Int64(ballot.node.rawValue)),
                ])
        }
    }

    /// Returns the pages freed by forgetting to the file system, so a steady start/decide/done
    /// workload keeps the file bounded.
    func reclaimSpace(_ connection: SQLiteConnection) {
        do {
            let free = try connection.scalar("PRAGMA freelist_count") ?? 0
            // At most 4 MiB at a time: after a snapshot replaced a large state, the freed pages go
            // back over many commits instead of one vacuum that rewrites gigabytes.
            if free >= 64 { try connection.execute("PRAGMA incremental_vacuum(1024)") }
        } catch {
            // The batch itself is committed; but a write that fails now means the disk is in
            // trouble, so the next commit refuses rather than trusting it.
            poison = error
        }
    }

    /// A round as SQLite stores it. SQLite's integers are signed, so a round at or above 2^63
    /// would compare as negative (`promised_round < ?1` would keep a promise that was broken):
    /// such a commit fails, and the node stops rather than answer from what was not stored.
    /// The wire refuses rounds from 2^62 on, so only a bug can get here.
    static func round(_ round: UInt64) throws(SQLiteError) -> SQLiteValue {
        guard round < 1 << 63 else {
            throw SQLiteError(
                .sqlite, "round \(round) does not fit a signed 64-bit integer; refusing to store it")
        }
        return .integer(Int64(round))
    }

    static func isText(_ value: Value) -> Bool {
        !value.contains(0) && String(validating: value, as: UTF8.self) != nil
    }

    // MARK: - Opening

    private static func prepare(
        _ connection: SQLiteConnection, options: Options, migrations: [Migration]
    ) throws(SQLiteError) {
        let latest = migrations.last?.version ?? 0
        let path = connection.path
        let application = try connection.scalar("PRAGMA application_id") ?? 0
        let version = Int(try connection.scalar("PRAGMA user_version") ?? 0)
        let objects = try connection.scalar("SELECT count(*) FROM sqlite_schema") ?? 0
        if application != 0 && application != applicationID {
            throw SQLiteError(
                .notADatabase,
                "\(path) is an SQLite database of another application (application_id \(application))")
        }
        if application == 0 && objects > 0 {
            throw SQLiteError(
                .notADatabase,
                "\(path) is an SQLite database, but not a swift-paxos one (it has tables and no swift-paxos schema)"
            )
        }
        if version > latest {
            throw SQLiteError(
                .newerSchema,
                "\(path) has schema version \(version), newer than this build supports (\(latest)); "
                    + "run a newer swift-paxos, or restore a backup")
        }
        if objects == 0 {
            // Must be chosen before the first table exists.
            try connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        }
        var mode = ""
        try connection.run("PRAGMA journal_mode = WAL") { (row: SQLiteRow) throws(SQLiteError) in
            mode = row.text(0)
        }
        guard mode.lowercased() == "wal" else {
            throw SQLiteError(.sqlite, "\(path): could not switch to WAL journal mode (got '\(mode)')")
        }
        // The cache: 64 MiB rather than SQLite's 2 MiB. Applying a batch reads the leaf of every
        // key it writes; with a store past a few MiB nearly every one missed the cache and cost
        // a pread (about one per put). The pages are taken only as they are read. Not mmap: an
        // I/O error, or a file shortened under the node, would be a SIGBUS instead of an error.
        try connection.execute(
            """
            PRAGMA synchronous = FULL;
            PRAGMA journal_size_limit = 67108864;
            PRAGMA trusted_schema = OFF;
            PRAGMA cache_size = -65536;
            """)
        if let pages = options.maxPageCount { _ = try connection.scalar("PRAGMA max_page_count = \(pages)") }
        if objects > 0 {
            // Every table but the state machine's rows, which may be gigabytes: start-up must
            // not grow with the store. A damaged page there fails the commit that reads it,
            // which stops the node; `PRAGMA quick_check` in sqlite3 checks the whole file offline.
            var tables: [String] = []
            try connection.run(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT IN \(Self.largeTables)"
            ) { (row: SQLiteRow) throws(SQLiteError) in tables.append(row.text(0)) }
            var verdict: [String] = []
            for table in tables {
                let quoted = String(table.flatMap { $0 == "\"" ? ["\"", "\""] : [$0] })
                try connection.run("PRAGMA quick_check(\"\(quoted)\")") {
                    (row: SQLiteRow) throws(SQLiteError) in
                    if row.text(0) != "ok" { verdict.append(row.text(0)) }
                }
            }
            guard verdict.isEmpty else {
                throw SQLiteError(
                    .corrupt,
                    "\(path) failed its integrity check: \(verdict.prefix(3).joined(separator: "; "))")
            }
        }
        for migration in migrations where migration.version > version {
            do {
                try connection.execute("BEGIN IMMEDIATE")
                try connection.execute(migration.sql)
                try connection.execute("PRAGMA user_version = \(migration.version)")
                try connection.execute("PRAGMA application_id = \(applicationID)")
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw SQLiteError(
                    error.code, "\(path): migration \(migration.name) failed: \(error.message)",
                    resultCode: error.resultCode)
            }
        }
    }

    /// Tables whose size grows with the data, left out of the start-up check.
    static let largeTables = "('machine_rows', 'snapshot_staging')"

    // MARK: - Queue

    func openConnection() throws(SQLiteError) -> SQLiteConnection {
        guard let connection else { throw SQLiteError(.sqlite, "\(path): the store is closed") }
        return connection
    }

    func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws(SQLiteError) -> T)
        async throws(SQLiteError) -> T
    {
        let result: Result<T, SQLiteError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(SQLiteError) -> T in try body() })
            }
        }
        return try result.get()
    }

    private func onQueue(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            queue.async {
                body()
                continuation.resume()
            }
        }
    }
}
