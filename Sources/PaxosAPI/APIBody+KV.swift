extension APIBody {
    /// `DELETE /v1/kv/{key}` and `POST /v1/kv/{key}?op=append` (`PUT` answers `{"status": "ok"}`).
    public struct KVWrite: Codable, Equatable, Sendable {
        public var key: String
        public var status: String
        /// For append: the value after it (`nil` when it is not UTF-8).
        public var value: String?

        public init(key: String, status: String, value: String?) {
            self.key = key
            self.status = status
            self.value = value
        }
    }

    /// The body of `POST /v1/kv/{key}?op=cas`.
    public struct CompareAndSet: Codable, Equatable, Sendable {
        /// The value the key must have; `null`: the key must be absent.
        public var expected: String?
        public var value: String

        public init(expected: String?, value: String) {
            self.expected = expected
            self.value = value
        }

        // `expected` is always written, `null` included: the server tells "must be absent" from a
        // forgotten field by its presence.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(expected, forKey: .expected)
            try container.encode(value, forKey: .value)
        }
    }

    /// The answer of `POST /v1/kv/{key}?op=cas`: 200 swapped, or 409 not swapped with the value found.
    public struct CompareAndSetResult: Codable, Equatable, Sendable {
        public var key: String
        public var swapped: Bool
        /// The value found when the comparison failed (`null`: absent).
        public var current: String?

        public init(key: String, swapped: Bool, current: String?) {
            self.key = key
            self.swapped = swapped
            self.current = current
        }
    }

    /// `POST /v1/sessions`: the new session's client id.
    public struct Session: Codable, Equatable, Sendable {
        public var clientId: UInt64

        public init(clientId: UInt64) { self.clientId = clientId }
    }

    /// `GET /v1/log`: the replicated log on the node that answers.
    public struct LogStatus: Codable, Equatable, Sendable {
        public var node: UInt32
        public var role: String
        public var leader: UInt32?
        public var firstUnchosen: Int
        public var applied: Int
        public var logStart: Int
        public var records: Int
        /// Batches committed to the store since start (one fsync each).
        public var commits: Int
        /// This node's client commands applied since start.
        public var appliedCommands: Int
        public var serving: Bool
        public var failure: String?

        public init(
            node: UInt32, role: String, leader: UInt32?, firstUnchosen: Int, applied: Int, logStart: Int,
            records: Int, commits: Int, appliedCommands: Int, serving: Bool, failure: String?
        ) {
            self.node = node
            self.role = role
            self.leader = leader
            self.firstUnchosen = firstUnchosen
            self.applied = applied
            self.logStart = logStart
            self.records = records
            self.commits = commits
            self.appliedCommands = appliedCommands
            self.serving = serving
            self.failure = failure
        }
    }
}

/// The session headers of the key-value API (see the README's "Exactly once").
public enum SessionHeaders {
    /// The session's id, from `POST /v1/sessions`: decimal digits in 1…2^64−1.
    public static let clientID = "X-Client-Id"
    /// The request's number within the session, increasing: decimal digits in 1…2^63−1.
    public static let requestID = "X-Request-Id"
    /// The largest request number: within a signed 64-bit integer, so every client language and
    /// SQLite can hold it.
    public static let maxRequestID = UInt64(Int64.max)
}
