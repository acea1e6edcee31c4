import Foundation
import Hummingbird
import Paxos
import PaxosCore
import PaxosServer
import PaxosTesting
import Testing

/// Every route of the HTTP API and every error case, against a live server on loopback in front
/// of a peer of a 3-peer simulated cluster.
@Suite("HTTP API", .serialized)
struct HTTPAPITests {
    func withAPI(
        maxValueBytes: Int = 1024, clientToken: String? = nil,
        _ body: (String, LabCluster) async throws -> Void
    ) async throws {
        let cluster = try await LabCluster(3, seed: 51)
        let peer = cluster[0]!
        let info = NodeInfo(
            clusterID: "api-test", dataDirectory: "/nowhere", version: "test",
            peerAddresses: [0: "127.0.0.1:1", 1: "127.0.0.1:2", 2: "127.0.0.1:3"],
            isReachable: { $0 == 1 })
        let router = PaxosHTTPAPI.router(
            peer: peer, info: info, maxValueBytes: maxValueBytes, clientToken: clientToken)
        do {
            try await withServer(router) { base in try await body(base, cluster) }
        } catch {
            await cluster.cleanup()
            throw error
        }
        await cluster.cleanup()
    }

    @Test("PUT /v1/instances/{seq} starts agreement (202) and GET reports the decided value")
    func startAndStatus() async throws {
        try await withAPI { base, cluster in
            let put = try await http("PUT", "\(base)/v1/instances/4", body: Data("héllo".utf8))
            #expect(put.status == 202)
            #expect(put.json["seq"] as? Int == 4 && put.json["status"] as? String == "started")
            try await cluster.waitn(4, 3)
            let get = try await http("GET", "\(base)/v1/instances/4")
            #expect(get.status == 200)
            #expect(get.json["fate"] as? String == "decided")
            #expect(get.json["value"] as? String == "héllo")
            #expect(get.json["valueBase64"] as? String == Data("héllo".utf8).base64EncodedString())
        }
    }

    @Test("a decided value that is not UTF-8 comes back only as base64")
    func binaryValue() async throws {
        try await withAPI { base, cluster in
            let bytes = Data([0xff, 0x00, 0xfe])
            #expect(try await http("PUT", "\(base)/v1/instances/0", body: bytes).status == 202)
            try await cluster.waitn(0, 3)
            let get = try await http("GET", "\(base)/v1/instances/0")
            #expect(get.json["value"] == nil)
            #expect(get.json["valueBase64"] as? String == bytes.base64EncodedString())
        }
    }

    @Test("GET of an unknown instance is pending; below min() it is forgotten")
    func pendingAndForgotten() async throws {
        try await withAPI { base, cluster in
            #expect(try await http("GET", "\(base)/v1/instances/77").json["fate"] as? String == "pending")
            for peer in cluster.peers() { await peer?.done(5) }
            // As in the lab: done values travel on protocol messages, so every peer proposes once.
            for (index, peer) in cluster.peers().enumerated() { await peer?.start(6 + index, .text("x")) }
            for seq in 6..<9 { try await cluster.waitn(seq, 3) }
            try await eventually("min() passes 5") { await cluster[0]!.min() == 6 }
            let answer = try await http("GET", "\(base)/v1/instances/3")
            #expect(answer.status == 200)
            #expect(answer.json["fate"] as? String == "forgotten")
        }
    }

    @Test("POST /v1/done/{seq} records done and reports min()")
    func done() async throws {
        try await withAPI { base, cluster in
            let answer = try await http("POST", "\(base)/v1/done/9")
            #expect(answer.status == 200)
            #expect(answer.json["done"] as? Int == 9)
            #expect(answer.json["min"] as? Int == 0, "the other peers are not done")
            #expect(await cluster[0]!.inspect { $0.ownDone } == 9)
        }
    }

