import Paxos
import PaxosCore

/// The MIT 6.824 (2015) Paxos lab tests, ported one by one with the lab's parameters and
/// assertions. Each scenario takes the store factory, so the same bodies run on in-memory and on
/// durable stores. Where the lab chains sub-tests on one cluster (TestBasic, TestPartition), each
/// sub-test here first replays the earlier steps, with their assertions, then runs its own.
/// How a lab scenario builds its cluster: which stores, and which transports (nil: the
/// simulated network).
public struct LabSetup: Sendable {
    public var stores: LabCluster.StoreFactory
    public var transports: (@Sendable (Int) async throws -> [any PeerTransport])?

    public init(
        stores: @escaping LabCluster.StoreFactory = { _ in InMemoryStore() },
        transports: (@Sendable (Int) async throws -> [any PeerTransport])? = nil
    ) {
        self.stores = stores
        self.transports = transports
    }

    public func cluster(_ count: Int, seed: UInt64, make: Bool = true) async throws -> LabCluster {
        let transports = try await self.transports?(count)
        return try await LabCluster(count, seed: seed, make: make, transports: transports, stores: stores)
    }
}

public enum LabScenarios {
    public typealias Stores = LabCluster.StoreFactory

    public static func text(_ value: Int) -> Value { .text(String(value)) }

    // MARK: TestBasic

    public enum BasicStep: Int, Comparable {
        case singleProposer, manyProposersSameValue, manyProposersDifferentValues, outOfOrder
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    public static func basic(through last: BasicStep, setup: LabSetup) async throws {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 11)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        // Test: Single proposer
        await pxa[0].start(0, .text("hello"))
        try await cluster.waitn(0, npaxos)
        guard last > .singleProposer else { return }

        // Test: Many proposers, same value
        for i in 0..<npaxos { await pxa[i].start(1, text(77)) }
        try await cluster.waitn(1, npaxos)
        guard last > .manyProposersSameValue else { return }

        // Test: Many proposers, different values
        await pxa[0].start(2, text(100))
        await pxa[1].start(2, text(101))
        await pxa[2].start(2, text(102))
        try await cluster.waitn(2, npaxos)
        guard last > .manyProposersDifferentValues else { return }

        // Test: Out-of-order instances
        await pxa[0].start(7, text(700))
        await pxa[0].start(6, text(600))
        await pxa[1].start(5, text(500))
        try await cluster.waitn(7, npaxos)
        await pxa[0].start(4, text(400))
        await pxa[1].start(3, text(300))
        try await cluster.waitn(6, npaxos)
        try await cluster.waitn(5, npaxos)
        try await cluster.waitn(4, npaxos)
        try await cluster.waitn(3, npaxos)
        if await pxa[0].max() != 7 { throw LabFailure("wrong Max()") }
    }

    // MARK: TestDeaf

    public static func deaf(setup: LabSetup) async throws {
        let npaxos = 5
        let cluster = try await setup.cluster(npaxos, seed: 12)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        await pxa[0].start(0, .text("hello"))
        try await cluster.waitn(0, npaxos)

        cluster.network.setDeaf(0, true)
        cluster.network.setDeaf(NodeID(UInt32(npaxos - 1)), true)

        await pxa[1].start(1, .text("goodbye"))
        try await cluster.waitmajority(1)
        try await Task.sleep(for: .seconds(1))
        if try await cluster.ndecided(1) != npaxos - 2 {
            throw LabFailure("a deaf peer heard about a decision")
        }

        await pxa[0].start(1, .text("xxx"))
        try await cluster.waitn(1, npaxos - 1)
        try await Task.sleep(for: .seconds(1))
        if try await cluster.ndecided(1) != npaxos - 1 {
            throw LabFailure("a deaf peer heard about a decision")
        }

        await pxa[npaxos - 1].start(1, .text("yyy"))
        try await cluster.waitn(1, npaxos)
    }

    // MARK: TestForget

