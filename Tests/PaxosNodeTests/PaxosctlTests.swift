import Foundation
import Testing

/// What `paxosctl endpoint status -w json` prints (paxosctl's `EndpointStatusReport`).
struct EndpointStatusOutput: Decodable {
    struct Row: Decodable {
        var endpoint: String?
        var id: UInt32?
        var peerAddress: String?
        var role: String?
        var leader: UInt32?
        var applied: Int?
        var firstUnchosen: Int?
        var dbSizeBytes: Int?
        var version: String?
        var serving: Bool?
        var error: String?
    }
    var endpoints: [Row]
    var note: String?
}

/// The built `paxosctl` against real `paxos-node` processes: exit statuses, `--endpoints`
/// failover, the environment, `endpoint status`, `--version`.
@Suite("paxosctl", .serialized)
struct PaxosctlTests {
    @Test(
        "each outcome has its exit status: 0 ok, 3 not found, 4 cas mismatch, 5 unreachable, 8 wait ran out, 64 usage"
    )
    func exitStatuses() async throws {
        let nodes = try NodeProcesses(count: 1)
        try await nodes.start(1)
        let live = nodes.url(1)
        func paxosctl(_ arguments: [String]) async throws -> (Int32, String) {
            try await runPaxosctl(arguments + ["--endpoints", live])
        }
        #expect(try await paxosctl(["put", "k", "one"]).0 == 0)
        let read = try await paxosctl(["get", "k"])
        #expect(read.0 == 0 && read.1 == "one\n", "\(read.1)")
        let absent = try await paxosctl(["get", "absent"])
        #expect(absent.0 == 3 && absent.1.contains("no key 'absent'"), "\(absent.1)")
        #expect(try await paxosctl(["delete", "absent"]).0 == 3)
        let mismatch = try await paxosctl(["cas", "k", "two", "three"])
        #expect(mismatch.0 == 4 && mismatch.1.contains("'one'"), "\(mismatch.1)")
        #expect(try await paxosctl(["cas", "--absent", "k", "three"]).0 == 4)
        #expect(try await paxosctl(["cas", "k", "one", "two"]).0 == 0)
        #expect(try await paxosctl(["get", "k"]).1 == "two\n")
        #expect(try await paxosctl(["append", "k", "!"]).1 == "two!\n")
        let serializable = try await paxosctl(["get", "k", "--serializable"])
        #expect(serializable.0 == 0 && serializable.1 == "two!\n", "\(serializable.1)")
        #expect(try await paxosctl(["delete", "k"]).0 == 0)

        let closed = "http://127.0.0.1:\(try freePort())"
        let unreachable = try await runPaxosctl(["get", "k", "--endpoints", closed])
        #expect(unreachable.0 == 5 && unreachable.1.contains("cannot reach \(closed)"), "\(unreachable.1)")

        // Instance 7 was never started: pending when the wait runs out.
        let waited = try await paxosctl(["status", "7", "--wait", "0.3"])
        #expect(waited.0 == 8 && waited.1.contains("7 pending"), "\(waited.1)")
        #expect(try await paxosctl(["start", "7", "seven"]).0 == 0)
        try await eventually("instance 7 decided") {
            try await paxosctl(["status", "7"]).1 == "7 decided seven\n"
        }
        #expect(try await paxosctl(["status", "7", "--wait", "1"]).0 == 0)

        // Usage: a missing argument, both endpoint flags, a bad URL.
        #expect(try await paxosctl(["cas", "k", "only-one"]).0 == 64)
        #expect(try await runPaxosctl(["get", "k", "--endpoints", live, "--endpoint", live]).0 == 64)
        #expect(try await runPaxosctl(["get", "k", "--endpoints", "ftp://nowhere"]).0 == 64)
        #expect(await nodes.terminate(1) == 0)
    }

    @Test(
        "no leader: a put to a node whose peer never came up exits 6 (certainly not executed)")
    func noLeaderExitStatus() async throws {
        // A 2-node cluster with node 2 never started: a new cluster elects no leader until all
        // its bootstrap peers were up together.
        let nodes = try NodeProcesses(count: 2)
        try await nodes.start(1)
        // The node answers 503 no_leader after about 2 s; the client starts no attempt that the
        // 4 s deadline would cut (that one's outcome would be unknown).
        let put = try await runPaxosctl([
            "put", "k", "v", "--endpoints", nodes.url(1), "--command-timeout", "4",
        ])
        #expect(put.0 == 6, "\(put.1)")
        #expect(put.1.contains("no leader"), "\(put.1)")
        #expect(await nodes.terminate(1) == 0)
    }

