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

    public init(
        clusterID: String, dataDirectory: String, version: String, peerAddresses: [NodeID: String],
        isReachable: @escaping @Sendable (NodeID) async -> Bool
    ) {
        self.clusterID = clusterID
        self.dataDirectory = dataDirectory
        self.version = version
        self.peerAddresses = peerAddresses
        self.isReachable = isReachable
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

/// The JSON bodies of the API.
public enum APIBody {
    public struct Instance: ResponseEncodable, Codable, Equatable, Sendable {
        public var seq: Int
        public var fate: String
        /// The decided value as text, when it is UTF-8.
        public var value: String?
        /// The decided value, base64.
        public var valueBase64: String?
    }

    public struct Started: ResponseEncodable, Codable, Equatable, Sendable {
        public var seq: Int
        public var status: String
    }

    public struct Done: ResponseEncodable, Codable, Equatable, Sendable {
        public var done: Int
        public var min: Int
    }

    public struct Peer: Codable, Equatable, Sendable {
        public var id: UInt32
        public var address: String
        public var isSelf: Bool
        public var reachable: Bool
    }

    public struct Status: ResponseEncodable, Codable, Equatable, Sendable {
        public var node: UInt32
        public var cluster: String
        public var min: Int
        public var max: Int
        public var serving: Bool
        public var failure: String?
        public var peers: [Peer]
        public var dataDir: String
        public var version: String
    }

    public struct Health: ResponseEncodable, Codable, Equatable, Sendable {
        public var status: String
    }

    public struct ErrorDetail: Codable, Equatable, Sendable {
        public var code: String
        public var message: String
    }

    public struct ErrorEnvelope: ResponseEncodable, Codable, Equatable, Sendable {
        public var error: ErrorDetail
    }
}

/// The HTTP/JSON client API of one node: the 6.824 calls over HTTP.
///
/// - `PUT /v1/instances/{seq}` (body: the value) starts agreement: 202.
/// - `GET /v1/instances/{seq}`: `{"seq", "fate", "value", "valueBase64"}`.
/// - `POST /v1/done/{seq}`; `GET /v1/status`; `GET /health`.
/// Errors are `{"error": {"code", "message"}}`: 400 for a bad sequence number, 404 for an
/// unknown route, 413 for a body above the value limit, 503 when the node is not serving.
public enum PaxosHTTPAPI {
    /// The largest value a client may propose by default (1 MiB).
    public static let defaultMaxValueBytes = 1 << 20

    public static func router(
        peer: PaxosPeer, info: NodeInfo, maxValueBytes: Int = defaultMaxValueBytes
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())

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
            return APIBody.Status(
                node: peer.me.rawValue, cluster: info.clusterID, min: await peer.min(), max: await peer.max(),
                serving: await peer.isServing, failure: await peer.failure, peers: peers,
                dataDir: info.dataDirectory, version: info.version)
        }

        router.get("/health") { _, _ -> APIBody.Health in
            try await requireServing(peer)
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
        guard await peer.isServing else {
            let reason = await peer.failure ?? "the node is shutting down"
            throw APIError(.serviceUnavailable, "not_serving", "this node is not serving: \(reason)")
        }
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
