import Foundation
import Hummingbird
import Logging
import Paxos
import PaxosCore

/// What `GET /v1/status` reports about the node beyond the peer's own state.
public struct NodeInfo: Sendable {
    public var clusterID: String
    public var dataDirectory: String
    public var version: String
    /// Every node's peer-to-peer address, this one's included.
    public var peerAddresses: [NodeID: String]
    /// Whether this node currently holds a connection to a peer.
    public var isReachable: @Sendable (NodeID) async -> Bool
    /// The node's other replicas in the same process (the key-value log): `/health` and
    /// `/v1/status` report the node as not serving when any of them stopped.
    public var components: [ComponentHealth]
    /// The replicated log's state for `GET /v1/status` (role, leader, applied, first unchosen);
    /// `nil`: the status has no log fields.
    public var log: (@Sendable () async -> LogSummary)?
    /// The SQLite database, whose size (with its write-ahead log) `GET /v1/status` reports.
    public var databasePath: String?

    /// What `GET /v1/status` shows of the replicated log.
    public struct LogSummary: Sendable {
        public var role: String
        public var leader: UInt32?
        public var applied: Int
        public var firstUnchosen: Int

        public init(role: String, leader: UInt32?, applied: Int, firstUnchosen: Int) {
            self.role = role
            self.leader = leader
            self.applied = applied
            self.firstUnchosen = firstUnchosen
        }

        /// The summary of a replica of the log.
        public static func of<Machine: StateMachine>(_ log: LogPeer<Machine>) async -> LogSummary {
            await log.inspect {
                LogSummary(
                    role: "\($0.role)", leader: $0.leader?.rawValue, applied: $0.applied,
                    firstUnchosen: $0.firstUnchosen)
            }
        }
    }

    public init(
        clusterID: String, dataDirectory: String, version: String, peerAddresses: [NodeID: String],
        isReachable: @escaping @Sendable (NodeID) async -> Bool, components: [ComponentHealth] = [],
        log: (@Sendable () async -> LogSummary)? = nil, databasePath: String? = nil
    ) {
        self.clusterID = clusterID
        self.dataDirectory = dataDirectory
        self.version = version
        self.peerAddresses = peerAddresses
        self.isReachable = isReachable
        self.components = components
        self.log = log
        self.databasePath = databasePath
    }

    /// The database file and its write-ahead log, in bytes; `nil` without a database.
    func databaseBytes() -> Int? {
        guard let databasePath else { return nil }
        let sizes = [databasePath, databasePath + "-wal"].compactMap {
            (try? FileManager.default.attributesOfItem(atPath: $0))?[.size] as? Int
        }
        return sizes.isEmpty ? nil : sizes.reduce(0, +)
    }
}

/// Whether one part of the node serves, and why not.
public struct ComponentHealth: Sendable {
    /// Names the part in messages, e.g. "kv log".
    public var name: String
    /// nil while it serves; otherwise why it stopped.
    public var state: @Sendable () async -> Stopped?

    /// Why a part stopped: a failed commit (`storageFailed`) or an orderly stop.
    public struct Stopped: Sendable, Equatable {
        public var reason: String
        public var storageFailed: Bool

        public init(reason: String, storageFailed: Bool) {
            self.reason = reason
            self.storageFailed = storageFailed
        }
    }

    public init(name: String, state: @escaping @Sendable () async -> Stopped?) {
        self.name = name
        self.state = state
    }

    /// The Paxos instance peer.
    public static func peer(_ peer: PaxosPeer) -> ComponentHealth {
        ComponentHealth(name: "paxos peer") {
            guard await !peer.isServing else { return nil }
            let failure = await peer.failure
            return Stopped(reason: failure ?? "shutting down", storageFailed: failure != nil)
        }
    }

    /// A replica of the replicated log.
    public static func log<Machine: StateMachine>(_ log: LogPeer<Machine>, name: String = "kv log")
        -> ComponentHealth
    {
        ComponentHealth(name: name) {
            guard await !log.isServing else { return nil }
            let failure = await log.failure
            return Stopped(reason: failure ?? "shutting down", storageFailed: failure != nil)
        }
    }
}

/// An API error: an HTTP status and a stable, machine-readable code.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status.code) \(code): \(message)" }
}

