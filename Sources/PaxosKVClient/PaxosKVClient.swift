import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PaxosAPI

/// A client of a paxos-node cluster's HTTP API: the replicated key-value store, the membership,
/// and each node's status.
///
/// - **Exactly once.** Writes (`put`, `delete`, `append`, `compareAndSwap`) run in a session
///   (`POST /v1/sessions`, opened on the first write) and carry its client id and a request
///   number. A write retried after a lost connection or a 504 `outcome_unknown` resends the
///   *same* number, so the cluster executes it once and answers the retry with the first answer.
///   The server wants one request of a session at a time, so writes of one client wait for each
///   other; reads do not use the session and run concurrently.
/// - **Failover.** Endpoints are tried in order, starting from the last one that answered; a
///   connection failure moves on to the next at once, a 503 `no_leader` after a short, growing
///   pause. Every call is bounded by ``Configuration/maxAttempts`` and ``Configuration/deadline``.
/// - **Typed errors**: every failure is a ``PaxosKVError``.
public actor PaxosKVClient {
    /// How a client reaches the cluster and how long it keeps trying.
    public struct Configuration: Sendable {
        /// The nodes' HTTP API base URLs (`http://host:port` or `https://host:port`).
        public var endpoints: [String]
        /// Sent as `Authorization: Bearer …` (the node's `--client-token-file`).
        public var bearerToken: String?
        /// A PEM file of the CA (or the certificate) to trust for `https` endpoints instead of the
        /// system's roots.
        public var caFile: String?
        /// How long one connection attempt may take.
        public var connectTimeout: Duration = .seconds(2)
        /// How long one attempt may wait for its answer.
        public var requestTimeout: Duration = .seconds(15)
        /// How long one call may take, all its attempts together.
        public var deadline: Duration = .seconds(30)
        /// How many attempts one call makes at most.
        public var maxAttempts = 10
        /// The first pause after a 503 `no_leader` (doubling, at most 2 s): an election takes a moment.
        public var noLeaderBackoff: Duration = .milliseconds(200)
        /// The largest answer body accepted; a larger one is a ``PaxosKVError/badAnswer(_:)``.
        public var maxAnswerBytes = 256 << 20

        public init(endpoints: [String], bearerToken: String? = nil, caFile: String? = nil) {
            self.endpoints = endpoints
            self.bearerToken = bearerToken
            self.caFile = caFile
        }
    }

    /// The endpoints, normalized (no trailing `/`), in the order they are tried.
    public nonisolated let endpoints: [String]
    public nonisolated let configuration: Configuration
    private nonisolated let http: HTTPClient

    /// The endpoint that answered last: the next call starts there.
    private var preferred = 0
    /// The session of the writes, once opened.
    private var session: (client: UInt64, lastRequest: UInt64)?
    private var writing = false
    private var waitingWriters: [CheckedContinuation<Void, Never>] = []

    /// Checks the endpoints and makes the HTTP client; nothing is sent yet.
    public init(_ configuration: Configuration) throws(PaxosKVError) {
        endpoints = try Self.normalized(configuration.endpoints)
        guard configuration.maxAttempts >= 1 else {
            throw .invalidRequest("maxAttempts must be at least 1")
        }
        var client = HTTPClient.Configuration()
        if let caFile = configuration.caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw .invalidRequest("cannot read the CA file \(caFile)")
            }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            client.tlsConfiguration = tls
        }
        client.timeout = .init(
            connect: Self.timeAmount(configuration.connectTimeout),
            read: Self.timeAmount(configuration.requestTimeout))
        // A refused connection fails the request at once, so the next endpoint is tried; by
        // default the pool would retry the dead one until the request's deadline.
        client.connectionPool.retryConnectionEstablishment = false
        // Below the node's --http-idle-timeout (60 s), so a pooled connection is rarely one the
        // node has just closed (a request sent on it fails after it may have left).
        client.connectionPool.idleTimeout = .seconds(20)
        client.decompression = .disabled
        client.redirectConfiguration = .disallow
        self.configuration = configuration
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
    }

    /// A client of `endpoints` with the default limits.
    public init(endpoints: [String], bearerToken: String? = nil, caFile: String? = nil) throws(PaxosKVError) {
        try self.init(Configuration(endpoints: endpoints, bearerToken: bearerToken, caFile: caFile))
    }

    deinit {
        // A client dropped without shutdown() still closes its connections.
        http.shutdown { _ in }
    }

    /// Closes the connections. The client must not be used afterwards.
    public func shutdown() async {
        try? await http.shutdown()
    }

    /// The session's client id, once a write opened it.
    public var sessionID: UInt64? { session?.client }

    // MARK: - The key-value store

    /// Sets `key` to `value`.
    public func put(_ key: String, _ value: Data) async throws(PaxosKVError) {
        let answer = try await sessionWrite(.PUT, try Self.keyPath(key), body: value)
        guard answer.status == 200 else { throw answer.failure() }
    }

    /// Sets `key` to the UTF-8 of `value`.
    public func put(_ key: String, _ value: String) async throws(PaxosKVError) {
        try await put(key, Data(value.utf8))
    }

    /// The value of `key`; ``PaxosKVError/notFound(key:)`` when it has none.
    ///
    /// - Parameter serializable: read the answering node's own committed state at once, which
    ///   may be stale (`?consistency=serializable`); by default the read is linearizable (the
    ///   leader confirms it still leads, or the read goes through the log).
    public func get(_ key: String, serializable: Bool = false) async throws(PaxosKVError) -> Data {
        let path = try Self.keyPath(key) + (serializable ? "?consistency=serializable" : "")
        let answer = try await call(.GET, path, policy: .repeatable)
        switch answer.status {
        case 200: return answer.body
        case 404 where answer.errorCode == "key_not_found": throw .notFound(key: key)
        default: throw answer.failure()
        }
    }

    /// Deletes `key`; ``PaxosKVError/notFound(key:)`` when it had no value.
    public func delete(_ key: String) async throws(PaxosKVError) {
        let answer = try await sessionWrite(.DELETE, try Self.keyPath(key))
        switch answer.status {
        case 200: return
        case 404 where answer.errorCode == "key_not_found": throw .notFound(key: key)
        default: throw answer.failure()
        }
    }

    /// Appends `suffix` to `key`'s value (an absent key counts as empty); the value after it
    /// (`nil` when it is not UTF-8).
    @discardableResult
    public func append(_ key: String, _ suffix: Data) async throws(PaxosKVError) -> String? {
        let answer = try await sessionWrite(.POST, try Self.keyPath(key) + "?op=append", body: suffix)
        guard answer.status == 200 else { throw answer.failure() }
        return try answer.decode(APIBody.KVWrite.self).value
    }

    /// Sets `key` to `new` if its value is `expected` (`nil`: if it has none);
    /// ``PaxosKVError/casMismatch(key:current:)`` with the value found when it is not.
    public func compareAndSwap(_ key: String, expected: String?, new: String) async throws(PaxosKVError) {
        let body = try Self.encode(APIBody.CompareAndSet(expected: expected, value: new))
        let answer = try await sessionWrite(.POST, try Self.keyPath(key) + "?op=cas", body: body)
        switch answer.status {
        case 200:
            guard try answer.decode(APIBody.CompareAndSetResult.self).swapped else {
                throw .badAnswer("compare-and-set answered 200 without swapping")
            }
        case 409 where answer.errorCode == nil:
            let result = try answer.decode(APIBody.CompareAndSetResult.self)
            throw .casMismatch(key: key, current: result.current)
        default: throw answer.failure()
        }
    }

    // MARK: - Nodes and membership

    /// `GET /v1/status` of `endpoint` alone (one attempt, no failover: it need not be one of
    /// ``endpoints``), or of the first endpoint that answers.
    public func status(at endpoint: String? = nil) async throws(PaxosKVError) -> APIBody.Status {
        try await call(.GET, "/v1/status", policy: .repeatable, at: endpoint).decodeOK(APIBody.Status.self)
    }

    /// `GET /v1/log`: the replicated log on `endpoint` (or the first endpoint that answers).
    public func logStatus(at endpoint: String? = nil) async throws(PaxosKVError) -> APIBody.LogStatus {
        try await call(.GET, "/v1/log", policy: .repeatable, at: endpoint).decodeOK(APIBody.LogStatus.self)
    }

    /// `GET /health` of `endpoint` (or the first endpoint that answers): 200, or the error of a
    /// node that does not serve (e.g. 503 `storage_failed`).
    public func health(at endpoint: String? = nil) async throws(PaxosKVError) -> APIBody.Health {
        try await call(.GET, "/health", policy: .repeatable, at: endpoint).decodeOK(APIBody.Health.self)
    }

    /// Whether a node can serve linearizable requests now (`GET /ready`).
    public struct Readiness: Sendable, Equatable {
        /// `nil`: the node has no `/ready` route (an older node).
        public var isReady: Bool?
        /// Why not, as the node says.
        public var reason: String?
    }

    /// `GET /ready` of `endpoint` (or the first endpoint that answers).
    public func ready(at endpoint: String? = nil) async throws(PaxosKVError) -> Readiness {
        let answer = try await call(.GET, "/ready", policy: .repeatable, at: endpoint)
        switch answer.status {
        case 200: return Readiness(isReady: true, reason: nil)
        case 404 where answer.errorCode == "not_found": return Readiness(isReady: nil, reason: nil)
        case 401: throw answer.failure()
        default:
            return Readiness(
                isReady: false, reason: "\(answer.errorCode ?? "HTTP \(answer.status)"): \(answer.message)")
        }
    }

    /// `GET /v1/members`: the membership as the answering node knows it.
    public func members() async throws(PaxosKVError) -> APIBody.Members {
        try await call(.GET, "/v1/members", policy: .repeatable).decodeOK(APIBody.Members.self)
    }

    /// Adds node `id`, dialed by its peers at `address` (`HOST:PORT`), as a learner.
    public func addMember(id: UInt32, address: String) async throws(PaxosKVError) -> APIBody.MembershipResult
    {
        let body = try Self.encode(APIBody.AddMember(id: id, address: address))
        return try await call(.POST, "/v1/members", body: body, policy: .once)
            .decodeOK(APIBody.MembershipResult.self)
    }

    /// Makes learner `id` a voter.
    public func promoteMember(_ id: UInt32) async throws(PaxosKVError) -> APIBody.MembershipResult {
        try await call(.POST, "/v1/members/\(id)/promote", policy: .once).decodeOK(
            APIBody.MembershipResult.self)
    }

    /// Removes member `id`.
    public func removeMember(_ id: UInt32) async throws(PaxosKVError) -> APIBody.MembershipResult {
        try await call(.DELETE, "/v1/members/\(id)", policy: .once).decodeOK(APIBody.MembershipResult.self)
    }

    // MARK: - Classic instances (the 6.824 API)

    /// Starts agreement on instance `seq` with `value` (on the first endpoint that answers).
    @discardableResult
    public func startInstance(_ seq: Int, _ value: Data) async throws(PaxosKVError) -> APIBody.Started {
        // Proposing the same value again is harmless, so a lost answer is simply retried.
        let answer = try await call(.PUT, "/v1/instances/\(seq)", body: value, policy: .repeatable)
        guard answer.status == 202 else { throw answer.failure() }
        return try answer.decode(APIBody.Started.self)
    }

    /// What the node knows about instance `seq`.
    public func instance(_ seq: Int, at endpoint: String? = nil) async throws(PaxosKVError)
        -> APIBody.Instance
    {
        try await call(.GET, "/v1/instances/\(seq)", policy: .repeatable, at: endpoint)
            .decodeOK(APIBody.Instance.self)
    }

    /// Tells the node its application is done with every instance up to `seq`.
    @discardableResult
    public func done(_ seq: Int) async throws(PaxosKVError) -> APIBody.Done {
        try await call(.POST, "/v1/done/\(seq)", policy: .repeatable).decodeOK(APIBody.Done.self)
    }

    // MARK: - Sessions

    /// Runs one write of the session: waits for the session's previous write, opens the session
    /// if needed, and sends the request under the next request number (the same number on every
    /// retry).
    private func sessionWrite(_ method: HTTPMethod, _ path: String, body: Data? = nil)
        async throws(PaxosKVError)
        -> Answer
    {
        await startWriting()
        defer { finishWriting() }
        var reopened = false
        while true {
            let current = try await openedSession()
            guard current.lastRequest < SessionHeaders.maxRequestID else {
                // Never in practice (2^63 requests); a new session starts again at 1.
                self.session = nil
                continue
            }
            let request = current.lastRequest + 1
            self.session = (current.client, request)
            let (answer, mayHaveRun) = try await send(
                method, path, body: body, policy: .repeatable, session: (current.client, request))
            guard answer.status == 409, answer.errorCode == "session_expired" else { return answer }
            // Evicted (or never known here). If no earlier attempt of this request can have run,
            // running it in a new session is still exactly once; otherwise its outcome is unknown.
            if mayHaveRun {
                throw .outcomeUnknown(
                    "the session expired while the request was retried; an earlier attempt may have run")
            }
            guard !reopened else { throw .sessionExpired(answer.message) }
            reopened = true
            self.session = nil
        }
    }

    private func openedSession() async throws(PaxosKVError) -> (client: UInt64, lastRequest: UInt64) {
        if let session { return session }
        // A session opened twice (a lost answer retried) costs one unused session, which the
        // cluster evicts in time.
        let opened = try await call(.POST, "/v1/sessions", policy: .repeatable).decodeOK(APIBody.Session.self)
        guard opened.clientId > 0 else { throw .badAnswer("session id 0") }
        let session = (client: opened.clientId, lastRequest: UInt64(0))
        self.session = session
        return session
    }

    private func startWriting() async {
        guard writing else {
            writing = true
            return
        }
        await withCheckedContinuation { waitingWriters.append($0) }
    }

    private func finishWriting() {
        if waitingWriters.isEmpty {
            writing = false
        } else {
            // Handed over: `writing` stays true for the next writer.
            waitingWriters.removeFirst().resume()
        }
    }

    // MARK: - Attempts, retries and failover

    /// Whether a request may be sent again after an attempt that may have reached the node.
    enum Policy {
        /// Running it twice does no harm, or the session makes the second run a replay.
        case repeatable
        /// Sent again only when the earlier attempt certainly did not run.
        case once
    }

    private func call(
        _ method: HTTPMethod, _ path: String, body: Data? = nil, policy: Policy, at endpoint: String? = nil
    ) async throws(PaxosKVError) -> Answer {
        try await send(method, path, body: body, policy: policy, session: nil, at: endpoint).answer
    }

    /// Sends the request until an endpoint gives an answer that is not "try again": any answer but
    /// 503 `no_leader`/`not_serving` (certainly not executed: another node, after a pause) and
    /// 504 `outcome_unknown` (sent again when `policy` allows). Also returns whether an earlier
    /// attempt may have run.
    private func send(
        _ method: HTTPMethod, _ path: String, body: Data?, policy: Policy, session: (UInt64, UInt64)?,
        at pinned: String? = nil
    ) async throws(PaxosKVError) -> (answer: Answer, mayHaveRun: Bool) {
        let targets: [String]
        if let pinned {
            targets = try Self.normalized([pinned])
        } else {
            targets = endpoints
        }
        let attempts = pinned == nil ? configuration.maxAttempts : 1
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.deadline
        var index = pinned == nil ? preferred : 0
        var unreachable: [String: String] = [:]
        var mayHaveRun = false
        var lastUnknown: String?
        var lastNoLeader: String?
        var backoff = configuration.noLeaderBackoff
        var failuresInARow = 0
        // How long the last 503 no_leader took to come back (a node waits for an election first).
        var noLeaderTook: Duration?
        for attempt in 1...attempts {
            if attempt > 1, clock.now >= deadline { break }
            let remaining = deadline - clock.now
            // An attempt the deadline would cut before its answer could come turns "certainly not
            // executed" into "unknown": better to stop with the no_leader already known.
            if let noLeaderTook, remaining < noLeaderTook { break }
            let endpoint = targets[index % targets.count]
            let started = clock.now
            switch await self.attempt(
                endpoint, method, path, body: body, session: session,
                timeout: min(configuration.requestTimeout, max(remaining, .milliseconds(100))))
            {
            case .answered(let answer):
                failuresInARow = 0
                // One endpoint asked on its own gets its answer as it is.
                if pinned != nil { return (answer, false) }
                if answer.status == 503, answer.errorCode == "no_leader" || answer.errorCode == "not_serving"
                {
                    // Not executed: an election may be under way, or this node is stopping.
                    lastNoLeader = "\(endpoint): \(answer.message)"
                    noLeaderTook = clock.now - started
                    index += 1
                    await Self.pause(min(backoff, deadline - clock.now))
                    backoff = min(backoff * 2, .seconds(2))
                    continue
                }
                if answer.status == 504, answer.errorCode == "outcome_unknown" {
                    mayHaveRun = true
                    lastUnknown = "\(endpoint): \(answer.message)"
                    guard policy == .repeatable else { throw .outcomeUnknown(answer.message) }
                    await Self.pause(min(.milliseconds(50), deadline - clock.now))
                    continue
                }
                preferred = index % targets.count
                return (answer, mayHaveRun)
            case .notSent(let reason):
                unreachable[endpoint] = reason
                index += 1
                failuresInARow += 1
                // Every endpoint refused in a row: a short pause before the next round.
                if failuresInARow % targets.count == 0 {
                    await Self.pause(min(.milliseconds(100), deadline - clock.now))
                }
            case .maybeSent(let reason):
                mayHaveRun = true
                unreachable[endpoint] = reason
                lastUnknown = "\(endpoint): \(reason)"
                guard policy == .repeatable else {
                    throw .outcomeUnknown("\(endpoint): \(reason); the request may have been executed")
                }
                index += 1
            }
        }
        if mayHaveRun, method != .GET {
            throw .outcomeUnknown(
                "\(lastUnknown ?? "no answer"); after \(attempts) attempts the request may have been executed"
            )
        }
        if let lastNoLeader { throw .noLeader(lastNoLeader) }
        throw .unreachable(unreachable)
    }

    // MARK: - Backups

    /// Streams a backup (`GET /v1/snapshot`, ``PaxosAPI``'s `SnapshotFile` format) from the first
    /// endpoint that answers, appending it to `file` (an open, empty file) as it arrives; returns
    /// the bytes written. The caller checks the file whole before it trusts it: a transfer cut
    /// off in the middle leaves a file without its trailer.
    public func saveSnapshot(to file: FileHandle) async throws(PaxosKVError) -> Int {
        var unreachable: [String: String] = [:]
        for endpoint in endpoints {
            var request = HTTPClientRequest(url: endpoint + "/v1/snapshot")
            request.method = .GET
            if let token = configuration.bearerToken {
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
            }
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: .hours(24))
            } catch {
                unreachable[endpoint] = Self.describe(error)
                continue
            }
            guard response.status == .ok else {
                let body = (try? await response.body.collect(upTo: 1 << 20)).map {
                    Data($0.readableBytesView)
                }
                throw Answer(status: Int(response.status.code), body: body ?? Data()).failure()
            }
            var written = 0
            do {
                for try await buffer in response.body {
                    try file.write(contentsOf: Data(buffer.readableBytesView))
                    written += buffer.readableBytes
                }
            } catch {
                throw .badAnswer(
                    "the backup from \(endpoint) was cut off after \(written) bytes: \(Self.describe(error))")
            }
            return written
        }
        throw .unreachable(unreachable)
    }

    enum Attempt {
        case answered(Answer)
        /// The request certainly did not reach a node (no connection, TLS refused).
        case notSent(String)
        /// The connection failed after the request may have left.
        case maybeSent(String)
    }

    private func attempt(
        _ endpoint: String, _ method: HTTPMethod, _ path: String, body: Data?, session: (UInt64, UInt64)?,
        timeout: Duration
    ) async -> Attempt {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = method
        if let token = configuration.bearerToken {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        if let session {
            request.headers.add(name: SessionHeaders.clientID, value: "\(session.0)")
            request.headers.add(name: SessionHeaders.requestID, value: "\(session.1)")
        }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: Self.timeAmount(timeout))
        } catch {
            return Self.certainlyNotSent(error)
                ? .notSent(Self.describe(error)) : .maybeSent(Self.describe(error))
        }
        do {
            let bytes = try await response.body.collect(upTo: configuration.maxAnswerBytes)
            return .answered(Answer(status: Int(response.status.code), body: Data(bytes.readableBytesView)))
        } catch is NIOTooManyBytesError {
            return .answered(
                Answer(
                    status: -1,
                    body: Data("the answer is larger than \(configuration.maxAnswerBytes) bytes".utf8)))
        } catch {
            return .maybeSent(Self.describe(error))
        }
    }

    /// Errors raised while connecting or in the TLS handshake, before a byte of the request left.
    static func certainlyNotSent(_ error: any Error) -> Bool {
        switch error {
        case is NIOConnectionError, is NIOSSLError, is BoringSSLError:
            return true
        case let error as ChannelError:
            if case .connectTimeout = error { return true }
            return false
        case let error as HTTPClientError:
            return [.connectTimeout, .tlsHandshakeTimeout, .invalidURL, .emptyHost, .emptyScheme]
                .contains(error)
        case let error as IOError:
            return [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL].contains(error.errnoCode)
        default:
            return false
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            // The per-address errors say what happened; the aggregate only that it did.
            let reasons = error.connectionErrors.map { "\($0.error)" }
            if let dns = error.dnsAAAAError ?? error.dnsAError, reasons.isEmpty { return "\(dns)" }
            return reasons.isEmpty ? "\(error)" : Array(Set(reasons)).sorted().joined(separator: "; ")
        }
        return "\(error)"
    }

    private static func pause(_ duration: Duration) async {
        guard duration > .zero else { return }
        try? await Task.sleep(for: duration)
    }

    // MARK: - Helpers

    static func normalized(_ endpoints: [String]) throws(PaxosKVError) -> [String] {
        let trimmed = endpoints.map {
            $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        }.filter { !$0.isEmpty }
        guard !trimmed.isEmpty else { throw .invalidRequest("no endpoint given") }
        for endpoint in trimmed {
            guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty,
                url.path.isEmpty, url.query == nil
            else {
                throw .invalidRequest(
                    "endpoint '\(endpoint)' is not a base URL like http://127.0.0.1:7001 or https://host:port"
                )
            }
        }
        return trimmed
    }

    /// `/v1/kv/` and the key percent-encoded (a `/` in a key included).
    static func keyPath(_ key: String) throws(PaxosKVError) -> String {
        guard !key.isEmpty,
            let encoded = key.addingPercentEncoding(
                withAllowedCharacters: .urlPathAllowed.subtracting(["/", "%"]))
        else { throw .invalidRequest("the key must not be empty") }
        return "/v1/kv/\(encoded)"
    }

    static func encode<T: Encodable>(_ value: T) throws(PaxosKVError) -> Data {
        do {
            return try JSONEncoder().encode(value)
        } catch {
            throw .invalidRequest("cannot encode the request: \(error)")
        }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// One HTTP answer: the status and the body.
struct Answer: Sendable {
    var status: Int
    var body: Data

    /// The API's error, when the body is one.
    var error: APIBody.ErrorDetail? {
        try? JSONDecoder().decode(APIBody.ErrorEnvelope.self, from: body).error
    }

    var errorCode: String? { error?.code }

    var message: String { error?.message ?? String(decoding: body.prefix(500), as: UTF8.self) }

    /// The typed error for an answer that is not the call's success.
    func failure() -> PaxosKVError {
        guard status > 0 else { return .badAnswer(message) }
        switch (status, errorCode) {
        case (503, "no_leader"): return .noLeader(message)
        case (504, "outcome_unknown"): return .outcomeUnknown(message)
        case (409, "session_expired"): return .sessionExpired(message)
        case (_, let code?): return .http(status: status, code: code, message: message)
        default: return .http(status: status, code: "http_error", message: message)
        }
    }

    func decode<T: Decodable>(_ type: T.Type) throws(PaxosKVError) -> T {
        do {
            return try JSONDecoder().decode(type, from: body)
        } catch {
            throw .badAnswer("HTTP \(status) does not decode as \(T.self): \(error)")
        }
    }

    /// The body as `T` when the status is 200; otherwise the typed error.
    func decodeOK<T: Decodable>(_ type: T.Type) throws(PaxosKVError) -> T {
        guard status == 200 else { throw failure() }
        return try decode(type)
    }
}
