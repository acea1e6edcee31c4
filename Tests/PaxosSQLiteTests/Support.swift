import CSQLite
import Foundation
import PaxosCore

@testable import PaxosSQLite

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TempDir {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "swift-paxos-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Plain SQLite access for checks that must not go through the store.
func sqlite(_ path: String, _ sql: String) throws -> [[String]] {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK, let db else {
        throw SQLiteError(.cannotOpen, "cannot open \(path)")
    }
    defer { sqlite3_close(db) }
    var rows: [[String]] = []
    var statement: OpaquePointer?
    var tail: UnsafePointer<CChar>?
    var remaining = sql
    while !remaining.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
        let result = remaining.withCString { text -> Int32 in
            let code = sqlite3_prepare_v2(db, text, -1, &statement, &tail)
            if let tail { remaining = String(cString: tail) } else { remaining = "" }
            return code
        }
        guard result == SQLITE_OK else {
            throw SQLiteError(result: result, message: String(cString: sqlite3_errmsg(db)))
        }
        guard let statement else { break }
        defer { sqlite3_finalize(statement) }
        while sqlite3_step(statement) == SQLITE_ROW {
            rows.append(
                (0..<sqlite3_column_count(statement)).map { column in
                    sqlite3_column_text(statement, column).map { String(cString: $0) } ?? "NULL"
                })
        }
    }
    return rows
}

/// Random mutations of every kind, as the core could produce them.
func randomBatches(seed: UInt64, count: Int) -> [[StoreMutation]] {
    var random = SplitMix64(seed: seed)
    var floor = 0
    return (0..<count).map { _ in
        (0..<Int(1 + random.next() % 6)).map { _ in
            let seq = floor + Int(random.next() % 20)
            let ballot = Ballot(round: random.next() % 50, node: NodeID(UInt32(random.next() % 5)))
            let value: Value =
                random.next() % 3 == 0
                ? (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                : Array("value \(random.next() % 1000)".utf8)
            switch random.next() % 9 {
            case 8:
                // Rare, as in life: a recovery begins, or ends with a floor that may lie below
                // an earlier one (which must not lower it).
                return random.next() % 2 == 0
                    ? .beginRecovery
                    : .endRecovery(voteFloor: Int(random.next() % 40), maxRound: random.next() % 100)
            case 7: return .ballotUsed(seq: seq, ballot: ballot)
            case 0: return .promise(seq: seq, ballot: ballot)
            case 1, 2: return .accept(seq: seq, ballot: ballot, value: value)
            case 3: return .decide(seq: seq, value: value)
            case 4: return .maxRound(random.next() % 100)
            case 5: return .done(peer: NodeID(UInt32(random.next() % 5)), seq: Int(random.next() % 30) - 1)
            default:
                floor += Int(random.next() % 3)
                return .forget(below: floor)
            }
        }
    }
}
