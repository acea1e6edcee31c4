import CSQLite
import Foundation
import PaxosCore
import Synchronization
import Testing

@testable import PaxosSQLite

@Suite("SQLite store")
struct SQLiteStoreTests {
    // MARK: Migrations

    @Test("a round that does not fit SQLite's signed integers fails the commit and is not stored")
    func roundAboveSignedRangeIsRefused() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        try await store.commitLog([.promise(Ballot(round: 7, node: 2))])
        // A commit that fails must not be answered (the driver crash-stops): nothing of it lands.
        await #expect(throws: SQLiteError.self) {
            try await store.commitLog([.promise(Ballot(round: (1 << 63) + 5, node: 3)), .maxRound(9)])
        }
        await #expect(throws: SQLiteError.self) { try await store.commitLog([.maxRound(UInt64.max)]) }
        await store.close()
        let reopened = try SQLiteStore(path: path)
        let state = try await reopened.loadLog()
        #expect(state.promised == Ballot(round: 7, node: 2))
        #expect(state.maxRound < 9)
        await reopened.close()
    }

    @Test("a commit without an fsync runs under synchronous=NORMAL, and the next one fsyncs again")
    func unsyncedCommitRestoresFull() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try SQLiteStore(path: dir.path("node.db"))
        func synchronous() async throws -> Int64? {
            try await store.onQueue { () throws(SQLiteError) -> Int64? in
                try store.openConnection().scalar("PRAGMA synchronous")
            }
        }
        #expect(try await synchronous() == 2, "FULL as it opens")
        let entry = [Proposal(id: ProposalID(node: NodeID(1), incarnation: 1, number: 1), command: [1])]
        try await store.commitLog([.accept(slot: 1, ballot: Ballot(round: 1, node: NodeID(1)), entry: entry)])
        // The setting as the transaction runs: the machine applies inside it, on the store's
        // queue, before COMMIT.
        let during = Mutex<[Int64?]>([])
        let early = Mutex<[Slot]>([])
        let probe = PutMachine {
            let value = try? store.openConnection().scalar("PRAGMA synchronous")
            during.withLock { $0.append(value) }
        }
        for (slot, durable) in [(Slot(1), false), (Slot(2), true)] {
            let outputs = try await store.commitLog(
                [.choose(slot: slot, entry: entry), .apply(slot: slot, entry: entry)], machine: probe,
                outputsFor: NodeID(1), durable: durable,
                beforeDurable: { _ in early.withLock { $0.append(slot) } })
            #expect(outputs.map(\.0) == [entry[0].id], "slot \(slot)'s output comes back")
            // Anything written after it (the other protocol's commits, reclaiming space) fsyncs.
            #expect(try await synchronous() == 2, "FULL again right after slot \(slot)")
        }
        #expect(during.withLock { $0 } == [1, 2], "NORMAL only for the commit that asked for no fsync")
        // Outputs go out before the fsync only where there is one: without, they come back with
        // the commit, which spares the runtime's thread a second wake-up.
        #expect(early.withLock { $0 } == [2])
        #expect(try await store.loadLog().applied == 2)
        // A commit without an fsync that fails (a gap) poisons the store and leaves FULL behind.
        await #expect(throws: SQLiteError.self) {
            try await store.commitLog(
                [.apply(slot: 9, entry: entry)], machine: PutMachine(), outputsFor: NodeID(1), durable: false,
                beforeDurable: { _ in })
        }
        #expect(try await synchronous() == 2, "FULL again after the failed commit")
        await store.close()
        let reopened = try SQLiteStore(path: dir.path("node.db"))
        #expect(try await reopened.loadLog().applied == 2, "a clean close keeps it")
        await reopened.close()
    }

    @Test(
        "counting a space's rows (for /metrics) does not wait behind the store's queue, where the commits wait"
    )
    func rowCountDoesNotWaitForTheQueue() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let store = try SQLiteStore(path: dir.path("node.db"))
        let entry = [Proposal(id: ProposalID(node: NodeID(1), incarnation: 1, number: 1), command: [1])]
        try await store.commitLog([.accept(slot: 1, ballot: Ballot(round: 1, node: NodeID(1)), entry: entry)])
        _ = try await store.commitLog(
            [.choose(slot: 1, entry: entry), .apply(slot: 1, entry: entry)], machine: PutMachine(),
            outputsFor: NodeID(1))
        // The queue is held until the count returns, or 10 s pass.
        let gate = Gate()
        let held = Task {
            try await store.onQueue { () throws(SQLiteError) -> Void in
                gate.state.withLock { $0.holding = true }
                while !gate.state.withLock({ $0.released }) { usleep(1000) }
            }
        }
        while !gate.state.withLock({ $0.holding }) { try await Task.sleep(for: .milliseconds(1)) }
        let watchdog = Task {
            try? await Task.sleep(for: .seconds(10))
            gate.state.withLock {
                if !$0.released { $0.timedOut = true }
                $0.released = true
            }
        }
        let count = try await store.machineRowCount(in: 1)
        let timedOut = gate.state.withLock { state in
            defer { state.released = true }
            return state.timedOut
        }
        #expect(count == 1)
        #expect(!timedOut, "the count waited for the queue to be free")
        try await held.value
        watchdog.cancel()
        await store.close()
    }

    final class Gate: Sendable {
        struct State {
            var holding = false
            var released = false
            var timedOut = false
        }
        let state = Mutex(State())
    }

    /// Puts each command under the key `[1]`; `probe` runs first, inside the transaction.
    struct PutMachine: StateMachine {
        var probe: @Sendable () -> Void = {}
        func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
            probe()
            try rows.put(MachineKey(space: 1, key: [1]), proposal.command)
            return []
        }
    }

    @Test("the migrations the binary carries are exactly the files in migrations/")
    func carriedMigrationsMatchFiles() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let directory = root.appendingPathComponent("migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files == Migrations.all.map(\.name), "run tools/embed-migrations")
        for migration in Migrations.all {
            let text = try String(
                contentsOf: directory.appendingPathComponent(migration.name), encoding: .utf8)
            #expect(
                text.trimmingCharacters(in: .newlines) == migration.sql,
                "\(migration.name) differs from the embedded copy: run tools/embed-migrations")
        }
        #expect(
            Migrations.all.map(\.version) == Array(1...Migrations.all.count),
            "numbered 1, 2, 3, … with no gaps")
    }

    @Test("a fresh file gets the latest schema, WAL, our application id and the inspection views")
    func freshFile() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        _ = try SQLiteStore(path: dir.path("n.db"))
        let path = dir.path("n.db")
        #expect(try sqlite(path, "PRAGMA user_version") == [[String(Migrations.latestVersion)]])
        #expect(try sqlite(path, "PRAGMA application_id") == [[String(SQLiteStore.applicationID)]])
        #expect(try sqlite(path, "PRAGMA journal_mode") == [["wal"]])
        #expect(try sqlite(path, "PRAGMA auto_vacuum") == [["2"]], "incremental")
        let names = try sqlite(
            path, "SELECT name FROM sqlite_schema WHERE type IN ('table','view') ORDER BY name")
        #expect(
            names.map { $0[0] } == [
                "ballot_log", "ballots_used", "decisions", "instance_state", "instances", "kv", "log",
                "log_ballots", "log_entries", "log_state", "log_summary", "machine_rows", "node_identity",
                "node_state", "node_summary", "peer_done", "reused_ballots", "snapshot_progress",
                "snapshot_staging",
            ])
    }

    static let extraMigration = Migration(
        version: Migrations.latestVersion + 1, name: "9999_test_only.sql",
        sql: "ALTER TABLE node_state ADD COLUMN note TEXT;")

    @Test("a file of schema version 1 is upgraded in place to the latest, and keeps its data")
    func upgrade() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let v1 = try SQLiteStore(path: path, options: .init(), migrations: Array(Migrations.all.prefix(1)))
        try await v1.commit([.maxRound(7), .decide(seq: 3, value: Array("kept".utf8))])
        await v1.close()
        let v2 = try SQLiteStore(
            path: path, options: .init(), migrations: Migrations.all + [Self.extraMigration])
        #expect(try sqlite(path, "PRAGMA user_version") == [[String(Migrations.latestVersion + 1)]])
        let state = try await v2.load()
        #expect(state.maxRound == 7)
        #expect(state.instances[3]?.decided == Array("kept".utf8))
        await v2.close()
    }

    @Test("a failing migration changes nothing")
    func failedMigrationRollsBack() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let v1 = try SQLiteStore(path: path)
        try await v1.commit([.maxRound(7)])
        await v1.close()
        let broken = Migration(
            version: Migrations.latestVersion + 1, name: "9999_broken.sql",
            sql: "CREATE TABLE a (x); CREATE TABLE a (x);")
        #expect(throws: SQLiteError.self) {
            try SQLiteStore(path: path, options: .init(), migrations: Migrations.all + [broken])
        }
        #expect(try sqlite(path, "PRAGMA user_version") == [[String(Migrations.latestVersion)]])
        #expect(try sqlite(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'a'") == [["0"]])
    }

    @Test("a file with a newer schema is refused with a clear message, and left untouched")
    func newerSchemaRefused() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let v2 = try SQLiteStore(
            path: path, options: .init(), migrations: Migrations.all + [Self.extraMigration])
        await v2.close()
        do {
            _ = try SQLiteStore(path: path)
            Issue.record("opened a database with a newer schema")
        } catch let error as SQLiteError {
            #expect(error.code == .newerSchema)
            #expect(
                error.message.contains(
                    "schema version \(Migrations.latestVersion + 1), newer than this build supports (\(Migrations.latestVersion))"
                ))
        }
        #expect(try sqlite(path, "PRAGMA user_version") == [[String(Migrations.latestVersion + 1)]])
    }

    // MARK: Bad storage

    func openError(_ path: String) -> SQLiteError? {
        do {
            _ = try SQLiteStore(path: path)
            return nil
        } catch let error as SQLiteError {
            return error
        } catch {
            Issue.record("not an SQLiteError: \(error)")
            return nil
        }
    }

    @Test("a file that is not a database is refused, and left untouched")
    func notADatabase() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("junk.db")
        let junk = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try junk.write(to: URL(fileURLWithPath: path))
        #expect(openError(path)?.code == .notADatabase)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == junk)
    }

    @Test("another application's SQLite database is refused")
    func foreignDatabase() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("other.db")
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        _ = try sqlite(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        let error = openError(path)
        #expect(error?.code == .notADatabase)
        #expect(error?.message.contains("not a swift-paxos one") == true)
    }

    @Test("a directory that does not exist, or a path that is a directory, gives a clear open error")
    func unusablePath() throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let missing = openError(dir.path("no/such/dir/n.db"))
        #expect(missing?.code == .cannotOpen)
        #expect(missing?.message.contains("no/such/dir/n.db") == true)
        #expect(openError(dir.url.path)?.code == .cannotOpen)
    }

    @Test(
        "a log_state edited out of its invariants (log start past applied + 1, a negative applied) is refused with a clear error"
    )
    func inconsistentLogStateRefused() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        _ = try await store.loadLog()
        await store.close()
        for edit in [
            "UPDATE log_state SET log_start = 50, applied = 3", "UPDATE log_state SET applied = -2",
            "UPDATE log_state SET log_start = 0",
        ] {
            _ = try sqlite(path, "UPDATE log_state SET log_start = 1, applied = 0")
            _ = try sqlite(path, edit)
            let reopened = try SQLiteStore(path: path)
            do {
                _ = try await reopened.loadLog()
                Issue.record("loaded an inconsistent log_state after \(edit)")
            } catch let error as SQLiteError {
                #expect(
                    error.code == .corrupt && error.message.contains("log_state is inconsistent"), "\(error)")
            }
            await reopened.close()
        }
    }

    @Test("a corrupt file is refused instead of being used as if it were empty")
    func corruptFile() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        for seq in 0..<200 {
            try await store.commit([.decide(seq: seq, value: Array(repeating: UInt8(seq % 250), count: 300))])
        }
        await store.close()
        // Overwrite part of the instances table's pages (not the header).
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 4096 * 3 + 100)
        handle.write(Data(repeating: 0xA5, count: 4096 * 2))
        try handle.close()
        let code = openError(path)?.code
        #expect(code == .corrupt || code == .notADatabase, "got \(String(describing: code))")
    }

    @Test("a full disk fails the commit, keeps the batch out, and poisons the store")
    func fullDisk() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path, options: .init(maxPageCount: 40))
        try await store.commit([.maxRound(1), .decide(seq: 0, value: Array("small".utf8))])
        let big = Array(repeating: UInt8(1), count: 512 * 1024)
        do {
            try await store.commit([
                .maxRound(2), .accept(seq: 1, ballot: Ballot(round: 2, node: 0), value: big),
            ])
            Issue.record("a commit beyond the size limit succeeded")
        } catch let error as SQLiteError {
            #expect(error.code == .full)
        }
        do {
            try await store.commit([.maxRound(3)])
            Issue.record("a poisoned store accepted a commit")
        } catch let error as SQLiteError {
            #expect(error.code == .poisoned)
        }
        await store.close()
        let state = try await SQLiteStore(path: path).load()
        #expect(state.maxRound == 1)
        #expect(state.instances[1] == nil)
        #expect(state.instances[0]?.decided == Array("small".utf8))
    }

    // MARK: Inspection and growth

    @Test("the views show ballots as round.node and values as text only when they are UTF-8")
    func views() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        try await store.commit([
            .accept(seq: 1, ballot: Ballot(round: 12, node: 3), value: Array("héllo".utf8)),
            .accept(seq: 2, ballot: Ballot(round: 4, node: 1), value: [0xff, 0xfe, 0x00]),
            .decide(seq: 3, value: Array("done".utf8)),
            .maxRound(12), .done(peer: 2, seq: 0),
        ])
        let rows = try sqlite(
            path,
            "SELECT seq, fate, promised, accepted, accepted_text, accepted_bytes, decided_text FROM instance_state ORDER BY seq"
        )
        #expect(
            rows == [
                ["1", "pending", "12.3", "12.3", "héllo", "6", "NULL"],
                ["2", "pending", "4.1", "4.1", "NULL", "3", "NULL"],
                ["3", "decided", "NULL", "NULL", "NULL", "NULL", "done"],
            ])
        #expect(try sqlite(path, "SELECT seq, value FROM decisions") == [["3", "done"]])
        #expect(try sqlite(path, "SELECT max_round, min FROM node_summary") == [["12", "0"]])
        await store.close()
    }

    @Test("the ballot log records each ballot used, shows reuse, and is pruned below min()")
    func ballotLog() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        try await store.commit([
            .maxRound(1), .ballotUsed(seq: 0, ballot: Ballot(round: 1, node: 2)),
            .maxRound(2), .ballotUsed(seq: 5, ballot: Ballot(round: 2, node: 2)),
        ])
        #expect(
            try sqlite(path, "SELECT seq, ballot FROM ballots_used ORDER BY seq") == [
                ["0", "1.2"], ["5", "2.2"],
            ])
        #expect(try sqlite(path, "SELECT * FROM reused_ballots").isEmpty)
        try await store.commit([.ballotUsed(seq: 7, ballot: Ballot(round: 1, node: 2))])
        #expect(try sqlite(path, "SELECT ballot, uses, seqs FROM reused_ballots") == [["1.2", "2", "0,7"]])
        try await store.commit([.forget(below: 6)])
        #expect(try sqlite(path, "SELECT seq FROM ballot_log ORDER BY seq") == [["7"]])
        await store.close()
    }

    @Test("opening waits out a lock another connection holds at that moment, instead of failing")
    func openWaitsForALock() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let first = try SQLiteStore(path: path)
        try await first.commit([.decide(seq: 1, value: Array("v".utf8))])
        await first.close()
        // Another process (sqlite3, a checker) holds the file exclusively while a restarted node opens it.
        var db: OpaquePointer?
        #expect(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK)
        let locked = sqlite3_exec(
            db,
            "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE node_state SET max_round = max_round;",
            nil, nil, nil)
        #expect(locked == SQLITE_OK)
        nonisolated(unsafe) let holder = db
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) {
            sqlite3_exec(holder, "COMMIT", nil, nil, nil)
            sqlite3_close(holder)
        }
        let store = try SQLiteStore(path: path)
        #expect(try await store.load().instances[1]?.decided == Array("v".utf8))
        await store.close()
    }

    @Test("reading with a second connection while the store writes is safe and sees committed data")
    func concurrentReader() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        for seq in 0..<300 {
            try await store.commit([.decide(seq: seq, value: Array("v\(seq)".utf8))])
            if seq % 50 == 0 {
                let count = Int(try sqlite(path, "SELECT count(*) FROM decisions")[0][0])!
                #expect(count == seq + 1)
            }
        }
        #expect(try sqlite(path, "PRAGMA integrity_check") == [["ok"]])
        await store.close()
    }

    @Test("a steady start/decide/done workload keeps the file bounded")
    func fileStaysBounded() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("n.db")
        let store = try SQLiteStore(path: path)
        let value = Array(repeating: UInt8(ascii: "x"), count: 2000)
        func round(_ start: Int) async throws {
            for seq in start..<start + 500 {
                let ballot = Ballot(round: UInt64(seq + 1), node: 0)
                try await store.commit([.maxRound(UInt64(seq + 1)), .promise(seq: seq, ballot: ballot)])
                try await store.commit([.accept(seq: seq, ballot: ballot, value: value)])
                try await store.commit([
                    .decide(seq: seq, value: value), .done(peer: 0, seq: seq), .forget(below: seq - 10),
                ])
            }
        }
        func size() throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        }
        try await round(0)
        let afterFirst = try size()
        for block in 1..<6 { try await round(block * 500) }
        let afterSix = try size()
        // 3000 instances of 2 KB were written; only the last ~11 are kept.
        #expect(afterSix <= afterFirst + 64 * 1024, "file grew from \(afterFirst) to \(afterSix) bytes")
        #expect(afterSix < 3000 * 2000 / 10)
        await store.close()
    }
}
