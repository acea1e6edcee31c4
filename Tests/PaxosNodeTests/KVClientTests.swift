import Foundation
import HTTPTypes
import Hummingbird
import PaxosKVClient
import PaxosServer
import PaxosTesting
import Testing

/// Counts the key-value requests that carry a session, and loses the answers of the first
/// `lose` of them after they were executed: the client sees the 504 `outcome_unknown` a node
/// gives when a command's fate is not known, while the command really ran.
actor LostAnswers {
    let lose: Int
    private(set) var requestIDs: [String] = []

    init(lose: Int) { self.lose = lose }

    /// Records one request; whether its answer is to be lost.
    func record(_ requestID: String) -> Bool {
        requestIDs.append(requestID)
        return requestIDs.count <= lose
    }
}

struct LoseAnswersMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let lost: LostAnswers

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let requestID = request.headers[HTTPField.Name("X-Request-Id")!] else {
            return try await next(request, context)
        }
        let response = try await next(request, context)
        if await lost.record(requestID) {
            throw APIError(.gatewayTimeout, "outcome_unknown", "test: the answer was lost after it ran")
        }
        return response
    }
}

/// A node whose every request gets 503 `no_leader`: certainly not executed.
func noLeaderRouter() -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: JSONErrorMiddleware())
    for method in [HTTPRequest.Method.get, .put, .post, .delete] {
        router.on("**", method: method) { _, _ -> Response in
            throw APIError(.serviceUnavailable, "no_leader", "test: no leader")
        }
    }
    return router
}

/// Serves each router on its own loopback port for the duration of `body`.
func withServers(_ routers: [Router<BasicRequestContext>], _ body: ([String]) async throws -> Void)
    async throws
{
    guard let first = routers.first else { return try await body([]) }
    try await withServer(first) { url in
        try await withServers(Array(routers.dropFirst())) { rest in try await body([url] + rest) }
    }
}

