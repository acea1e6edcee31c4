import Foundation
import Testing

/// What `paxos-node` writes to its log, as an operator reads it (or a log shipper parses it).
@Suite("paxos-node logs", .serialized)
struct LogFormatProcessTests {
    /// The log's lines as JSON objects; a line that is not one fails the test.
    func jsonLines(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)", sourceLocation: sourceLocation)
            return object
        }
    }

    @Test(
        "--log-format json writes one JSON object per line, and the consensus events (election won, leader changed, peer unreachable) are there at info, without a line per request"
    )
    func jsonLogsWithConsensusEvents() async throws {
        let nodes = try NodeProcesses(count: 3)
        for node in 1...3 { try await nodes.start(node, flags: ["--log-format", "json"]) }
        try await eventually("the cluster serves") {
            try await http("PUT", "\(nodes.url(1))/v1/kv/warm", body: Data("up".utf8), timeout: 10).status
                == 200
        }
        let logs = (1...3).map { jsonLines(nodes.log("node-\($0).log")) }
        for lines in logs {
            for line in lines {
                #expect(
                    line["time"] is String && line["level"] is String && line["message"] is String, "\(line)")
                #expect(line["node"] is String, "the node's id is a field: \(line)")
            }
        }
        let won = logs.enumerated().filter { _, lines in
            lines.contains {
                $0["message"] as? String == "election won: leading" && $0["level"] as? String == "info"
            }
        }
        let leader = try #require(won.last?.offset, "some node logs that it won an election") + 1
        for lines in logs {
            #expect(
                lines.contains {
                    $0["message"] as? String == "leader changed" && $0["leader"] as? String == "\(leader)"
                },
                "every node logs who leads")
        }
        // Requests make no noise at info: what the puts add (on a loaded machine, elections may
        // happen meanwhile) is consensus events only, never a line per request.
        let before = (1...3).map { jsonLines(nodes.log("node-\($0).log")).count }
        for index in 0..<30 {
            let status = try await http(
                "PUT", "\(nodes.url(1 + index % 3))/v1/kv/k\(index)", body: Data("v".utf8), timeout: 10
            ).status
            #expect(status == 200)
        }
        let events: Set<String> = [
            "election started", "election won: leading", "election won: catching up first, then leading",
            "election lost", "stepped down", "leader changed", "leader unknown", "peer unreachable",
            "connected to peer", "closed peer connection", "membership changed",
        ]
        for node in 1...3 {
            let added = jsonLines(nodes.log("node-\(node).log")).dropFirst(before[node - 1])
            let other = added.filter { !events.contains($0["message"] as? String ?? "") }
            #expect(other.isEmpty, "node \(node) logged more than consensus events: \(other)")
        }
        // The leader stops: the others elect another and log it; the old leader's peers are
        // unreachable. On a loaded machine an election may have moved the lead during the puts:
        // the node killed is the one leading now, and only what is logged after the kill counts.
        var current: Int?
        try await eventually("the nodes agree on a leader") {
            var leaders: Set<Int> = []
            for node in 1...3 {
                let status = try await http("GET", "\(nodes.url(node))/v1/status", timeout: 5)
                guard let leader = status.json["leader"] as? Int else { return false }
                leaders.insert(leader)
            }
            current = leaders.count == 1 ? leaders.first : nil
            return current != nil
        }
        // Node ids are 1…3 in the API; the cluster's leader id is the node's.
        let killed = try #require(current)
        let survivors = (1...3).filter { $0 != killed }
        let atKill = Dictionary(
            uniqueKeysWithValues: survivors.map { ($0, jsonLines(nodes.log("node-\($0).log")).count) })
        await nodes.kill9(killed)
        func since(_ node: Int) -> ArraySlice<[String: Any]> {
            jsonLines(nodes.log("node-\(node).log")).dropFirst(atKill[node] ?? 0)
        }
        try await eventually("another leader is logged") {
            survivors.contains { node in
                since(node).contains {
                    $0["message"] as? String == "leader changed" && $0["leader"] as? String != "\(killed)"
                }
            }
        }
        try await eventually("each survivor logs the killed node unreachable") {
            survivors.allSatisfy { node in
                since(node).contains {
                    $0["message"] as? String == "peer unreachable" && $0["peer"] as? String == "\(killed)"
                }
            }
        }
    }

    @Test("an unknown --log-format is a usage error (exit 64) that names it")
    func badLogFormat() async throws {
        let nodes = try NodeProcesses(count: 1)
        let process = try nodes.launch(
            [
                "--id", "1", "--peers", "1=127.0.0.1:1", "--log-format", "yaml", "--data-dir",
                nodes.dataDir(1),
            ],
            log: "bad.log")
        await exited(process)
        #expect(process.terminationStatus == 64)
        #expect(nodes.log("bad.log").contains("yaml"), "\(nodes.log("bad.log"))")
    }
}
