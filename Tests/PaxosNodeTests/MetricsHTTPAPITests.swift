import Foundation
import Hummingbird
import Paxos
import PaxosCore
import PaxosKV
import PaxosServer
import PaxosTesting
import Testing

/// `GET /metrics`, `GET /ready` and `GET /health` of a node served on loopback, in front of one
/// replica of a 3-replica key-value log on the simulated network; each replica records its
/// metrics in a registry of its own.
@Suite("Metrics and readiness HTTP API", .serialized)
struct MetricsHTTPAPITests {
    /// Serves the first leader (or a follower) with the node's router:
    /// the API, the key-value routes, `/metrics` and `/ready`. A replica is reachable while it
    /// runs (the in-process stand-in for the TCP transport's connections).
    func withNode(
        seed: UInt64 = 71, follower: Bool = false, clientToken: String? = nil,
        openPaths: Set<String> = BearerTokenMiddleware<BasicRequestContext>.defaultOpenPaths,
        _ body: (_ base: String, _ cluster: KVCluster, _ served: Int) async throws -> Void
    ) async throws {
        let registries = (0..<3).map { _ in NodeMetrics() }
        let cluster = try await KVCluster(
            3, seed: seed, metrics: { LogMetrics(factory: registries[$0].factory) })
        let leader = try await cluster.waitForLeader()
        let served = follower ? (leader + 1) % 3 : leader
        let log = try #require(cluster.peer(served))
        let instances = try await LabCluster(1, seed: seed + 1)
        let components: [ComponentHealth] = [.log(log)]
        let info = NodeInfo(
            clusterID: "metrics-test", dataDirectory: "/nowhere", version: "test",
            peerAddresses: [0: "127.0.0.1:1"], isReachable: { _ in true }, components: components)
        let router = PaxosHTTPAPI.router(
            peer: instances[0]!, info: info, maxValueBytes: 1024, clientToken: clientToken,
            openPaths: openPaths, metrics: registries[served])
        KVHTTPAPI.add(to: router, service: KVService(peer: log), maxValueBytes: 1024)
        let isReachable: @Sendable (NodeID) async -> Bool = { id in cluster.peer(Int(id.rawValue)) != nil }
        let store = try #require(cluster.store(served))
        MetricsHTTPAPI.add(
            to: router, metrics: registries[served], log: log, isReachable: isReachable,
            sessions: { try? await store.machineRowCount(in: KVStateMachine.sessionSpace) })
        HealthHTTPAPI.add(to: router, log: log, components: components, isReachable: isReachable)
        do {
            try await withServer(router) { base in try await body(base, cluster, served) }
        } catch {
            await cluster.shutdown()
            await instances.cleanup()
            throw error
        }
        await cluster.shutdown()
        await instances.cleanup()
    }