/// `PaxosKVClient` against three HTTP servers, each in front of one replica of a 3-replica log.
@Suite("PaxosKVClient", .serialized)
struct KVClientTests {
    /// The three replicas' key-value routes; `middleware` goes in front of every one.
    func withCluster(
        lost: LostAnswers? = nil, _ body: ([String], KVCluster) async throws -> Void
    ) async throws {
        let cluster = try await KVCluster(3, seed: 71)
        _ = try await cluster.waitForLeader()
        var routers: [Router<BasicRequestContext>] = []
        for index in 0..<3 {
            let router = Router(context: BasicRequestContext.self)
            router.add(middleware: JSONErrorMiddleware())
            if let lost { router.add(middleware: LoseAnswersMiddleware(lost: lost)) }
            KVHTTPAPI.add(to: router, service: try #require(cluster.service(index)), maxValueBytes: 1 << 16)
            routers.append(router)
        }
        do {
            try await withServers(routers) { urls in try await body(urls, cluster) }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    @Test(
        "an append whose answer was lost (504 outcome_unknown) is retried with the same request id and runs once"
    )
    func retriedWriteRunsOnce() async throws {
        let lost = LostAnswers(lose: 2)
        try await withCluster(lost: lost) { urls, cluster in
            let client = try PaxosKVClient(endpoints: [urls[1]])
            let value = try await client.append("log", Data("x".utf8))
            // The first two attempts ran and lost their answers; the third got the first answer.
            #expect(value == "x")
            #expect(await lost.requestIDs.count == 3)
            #expect(Set(await lost.requestIDs).count == 1, "every attempt carried one request id")
            #expect(try await cluster.clerk().get("log") == "x", "applied once, not three times")
            // The next write is a new request.
            try await client.put("k", "v")
            #expect(Set(await lost.requestIDs).count == 2)
            #expect(String(decoding: try await client.get("k"), as: UTF8.self) == "v")
            await client.shutdown()
        }
    }

    @Test("failover: a closed port first, then a live node; the call succeeds and later calls start there")
    func failoverToTheNextEndpoint() async throws {
        try await withCluster { urls, _ in
            let closed = "http://127.0.0.1:\(try freePort())"
            let client = try PaxosKVClient(endpoints: [closed, urls[0], urls[2]])
            try await client.put("greeting", "hello")
            #expect(String(decoding: try await client.get("greeting"), as: UTF8.self) == "hello")
            // Asked on its own, the closed port is unreachable, with its reason.
            await #expect(throws: PaxosKVError.self) { try await client.status(at: closed) }
            await client.shutdown()

            let dead = try PaxosKVClient(endpoints: [closed, "http://127.0.0.1:\(try freePort())"])
            do throws(PaxosKVError) {
                _ = try await dead.get("greeting")
                Issue.record("a get through two closed ports succeeded")
            } catch {
                guard case .unreachable(let reasons) = error else {
                    Issue.record("expected unreachable, got \(error)")
                    return
                }
                #expect(reasons.count == 2)
                #expect(reasons.keys.contains(closed))
                #expect(error.description.contains("cannot reach"))
            }
            await dead.shutdown()
        }
    }

    @Test("503 no_leader: the next endpoint after a pause; only no_leader everywhere is .noLeader")
    func noLeaderFailsOver() async throws {
        try await withCluster { urls, _ in
            try await withServers([noLeaderRouter()]) { stuck in
                let client = try PaxosKVClient(endpoints: [stuck[0], urls[1]])
                try await client.put("k", "through the second")
                #expect(String(decoding: try await client.get("k"), as: UTF8.self) == "through the second")
                await client.shutdown()

                var configuration = PaxosKVClient.Configuration(endpoints: [stuck[0]])
                configuration.maxAttempts = 3
                configuration.noLeaderBackoff = .milliseconds(10)
                let leaderless = try PaxosKVClient(configuration)
                await #expect(throws: PaxosKVError.noLeader("\(stuck[0]): test: no leader")) {
                    try await leaderless.put("k", "v")
                }
                await leaderless.shutdown()
            }
        }
    }

    @Test("typed errors: notFound for get and delete, casMismatch with the value found, http for the rest")
    func typedErrors() async throws {
        try await withCluster { urls, _ in
            let client = try PaxosKVClient(endpoints: urls)
            await #expect(throws: PaxosKVError.notFound(key: "absent")) { try await client.get("absent") }
            await #expect(throws: PaxosKVError.notFound(key: "absent")) { try await client.delete("absent") }
            try await client.compareAndSwap("c", expected: nil, new: "one")
            await #expect(throws: PaxosKVError.casMismatch(key: "c", current: "one")) {
                try await client.compareAndSwap("c", expected: "two", new: "three")
            }
            await #expect(throws: PaxosKVError.casMismatch(key: "c", current: "one")) {
                try await client.compareAndSwap("c", expected: nil, new: "three")
            }
            try await client.compareAndSwap("c", expected: "one", new: "two")
            #expect(String(decoding: try await client.get("c"), as: UTF8.self) == "two")
            // A key with a slash and a space is one key, percent-encoded on the way.
            try await client.put("a/b c", "v")
            #expect(String(decoding: try await client.get("a/b c"), as: UTF8.self) == "v")
            try await client.delete("a/b c")
            await #expect(throws: PaxosKVError.notFound(key: "a/b c")) { try await client.get("a/b c") }
            // Above the server's key limit: the API's own error code.
            do throws(PaxosKVError) {
                try await client.put(String(repeating: "k", count: 5000), "v")
                Issue.record("a 5000-byte key was accepted")
            } catch {
                #expect(error == .http(status: 414, code: "key_too_long", message: error.httpMessage))
            }
            await #expect(throws: PaxosKVError.invalidRequest("the key must not be empty")) {
                try await client.put("", "v")
            }
            #expect(await client.sessionID != nil, "the writes opened a session")
            await client.shutdown()
        }
        #expect(throws: PaxosKVError.self) { try PaxosKVClient(endpoints: ["ftp://127.0.0.1:1"]) }
        #expect(throws: PaxosKVError.self) { try PaxosKVClient(endpoints: []) }
    }

    @Test("writes of one client wait for each other: concurrent appends all run, in some order, once each")
    func concurrentWritesShareTheSession() async throws {
        try await withCluster { urls, cluster in
            let client = try PaxosKVClient(endpoints: urls)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for letter in ["a", "b", "c", "d", "e"] {
                    group.addTask { try await client.append("log", Data(letter.utf8)) }
                }
                try await group.waitForAll()
            }
            let value = try await cluster.clerk().get("log")
            #expect(value.count == 5 && Set(value) == Set("abcde"), "\(value)")
            await client.shutdown()
        }
    }
}

extension PaxosKVError {
    /// The message of an `.http` error (for comparing the rest of it).
    var httpMessage: String {
        if case .http(_, _, let message) = self { return message }
        return ""
    }
}