/// The HTTP/JSON client API of one node: the 6.824 calls over HTTP.
///
/// - `PUT /v1/instances/{seq}` (body: the value) starts agreement: 202.
/// - `GET /v1/instances/{seq}`: `{"seq", "fate", "value", "valueBase64"}`.
/// - `POST /v1/done/{seq}`; `GET /v1/status`; `GET /health`.
/// Errors are `{"error": {"code", "message"}}`: 400 for a bad sequence number, 404 for an
/// unknown route, 405 (with `Allow`) for a known route with another method, 413 for a body above
/// the value limit, 503 `storage_failed` when a commit failed and stopped the node, 503
/// `not_serving` when it is shutting down.
public enum PaxosHTTPAPI {
    /// The largest value a client may propose by default (1 MiB).
    public static let defaultMaxValueBytes = 1 << 20

    /// - Parameters:
    ///   - clientToken: when set, every route but `openPaths` (the key-value routes added later
    ///     included) wants `Authorization: Bearer clientToken`.
    ///   - metrics: when set, every request of this router (routes added later included) is
    ///     counted and timed there.
    public static func router(
        peer: PaxosPeer, info: NodeInfo, maxValueBytes: Int = defaultMaxValueBytes,
        clientToken: String? = nil,
        openPaths: Set<String> = BearerTokenMiddleware<BasicRequestContext>.defaultOpenPaths,
        metrics: NodeMetrics? = nil
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        // Outermost: it sees the status the client gets, 401s and error envelopes included.
        if let metrics { router.add(middleware: HTTPMetricsMiddleware(factory: metrics.factory)) }
        router.add(middleware: JSONErrorMiddleware())
        if let clientToken {
            router.add(middleware: BearerTokenMiddleware(token: clientToken, openPaths: openPaths))
        }
        let components = [ComponentHealth.peer(peer)] + info.components

        router.put("/v1/instances/:seq") { request, context -> EditedResponse<APIBody.Started> in
            let seq = try sequenceNumber(context)
            try await requireServing(peer)
            let body = try await request.body.collect(upTo: maxValueBytes)
            await peer.start(seq, Array(buffer: body))
            return EditedResponse(status: .accepted, response: APIBody.Started(seq: seq, status: "started"))
        }

        router.get("/v1/instances/:seq") { _, context -> APIBody.Instance in
            let seq = try sequenceNumber(context)
            switch await peer.status(seq) {
            case .decided(let value):
                return APIBody.Instance(
                    seq: seq, fate: "decided", value: String(validating: value, as: UTF8.self),
                    valueBase64: Data(value).base64EncodedString())
            case .pending:
                return APIBody.Instance(seq: seq, fate: "pending", value: nil, valueBase64: nil)
            case .forgotten:
                return APIBody.Instance(seq: seq, fate: "forgotten", value: nil, valueBase64: nil)
            }
        }

        router.post("/v1/done/:seq") { _, context -> APIBody.Done in
            let seq = try sequenceNumber(context)
            try await requireServing(peer)
            await peer.done(seq)
            return APIBody.Done(done: seq, min: await peer.min())
        }

        router.get("/v1/status") { _, _ -> APIBody.Status in
            var peers: [APIBody.Peer] = []
            for (id, address) in info.peerAddresses.sorted(by: { $0.key < $1.key }) {
                let isSelf = id == peer.me
                peers.append(
                    APIBody.Peer(
                        id: id.rawValue, address: address, isSelf: isSelf,
                        reachable: isSelf ? await peer.isServing : await info.isReachable(id)))
            }
            let stopped = await firstStopped(components)
            let log = await info.log?()
            return APIBody.Status(
                node: peer.me.rawValue, cluster: info.clusterID, min: await peer.min(), max: await peer.max(),
                serving: stopped == nil, failure: stopped.map { "\($0.name): \($0.state.reason)" },
                peers: peers, dataDir: info.dataDirectory, version: info.version, role: log?.role,
                leader: log?.leader, applied: log?.applied, firstUnchosen: log?.firstUnchosen,
                dbSizeBytes: info.databaseBytes())
        }

        router.get("/health") { _, _ -> APIBody.Health in
            if let stopped = await firstStopped(components) { throw notServing(stopped.name, stopped.state) }
            return APIBody.Health(status: "ok")
        }
        return router
    }