    public static func forget(setup: LabSetup) async throws {
        let npaxos = 6
        let cluster = try await setup.cluster(npaxos, seed: 13)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        // initial Min() correct?
        for i in 0..<npaxos {
            let m = await pxa[i].min()
            if m > 0 { throw LabFailure("wrong initial Min() \(m)") }
        }

        await pxa[0].start(0, .text("00"))
        await pxa[1].start(1, .text("11"))
        await pxa[2].start(2, .text("22"))
        await pxa[0].start(6, .text("66"))
        await pxa[1].start(7, .text("77"))

        try await cluster.waitn(0, npaxos)

        // Min() correct?
        for i in 0..<npaxos {
            let m = await pxa[i].min()
            if m != 0 { throw LabFailure("wrong Min() \(m); expected 0") }
        }

        try await cluster.waitn(1, npaxos)

        // Min() correct?
        for i in 0..<npaxos {
            let m = await pxa[i].min()
            if m != 0 { throw LabFailure("wrong Min() \(m); expected 0") }
        }

        // everyone Done() -> Min() changes?
        for i in 0..<npaxos { await pxa[i].done(0) }
        for i in 1..<npaxos { await pxa[i].done(1) }
        for i in 0..<npaxos { await pxa[i].start(8 + i, .text("xx")) }
        // The lab polls 12 times a second apart; poll more often, same 12 s bound.
        var allok = false
        for _ in 0..<120 {
            allok = true
            for i in 0..<npaxos where await pxa[i].min() != 1 { allok = false }
            if allok { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        if !allok { throw LabFailure("Min() did not advance after Done()") }
    }

    // MARK: TestManyForget

    public static func manyForget(setup: LabSetup) async throws {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 14)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }
        cluster.setUnreliable(true)

        let maxseq = 20
        var random = SplitMix64(seed: 14)
        let order = (0..<maxseq).shuffled(using: &random)
        let starts = order.map { seq in
            (seq, Int.random(in: 0..<npaxos, using: &random), Int(random.next() >> 1))
        }

        let starter = Task {
            for (seq, j, v) in starts {
                await pxa[j].start(seq, text(v))
                await Task.yield()
            }
        }

        let clock = ContinuousClock()
        let until = clock.now.advanced(by: .seconds(5))
        var doneRandom = SplitMix64(seed: 15)
        while clock.now < until {
            let seq = Int.random(in: 0..<maxseq, using: &doneRandom)
            let i = Int.random(in: 0..<npaxos, using: &doneRandom)
            if seq >= (await pxa[i].min()) {
                if case .decided = await pxa[i].status(seq) { await pxa[i].done(seq) }
            }
            await Task.yield()
        }
        await starter.value
        cluster.setUnreliable(false)
        try await Task.sleep(for: .seconds(2))

        // The lab only calls Status here; also check that the peers agree on what they decided.
        for seq in 0..<maxseq {
            for i in 0..<npaxos where seq >= (await pxa[i].min()) {
                _ = await pxa[i].status(seq)
            }
            _ = try await cluster.ndecided(seq)
        }
    }

    // MARK: TestForgetMem

    public struct MemoryFigures: Sendable {
        public var initial: Int
        public var peak: Int
        public var afterForgetting: Int
    }

    @discardableResult
    public static func forgetMem(setup: LabSetup) async throws -> MemoryFigures {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 16)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        await pxa[0].start(0, .text("x"))
        try await cluster.waitn(0, npaxos)

        let m0 = allocatorBytesInUse()

        var random = SplitMix64(seed: 16)
        for i in 1...10 {
            let big = (0..<1_000_000).map { _ in UInt8(ascii: "a") + UInt8(random.next() % 26) }
            await pxa[0].start(i, big)
            try await cluster.waitn(i, npaxos)
        }

        let m1 = allocatorBytesInUse()

        for i in 0..<npaxos { await pxa[i].done(10) }
        for i in 0..<npaxos { await pxa[i].start(11 + i, .text("z")) }
        // The lab sleeps 3 s and then expects Min() == 11; poll for it, with that as the bound.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while clock.now < deadline {
            var all = true
            for i in 0..<npaxos where await pxa[i].min() != 11 { all = false }
            if all { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        for i in 0..<npaxos {
            let m = await pxa[i].min()
            if m != 11 { throw LabFailure("expected Min() 11, got \(m)") }
        }
        // Let decisions of 11...13 and their commits finish, so the figure is not a transient.
        try await cluster.waitQuiet()

        let m2 = allocatorBytesInUse()
        if m2 > m1 / 2 {
            throw LabFailure(
                "memory use did not shrink enough: \(m0) initially, \(m1) at peak, \(m2) after forgetting")
        }

        var again: [Value] = []
        for seq in 0..<Swift.min(npaxos, 10) {
            again.append(.text("again-\(seq)-\(random.next())"))
            for i in 0..<npaxos {
                let fate = await pxa[i].status(seq)
                if fate != .forgotten {
                    throw LabFailure("seq \(seq) < Min() \(await pxa[i].min()) but not Forgotten")
                }
                await pxa[i].start(seq, again[seq])
            }
        }
        try await Task.sleep(for: .seconds(1))
        for seq in 0..<Swift.min(npaxos, 10) {
            for i in 0..<npaxos {
                let fate = await pxa[i].status(seq)
                if fate != .forgotten || fate == .decided(again[seq]) {
                    throw LabFailure("seq \(seq) < Min() \(await pxa[i].min()) but not Forgotten")
                }
            }
        }
        return MemoryFigures(initial: m0, peak: m1, afterForgetting: m2)
    }

    // MARK: TestDoneMax

    public static func doneMax(setup: LabSetup) async throws {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 17)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        await pxa[0].start(0, .text("x"))
        try await cluster.waitn(0, npaxos)

