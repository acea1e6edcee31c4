import Foundation
import HTTPTypes
import Hummingbird
import Paxos
import PaxosCore
import PaxosKV

/// The key-value API, on any node (a non-leader forwards to the leader inside the cluster):
///
/// - `PUT /v1/kv/{key}` (body: the value): `{"status": "ok"}`; `GET /v1/kv/{key}` (body: the value; 404 when
///   absent); `DELETE /v1/kv/{key}`; `POST /v1/kv/{key}?op=append` (body: the suffix);
///   `POST /v1/kv/{key}?op=cas` (body: `{"expected": "old" or null, "value": "new"}`: 200 with
///   `{"swapped": true}`, or 409 with `{"swapped": false, "current": ...}`).
/// - `POST /v1/sessions` opens a session: `{"clientId": N}`. Requests that carry `X-Client-Id`
///   and `X-Request-Id` (numbers increasing per client, one request at a time) execute once
///   however often they are retried; a retry gets the original answer.
/// - Writes go through the log. `GET` is linearizable by default: the leader answers by read index
///   (a confirmation round, no log write), another node through the log.
///   `GET /v1/kv/{key}?consistency=serializable` answers from this node's committed state at once,
///   possibly stale.
/// - 503 `storage_failed`: this node's commit failed and it stopped; not executed.
/// - 413 `value_too_large`, 414 `key_too_long` (above `maxKeyBytes`), 400 `bad_key`.
/// - 503 `no_leader`: certainly not executed. 504 `outcome_unknown`: may or may not have been
///   executed; retry with the same request id. 409 `stale_request`. 409 `session_expired`: this
///   attempt did not run, but an earlier attempt of the same request may have (unknown outcome
///   for a retried request).
public enum KVHTTPAPI {
    /// The longest key accepted by default, in bytes (after percent-decoding).
    public static let defaultMaxKeyBytes = 4096

