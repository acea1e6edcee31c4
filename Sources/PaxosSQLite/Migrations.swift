/// One numbered schema migration from `migrations/`.
public struct Migration: Hashable, Sendable {
    /// The file's number; after it is applied, `PRAGMA user_version` equals it.
    public var version: Int
    /// The file name in `migrations/`.
    public var name: String
    /// The file's contents.
    public var sql: String
}

/// The schema migrations, carried in the binary (see `tools/embed-migrations`).
public enum Migrations {
    /// Every migration this build knows, in order.
    public static var all: [Migration] { embedded }
    /// The schema version this build writes.
    public static var latestVersion: Int { embedded.last?.version ?? 0 }
}