        for i in 1...10 {
            await pxa[0].start(i, .text("y"))
            try await cluster.waitn(i, npaxos)
        }

        for i in 0..<npaxos { await pxa[i].done(10) }

        // Propagate messages so everyone knows about Done(10)
        for i in 0..<npaxos { await pxa[i].start(10, .text("z")) }
        try await Task.sleep(for: .seconds(2))
        for i in 0..<npaxos {
            let mx = await pxa[i].max()
            if mx != 10 {
                throw LabFailure(
                    "Max() did not return correct result 10 after calling Done(); returned \(mx)")
            }
        }
    }

    // MARK: TestRPCCount

    public struct RPCFigures: Sendable {
        public var serial: Int
        public var concurrent: Int
    }

    @discardableResult
    public static func rpcCount(setup: LabSetup) async throws -> RPCFigures {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 18)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        let ninst1 = 5
        var seq = 0
        for _ in 0..<ninst1 {
            await pxa[0].start(seq, .text("x"))
            try await cluster.waitn(seq, npaxos)
            seq += 1
        }

        // The lab sleeps 2 s so that late RPCs are counted; wait instead until no proposer or
        // announcer is left working anywhere, which is stricter.
        try await cluster.waitQuiet()
        try await Task.sleep(for: .milliseconds(200))

        let total1 = cluster.network.totalRPCCount

        // per agreement: 3 prepares, 3 accepts, 3 decides
        let expected1 = ninst1 * npaxos * npaxos
        if total1 > expected1 {
            throw LabFailure(
                "too many RPCs for serial Start()s; \(ninst1) instances, got \(total1), expected \(expected1)"
            )
        }

        let ninst2 = 5
        for i in 0..<ninst2 {
            await withTaskGroup(of: Void.self) { group in
                for j in 0..<npaxos {
                    let value = text(j + i * 10)
                    let current = seq
                    group.addTask { await pxa[j].start(current, value) }
                }
            }
            try await cluster.waitn(seq, npaxos)
            seq += 1
        }

        try await cluster.waitQuiet()
        try await Task.sleep(for: .milliseconds(200))

        let total2 = cluster.network.totalRPCCount - total1

        // worst case per agreement:
        // Proposer 1: 3 prep, 3 acc, 3 decides.
        // Proposer 2: 3 prep, 3 acc, 3 prep, 3 acc, 3 decides.
        // Proposer 3: 3 prep, 3 acc, 3 prep, 3 acc, 3 prep, 3 acc, 3 decides.
        let expected2 = ninst2 * npaxos * 15
        if total2 > expected2 {
            throw LabFailure(
                "too many RPCs for concurrent Start()s; \(ninst2) instances, got \(total2), expected \(expected2)"
            )
        }
        return RPCFigures(serial: total1, concurrent: total2)
    }

    // MARK: TestMany

    public static func many(setup: LabSetup) async throws {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 19)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }
        for i in 0..<npaxos { await pxa[i].start(0, text(0)) }

        let ninst = 50
        for seq in 1..<ninst {
            // only 5 active instances, to limit the number of file descriptors.
            while seq >= 5, try await cluster.ndecided(seq - 5) < npaxos {
                try await Task.sleep(for: .milliseconds(20))
            }
            for i in 0..<npaxos { await pxa[i].start(seq, text(seq * 10 + i)) }
        }

        try await waitAllDecided(cluster, 1..<ninst, npaxos)
    }

    /// The lab loops until every instance is decided everywhere; bound it by 30 s per instance so
    /// a failure reports instead of hanging.
    public static func waitAllDecided(_ cluster: LabCluster, _ seqs: Range<Int>, _ wanted: Int) async throws {
        for seq in seqs { try await cluster.waitn(seq, wanted) }
    }

    // MARK: TestOld

    public static func old(setup: LabSetup) async throws {
        let npaxos = 5
        let cluster = try await setup.cluster(npaxos, seed: 20, make: false)
        defer { Task { await cluster.cleanup() } }

        let p1 = try await cluster.make(1)
        try await cluster.make(2)
        try await cluster.make(3)
        await p1.start(1, text(111))

        try await cluster.waitmajority(1)

        let p0 = try await cluster.make(0)
        await p0.start(1, text(222))

        try await cluster.waitn(1, 4)
        // The lab leaves the fifth peer out (its `if false` block).
    }

    // MARK: TestManyUnreliable

    public static func manyUnreliable(setup: LabSetup) async throws {
        let npaxos = 3
        let cluster = try await setup.cluster(npaxos, seed: 21)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }
        cluster.setUnreliable(true)
        for i in 0..<npaxos { await pxa[i].start(0, text(0)) }

        let ninst = 50
        for seq in 1..<ninst {
            // only 3 active instances, to limit the number of file descriptors.
            while seq >= 3, try await cluster.ndecided(seq - 3) < npaxos {
                try await Task.sleep(for: .milliseconds(20))
            }
            for i in 0..<npaxos { await pxa[i].start(seq, text(seq * 10 + i)) }
        }

        try await waitAllDecided(cluster, 1..<ninst, npaxos)
    }

    // MARK: TestPartition

    public enum PartitionStep: Int, Comparable {
        case noDecision, majorityDecides, allAgreeAfterHeal, oneSwitches, oneSwitchesUnreliable
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    public static func partition(through last: PartitionStep, setup: LabSetup) async throws {
        let npaxos = 5
        let cluster = try await setup.cluster(npaxos, seed: 22)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }

        var seq = 0

        // Test: No decision if partitioned
        cluster.part([0, 2], [1, 3], [4])
        await pxa[1].start(seq, text(111))
        try await cluster.checkmax(seq, 0)
        guard last > .noDecision else { return }

        // Test: Decision in majority partition
        cluster.part([0], [1, 2, 3], [4])
        try await Task.sleep(for: .seconds(2))
        try await cluster.waitmajority(seq)
        guard last > .majorityDecides else { return }

        // Test: All agree after full heal
        await pxa[0].start(seq, text(1000))  // poke them
        await pxa[4].start(seq, text(1004))
        cluster.part([0, 1, 2, 3, 4])
        try await cluster.waitn(seq, npaxos)
        guard last > .allAgreeAfterHeal else { return }

        // Test: One peer switches partitions
        for _ in 0..<20 {
            seq += 1
            cluster.part([0, 1, 2], [3, 4])
            await pxa[0].start(seq, text(seq * 10))
            await pxa[3].start(seq, text(seq * 10 + 1))
            try await cluster.waitmajority(seq)
            if try await cluster.ndecided(seq) > 3 { throw LabFailure("too many decided") }

            cluster.part([0, 1], [2, 3, 4])
            try await cluster.waitn(seq, npaxos)
        }
        guard last > .oneSwitches else { return }

        // Test: One peer switches partitions, unreliable
        for _ in 0..<20 {
            seq += 1
            cluster.setUnreliable(true)

            cluster.part([0, 1, 2], [3, 4])
            for i in 0..<npaxos { await pxa[i].start(seq, text(seq * 10 + i)) }
            try await cluster.waitn(seq, 3)
            if try await cluster.ndecided(seq) > 3 { throw LabFailure("too many decided") }

            cluster.part([0, 1], [2, 3, 4])

            cluster.setUnreliable(false)

            try await cluster.waitn(seq, 5)
        }
    }

    // MARK: TestLots

    public static func lots(setup: LabSetup, duration: Duration = .seconds(20)) async throws {
        let npaxos = 5
        let cluster = try await setup.cluster(npaxos, seed: 23)
        defer { Task { await cluster.cleanup() } }
        let pxa = cluster.peers().map { $0! }
        cluster.setUnreliable(true)

        let clock = ContinuousClock()
        let end = clock.now.advanced(by: duration)

        // re-partition periodically
        let partitioner = Task {
            var random = SplitMix64(seed: 231)
            while clock.now < end {
                var groups: [[Int]] = [[], [], []]
                for j in 0..<npaxos { groups[Int(random.next() % 3)].append(j) }
                cluster.part(groups[0], groups[1], groups[2])
                try await Task.sleep(for: .milliseconds(Int(random.next() % 200)))
            }
        }

        // periodically start a new instance
        let starter = Task { () throws -> Int in
            var random = SplitMix64(seed: 232)
            var seq = 0
            while clock.now < end {
                // how many instances are in progress?
                var nd = 0
                for i in 0..<seq where try await cluster.ndecided(i) == npaxos { nd += 1 }
                if seq - nd < 10 {
                    for i in 0..<npaxos { await pxa[i].start(seq, text(Int(random.next() % 10))) }
                    seq += 1
                }
                try await Task.sleep(for: .milliseconds(Int(random.next() % 300)))
            }
            return seq
        }

        // periodically check that decisions are consistent
        let checker = Task {
            var random = SplitMix64(seed: 233)
            while clock.now < end {
                let known = await pxa[0].max()
                if known >= 0 {
                    for i in 0...known { _ = try await cluster.ndecided(i) }
                }
                try await Task.sleep(for: .milliseconds(Int(random.next() % 300)))
            }
        }

        try await partitioner.value
        let seqs = try await starter.value
        try await checker.value

        // repair, then check that all instances decided.
        cluster.setUnreliable(false)
        cluster.part([0, 1, 2, 3, 4])
        try await Task.sleep(for: .seconds(5))

        for i in 0..<seqs { try await cluster.waitmajority(i) }
        if seqs == 0 { throw LabFailure("no instance was started") }
    }
}