    @Test("GET /v1/status and GET /health describe the node")
    func statusAndHealth() async throws {
        try await withAPI { base, _ in
            let status = try await http("GET", "\(base)/v1/status")
            #expect(status.status == 200)
            #expect(status.json["node"] as? Int == 0)
            #expect(status.json["cluster"] as? String == "api-test")
            #expect(status.json["min"] as? Int == 0 && status.json["max"] as? Int == -1)
            #expect(
                status.json["dataDir"] as? String == "/nowhere" && status.json["version"] as? String == "test"
            )
            let peers = try #require(status.json["peers"] as? [[String: Any]])
            #expect(peers.map { $0["id"] as? Int } == [0, 1, 2])
            #expect(peers.map { $0["reachable"] as? Bool } == [true, true, false])
            let health = try await http("GET", "\(base)/health")
            #expect(health.status == 200 && health.json["status"] as? String == "ok")
        }
    }

    @Test(
        "a bad sequence number is a 400 with code bad_sequence",
        arguments: [
            "-1", "abc", "1.5", "99999999999999999999", "%E2%91%A0", "9223372036854775807",
            "4611686018427387904",
        ])
    func badSequence(seq: String) async throws {
        try await withAPI { base, _ in
            for (method, path) in [("GET", "instances"), ("PUT", "instances"), ("POST", "done")] {
                let answer = try await http(
                    method, "\(base)/v1/\(path)/\(seq)", body: method == "PUT" ? Data("v".utf8) : nil)
                #expect(answer.status == 400, "\(method) \(path)/\(seq)")
                #expect(answer.errorCode == "bad_sequence")
            }
            #expect(try await http("GET", "\(base)/health").status == 200, "the node still serves")
        }
    }

    @Test("done at the top of the range is recorded without overflow, and the node keeps serving")
    func doneAtTheLimit() async throws {
        try await withAPI { base, cluster in
            let top = (1 << 62) - 1
            for peer in cluster.peers() { await peer?.done(top) }
            let answer = try await http("POST", "\(base)/v1/done/\(top)")
            #expect(answer.status == 200)
            #expect(answer.json["done"] as? Int == top)
            #expect(try await http("GET", "\(base)/health").status == 200)
        }
    }

    @Test("an unknown route is a 404 with a JSON error")
    func unknownRoute() async throws {
        try await withAPI { base, _ in
            for (method, path) in [
                ("GET", "/v2/instances/1"), ("GET", "/"), ("DELETE", "/v1/instances/1"),
                ("POST", "/v1/nothing"),
            ] {
                let answer = try await http(method, base + path)
                #expect(answer.status == 404 || answer.status == 405, "\(method) \(path)")
                #expect(
                    answer.errorCode == "not_found" || answer.errorCode == "method_not_allowed",
                    "\(method) \(path)")
            }
        }
    }

    @Test("a body above the value limit is a 413 and starts nothing")
    func bodyTooLarge() async throws {
        try await withAPI(maxValueBytes: 1024) { base, cluster in
            let answer = try await http("PUT", "\(base)/v1/instances/1", body: Data(count: 1025))
            #expect(answer.status == 413)
            #expect(answer.errorCode == "body_too_large")
            #expect(await cluster[0]!.max() == -1)
            #expect(try await http("PUT", "\(base)/v1/instances/1", body: Data(count: 1024)).status == 202)
        }
    }

    @Test("a known route asked with another method is a 405 with Allow and a JSON error")
    func wrongMethod() async throws {
        try await withAPI { base, _ in
            for (method, path, allow) in [
                ("DELETE", "/v1/instances/1", "GET, PUT"), ("POST", "/v1/instances/1", "GET, PUT"),
                ("GET", "/v1/done/1", "POST"), ("PUT", "/v1/status", "GET"), ("POST", "/health", "GET"),
            ] {
                let answer = try await http(method, base + path)
                #expect(answer.status == 405, "\(method) \(path)")
                #expect(answer.errorCode == "method_not_allowed", "\(method) \(path)")
                #expect(answer.headers["allow"] == allow, "\(method) \(path)")
            }
            #expect(try await http("GET", "\(base)/v1/instances").status == 404)
        }
    }

    @Test("a failed commit: /health is a 503 storage_failed and /v1/status says not serving")
    func failedCommit() async throws {
        try await withAPI { base, cluster in
            let store = try #require(cluster.store(0) as? InMemoryStore)
            await store.failNextCommit()
            _ = try await http("PUT", "\(base)/v1/instances/1", body: Data("v".utf8))
            try await eventually("the commit failed") { await cluster[0]!.failure != nil }
            let health = try await http("GET", "\(base)/health")
            #expect(health.status == 503 && health.errorCode == "storage_failed")
            let status = try await http("GET", "\(base)/v1/status")
            #expect(status.json["serving"] as? Bool == false)
            #expect((status.json["failure"] as? String)?.contains("commit failed") == true)
            let put = try await http("PUT", "\(base)/v1/instances/2", body: Data("v".utf8))
            #expect(put.status == 503 && put.errorCode == "storage_failed")
        }
    }

    @Test("with a client token every route but /health wants it: 401 with WWW-Authenticate, else 200")
    func bearerToken() async throws {
        let token = "s3cret-token"
        try await withAPI(clientToken: token) { base, _ in
            let routes = [
                ("GET", "/v1/status"), ("POST", "/v1/done/1"), ("GET", "/v1/instances/1"),
                ("PUT", "/v1/instances/2"), ("GET", "/nothing"),
            ]
            for (method, path) in routes {
                for authorization in [
                    nil, "Bearer", "Bearer ", "Bearer s3cret-tokeN", "Bearer s3cret-token2",
                    "Basic s3cret-token",
                    "Bearer s3cret", token,
                ] {
                    let answer = try await http(
                        method, base + path, body: method == "PUT" ? Data("v".utf8) : nil,
                        headers: authorization.map { ["Authorization": $0] } ?? [:])
                    #expect(answer.status == 401, "\(method) \(path) \(authorization ?? "none")")
                    #expect(answer.errorCode == "unauthorized")
                    #expect(answer.headers["www-authenticate"] == #"Bearer realm="paxos-node""#)
                }
            }
            let bearer = ["Authorization": "Bearer \(token)"]
            #expect(try await http("GET", "\(base)/v1/status", headers: bearer).status == 200)
            #expect(try await http("POST", "\(base)/v1/done/1", headers: bearer).status == 200)
            #expect(
                try await http("PUT", "\(base)/v1/instances/2", body: Data("v".utf8), headers: bearer).status
                    == 202)
            #expect(
                try await http("GET", "\(base)/v1/instances/1", headers: ["Authorization": "bearer \(token)"])
                    .status == 200)
            #expect(try await http("GET", "\(base)/health").status == 200, "the probe stays open")
        }
    }

    @Test("a node that is not serving answers 503 not_serving")
    func notServing() async throws {
        try await withAPI { base, cluster in
            await cluster[0]!.kill()
            let put = try await http("PUT", "\(base)/v1/instances/1", body: Data("v".utf8))
            #expect(put.status == 503 && put.errorCode == "not_serving")
            #expect(try await http("POST", "\(base)/v1/done/1").status == 503)
            #expect(try await http("GET", "\(base)/health").status == 503)
            let status = try await http("GET", "\(base)/v1/status")
            #expect(status.status == 200 && status.json["serving"] as? Bool == false)
        }
    }
}