    public static func add(
        to router: Router<BasicRequestContext>, service: KVService, maxValueBytes: Int,
        maxKeyBytes: Int = defaultMaxKeyBytes
    ) {
        router.put("/v1/kv/:key") { request, context -> Response in
            let key = try keyParameter(context, maxKeyBytes: maxKeyBytes)
            let session = try sessionHeaders(request)
            let body = try await request.body.collect(upTo: maxValueBytes)
            _ = try await run(service, session, .put(key: Array(key.utf8), value: Array(buffer: body)))
            // The hottest route: a fixed answer, without a JSON encoder per request.
            return Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }

        router.get("/v1/kv/:key") { request, context -> Response in
            let key = try keyParameter(context, maxKeyBytes: maxKeyBytes)
            let session = try sessionHeaders(request)
            let consistency = try consistencyParameter(request)
            let result = try await run(
                service, session, .get(key: Array(key.utf8)), consistency: consistency)
            guard result.status == .ok, let value = result.value else {
                throw APIError(.notFound, "key_not_found", "no key '\(key)'")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: value)))
        }

        router.delete("/v1/kv/:key") { request, context -> APIBody.KVWrite in
            let key = try keyParameter(context, maxKeyBytes: maxKeyBytes)
            let session = try sessionHeaders(request)
            let result = try await run(service, session, .delete(key: Array(key.utf8)))
            guard result.status == .ok else { throw APIError(.notFound, "key_not_found", "no key '\(key)'") }
            return APIBody.KVWrite(key: key, status: "deleted", value: nil)
        }

        router.post("/v1/kv/:key") { request, context -> Response in
            let key = try keyParameter(context, maxKeyBytes: maxKeyBytes)
            let session = try sessionHeaders(request)
            let body = try await request.body.collect(upTo: maxValueBytes)
            switch request.uri.queryParameters.get("op") {
            case "append":
                let result = try await run(
                    service, session,
                    .appendWithin(
                        key: Array(key.utf8), value: Array(buffer: body), maxBytes: UInt64(maxValueBytes)))
                return try json(
                    APIBody.KVWrite(
                        key: key, status: "ok",
                        value: result.value.flatMap { String(validating: $0, as: UTF8.self) }))
            case "cas":
                let swap: APIBody.CompareAndSet
                do {
                    swap = try JSONDecoder().decode(APIBody.CompareAndSet.self, from: Data(buffer: body))
                } catch {
                    throw APIError(
                        .badRequest, "bad_body",
                        "compare-and-set wants {\"expected\": string or null, \"value\": string}")
                }
                let result = try await run(
                    service, session,
                    .compareAndSet(
                        key: Array(key.utf8), expected: swap.expected.map { Array($0.utf8) },
                        new: Array(swap.value.utf8)))
                let current = result.value.flatMap { String(validating: $0, as: UTF8.self) }
                if result.status == .compareFailed {
                    var response = try json(
                        APIBody.CompareAndSetResult(key: key, swapped: false, current: current))
                    response.status = .conflict
                    return response
                }
                return try json(APIBody.CompareAndSetResult(key: key, swapped: true, current: nil))
            case let other:
                throw APIError(
                    .badRequest, "bad_operation", "op must be 'append' or 'cas', got '\(other ?? "")'")
            }
        }

        router.post("/v1/sessions") { _, _ -> APIBody.Session in
            switch await service.register() {
            case .done(let result):
                guard let client = result.clientID else {
                    throw APIError(.internalServerError, "internal", "register returned \(result.status)")
                }
                return APIBody.Session(clientId: client)
            case .failed(let reason):
                try await throwIfStorageFailed(service, executed: "no session opened")
                throw APIError(.serviceUnavailable, "no_leader", "not executed: \(reason)")
            case .unknown(let reason):
                throw APIError(
                    .gatewayTimeout, "outcome_unknown", "\(reason); a session may have been opened")
            }
        }

        router.get("/v1/log") { _, _ -> APIBody.LogStatus in
            let peer = service.peer
            let (role, leader, firstUnchosen, applied, logStart, records) = await peer.inspect {
                ("\($0.role)", $0.leader?.rawValue, $0.firstUnchosen, $0.applied, $0.logStart, $0.recordCount)
            }
            return APIBody.LogStatus(
                node: peer.me.rawValue, role: role, leader: leader, firstUnchosen: firstUnchosen,
                applied: applied,
                logStart: logStart, records: records, commits: await peer.commits,
                appliedCommands: await peer.appliedProposals, serving: await peer.isServing,
                failure: await peer.failure)
        }
    }

    static func keyParameter(_ context: BasicRequestContext, maxKeyBytes: Int) throws -> String {
        var key = context.parameters.get("key") ?? ""
        guard !key.isEmpty else { throw APIError(.badRequest, "bad_key", "the key must not be empty") }
        // Foundation's decoding costs about 2% of a busy leader's CPU; most keys have nothing to decode.
        if key.utf8.contains(UInt8(ascii: "%")) {
            guard let decoded = key.removingPercentEncoding, !decoded.isEmpty else {
                throw APIError(.badRequest, "bad_key", "the key is not valid percent-encoded UTF-8")
            }
            key = decoded
        }
        guard key.utf8.count <= maxKeyBytes else {
            throw APIError(
                .uriTooLong, "key_too_long",
                "the key is \(key.utf8.count) bytes; at most \(maxKeyBytes) are accepted")
        }
        return key
    }

    /// The largest `X-Request-Id`: request numbers stay within a signed 64-bit integer, so every
    /// client language and SQLite can hold them.
    public static let maxRequestID = SessionHeaders.maxRequestID

    static let clientIDHeader = HTTPField.Name(SessionHeaders.clientID)!
    static let requestIDHeader = HTTPField.Name(SessionHeaders.requestID)!

    static func sessionHeaders(_ request: Request) throws -> (client: UInt64, request: UInt64)? {
        let clientText = request.headers[clientIDHeader]
        let requestText = request.headers[requestIDHeader]
        switch (clientText, requestText) {
        case (nil, nil):
            return nil
        case (let client?, let number?):
            // Digits only: UInt64("+5") parses, and a session id is compared as it was issued.
            guard client.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let client = UInt64(client),
                client > 0
            else {
                throw APIError(
                    .badRequest, "bad_session",
                    "X-Client-Id must be a session id from POST /v1/sessions (an integer in 1...2^64-1)")
            }
            guard number.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let number = UInt64(number),
                (1...maxRequestID).contains(number)
            else {
                throw APIError(
                    .badRequest, "bad_session", "X-Request-Id must be an integer in 1...2^63-1")
            }
            return (client, number)
        default:
            throw APIError(.badRequest, "bad_session", "X-Client-Id and X-Request-Id go together")
        }
    }

    /// `?consistency=linearizable` (the default) or `serializable`; anything else is a 400.
    static func consistencyParameter(_ request: Request) throws -> ReadConsistency {
        guard let value = request.uri.queryParameters.get("consistency") else { return .linearizable }
        guard let consistency = ReadConsistency(rawValue: value) else {
            throw APIError(
                .badRequest, "bad_consistency",
                "consistency must be 'linearizable' or 'serializable', got '\(value.prefix(64))'")
        }
        return consistency
    }

    static func run(
        _ service: KVService, _ session: (client: UInt64, request: UInt64)?, _ operation: KVOperation,
        consistency: ReadConsistency = .linearizable
    )
        async throws -> KVResult
    {
        let command = KVCommand(
            client: session?.client ?? 0, request: session?.request ?? 0, operation: operation)
        switch await service.execute(command, consistency: consistency) {
        case .done(let result):
            switch result.status {
            case .sessionExpired:
                throw APIError(
                    .conflict, "session_expired",
                    "client \(command.client) has no session (never opened, or evicted): this attempt was not executed, but an earlier attempt of this request may have been; open a new session"
                )
            case .staleRequest:
                throw APIError(
                    .conflict, "stale_request",
                    "client \(command.client) already got the answer to a later request")
            case .requestMismatch:
                throw APIError(
                    .conflict, "request_mismatch",
                    "client \(command.client) already used request \(command.request) for another operation; nothing was executed: use a new X-Request-Id"
                )
            case .tooLarge:
                throw APIError(
                    .contentTooLarge, "value_too_large",
                    "\(limitPhrase(operation)); nothing was changed")
            case .malformed, .sessionExists:
                throw APIError(.badRequest, "malformed", "the command could not be decoded")
            case .ok, .notFound, .compareFailed:
                return result
            }
        case .failed(let reason):
            try await throwIfStorageFailed(service, executed: "not executed")
            throw APIError(.serviceUnavailable, "no_leader", "not executed: \(reason)")
        case .unknown(let reason):
            throw APIError(
                .gatewayTimeout, "outcome_unknown",
                "\(reason); it may still be applied, retry with the same X-Request-Id")
        }
    }

    /// A command refused because this replica's own commit failed is not a missing leader:
    /// 503 `storage_failed`, so whoever runs the node looks at its disk; one refused because the
    /// replica is stopping is 503 `not_serving`.
    static func throwIfStorageFailed(_ service: KVService, executed: String) async throws {
        if let failure = await service.peer.failure {
            throw APIError(
                .serviceUnavailable, "storage_failed", "\(executed): this node stopped serving: \(failure)")
        }
        if await !service.peer.isServing {
            // Shutting down: not a missing leader, and another node may serve.
            throw APIError(.serviceUnavailable, "not_serving", "\(executed): this node is shutting down")
        }
    }

    static func limitPhrase(_ operation: KVOperation) -> String {
        if case .appendWithin(_, _, let maxBytes) = operation {
            return "the value would grow past \(maxBytes) bytes (--max-value-bytes)"
        }
        return "the value would grow past --max-value-bytes"
    }

    static func json<T: Encodable>(_ value: T) throws -> Response {
        let data = try JSONEncoder().encode(value)
        return Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