    @Test("--endpoints fails over past a closed port; PAXOSCTL_ENDPOINTS is used, and the flag wins over it")
    func endpointsFailover() async throws {
        let nodes = try NodeProcesses(count: 3)
        for node in 1...3 { try await nodes.start(node) }
        let closed = "http://127.0.0.1:\(try freePort())"
        let put = try await runPaxosctl(["put", "fail", "over", "--endpoints", "\(closed),\(nodes.url(2))"])
        #expect(put.0 == 0, "\(put.1)")
        let read = try await runPaxosctl(["get", "fail", "--endpoint", "\(closed),\(nodes.url(3))"])
        #expect(read.0 == 0 && read.1 == "over\n", "\(read.1)")

        let fromEnvironment = try await runPaxosctl(
            ["get", "fail"], environment: ["PAXOSCTL_ENDPOINTS": "\(closed),\(nodes.url(1))"])
        #expect(fromEnvironment.0 == 0 && fromEnvironment.1 == "over\n", "\(fromEnvironment.1)")
        let flagWins = try await runPaxosctl(
            ["get", "fail", "--endpoints", closed], environment: ["PAXOSCTL_ENDPOINTS": nodes.url(1)])
        #expect(flagWins.0 == 5, "\(flagWins.1)")

        // endpoint status: one row per endpoint, the closed one with its error (exit 5).
        let status = try await runPaxosctl(
            ["endpoint", "status", "-w", "json", "--endpoints", "\(nodes.url(1)),\(nodes.url(2)),\(closed)"])
        #expect(status.0 == 5, "\(status.1)")
        let report = try JSONDecoder().decode(EndpointStatusOutput.self, from: Data(status.1.utf8))
        #expect(report.endpoints.map(\.endpoint) == [nodes.url(1), nodes.url(2), closed])
        #expect(report.endpoints.prefix(2).map(\.id) == [1, 2])
        #expect(report.endpoints[2].id == nil && report.endpoints[2].error?.contains("cannot reach") == true)
        for row in report.endpoints.prefix(2) {
            #expect(row.role != nil && row.leader != nil && row.serving == true)
            #expect((row.applied ?? -1) >= 1 && (row.firstUnchosen ?? -1) >= 1, "the put was applied")
            #expect((row.dbSizeBytes ?? 0) > 0)
            #expect(row.version == report.endpoints[0].version && row.version?.hasPrefix("0.1.0 (") == true)
        }
        #expect(report.endpoints[0].leader == report.endpoints[1].leader)

        // --cluster: node 3 is a member none of the endpoints is, so it is listed, unasked.
        let cluster = try await runPaxosctl(
            [
                "endpoint", "status", "--cluster", "-w", "json", "--endpoints",
                "\(nodes.url(1)),\(nodes.url(2))",
            ])
        #expect(cluster.0 == 0, "\(cluster.1)")
        let whole = try JSONDecoder().decode(EndpointStatusOutput.self, from: Data(cluster.1.utf8))
        #expect(whole.endpoints.map(\.id) == [1, 2, 3])
        #expect(whole.endpoints[2].endpoint == nil && whole.endpoints[2].peerAddress != nil)
        #expect(whole.note?.contains("peer addresses only") == true)

        let table = try await runPaxosctl(["endpoint", "status", "--endpoints", nodes.url(1)])
        #expect(
            table.0 == 0 && table.1.hasPrefix("ENDPOINT") && table.1.contains("FIRST UNCHOSEN"), "\(table.1)")
        let health = try await runPaxosctl([
            "endpoint", "health", "--endpoints", "\(nodes.url(1)),\(nodes.url(3))",
        ])
        #expect(health.0 == 0 && health.1.components(separatedBy: "healthy").count == 3, "\(health.1)")
        let unhealthy = try await runPaxosctl([
            "endpoint", "health", "--endpoints", "\(nodes.url(1)),\(closed)",
        ])
        #expect(unhealthy.0 == 5, "\(unhealthy.1)")
    }

    @Test("--version: paxosctl, paxos-node and /v1/status report one version with the build's git commit")
    func versionFromTheBuild() async throws {
        let ctl = try await runPaxosctl(["--version"])
        #expect(ctl.0 == 0)
        let version = ctl.1.trimmingCharacters(in: .whitespacesAndNewlines)
        let node = Process()
        node.executableURL = try builtExecutable("paxos-node")
        node.arguments = ["--version"]
        let pipe = Pipe()
        node.standardOutput = pipe
        try node.run()
        let nodeVersion = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        await exited(node)
        #expect(nodeVersion.trimmingCharacters(in: .whitespacesAndNewlines) == version)

        let nodes = try NodeProcesses(count: 1)
        try await nodes.start(1)
        let status = try await http("GET", "\(nodes.url(1))/v1/status")
        #expect(status.json["version"] as? String == version)
        #expect(await nodes.terminate(1) == 0)

        // The commit is the checkout's, as git tells it (or "unknown" where git cannot).
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        git.arguments =
            ["git", "-C", URL(fileURLWithPath: #filePath).deletingLastPathComponent().path]
            + ["rev-parse", "--short", "HEAD"]
        let gitOutput = Pipe()
        git.standardOutput = gitOutput
        git.standardError = FileHandle.nullDevice
        try git.run()
        let commit = String(decoding: gitOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        await exited(git)
        let expected = git.terminationStatus == 0 && !commit.isEmpty ? commit : "unknown"
        #expect(version == "0.1.0 (\(expected))")
    }
}