    /// Instance numbers (and done values) a client may name: the same bound the peer wire keeps,
    /// far from `Int.max`, so `done + 1` and instance windows never overflow.
    static let maxSequence = 1 << 62

    static func sequenceNumber(_ context: BasicRequestContext) throws -> Int {
        let text = context.parameters.get("seq") ?? ""
        guard let seq = Int(text), seq >= 0, seq < maxSequence, text.allSatisfy(\.isASCII) else {
            throw APIError(
                .badRequest, "bad_sequence",
                "the sequence number must be an integer in 0..<2^62, got '\(text)'")
        }
        return seq
    }

    static func requireServing(_ peer: PaxosPeer) async throws {
        if let stopped = await ComponentHealth.peer(peer).state() { throw notServing("paxos peer", stopped) }
    }

    static func firstStopped(_ components: [ComponentHealth]) async -> (
        name: String, state: ComponentHealth.Stopped
    )? {
        for component in components {
            if let state = await component.state() { return (component.name, state) }
        }
        return nil
    }

    /// 503 `storage_failed` for a failed commit (the node stopped: it needs its disk looked at
    /// and a restart), 503 `not_serving` while it shuts down.
    static func notServing(_ name: String, _ stopped: ComponentHealth.Stopped) -> APIError {
        stopped.storageFailed
            ? APIError(
                .serviceUnavailable, "storage_failed",
                "this node stopped serving: the \(name)'s \(stopped.reason)")
            : APIError(.serviceUnavailable, "not_serving", "this node is not serving: \(stopped.reason)")
    }
}

/// Renders every error as `{"error": {"code", "message"}}` with the right status. Install it on
/// any router the API's routes are added to.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return Self.response(error)
        } catch let error as any HTTPResponseError {
            let detail = (error as? HTTPError)?.body
            let code: String
            let message: String
            switch error.status {
            case .notFound:
                let allowed = KnownRoutes.methods(forPath: request.uri.path)
                if !allowed.isEmpty {
                    var response = Self.response(
                        APIError(
                            .methodNotAllowed, "method_not_allowed",
                            "\(request.method) is not allowed on \(request.uri.path); allowed: \(allowed.joined(separator: ", "))"
                        ))
                    response.headers[.allow] = allowed.joined(separator: ", ")
                    return response
                }
                code = "not_found"
                message = "no route for \(request.method) \(request.uri.path)"
            case .contentTooLarge:
                code = "body_too_large"
                message = "the request body is larger than this node accepts"
            case .badRequest:
                code = "bad_request"
                message = detail ?? "bad request"
            case .methodNotAllowed:
                code = "method_not_allowed"
                message = "\(request.method) is not allowed on \(request.uri.path)"
            default:
                code = "http_error"
                message = detail ?? "\(error.status)"
            }
            return Self.response(APIError(error.status, code, message))
        } catch {
            context.logger.error(
                "request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return Self.response(APIError(.internalServerError, "internal", "\(error)"))
        }
    }

    static func response(_ error: APIError) -> Response {
        let body = APIBody.ErrorEnvelope(error: .init(code: error.code, message: error.message))
        let data = (try? JSONEncoder().encode(body)) ?? Data()
        return Response(
            status: error.status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// The routes of both APIs and their methods, so that a known path asked with another method is
/// a 405 with an `Allow` header rather than the router's 404. Keep it in step with the routes.
enum KnownRoutes {
    /// Path patterns, `*` standing for one non-empty segment.
    static let table: [(pattern: [Substring], methods: [String])] = [
        ("/v1/instances/*", ["GET", "PUT"]),
        ("/v1/done/*", ["POST"]),
        ("/v1/status", ["GET"]),
        ("/health", ["GET"]),
        ("/ready", ["GET"]),
        ("/metrics", ["GET"]),
        ("/v1/kv/*", ["DELETE", "GET", "POST", "PUT"]),
        ("/v1/sessions", ["POST"]),
        ("/v1/log", ["GET"]),
    ].map { ($0.0.split(separator: "/"), $0.1) }

    static func methods(forPath path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for (pattern, methods) in table where pattern.count == segments.count {
            if zip(pattern, segments).allSatisfy({ $0 == "*" ? !$1.isEmpty : $0 == $1 }) { return methods }
        }
        return []
    }
}
