import Foundation
import Testing

/// Backup and restore between real processes: `paxosctl snapshot save` from a running cluster,
/// `paxos-node --restore` into a new one.
@Suite("paxos-node backup and restore", .serialized)
struct SnapshotProcessTests {
    func put(_ nodes: NodeProcesses, _ node: Int, _ key: String, _ value: String) async throws -> Int {
        try await http("PUT", "\(nodes.url(node))/v1/kv/\(key)", body: Data(value.utf8), timeout: 10).status
    }

    /// The value of `key` through `node` (nil when absent).
    func value(_ nodes: NodeProcesses, _ node: Int, _ key: String) async throws -> String? {
        let answer = try await http("GET", "\(nodes.url(node))/v1/kv/\(key)", timeout: 10)
        if answer.status == 404 { return nil }
        #expect(answer.status == 200, "GET \(key) through node \(node): \(answer.status)")
        return String(decoding: answer.body, as: UTF8.self)
    }

    @Test(
        "a backup saved from a running cluster while it takes writes restores into a fresh 3-node cluster with a new id, and every key reads back through every node"
    )
    func saveAndRestore() async throws {
        let old = try NodeProcesses(count: 3, cluster: "backup-old")
        for node in 1...3 { try await old.start(node) }
        try await eventually("the cluster serves") { try await put(old, 1, "warm", "up") == 200 }
        var expected: [String: String] = ["warm": "up"]
        for index in 0..<60 {
            let value = String(repeating: "v\(index)-", count: 1 + index * 40)
            // A put is idempotent: retried like a client would, across a leader change that a
            // loaded machine can cause (503 no_leader, 504 outcome_unknown).
            var status = try await put(old, 1 + index % 3, "key-\(index)", value)
            for _ in 0..<20 where status == 503 || status == 504 {
                try await Task.sleep(for: .milliseconds(100))
                status = try await put(old, 1 + index % 3, "key-\(index)", value)
            }
            #expect(status == 200, "PUT key-\(index): \(status)")
            expected["key-\(index)"] = value
        }
        #expect(try await http("DELETE", "\(old.url(2))/v1/kv/key-7", timeout: 10).status == 200)
        expected["key-7"] = nil
        // Writes go on while the backup is read: it is one consistent view, not a stopped node.
        let writer = Task {
            var index = 0
            while !Task.isCancelled {
                _ = try? await put(old, 1 + index % 3, "during-\(index)", "x")
                index += 1
            }
        }
        let file = old.directory.appendingPathComponent("backup.snap").path
        let saved = try await runPaxosctl(["snapshot", "save", file, "--endpoint", old.url(2)])
        writer.cancel()
        _ = await writer.value
        #expect(saved.0 == 0, "\(saved.1)")
        #expect(saved.1.contains("cluster 'backup-old'"), "\(saved.1)")
        let status = try await runPaxosctl(["snapshot", "status", file, "--json"])
        #expect(status.0 == 0, "\(status.1)")
        let summary = try JSONSerialization.jsonObject(with: Data(status.1.utf8)) as? [String: Any]
        let rows = try #require(summary?["rows"] as? Int)
        #expect(
            rows >= expected.count,
            "every key written before the save, and any written during it: \(status.1)")

