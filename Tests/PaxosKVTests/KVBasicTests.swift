import Paxos
import PaxosCore
import PaxosKV
import PaxosTesting
import Synchronization
import Testing

/// The 6.824 kvpaxos (lab 3B) tests, with the lab's names and shapes. Clerks call a replica's
/// service in-process (that is the client's link to that server); replicas talk over the
/// simulated network, so partitions and unreliability apply between them.
@Suite("kvpaxos (lab 3B) over the simulated network", .serialized)
struct KVLabTests {
    /// The lab's `check`: every listed clerk reads `value` for `key`.
    func check(_ clerks: [KVClerk], _ key: String, _ value: String) async throws {
        for clerk in clerks {
            let got = try await clerk.get(key)
            #expect(got == value, "Get(\(key)) -> \(got), expected \(value)")
        }
    }

    @Test("Basic put/append/get")
    func basic() async throws {
        let cluster = try await KVCluster(5)
        defer { Task { await cluster.shutdown() } }
        let ck = cluster.clerk()
        let cka = (0..<5).map { cluster.clerk([$0]) }
        try await ck.append("app", "x")
        try await ck.append("app", "y")
        try await check([ck], "app", "xy")
        try await ck.put("a", "aa")
        try await check([ck], "a", "aa")
        try await cka[1].put("a", "aaa")
        try await check([cka[2], cka[1], ck], "a", "aaa")
    }

    @Test("Concurrent clients")
    func concurrentClients() async throws {
        let cluster = try await KVCluster(5)
        defer { Task { await cluster.shutdown() } }
        for iteration in 0..<10 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<10 {
                    group.addTask {
                        let clerk = cluster.clerk([(client + iteration) % 5])
                        if (client + iteration) % 2 == 0 {
                            try await clerk.put("b", "\(iteration)-\(client)")
                        } else {
                            _ = try await clerk.get("b")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let values = try await (0..<5).asyncMap { try await cluster.clerk([$0]).get("b") }
            #expect(Set(values).count == 1, "servers disagree on b: \(values)")
        }
    }

    @Test("server frees Paxos log memory")
    func freesLogMemory() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let clerk = cluster.clerk()
        let big = String(repeating: "x", count: 100_000)
        for index in 0..<100 { try await clerk.put("k\(index % 3)", big + "\(index)") }
        // Let heartbeats spread the applied index so every replica may release.
        try await Task.sleep(for: .milliseconds(300))
        try await clerk.put("done", "yes")
        try await Task.sleep(for: .milliseconds(300))
        for server in 0..<3 {
            let (records, bytes, logStart) = await cluster.peer(server)!.inspect { replica in
                (
                    replica.recordCount,
                    replica.records.values.reduce(0) { $0 + $1.entry.reduce(0) { $0 + $1.command.count } },
                    replica.logStart
                )
            }
            // 100+ slots of 100 KB were chosen; at most a release chunk plus what is in flight stays.
            #expect(records <= 40, "server \(server) holds \(records) log records")
            #expect(bytes <= 40 * 100_100, "server \(server) holds \(bytes) bytes of log")
            #expect(logStart > 60, "server \(server) released nothing (log starts at \(logStart))")
        }
        try await check([cluster.clerk([0]), cluster.clerk([2])], "k0", big + "99")
    }

    @Test("No partition, progress in majority, no progress in minority, completion after heal")
    func partition() async throws {
        let cluster = try await KVCluster(5)
        defer { Task { await cluster.shutdown() } }
        let cka = (0..<5).map { cluster.clerk([$0]) }

        // No partition.
        cluster.network.partition([[0, 1, 2, 3, 4].map { NodeID(UInt32($0)) }])
        try await cka[0].put("1", "12")
        try await cka[2].put("1", "13")
        try await check([cka[3]], "1", "13")

        // Progress in majority.
        cluster.network.partition([[0, 1].map { NodeID(UInt32($0)) }, [2, 3, 4].map { NodeID(UInt32($0)) }])
        try await cka[2].put("1", "14")
        try await check([cka[4]], "1", "14")

        // No progress in minority.
        let done0 = Shared(false)
        let done1 = Shared(false)
        let minority = Task {
            try await cka[0].put("1", "15")
            done0.set(true)
        }
        let minorityRead = Task {
            _ = try await cka[1].get("1")
            done1.set(true)
        }
        try await Task.sleep(for: .seconds(1))
        #expect(!done0.value, "Put in minority completed")
        #expect(!done1.value, "Get in minority completed")
        try await check([cka[4]], "1", "14")
        try await cka[3].put("1", "16")
        try await check([cka[4]], "1", "16")

        // Completion after heal.
        cluster.network.heal()
        try await minority.value
        try await minorityRead.value
        #expect(done0.value)
        #expect(done1.value)
        try await check([cka[4]], "1", "15")
    }

    @Test("Basic put/get, unreliable; Sequence of puts, unreliable")
    func unreliableBasic() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        for server in cluster.ids { cluster.network.setUnreliable(server, true) }
        let ck = cluster.clerk()
        let cka = (0..<3).map { cluster.clerk([$0]) }
        try await ck.put("a", "aa")
        try await check([ck], "a", "aa")
        try await cka[1].put("a", "aaa")
        try await check([cka[2], cka[1], ck], "a", "aaa")

        for iteration in 0..<6 {
            let key = "b\(iteration)"
            try await cka[0].append(key, "xa")
            try await cka[1].append(key, "xb")
            try await cka[2].put(key, "xc\(iteration)")
            try await cka[0].append(key, "yy")
            try await check(cka, key, "xc\(iteration)yy")
        }
    }