    @Test("/metrics lists every required metric in the Prometheus text format")
    func names() async throws {
        try await withNode { base, _, _ in
            #expect(try await http("PUT", "\(base)/v1/kv/k", body: Data("v".utf8)).status == 200)
            // The leader's heartbeats time the round trips; wait for one to each peer.
            var scrape = try await Scrape(base)
            try await eventually("a heartbeat round trip to both peers") {
                scrape = try await Scrape(base)
                return scrape.value("paxos_network_peer_round_trip_time_seconds_count", ["peer": "1"]) ?? 0
                    > 0
                    && scrape.value("paxos_network_peer_round_trip_time_seconds_count", ["peer": "2"]) ?? 0
                        > 0
            }
            #expect(scrape.contentType.hasPrefix("text/plain; version=0.0.4"), "\(scrape.contentType)")
            let required: [(String, String)] = [
                ("paxos_server_has_leader", "gauge"), ("paxos_server_is_leader", "gauge"),
                ("paxos_server_leader_changes_seen_total", "counter"),
                ("paxos_server_proposals_committed_total", "counter"),
                ("paxos_server_proposals_applied_total", "counter"),
                ("paxos_server_proposals_pending", "gauge"),
                ("paxos_server_proposals_failed_total", "counter"),
                ("paxos_server_lease_reads_total", "counter"),
                ("paxos_server_serving", "gauge"),
                ("paxos_log_applied_index", "gauge"), ("paxos_log_first_unchosen_slot", "gauge"),
                ("paxos_disk_commit_duration_seconds", "histogram"),
                ("paxos_disk_mutations_per_commit", "histogram"),
                ("paxos_network_peer_round_trip_time_seconds", "histogram"),
                ("paxos_network_peer_reachable", "gauge"),
                ("paxos_snapshot_sends_total", "counter"), ("paxos_snapshot_receives_total", "counter"),
                ("paxos_http_requests_total", "counter"), ("paxos_kv_sessions", "gauge"),
                ("paxos_http_request_duration_seconds", "histogram"),
            ]
            for (name, type) in required {
                #expect(scrape.types[name] == type, "\(name): \(scrape.types[name] ?? "missing")")
            }
            // The served replica leads, and both peers run.
            #expect(scrape.value("paxos_server_has_leader") == 1)
            #expect(scrape.value("paxos_server_is_leader") == 1)
            #expect(scrape.value("paxos_server_leader_changes_seen_total") ?? 0 >= 1)
            #expect(scrape.value("paxos_network_peer_reachable", ["peer": "1"]) == 1)
            #expect(scrape.value("paxos_network_peer_reachable", ["peer": "2"]) == 1)
            #expect(scrape.value("paxos_log_applied_index") ?? 0 >= 1)
            // Nothing else is named like a metric of this node but does not follow the scheme.
            for name in scrape.types.keys { #expect(name.hasPrefix("paxos_"), "\(name)") }
        }
    }

    @Test(
        "after N puts the committed and applied counters, the route's request counter and the commit histogram moved by N"
    )
    func countersMove() async throws {
        try await withNode(follower: true) { base, _, _ in
            let before = try await Scrape(base)
            let route = ["route": "/v1/kv/{key}", "method": "PUT", "code": "200"]
            let n = 20.0
            for index in 0..<Int(n) {
                let put = try await http("PUT", "\(base)/v1/kv/key-\(index)", body: Data("v\(index)".utf8))
                #expect(put.status == 200)
            }
            #expect(try await http("GET", "\(base)/v1/no/such/route-\(UUID())").status == 404)
            // The counters move as the replica's commits return, just after the answers left.
            var after = before
            try await eventually("the counters to move by \(n)") {
                after = try await Scrape(base)
                return after.delta(before, "paxos_server_proposals_applied_total") >= n
                    && after.delta(before, "paxos_server_proposals_committed_total") >= n
            }
            #expect(after.delta(before, "paxos_http_requests_total", route) == n)
            #expect(
                after.delta(before, "paxos_http_request_duration_seconds_count", ["route": "/v1/kv/{key}"])
                    >= n)
            #expect(after.delta(before, "paxos_disk_commit_duration_seconds_count") >= 1)
            #expect(after.delta(before, "paxos_disk_mutations_per_commit_count") >= 1)
            #expect(after.delta(before, "paxos_disk_commit_duration_seconds_sum") > 0)
            // This replica follows: it learned a leader, and leads nothing.
            #expect(after.value("paxos_server_is_leader") == 0)
            #expect(after.value("paxos_server_has_leader") == 1)
            #expect(after.value("paxos_server_proposals_pending") == 0)
            #expect(after.value("paxos_log_applied_index") ?? 0 >= n)
            let applied = try #require(after.value("paxos_log_applied_index"))
            #expect(try #require(after.value("paxos_log_first_unchosen_slot")) > applied)
            // Labels carry route patterns, never a raw path.
            #expect(
                after.value(
                    "paxos_http_requests_total", ["route": "unmatched", "method": "GET", "code": "404"]) == 1)
            let text = after.text
            #expect(!text.contains("key-1"), "a raw key in a label")
            #expect(!text.contains("/v1/no/such"), "a raw path in a label")
        }
    }

    @Test(
        "/ready is 503 with a reason on a follower whose peers are down, 200 once a leader is back; /health is 200 throughout"
    )
    func readyWithoutLeader() async throws {
        try await withNode(follower: true) { base, cluster, served in
            let ready = try await http("GET", "\(base)/ready")
            #expect(ready.status == 200 && ready.json["status"] as? String == "ready", "\(ready.json)")
            #expect(ready.json["leader"] as? Int != nil)
            let others = (0..<3).filter { $0 != served }
            for index in others { await cluster.kill(index) }
            var down = ready
            try await eventually("not ready without a leader") {
                down = try await http("GET", "\(base)/ready")
                return down.status == 503
            }
            #expect(down.json["status"] as? String == "not_ready")
            let reason = down.json["reason"] as? String ?? ""
            #expect(reason.contains("leader"), "\(reason)")
            #expect(try await http("GET", "\(base)/health").status == 200, "the process can still serve")
            let scrape = try await Scrape(base)
            #expect(scrape.value("paxos_server_has_leader") == 0)
            #expect(scrape.value("paxos_network_peer_reachable", ["peer": "\(others[0])"]) == 0)
            for index in others { try await cluster.start(index) }
            try await eventually("ready again with a leader") {
                try await http("GET", "\(base)/ready").status == 200
            }
            #expect(try await http("GET", "\(base)/health").status == 200)
        }
    }

    @Test("paxos_kv_sessions counts the sessions the state machine holds")
    func sessions() async throws {
        try await withNode(follower: true) { base, _, _ in
            let before = try await Scrape(base)
            #expect(before.value("paxos_kv_sessions") == 0)
            _ = try await openSession(base)
            _ = try await openSession(base)
            let after = try await Scrape(base)
            // Each session was applied here before its answer came back.
            #expect(after.value("paxos_kv_sessions") == 2)
        }
    }

    @Test("a replica cut off past the retained log installs a snapshot: one send and one receive counted")
    func snapshotCounters() async throws {
        let registries = (0..<3).map { _ in NodeMetrics() }
        let cluster = try await KVCluster(
            3, seed: 73, metrics: { LogMetrics(factory: registries[$0].factory) })
        defer { Task { await cluster.shutdown() } }
        func scrape(_ index: Int) -> Scrape {
            Scrape(text: String(decoding: registries[index].exposition(), as: UTF8.self))
        }
        #expect((0..<3).allSatisfy { scrape($0).value("paxos_snapshot_receives_total") == 0 })
        // Replica 2 cut off while the others choose more entries than they retain (200 here).
        cluster.network.partition([[NodeID(0), NodeID(1)], [NodeID(2)]])
        let clerks = (0..<8).map { _ in cluster.clerk([0, 1]) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (client, clerk) in clerks.enumerated() {
                group.addTask {
                    for index in 0..<120 { try await clerk.put("key\(client)-\(index % 10)", "\(index)") }
                }
            }
            try await group.waitForAll()
        }
        let leaderStart = await cluster.peer(0)!.inspect { $0.logStart }
        let laggard = await cluster.peer(2)!.inspect { $0.firstUnchosen }
        try #require(leaderStart > laggard, "the others released the entries replica 2 lacks")
        cluster.network.heal()
        try await eventually("replica 2 installed a snapshot") {
            scrape(2).value("paxos_snapshot_receives_total") ?? 0 >= 1
        }
        let sends = (0..<2).map { scrape($0).value("paxos_snapshot_sends_total") ?? 0 }
        #expect(sends.reduce(0, +) >= 1, "\(sends)")
        #expect(scrape(2).value("paxos_snapshot_sends_total") == 0)
        #expect(scrape(0).value("paxos_snapshot_receives_total") == 0)
        #expect(scrape(1).value("paxos_snapshot_receives_total") == 0)
    }

    @Test("/ready is 503 on a leader that reaches no majority: it could not commit a request")
    func readyLeaderCutOff() async throws {
        try await withNode { base, cluster, served in
            #expect(try await http("GET", "\(base)/ready").status == 200)
            for index in 0..<3 where index != served { await cluster.kill(index) }
            let down = try await http("GET", "\(base)/ready")
            #expect(down.status == 503 && down.json["status"] as? String == "not_ready")
            let reason = down.json["reason"] as? String ?? ""
            #expect(reason.contains("reaches only 1 of the 3 voters"), "\(reason)")
        }
    }

    @Test("after a failed commit /health and /ready are 503 with the reason, and paxos_server_serving is 0")
    func failedCommit() async throws {
        try await withNode { base, cluster, served in
            let store = try #require(cluster.store(served) as? InMemoryLogStore)
            await store.failNextCommit()
            _ = try await http("PUT", "\(base)/v1/kv/a", body: Data("v".utf8))
            try await eventually("the commit failed") { await cluster.peer(served)!.failure != nil }
            let health = try await http("GET", "\(base)/health")
            #expect(health.status == 503 && health.errorCode == "storage_failed")
            let ready = try await http("GET", "\(base)/ready")
            #expect(ready.status == 503 && ready.json["status"] as? String == "not_ready")
            #expect((ready.json["reason"] as? String)?.contains("commit failed") == true, "\(ready.json)")
            let scrape = try await Scrape(base)
            #expect(scrape.value("paxos_server_serving") == 0)
        }
    }

    @Test(
        "with a client token: /health and /ready are open, /metrics wants the token unless it is an open path"
    )
    func authentication() async throws {
        try await withNode(clientToken: "s3cret") { base, _, _ in
            #expect(try await http("GET", "\(base)/ready").status == 200)
            #expect(try await http("GET", "\(base)/health").status == 200)
            let refused = try await http("GET", "\(base)/metrics")
            #expect(refused.status == 401 && refused.errorCode == "unauthorized")
            let scrape = try await http("GET", "\(base)/metrics", headers: ["Authorization": "Bearer s3cret"])
            #expect(scrape.status == 200)
            // The refusal was counted, under the route it asked for.
            let text = String(decoding: scrape.body, as: UTF8.self)
            #expect(
                text.contains(#"paxos_http_requests_total{route="/metrics",method="GET",code="401"} 1"#),
                "\(text)")
        }
    }

    @Test("--metrics-unauthenticated: /metrics is an open path, the rest still wants the token")
    func openMetrics() async throws {
        let metricsOpen = BearerTokenMiddleware<BasicRequestContext>.defaultOpenPaths.union(["/metrics"])
        try await withNode(clientToken: "s3cret", openPaths: metricsOpen) { base, _, _ in
            let scrape = try await http("GET", "\(base)/metrics")
            #expect(scrape.status == 200)
            #expect(try await http("GET", "\(base)/v1/log").status == 401)
        }
    }
}

