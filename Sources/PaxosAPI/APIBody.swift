import Foundation

/// The JSON bodies of a node's HTTP API, shared by the server (`PaxosServer`, which adds
/// Hummingbird's `ResponseEncodable` in extensions) and its clients (`PaxosKVClient`, `paxosctl`):
/// one definition, so a field renamed on one side cannot silently drift from the other.
///
/// Fields added later are optional, so a client decodes the answers of an older node.
public enum APIBody {
    /// `GET /v1/instances/{seq}`.
    public struct Instance: Codable, Equatable, Sendable {
        public var seq: Int
        /// `decided`, `pending` or `forgotten`.
        public var fate: String
        /// The decided value as text, when it is UTF-8.
        public var value: String?
        /// The decided value, base64.
        public var valueBase64: String?

        public init(seq: Int, fate: String, value: String?, valueBase64: String?) {
            self.seq = seq
            self.fate = fate
            self.value = value
            self.valueBase64 = valueBase64
        }
    }

    /// `PUT /v1/instances/{seq}`: agreement started.
    public struct Started: Codable, Equatable, Sendable {
        public var seq: Int
        public var status: String

        public init(seq: Int, status: String) {
            self.seq = seq
            self.status = status
        }
    }

    /// `POST /v1/done/{seq}`.
    public struct Done: Codable, Equatable, Sendable {
        public var done: Int
        public var min: Int

        public init(done: Int, min: Int) {
            self.done = done
            self.min = min
        }
    }

    /// One bootstrap peer as `GET /v1/status` shows it.
    public struct Peer: Codable, Equatable, Sendable {
        public var id: UInt32
        /// Its peer-to-peer address (not its HTTP API).
        public var address: String
        public var isSelf: Bool
        public var reachable: Bool

        public init(id: UInt32, address: String, isSelf: Bool, reachable: Bool) {
            self.id = id
            self.address = address
            self.isSelf = isSelf
            self.reachable = reachable
        }
    }

    /// `GET /v1/status`: the node, its classic instances and (the optional fields) its replicated log.
    public struct Status: Codable, Equatable, Sendable {
        public var node: UInt32
        public var cluster: String
        public var min: Int
        public var max: Int
        public var serving: Bool
        public var failure: String?
        public var peers: [Peer]
        public var dataDir: String
        /// The release and the git commit it was built from, e.g. `0.1.0 (3f2a9c1)`.
        public var version: String
        /// The replicated log's role here: `leader`, `follower`, `candidate`…
        public var role: String?
        /// The leader this node knows of.
        public var leader: UInt32?
        /// The replicated log's applied index on this node.
        public var applied: Int?
        /// The replicated log's first slot not known chosen on this node.
        public var firstUnchosen: Int?
        /// The database's size on disk in bytes (the file and its write-ahead log).
        public var dbSizeBytes: Int?

        public init(
            node: UInt32, cluster: String, min: Int, max: Int, serving: Bool, failure: String?, peers: [Peer],
            dataDir: String, version: String, role: String? = nil, leader: UInt32? = nil, applied: Int? = nil,
            firstUnchosen: Int? = nil, dbSizeBytes: Int? = nil
        ) {
            self.node = node
            self.cluster = cluster
            self.min = min
            self.max = max
            self.serving = serving
            self.failure = failure
            self.peers = peers
            self.dataDir = dataDir
            self.version = version
            self.role = role
            self.leader = leader
            self.applied = applied
            self.firstUnchosen = firstUnchosen
            self.dbSizeBytes = dbSizeBytes
        }
    }

    /// `GET /health` when the node serves.
    public struct Health: Codable, Equatable, Sendable {
        public var status: String

        public init(status: String) { self.status = status }
    }

    /// The `error` of an ``ErrorEnvelope``: a stable, machine-readable code and a message for people.
    public struct ErrorDetail: Codable, Equatable, Sendable {
        public var code: String
        public var message: String

        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    /// Every error answer: `{"error": {"code", "message"}}`.
    public struct ErrorEnvelope: Codable, Equatable, Sendable {
        public var error: ErrorDetail

        public init(error: ErrorDetail) { self.error = error }
    }
}