        // A new cluster from the file: nodes 1 and 2 start once with --restore, node 3 empty (it
        // catches up from a snapshot, as any node restored or not may).
        let new = try NodeProcesses(count: 3, cluster: "backup-new")
        for node in 1...2 { try await new.start(node, flags: ["--restore", file]) }
        try await new.start(3)
        try await eventually("the new cluster serves") { try await put(new, 1, "after", "restore") == 200 }
        #expect(!new.log("node-3.log").contains("restored"))
        for node in 1...3 {
            #expect(
                node == 3
                    || new.log("node-\(node).log").contains("restored \(rows) rows of cluster 'backup-old'"))
            for (key, wanted) in expected.sorted(by: { $0.key < $1.key }) {
                let got = try await value(new, node, key)
                #expect(got == wanted, "\(key) through node \(node)")
            }
            #expect(try await value(new, node, "key-7") == nil, "a deleted key stays deleted")
        }
        // It is a new cluster: its own membership, new incarnations.
        let members = try await http("GET", "\(new.url(1))/v1/members", timeout: 5).json
        let list = try #require(members["members"] as? [[String: Any]])
        let oldMembers = try await http("GET", "\(old.url(1))/v1/members", timeout: 5).json
        let oldList = try #require(oldMembers["members"] as? [[String: Any]])
        #expect(list.count == 3)
        #expect(
            Set(list.compactMap { $0["incarnation"] as? String }).isDisjoint(
                with: oldList.compactMap { $0["incarnation"] as? String }))

        // Restarted, a restored node keeps its state; started again with --restore, it refuses.
        #expect(await new.terminate(2) == 0)
        let again = try new.launch(
            [
                "--id", "2", "--peers", new.peersFlag, "--http", "127.0.0.1:\(new.httpPorts[1])",
                "--data-dir", new.dataDir(2), "--cluster-id", new.cluster, "--insecure-peers", "--restore",
                file,
            ], log: "again.log")
        await exited(again)
        #expect(again.terminationStatus != 0)
        #expect(new.log("again.log").contains("already holds a node's database"), "\(new.log("again.log"))")
        try await new.start(2)
        #expect(try await value(new, 2, "key-59") == expected["key-59"])
    }

    @Test(
        "a damaged, cut-off, foreign or same-cluster backup is refused with the reason before anything is written; a node whose restore was cut off refuses to start without --restore"
    )
    func badBackupsAreRefused() async throws {
        let nodes = try NodeProcesses(count: 1, cluster: "backup-source")
        try await nodes.start(1)
        try await eventually("the node serves") { try await put(nodes, 1, "k", "v") == 200 }
        let file = nodes.directory.appendingPathComponent("good.snap").path
        let saved = try await runPaxosctl(["snapshot", "save", file, "--endpoint", nodes.url(1)])
        try #require(saved.0 == 0, "\(saved.1)")
        let good = try Data(contentsOf: URL(fileURLWithPath: file))

        func restore(_ bytes: Data, cluster: String = "backup-target", _ name: String) async throws -> (
            Int32, String, Bool
        ) {
            let path = nodes.directory.appendingPathComponent("\(name).snap").path
            try bytes.write(to: URL(fileURLWithPath: path))
            let dataDir = nodes.directory.appendingPathComponent("restore-\(name)").path
            let process = try nodes.launch(
                [
                    "--id", "1", "--peers", "1=127.0.0.1:\(try freePort())", "--http",
                    "127.0.0.1:\(try freePort())",
                    "--data-dir", dataDir, "--cluster-id", cluster, "--insecure-peers", "--restore", path,
                ], log: "\(name).log")
            await exited(process)
            let wrote = FileManager.default.fileExists(atPath: dataDir + "/node.db")
            return (process.terminationStatus, nodes.log("\(name).log"), wrote)
        }
        var flipped = good
        flipped[flipped.count / 2] ^= 0x40
        let damaged = try await restore(flipped, "damaged")
        #expect(damaged.0 != 0 && !damaged.2, "\(damaged.1)")
        #expect(damaged.1.contains("damaged") || damaged.1.contains("checksum"), "\(damaged.1)")
        let cut = try await restore(good.prefix(good.count - 10), "cut")
        #expect(cut.0 != 0 && !cut.2 && cut.1.contains("cut off"), "\(cut.1)")
        let foreign = try await restore(Data("not a backup at all".utf8), "foreign")
        #expect(
            foreign.0 != 0 && !foreign.2 && foreign.1.contains("not a swift-paxos backup"), "\(foreign.1)")
        let same = try await restore(good, cluster: "backup-source", "same")
        #expect(same.0 != 0 && !same.2 && same.1.contains("another --cluster-id"), "\(same.1)")
        // A restore cut off before its install leaves a mark: the node refuses to start as an
        // empty member until it is restored again.
        let cutOff = nodes.directory.appendingPathComponent("restore-interrupted").path
        try FileManager.default.createDirectory(atPath: cutOff, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: cutOff + "/RESTORING", contents: nil))
        let plain = try nodes.launch(
            [
                "--id", "1", "--peers", "1=127.0.0.1:\(try freePort())", "--http",
                "127.0.0.1:\(try freePort())",
                "--data-dir", cutOff, "--cluster-id", "backup-target", "--insecure-peers",
            ], log: "interrupted.log")
        await exited(plain)
        #expect(plain.terminationStatus != 0)
        #expect(nodes.log("interrupted.log").contains("was interrupted"), "\(nodes.log("interrupted.log"))")
        let status = try await runPaxosctl([
            "snapshot", "status", nodes.directory.appendingPathComponent("damaged.snap").path,
        ])
        #expect(status.0 != 0, "\(status.1)")
    }
}

/// `paxosctl inspect` on a running node's data directory.
@Suite("paxosctl inspect", .serialized)
struct InspectProcessTests {
    @Test(
        "inspect shows the replicated log and the key-value side of a running node, and every applied slot reads as chosen"
    )
    func inspectShowsTheLog() async throws {
        let nodes = try NodeProcesses(count: 3, cluster: "inspect")
        for node in 1...3 { try await nodes.start(node) }
        for index in 0..<25 {
            try await eventually("put \(index)") {
                try await http(
                    "PUT", "\(nodes.url(1 + index % 3))/v1/kv/key-\(index)", body: Data("value".utf8),
                    timeout: 10
                ).status == 200
            }
        }
        let inspected = try await runPaxosctl(["inspect", "--data-dir", nodes.dataDir(2), "--recent", "5"])
        #expect(inspected.0 == 0, "\(inspected.1)")
        #expect(inspected.1.contains("replicated log:"), "\(inspected.1)")
        #expect(inspected.1.contains("key-value store: 25 keys"), "\(inspected.1)")
        #expect(inspected.1.contains("key 'key-0': 5 bytes"), "\(inspected.1)")
        let slots = inspected.1.split(separator: "\n").filter { $0.hasPrefix("  slot ") }
        #expect(!slots.isEmpty && slots.count <= 5, "\(inspected.1)")
        // The `log` view a person reads with sqlite3: no applied slot says it was not chosen.
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        sqlite.arguments = [
            "-readonly", nodes.dataDir(2) + "/node.db",
            "SELECT count(*), sum(chosen = 0), sum(status = 'applied') FROM log WHERE slot <= (SELECT applied FROM log_state);",
        ]
        let pipe = Pipe()
        sqlite.standardOutput = pipe
        try sqlite.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        await exited(sqlite)
        let fields = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(
            String.init)
        try #require(fields.count == 3, "\(output)")
        #expect(Int(fields[0])! > 0, "applied slots are kept: \(output)")
        #expect(fields[1] == "0", "\(output)")
        #expect(fields[2] == fields[0], "\(output)")
    }
}