/// One scrape of `/metrics`, parsed: each series' value by name and labels, each family's type.
struct Scrape {
    var text: String
    var contentType: String
    var types: [String: String] = [:]
    var series: [String: [([String: String], Double)]] = [:]

    init(_ base: String) async throws {
        let answer = try await http("GET", "\(base)/metrics")
        guard answer.status == 200 else { throw TestError("GET /metrics: \(answer.status)") }
        self.init(
            text: String(decoding: answer.body, as: UTF8.self),
            contentType: answer.headers["content-type"] ?? "")
    }

    /// The exposition `text`, as a registry emits it.
    init(text: String, contentType: String = "") {
        self.text = text
        self.contentType = contentType
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count == 4 { types[String(parts[2])] = String(parts[3]) }
                continue
            }
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "),
                let value = Double(line[line.index(after: space)...])
            else { continue }
            let key = line[..<space]
            var name = String(key)
            var labels: [String: String] = [:]
            if let open = key.firstIndex(of: "{"), key.hasSuffix("}") {
                name = String(key[..<open])
                let inner = key[key.index(after: open)..<key.index(before: key.endIndex)]
                for pair in inner.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            }
            series[name, default: []].append((labels, value))
        }
    }

    /// The value of the series of `name` with exactly `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        series[name]?.first { $0.0 == labels }?.1
    }

    /// How much the series grew since `earlier` (absent counts as 0).
    func delta(_ earlier: Scrape, _ name: String, _ labels: [String: String] = [:]) -> Double {
        (value(name, labels) ?? 0) - (earlier.value(name, labels) ?? 0)
    }
}
