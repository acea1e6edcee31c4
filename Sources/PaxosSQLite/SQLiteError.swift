import CSQLite

/// An error from SQLite or from the store, with SQLite's own message where there is one.
public struct SQLiteError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, in terms a caller can act on. New codes may be added.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// The file cannot be opened or created (missing or unwritable directory, permissions).
        public static let cannotOpen = Code(rawValue: "cannot-open")
        /// The file is not an SQLite database, or not one of this project's.
        public static let notADatabase = Code(rawValue: "not-a-database")
        /// The database failed its integrity check.
        public static let corrupt = Code(rawValue: "corrupt")
        /// The schema is newer than this build knows.
        public static let newerSchema = Code(rawValue: "newer-schema")
        /// The disk (or the database's size limit) is full.
        public static let full = Code(rawValue: "disk-full")
        /// An I/O error, e.g. a failed write or fsync.
        public static let io = Code(rawValue: "io-error")
        /// A previous commit failed; the store refuses to go on (its on-disk state is unknown).
        public static let poisoned = Code(rawValue: "poisoned")
        /// The file belongs to another node or another cluster.
        public static let wrongIdentity = Code(rawValue: "wrong-identity")
        /// Any other SQLite error.
        public static let sqlite = Code(rawValue: "sqlite")

        public var description: String { rawValue }
    }

    public var code: Code
    /// SQLite's primary result code, when the error came from SQLite.
    public var resultCode: Int32?
    public var message: String

    public init(_ code: Code, _ message: String, resultCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.resultCode = resultCode
    }

    /// Maps an SQLite result code (primary or extended) to an error.
    init(result: Int32, message: String) {
        let primary = result & 0xff
        let code: Code
        switch primary {
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH: code = .cannotOpen
        case SQLITE_NOTADB: code = .notADatabase
        case SQLITE_CORRUPT: code = .corrupt
        case SQLITE_FULL: code = .full
        case SQLITE_IOERR: code = .io
        default: code = .sqlite
        }
        self.init(code, message, resultCode: result)
    }

    public var description: String {
        if let resultCode { return "\(message) [\(code), sqlite result \(resultCode)]" }
        return "\(message) [\(code)]"
    }
}
