import Foundation
import Testing

/// `/metrics`, `/ready` and `/health` of real `paxos-node` processes: SQLite commits, TCP peers.
@Suite("paxos-node metrics and readiness", .serialized)
struct MetricsProcessTests {
    @Test("three nodes: ready, metrics that move with puts; with both peers kill -9'd, not ready but healthy")
    func readyAndMetrics() async throws {
        let nodes = try NodeProcesses(count: 3, cluster: "metrics-test")
        for node in 1...3 { try await nodes.start(node) }
        for node in 1...3 {
            try await eventually("node \(node) ready") {
                try await http("GET", "\(nodes.url(node))/ready", timeout: 2).status == 200
            }
        }
        _ = try await openSession(nodes.url(1))
        let before = try await Scrape(nodes.url(1))
        #expect(before.value("paxos_kv_sessions") == 1, "counted in SQLite")
        let n = 10.0
        for index in 0..<Int(n) {
            let put = try await http("PUT", "\(nodes.url(1))/v1/kv/k\(index)", body: Data("v".utf8))
            #expect(put.status == 200)
        }
        var after = before
        try await eventually("node 1 counts the puts") {
            after = try await Scrape(nodes.url(1))
            return after.delta(before, "paxos_server_proposals_applied_total") >= n
        }
        #expect(after.delta(before, "paxos_server_proposals_committed_total") >= n)
        #expect(
            after.delta(
                before, "paxos_http_requests_total",
                ["route": "/v1/kv/{key}", "method": "PUT", "code": "200"]) == n)
        // Real SQLite commits, each with its fsync, timed.
        #expect(after.delta(before, "paxos_disk_commit_duration_seconds_count") >= 1)
        #expect(after.delta(before, "paxos_disk_commit_duration_seconds_sum") > 0)
        #expect(after.value("paxos_network_peer_reachable", ["peer": "2"]) == 1)
        #expect(after.value("paxos_network_peer_reachable", ["peer": "3"]) == 1)
        #expect(after.value("paxos_server_has_leader") == 1)
        let leaders = try await (1...3).asyncMap {
            try await Scrape(nodes.url($0)).value("paxos_server_is_leader")
        }
        #expect(leaders.filter { $0 == 1 }.count == 1, "exactly one leader: \(leaders)")

        await nodes.kill9(2)
        await nodes.kill9(3)
        var ready = try await http("GET", "\(nodes.url(1))/ready")
        try await eventually("node 1 not ready with both peers down") {
            ready = try await http("GET", "\(nodes.url(1))/ready", timeout: 2)
            return ready.status == 503
        }
        #expect(ready.json["status"] as? String == "not_ready")
        #expect((ready.json["reason"] as? String)?.isEmpty == false, "\(ready.json)")
        #expect(try await http("GET", "\(nodes.url(1))/health").status == 200)
        try await eventually("node 1 sees its peers unreachable") {
            let scrape = try await Scrape(nodes.url(1))
            return scrape.value("paxos_network_peer_reachable", ["peer": "2"]) == 0
                && scrape.value("paxos_network_peer_reachable", ["peer": "3"]) == 0
        }
        #expect(await nodes.terminate(1) == 0)
    }
}
