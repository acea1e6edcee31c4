import Foundation
import PaxosCore
import Testing

/// Membership changes between real `paxos-node` processes: the README's "Replacing a failed node".
@Suite("paxos-node membership", .serialized)
struct MembershipProcessTests {
    func put(_ nodes: NodeProcesses, _ node: Int, _ key: String, _ value: String) async throws -> Int {
        try await http("PUT", "\(nodes.url(node))/v1/kv/\(key)", body: Data(value.utf8), timeout: 10).status
    }

    func get(_ nodes: NodeProcesses, _ node: Int, _ key: String) async throws -> HTTPAnswer {
        try await http("GET", "\(nodes.url(node))/v1/kv/\(key)", timeout: 10)
    }

    func members(_ nodes: NodeProcesses, _ node: Int) async throws -> [[String: Any]] {
        try await http("GET", "\(nodes.url(node))/v1/members", timeout: 5).json["members"] as? [[String: Any]]
            ?? []
    }

    @Test(
        "a node whose data directory was deleted is refused as a voter and the acknowledged write survives; the documented replacement (remove, --join, add, promote) makes the cluster whole"
    )
    func replaceLostNode() async throws {
        let nodes = try NodeProcesses(count: 3)
        for node in 1...3 { try await nodes.start(node) }
        try await eventually("the cluster serves") { try await put(nodes, 1, "warm", "up") == 200 }

        // Node 2 down; X acknowledged through node 3 with the quorum {1, 3}.
        await nodes.kill9(2)
        try await eventually("X acknowledged") { try await put(nodes, 3, "X", "acked-v1") == 200 }
        // Nodes 3 and 1 down; node 1's data directory deleted; nodes 1 and 2 up.
        await nodes.kill9(3)
        await nodes.kill9(1)
        try FileManager.default.removeItem(atPath: nodes.dataDir(1))
        try await nodes.start(1)
        try await nodes.start(2)
        // For a while: never the other quorum's answer. X is not lost through node 2.
        for _ in 0..<6 {
            let answer = try await get(nodes, 2, "X")
            #expect(answer.status != 404, "the write acknowledged before is gone")
            #expect(answer.status != 200 || String(decoding: answer.body, as: UTF8.self) == "acked-v1")
            try await Task.sleep(for: .milliseconds(500))
        }
        try await eventually("both sides say why", timeout: .seconds(10)) {
            nodes.log("node-2.log").contains("refused node 1 as a member")
                && nodes.log("node-1.log").contains("refuses this node")
        }
        #expect(nodes.log("node-1.log").contains("new data directory: bootstrapping node 1"))
        // Node 3 returns: {2, 3} serve, and X is there.
        try await nodes.start(3)
        try await eventually("X through node 2") {
            let answer = try await get(nodes, 2, "X")
            return answer.status == 200 && String(decoding: answer.body, as: UTF8.self) == "acked-v1"
        }

        // The replacement, step by step as the README says.
        let removed = try await http("DELETE", "\(nodes.url(2))/v1/members/1", timeout: 15)
        #expect(removed.status == 200, "\(removed.json)")
        await nodes.kill9(1)
        try FileManager.default.removeItem(atPath: nodes.dataDir(1))
        try await nodes.start(1, flags: ["--join"])
        let body = try JSONSerialization.data(withJSONObject: [
            "id": 1, "address": "127.0.0.1:\(nodes.peerPorts[0])",
        ])
        let added = try await http("POST", "\(nodes.url(2))/v1/members", body: body, timeout: 15)
        #expect(added.status == 200, "\(added.json)")
        try await eventually("node 1 promoted once caught up") {
            // The answer waits until a majority of the new voters knows the change: node 2 stops
            // right after it, and node 3 alone must not be left counting in the old membership
            // (where node 2's vote is needed), which failed 2 runs in 3 before.
            try await http("POST", "\(nodes.url(2))/v1/members/1/promote", timeout: 15).status == 200
        }
        let list = try await members(nodes, 2)
        #expect(list.count == 3)
        #expect(list.allSatisfy { $0["role"] as? String == "voter" }, "\(list)")
        // Node 1 counts again: with node 2 down, {1, 3} serve, and node 1 has X.
        await nodes.kill9(2)
        try await eventually("Y through node 1 with node 2 down") { try await put(nodes, 1, "Y", "v") == 200 }
        let x = try await get(nodes, 1, "X")
        #expect(x.status == 200 && String(decoding: x.body, as: UTF8.self) == "acked-v1")
    }

    @Test("grow 3 → 4 with --join while writes go on, then shrink back: a removed node stops counting")
    func growAndShrink() async throws {
        let nodes = try NodeProcesses(count: 4)
        nodes.bootstrapCount = 3
        for node in 1...3 { try await nodes.start(node) }
        try await eventually("the cluster serves") { try await put(nodes, 1, "k0", "v") == 200 }
        try await nodes.start(4, flags: ["--join"])
        let body = try JSONSerialization.data(withJSONObject: [
            "id": 4, "address": "127.0.0.1:\(nodes.peerPorts[3])",
        ])
        let added = try await http("POST", "\(nodes.url(1))/v1/members", body: body, timeout: 15)
        #expect(added.status == 200, "\(added.json)")
        for index in 1...20 { _ = try await put(nodes, 1 + index % 3, "k\(index)", "v\(index)") }
        try await eventually("node 4 promoted") {
            try await http("POST", "\(nodes.url(1))/v1/members/4/promote", timeout: 15).status == 200
        }
        // Four voters: a majority is three. With nodes 3 and 4 down, nothing is written.
        await nodes.kill9(3)
        await nodes.kill9(4)
        let stuck = try? await http("PUT", "\(nodes.url(1))/v1/kv/never", body: Data("x".utf8), timeout: 8)
        #expect(stuck?.status != 200)
        try await nodes.start(3)
        try await nodes.start(4)
        try await eventually("the cluster serves again") { try await put(nodes, 1, "k-back", "v") == 200 }
        // Remove node 4: three voters again; with node 4 down, {1, 2, 3} serve.
        try await eventually("node 4 removed") {
            try await http("DELETE", "\(nodes.url(1))/v1/members/4", timeout: 15).status == 200
        }
        await nodes.kill9(4)
        await nodes.kill9(3)
        try await eventually("two of three voters serve") { try await put(nodes, 2, "after", "v") == 200 }
        let list = try await members(nodes, 1)
        #expect(list.map { $0["id"] as? Int } == [1, 2, 3])
    }
}
