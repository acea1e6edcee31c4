import CSQLite

/// SQLite's "copy this buffer now" destructor, for binding values that outlive no call.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection with a cache of prepared statements.
///
/// Not thread-safe: its owner uses it from one thread (or serial queue) at a time.
final class SQLiteConnection {
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    let path: String

    /// - Parameter busyTimeoutMilliseconds: how long any statement waits out a lock held by another
    ///   connection. Set before the first statement: a reader (`sqlite3`, a checker) may hold a lock
    ///   at the very moment a restarted node opens its file, e.g. while it recovers the WAL.
    init(path: String, readOnly: Bool = false, busyTimeoutMilliseconds: Int32 = 5000) throws(SQLiteError) {
        self.path = path
        let flags =
            (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
            | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        var db: OpaquePointer?
        let result = sqlite3_open_v2(path, &db, flags, nil)
        guard result == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw SQLiteError(result: result, message: "cannot open \(path): \(message)")
        }
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
        handle = db
    }

    deinit { close() }

    /// Finalizes every statement and closes the connection.
    func close() {
        for statement in statements.values { sqlite3_finalize(statement) }
        statements = [:]
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(SQLiteError) {
        guard let handle else { throw SQLiteError(.sqlite, "connection to \(path) is closed") }
        var errorMessage: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if result != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(errorMessage)
            throw SQLiteError(result: result, message: "\(path): \(message)")
        }
    }

    /// Runs a cached prepared statement with `bindings` and calls `row` for each result row.
    func run(
        _ sql: String, _ bindings: [SQLiteValue] = [], row: (SQLiteRow) throws(SQLiteError) -> Void = { _ in }
    ) throws(SQLiteError) {
        try each(sql, bindings) { (current: SQLiteRow) throws(SQLiteError) -> Bool in
            try row(current)
            return true
        }
    }

    /// Runs a cached prepared statement and calls `row` for each result row until it returns
    /// false; the statement stops there (no more rows are read).
    func each(
        _ sql: String, _ bindings: [SQLiteValue] = [], row: (SQLiteRow) throws(SQLiteError) -> Bool
    ) throws(SQLiteError) {
        let statement = try prepared(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        for (index, value) in bindings.enumerated() {
            let position = Int32(index + 1)
            let result: Int32
            switch value {
            case .null: result = sqlite3_bind_null(statement, position)
            case .integer(let integer): result = sqlite3_bind_int64(statement, position, integer)
            case .text(let text): result = sqlite3_bind_text(statement, position, text, -1, transient)
            case .blob(let bytes):
                result = bytes.withUnsafeBytes { buffer in
                    // A zero-length blob must still bind as a blob, not as NULL.
                    sqlite3_bind_blob64(
                        statement, position, buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
                        sqlite3_uint64(buffer.count), transient)
                }
            }
            try check(result, sql)
        }
        while true {
            let result = sqlite3_step(statement)
            if result == SQLITE_DONE { return }
            guard result == SQLITE_ROW else { try check(result, sql); return }
            guard try row(SQLiteRow(statement: statement)) else { return }
        }
    }

    /// The first column of the first row, as an integer.
    func scalar(_ sql: String, _ bindings: [SQLiteValue] = []) throws(SQLiteError) -> Int64? {
        var value: Int64?
        try run(sql, bindings) { (row: SQLiteRow) throws(SQLiteError) in
            if value == nil { value = row.integer(0) }
        }
        return value
    }

    private func prepared(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        guard let handle else { throw SQLiteError(.sqlite, "connection to \(path) is closed") }
        var statement: OpaquePointer?
        let result = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard result == SQLITE_OK, let statement else {
            throw SQLiteError(
                result: result, message: "\(path): \(String(cString: sqlite3_errmsg(handle))) in: \(sql)")
        }
        statements[sql] = statement
        return statement
    }

    private func check(_ result: Int32, _ sql: String) throws(SQLiteError) {
        guard result != SQLITE_OK, result != SQLITE_ROW, result != SQLITE_DONE else { return }
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "closed"
        throw SQLiteError(result: result, message: "\(path): \(message)")
    }
}

/// A value bound to, or read from, a statement.
enum SQLiteValue {
    case null
    case integer(Int64)
    case text(String)
    case blob([UInt8])
}

/// The current row of a running statement.
struct SQLiteRow {
    let statement: OpaquePointer

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }

    func integer(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, column) else { return "" }
        return String(cString: pointer)
    }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
