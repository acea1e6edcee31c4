import Foundation
import Hummingbird
import Paxos
import PaxosCore
import PaxosKV
import PaxosServer
import PaxosTesting
import Testing

/// The key-value routes and their errors, against a live server on loopback in front of a
/// replica of a 3-replica log on the simulated network.
@Suite("Key-value HTTP API", .serialized)
struct KVHTTPAPITests {
    func withKV(_ body: (String, KVCluster) async throws -> Void) async throws {
        let cluster = try await KVCluster(3, seed: 61)
        _ = try await cluster.waitForLeader()
        // The node's own router: /health and /v1/status answer for the key-value replica too.
        let instances = try await LabCluster(1, seed: 62)
        let info = NodeInfo(
            clusterID: "kv-test", dataDirectory: "/nowhere", version: "test",
            peerAddresses: [0: "127.0.0.1:1"],
            isReachable: { _ in true }, components: [.log(try #require(cluster.peer(0)))])
        let router = PaxosHTTPAPI.router(peer: instances[0]!, info: info, maxValueBytes: 1024)
        KVHTTPAPI.add(
            to: router, service: try #require(cluster.service(0)), maxValueBytes: 1024, maxKeyBytes: 64)
        do {
            try await withServer(router) { base in try await body(base, cluster) }
        } catch {
            await cluster.shutdown()
            await instances.cleanup()
            throw error
        }
        await cluster.shutdown()
        await instances.cleanup()
    }

    @Test("PUT, GET, append, DELETE: values as bodies, 404 key_not_found when absent")
    func basicRoutes() async throws {
        try await withKV { base, _ in
            #expect(try await http("GET", "\(base)/v1/kv/k").errorCode == "key_not_found")
            let put = try await http("PUT", "\(base)/v1/kv/k", body: Data("héllo".utf8))
            #expect(put.status == 200 && put.json["status"] as? String == "ok")
            let get = try await http("GET", "\(base)/v1/kv/k")
            #expect(get.status == 200 && String(decoding: get.body, as: UTF8.self) == "héllo")
            let append = try await http("POST", "\(base)/v1/kv/k?op=append", body: Data("!".utf8))
            #expect(append.status == 200 && append.json["value"] as? String == "héllo!")
            let delete = try await http("DELETE", "\(base)/v1/kv/k")
            #expect(delete.status == 200 && delete.json["status"] as? String == "deleted")
            let again = try await http("DELETE", "\(base)/v1/kv/k")
            #expect(again.status == 404 && again.errorCode == "key_not_found")
            #expect(try await http("GET", "\(base)/v1/kv/k").status == 404)
        }
    }

    @Test(
        "GET ?consistency=linearizable|serializable reads the value; any other consistency is a 400 bad_consistency"
    )
    func consistencyParameter() async throws {
        try await withKV { base, _ in
            #expect(try await http("PUT", "\(base)/v1/kv/c", body: Data("v1".utf8)).status == 200)
            for consistency in ["linearizable", "serializable"] {
                var got = try await http("GET", "\(base)/v1/kv/c?consistency=\(consistency)")
                // Node 0 may be a follower: its serializable read sees the write once it applied it.
                for _ in 0..<50 where got.status != 200 {
                    try await Task.sleep(for: .milliseconds(20))
                    got = try await http("GET", "\(base)/v1/kv/c?consistency=\(consistency)")
                }
                #expect(
                    got.status == 200 && String(decoding: got.body, as: UTF8.self) == "v1", "\(consistency)")
            }
            for bad in ["", "strong", "LINEARIZABLE", String(repeating: "x", count: 5000)] {
                let got = try await http("GET", "\(base)/v1/kv/c?consistency=\(bad)")
                #expect(got.status == 400 && got.errorCode == "bad_consistency", "\(bad.prefix(20))")
            }
        }
    }

    @Test("a node whose replica stopped answers 503 not_serving, not no_leader, for reads and writes")
    func stoppedReplica() async throws {
        try await withKV { base, cluster in
            await cluster.kill(0)
            for (method, url) in [("GET", "\(base)/v1/kv/k"), ("PUT", "\(base)/v1/kv/k")] {
                let got = try await http(method, url, body: method == "PUT" ? Data("v".utf8) : nil)
                #expect(
                    got.status == 503 && got.errorCode == "not_serving",
                    "\(method): \(got.status) \(got.errorCode ?? "-")")
            }
        }
    }

    @Test("a percent-encoded key is decoded: a%20b and 'a b' are one key")
    func percentEncodedKey() async throws {
        try await withKV { base, cluster in
            let put = try await http("PUT", "\(base)/v1/kv/a%20b", body: Data("v".utf8))
            #expect(put.status == 200)
            let stored = try await cluster.clerk().get("a b")
            #expect(stored == "v")
            let get = try await http("GET", "\(base)/v1/kv/a%20b")
            #expect(String(decoding: get.body, as: UTF8.self) == "v")
        }
    }

    @Test("compare-and-set swaps only from the expected value (null: absent); 409 with the current value")
    func compareAndSet() async throws {
        try await withKV { base, _ in
            func cas(_ body: String) async throws -> HTTPAnswer {
                try await http("POST", "\(base)/v1/kv/c?op=cas", body: Data(body.utf8))
            }
            let create = try await cas(#"{"expected": null, "value": "one"}"#)
            #expect(create.status == 200 && create.json["swapped"] as? Bool == true)
            let stale = try await cas(#"{"expected": null, "value": "two"}"#)
            #expect(stale.status == 409 && stale.json["swapped"] as? Bool == false)
            #expect(stale.json["current"] as? String == "one")
            let swap = try await cas(#"{"expected": "one", "value": "two"}"#)
            #expect(swap.status == 200 && swap.json["swapped"] as? Bool == true)
            #expect(String(decoding: try await http("GET", "\(base)/v1/kv/c").body, as: UTF8.self) == "two")
            let bad = try await cas("not json")
            #expect(bad.status == 400 && bad.errorCode == "bad_body")
            let unknown = try await http("POST", "\(base)/v1/kv/c?op=increment")
            #expect(unknown.status == 400 && unknown.errorCode == "bad_operation")
        }
    }

    @Test("a retried request (same X-Client-Id and X-Request-Id) executes once and gets the first answer")
    func exactlyOnceOverHTTP() async throws {
        try await withKV { base, _ in
            let client = try await openSession(base)
            func append(_ request: Int) async throws -> HTTPAnswer {
                try await http(
                    "POST", "\(base)/v1/kv/log?op=append", body: Data("x".utf8),
                    headers: ["X-Client-Id": "\(client)", "X-Request-Id": "\(request)"])
            }
            #expect(try await append(1).json["value"] as? String == "x")
            // The same request again: not applied a second time, and the original answer.
            #expect(try await append(1).json["value"] as? String == "x")
            #expect(try await append(2).json["value"] as? String == "xx")
            let stale = try await append(1)
            #expect(stale.status == 409 && stale.errorCode == "stale_request")
            #expect(String(decoding: try await http("GET", "\(base)/v1/kv/log").body, as: UTF8.self) == "xx")
        }
    }

    @Test("bad session headers are a 400 bad_session; an unknown client is a 409 session_expired")
    func sessionErrors() async throws {
        try await withKV { base, _ in
            let half = try await http("PUT", "\(base)/v1/kv/k", body: Data(), headers: ["X-Client-Id": "3"])
            #expect(half.status == 400 && half.errorCode == "bad_session")
            let words = try await http(
                "PUT", "\(base)/v1/kv/k", body: Data(), headers: ["X-Client-Id": "x", "X-Request-Id": "1"])
            #expect(words.status == 400 && words.errorCode == "bad_session")
            let unknown = try await http(
                "PUT", "\(base)/v1/kv/k", body: Data("v".utf8),
                headers: ["X-Client-Id": "999999", "X-Request-Id": "1"])
            #expect(unknown.status == 409 && unknown.errorCode == "session_expired")
            // Nothing was executed for it.
            #expect(try await http("GET", "\(base)/v1/kv/k").status == 404)
        }
    }

    @Test("a value above the limit is a 413 and changes nothing; GET /v1/log reports the replica")
    func limitsAndLogStatus() async throws {
        try await withKV { base, _ in
            let big = try await http("PUT", "\(base)/v1/kv/k", body: Data(repeating: 1, count: 2048))
            #expect(big.status == 413)
            #expect(try await http("GET", "\(base)/v1/kv/k").status == 404)
            #expect(try await http("PUT", "\(base)/v1/kv/small", body: Data("v".utf8)).status == 200)
            let log = try await http("GET", "\(base)/v1/log")
            #expect(log.status == 200)
            #expect(log.json["node"] as? Int == 0)
            #expect(log.json["serving"] as? Bool == true)
            #expect((log.json["applied"] as? Int ?? 0) >= 1)
        }
    }

    @Test("session ids are random 64-bit numbers: a guessed or sequential id is no session")
    func unguessableSessions() async throws {
        try await withKV { base, _ in
            let first = try await openSession(base)
            let second = try await openSession(base)
            #expect(first != second)
            // A sequential counter hands out 1, 2, …: an attacker tries those. Random 64-bit ids
            // land there with a chance of about 2^-60, so every guess must miss.
            for guess in 1...8 {
                let hijack = try await http(
                    "PUT", "\(base)/v1/kv/k", body: Data("pwned".utf8),
                    headers: ["X-Client-Id": "\(guess)", "X-Request-Id": "9223372036854775807"])
                #expect(hijack.status == 409 && hijack.errorCode == "session_expired", "client \(guess)")
            }
            #expect(try await http("GET", "\(base)/v1/kv/k").status == 404, "no guessed session ran")
            let put = try await http(
                "PUT", "\(base)/v1/kv/k", body: Data("v".utf8),
                headers: ["X-Client-Id": "\(first)", "X-Request-Id": "1"])
            #expect(put.status == 200, "the real client is not stale")
        }
    }

    @Test("a request id reused for another operation is a 409 request_mismatch and runs nothing")
    func reusedRequestID() async throws {
        try await withKV { base, _ in
            let client = try await openSession(base)
            let headers = ["X-Client-Id": "\(client)", "X-Request-Id": "1"]
            #expect(
                try await http("PUT", "\(base)/v1/kv/k", body: Data("v".utf8), headers: headers).status == 200
            )
            let delete = try await http("DELETE", "\(base)/v1/kv/k", headers: headers)
            #expect(delete.status == 409 && delete.errorCode == "request_mismatch")
            let other = try await http("PUT", "\(base)/v1/kv/k", body: Data("w".utf8), headers: headers)
            #expect(other.status == 409 && other.errorCode == "request_mismatch")
            let read = try await http("GET", "\(base)/v1/kv/k", headers: headers)
            #expect(read.status == 409 && read.errorCode == "request_mismatch")
            #expect(String(decoding: try await http("GET", "\(base)/v1/kv/k").body, as: UTF8.self) == "v")
            // The true retry still gets its answer.
            #expect(
                try await http("PUT", "\(base)/v1/kv/k", body: Data("v".utf8), headers: headers).status == 200
            )
        }
    }

    @Test(
        "session headers out of their ranges are a 400 bad_session with a JSON body",
        arguments: [
            ("1", "0"), ("1", "9223372036854775808"), ("1", "18446744073709551615"), ("1", "+5"),
            ("1", "-1"), ("1", "5x"), ("0", "1"), ("18446744073709551616", "1"), ("+1", "1"), ("0x10", "1"),
        ])
    func sessionHeaderRanges(client: String, request: String) async throws {
        try await withKV { base, _ in
            let answer = try await http(
                "PUT", "\(base)/v1/kv/k", body: Data("v".utf8),
                headers: ["X-Client-Id": client, "X-Request-Id": request])
            #expect(answer.status == 400 && answer.errorCode == "bad_session", "\(client) \(request)")
            #expect(try await http("GET", "\(base)/v1/kv/k").status == 404)
        }
    }

    @Test("append past --max-value-bytes is a 413 value_too_large and leaves the value as it was")
    func appendPastTheLimit() async throws {
        try await withKV { base, _ in
            let start = Data(repeating: UInt8(ascii: "a"), count: 1000)
            #expect(try await http("PUT", "\(base)/v1/kv/k", body: start).status == 200)
            let grow = try await http(
                "POST", "\(base)/v1/kv/k?op=append", body: Data(repeating: 98, count: 100))
            #expect(grow.status == 413 && grow.errorCode == "value_too_large")
            #expect(try await http("GET", "\(base)/v1/kv/k").body == start)
            let fits = try await http(
                "POST", "\(base)/v1/kv/k?op=append", body: Data(repeating: 98, count: 24))
            #expect(fits.status == 200)
            #expect(try await http("GET", "\(base)/v1/kv/k").body.count == 1024)
        }
    }

    @Test("a failed commit of the key-value replica: 503 storage_failed from /health, /v1/status and a put")
    func failedCommit() async throws {
        try await withKV { base, cluster in
            let store = try #require(cluster.store(0) as? InMemoryLogStore)
            await store.failNextCommit()
            // Any traffic makes replica 0 commit: its own put, or the leader's accepts.
            _ = try await http("PUT", "\(base)/v1/kv/a", body: Data("v".utf8))
            try await eventually("the commit failed") { await cluster.peer(0)!.failure != nil }
            let health = try await http("GET", "\(base)/health")
            #expect(health.status == 503 && health.errorCode == "storage_failed")
            let status = try await http("GET", "\(base)/v1/status")
            #expect(status.json["serving"] as? Bool == false)
            #expect((status.json["failure"] as? String)?.contains("kv log") == true)
            let put = try await http("PUT", "\(base)/v1/kv/b", body: Data("v".utf8))
            #expect(put.status == 503 && put.errorCode == "storage_failed", "not no_leader")
        }
    }

    @Test("wrong methods on key-value routes are 405 with Allow; bad and long keys are 4xx with JSON")
    func methodsAndKeys() async throws {
        try await withKV { base, _ in
            let patch = try await http("PATCH", "\(base)/v1/kv/k")
            #expect(patch.status == 405 && patch.headers["allow"] == "DELETE, GET, POST, PUT")
            let sessions = try await http("GET", "\(base)/v1/sessions")
            #expect(sessions.status == 405 && sessions.headers["allow"] == "POST")
            let long = try await http(
                "PUT", "\(base)/v1/kv/\(String(repeating: "k", count: 65))", body: Data())
            #expect(long.status == 414 && long.errorCode == "key_too_long")
            #expect(try await http("PUT", "\(base)/v1/kv/\(String(repeating: "k", count: 64))").status == 200)
            let badEncoding = try await http("PUT", "\(base)/v1/kv/%FF%FE", body: Data())
            #expect(badEncoding.status == 400 && badEncoding.errorCode == "bad_key")
            // Too large for the HTTP parser (80 KiB): still a 4xx with a JSON body, never an empty
            // one. (URLSession cannot send a 1 MB URL at all; HTTPLimitsTests sends one raw.)
            let huge = try await http(
                "PUT", "\(base)/v1/kv/\(String(repeating: "k", count: 100_000))", body: Data())
            #expect(huge.status == 431 && huge.errorCode == "request_too_large", "\(huge.status)")
            #expect(try await http("GET", "\(base)/health").status == 200)
        }
    }
}

/// Opens a session over HTTP; its id as the 64-bit number it is (above Int.max half the time).
func openSession(_ base: String) async throws -> UInt64 {
    let session = try await http("POST", "\(base)/v1/sessions")
    #expect(session.status == 200 && session.json["clientId"] != nil)
    // JSONSerialization may round a large number through Double; the body's digits are exact.
    let text = String(decoding: session.body, as: UTF8.self)
    let digits = text.split(whereSeparator: { !$0.isNumber }).first.map(String.init) ?? ""
    return try #require(UInt64(digits), "\(text)")
}