    @Test("Concurrent clients, unreliable")
    func unreliableConcurrent() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        for server in cluster.ids { cluster.network.setUnreliable(server, true) }
        for iteration in 0..<5 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<8 {
                    group.addTask {
                        let clerk = cluster.clerk([client % 3, (client + 1) % 3])
                        if client % 2 == 0 {
                            try await clerk.put("c", "\(iteration).\(client)")
                        } else {
                            _ = try await clerk.get("c")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let values = try await (0..<3).asyncMap { try await cluster.clerk([$0]).get("c") }
            #expect(Set(values).count == 1, "servers disagree on c: \(values)")
        }
    }

    @Test("Concurrent Append to same key, unreliable")
    func unreliableAppend() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        for server in cluster.ids { cluster.network.setUnreliable(server, true) }
        let clients = 5
        let appends = 6
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask {
                    let clerk = cluster.clerk([client % 3, (client + 1) % 3, (client + 2) % 3])
                    for index in 0..<appends { try await clerk.append("k", "x \(client) \(index) y") }
                }
            }
            try await group.waitForAll()
        }
        let value = try await cluster.clerk().get("k")
        // Every append appears exactly once, and each client's appends in order (the lab's checkAppends).
        for client in 0..<clients {
            var last = value.startIndex
            for index in 0..<appends {
                let element = "x \(client) \(index) y"
                let ranges = value.ranges(of: element)
                #expect(ranges.count == 1, "\(element) appears \(ranges.count) times in \(value)")
                if let range = ranges.first {
                    #expect(range.lowerBound >= last, "\(element) out of order")
                    last = range.lowerBound
                }
            }
        }
    }

    @Test("Tolerates holes in paxos sequence")
    func holes() async throws {
        let cluster = try await KVCluster(5)
        defer { Task { await cluster.shutdown() } }
        let ids = cluster.ids
        for iteration in 0..<3 {
            cluster.network.heal()
            let ck2 = cluster.clerk([2])
            try await ck2.put("q", "q")
            let stop = Shared(false)
            let failures = Shared(0)
            let clients = (0..<5).map { client in
                Task {
                    let clerk = cluster.clerk([client % 5, (client + 1) % 5])
                    var count = 0
                    while !stop.value {
                        let key = "\(client)"
                        try await clerk.put(key, "\(count)")
                        let got = try await clerk.get(key)
                        if got != "\(count)" { failures.update { $0 += 1 } }
                        count += 1
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            // Cut the cluster into pieces; clients on the minority side stall, creating holes.
            cluster.network.partition([[ids[0], ids[1], ids[2]], [ids[3]], [ids[4]]])
            try await Task.sleep(for: .milliseconds(300))
            cluster.network.partition([[ids[0]], [ids[1], ids[2], ids[3], ids[4]]])
            try await Task.sleep(for: .milliseconds(300))
            cluster.network.heal()
            try await Task.sleep(for: .milliseconds(300))
            stop.set(true)
            for client in clients { try await client.value }
            #expect(failures.value == 0, "iteration \(iteration): a read missed its write")
            try await check([cluster.clerk([0]), cluster.clerk([4])], "q", "q")
        }
    }

    @Test("Many clients, changing partitions")
    func manyPartitions() async throws {
        let cluster = try await KVCluster(5)
        defer { Task { await cluster.shutdown() } }
        let ids = cluster.ids
        for server in ids { cluster.network.setUnreliable(server, true) }
        let stop = Shared(false)
        let failures = Shared(0)
        let clients = (0..<6).map { client in
            Task {
                let clerk = cluster.clerk()
                let key = "\(client)"
                var expected = ""
                try await clerk.put(key, "")
                var count = 0
                while !stop.value {
                    let piece = "\(client).\(count) "
                    try await clerk.append(key, piece)
                    expected += piece
                    if count % 5 == 0 {
                        let got = try await clerk.get(key)
                        if got != expected { failures.update { $0 += 1 } }
                    }
                    count += 1
                }
                return (key, expected)
            }
        }
        var random = SplitMix64(seed: 7)
        for _ in 0..<8 {
            var groups: [[NodeID]] = [[], [], []]
            for id in ids { groups[Int.random(in: 0..<3, using: &random)].append(id) }
            cluster.network.partition(groups)
            try await Task.sleep(for: .milliseconds(200))
        }
        cluster.network.heal()
        stop.set(true)
        for client in clients {
            let (key, expected) = try await client.value
            #expect(try await cluster.clerk().get(key) == expected)
        }
        #expect(failures.value == 0)
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

/// A value shared between test tasks.
final class Shared<T: Sendable>: Sendable {
    private let storage: Mutex<T>
    init(_ value: T) { storage = Mutex(value) }
    var value: T { storage.withLock { $0 } }
    func set(_ value: T) { storage.withLock { $0 = value } }
    func update(_ body: (inout T) -> Void) { storage.withLock { body(&$0) } }
}
