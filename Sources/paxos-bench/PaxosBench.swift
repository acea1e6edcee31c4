import ArgumentParser
import CSQLite
import Foundation
import Paxos
import PaxosCore
import PaxosSQLite
import PaxosWire

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@main
struct PaxosBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paxos-bench",
        abstract: "Benchmarks of swift-paxos's durable store, and test helpers that need a real process.",
        subcommands: [StoreBenchmark.self, HTTPLatency.self, CommitStream.self])
}

/// Prints durable commits per second of the SQLite store next to raw SQLite on the same disk.
struct StoreBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract:
            "Durable commits per second: raw one-row SQLite commits vs SQLiteStore (single and group commits)."
    )

    @Option(help: "Directory for the scratch database files (on the disk to measure).")
    var dir: String = FileManager.default.temporaryDirectory.path

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 3

    @Option(help: "Mutations per group commit.")
    var batch: Int = 64

    func run() async throws {
        let scratch = URL(fileURLWithPath: dir).appendingPathComponent("paxos-bench-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let duration = Duration.milliseconds(Int(seconds * 1000))

        print(
            "disk probe: \(Int(fdatasyncRate(scratch.appendingPathComponent("probe").path, duration))) fdatasync/s"
        )
        let raw = try rawCommitRate(scratch.appendingPathComponent("raw.db").path, duration)
        print("raw sqlite, one-row INSERT per transaction, WAL, synchronous=FULL: \(Int(raw)) commits/s")

        let single = try SQLiteStore(path: scratch.appendingPathComponent("single.db").path)
        let singleRate = try await measure(duration) { i in
            try await single.commit([.promise(seq: i, ballot: Ballot(round: UInt64(i + 1), node: 1))])
        }
        print("SQLiteStore, one mutation per commit: \(Int(singleRate)) commits/s")

        let grouped = try SQLiteStore(path: scratch.appendingPathComponent("group.db").path)
        let value = Array(repeating: UInt8(ascii: "v"), count: 100)
        let batchSize = batch
        let groupRate = try await measure(duration) { i in
            let mutations = (0..<batchSize).map { j in
                StoreMutation.accept(seq: i * batchSize + j, ballot: Ballot(round: 1, node: 1), value: value)
            }
            try await grouped.commit(mutations)
        }
        print(
            "SQLiteStore, group commits of \(batch) accepts (100-byte values): \(Int(groupRate)) commits/s"
                + " = \(Int(groupRate * Double(batch))) mutations/s")

        let peerStore = try SQLiteStore(path: scratch.appendingPathComponent("peer.db").path)
        let (agreements, commits) = try await peerRate(peerStore, duration)
        print(
            "PaxosPeer on SQLite (1 node, 256 instances in flight): \(Int(agreements)) agreements/s,"
                + " \(String(format: "%.3f", commits)) commits per agreement")
        print(
            "disk probe at the end: \(Int(fdatasyncRate(scratch.appendingPathComponent("probe2").path, duration))) fdatasync/s"
        )
    }

    private func measure(_ duration: Duration, _ body: (Int) async throws -> Void) async throws -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        while clock.now - start < duration {
            try await body(count)
            count += 1
        }
        return Double(count) / seconds(clock.now - start)
    }

    private func peerRate(_ store: SQLiteStore, _ duration: Duration) async throws -> (Double, Double) {
        let peer = try await PaxosPeer.make(me: 0, peers: [0], store: store, transport: NoTransport())
        let clock = ContinuousClock()
        let start = clock.now
        var started = 0
        var decided = 0
        let inFlight = 256
        while clock.now - start < duration {
            while started - decided < inFlight {
                await peer.start(started, Array("value \(started)".utf8))
                started += 1
            }
            while case .decided = await peer.status(decided) { decided += 1 }
            await Task.yield()
        }
        let elapsed = seconds(clock.now - start)
        let commits = await peer.commits
        await peer.kill()
        return (Double(decided) / elapsed, Double(commits) / Double(Swift.max(decided, 1)))
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private func fdatasyncRate(_ path: String, _ duration: Duration) -> Double {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        guard fd >= 0 else { return 0 }
        defer {
            close(fd)
            unlink(path)
        }
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        let bytes = [UInt8](repeating: 120, count: 100)
        while clock.now - start < duration {
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            fdatasync(fd)
            count += 1
        }
        return Double(count) / seconds(clock.now - start)
    }

    /// The baseline: plain SQLite, no wrapper, one row per transaction.
    private func rawCommitRate(_ path: String, _ duration: Duration) throws -> Double {
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK, let db else {
            throw ValidationError("cannot open \(path)")
        }
        defer { sqlite3_close(db) }
        for sql in [
            "PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)",
        ] where sqlite3_exec(db, sql, nil, nil, nil) != SQLITE_OK {
            throw ValidationError("\(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        var insert: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (zeroblob(100))", -1, &insert, nil)
        defer { sqlite3_finalize(insert) }
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        while clock.now - start < duration {
            sqlite3_exec(db, "BEGIN", nil, nil, nil)
            sqlite3_step(insert)
            sqlite3_reset(insert)
            guard sqlite3_exec(db, "COMMIT", nil, nil, nil) == SQLITE_OK else {
                throw ValidationError("commit: \(String(cString: sqlite3_errmsg(db)))")
            }
            count += 1
        }
        return Double(count) / seconds(clock.now - start)
    }
}

/// The latency a client sees from `PUT /v1/instances/{seq}` to the first `GET` that reports the
/// instance decided, one instance at a time, against a running cluster.
struct HTTPLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http-latency",
        abstract: "Latency of start -> decided over the HTTP API (one instance at a time; median, p90, p99).")

    @Option(help: "The node to start instances at.")
    var endpoint: String = "http://127.0.0.1:7001"

    @Option(help: "A node to poll for the decision (default: the same node).")
    var pollEndpoint: String?

    @Option(help: "How many instances to measure.")
    var count: Int = 500

    @Option(help: "The first sequence number to use.")
    var firstSeq: Int = 100_000

    func run() async throws {
        let session = URLSession(configuration: .ephemeral)
        let poll = pollEndpoint ?? endpoint
        var samples: [Double] = []
        let clock = ContinuousClock()
        for index in 0..<count {
            let seq = firstSeq + index
            var put = URLRequest(url: URL(string: "\(endpoint)/v1/instances/\(seq)")!)
            put.httpMethod = "PUT"
            put.httpBody = Data("value \(seq)".utf8)
            let get = URLRequest(url: URL(string: "\(poll)/v1/instances/\(seq)")!)
            let start = clock.now
            let (_, response) = try await session.data(for: put)
            guard (response as? HTTPURLResponse)?.statusCode == 202 else {
                throw ValidationError("PUT failed: \(response)")
            }
            while true {
                let (data, _) = try await session.data(for: get)
                if String(decoding: data, as: UTF8.self).contains("\"decided\"") { break }
            }
            let elapsed = clock.now - start
            samples.append(
                Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        }
        samples.sort()
        func percentile(_ p: Double) -> Double {
            samples[min(samples.count - 1, Int(Double(samples.count) * p))]
        }
        print(
            String(
                format:
                    "start -> decided over HTTP, %d instances: median %.3f ms, p90 %.3f ms, p99 %.3f ms, min %.3f ms",
                samples.count, percentile(0.5), percentile(0.9), percentile(0.99), samples[0]))
        // The client's own cost: one GET of an instance already decided.
        var gets: [Double] = []
        let get = URLRequest(url: URL(string: "\(poll)/v1/instances/\(firstSeq)")!)
        for _ in 0..<200 {
            let start = clock.now
            _ = try await session.data(for: get)
            let elapsed = clock.now - start
            gets.append(
                Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
        }
        gets.sort()
        print(
            String(
                format: "for scale, one GET round trip from this client: median %.3f ms", gets[gets.count / 2]
            ))
    }
}

/// For the kill -9 test: commits forever and prints `acked N` after commit N returned.
struct CommitStream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit-stream",
        abstract:
            "Commit batches to a store forever, printing 'acked N' after each durable commit (for kill -9 tests)."
    )

    @Option(help: "The database file.")
    var path: String

    func run() async throws {
        let store = try SQLiteStore(path: path)
        let start = try await store.load().instances.keys.max().map { $0 + 1 } ?? 0
        var seq = start
        while true {
            let ballot = Ballot(round: UInt64(seq + 1), node: 1)
            try await store.commit([
                .maxRound(UInt64(seq + 1)),
                .promise(seq: seq, ballot: ballot),
                .accept(seq: seq, ballot: ballot, value: Array("value \(seq)".utf8)),
            ])
            // Unbuffered: the line exists only once the commit returned, and is never held back.
            let line = Array("acked \(seq)\n".utf8)
            _ = line.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            seq += 1
        }
    }
}

/// A single-node peer needs no network.
struct NoTransport: PeerTransport {
    func send(
        _ payload: [UInt8], on channel: PeerChannel, to peer: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
    ) {
        done(.failure(TransportError("no network")))
    }
    func serve(_ channel: PeerChannel, with handler: PeerHandler?) {}
    func shutdown() async {}
}
