import Paxos
import PaxosCore
import PaxosHistory
import PaxosKV
import Synchronization

/// What one simulated run does.
public struct SimulationOptions: Sendable {
    /// The seed: the same seed, options and build give the same run.
    public var seed: UInt64
    /// Replicas in the cluster.
    public var nodes = 3
    /// Scheduler steps (jobs run, timers fired) with faults on; then the cluster is healed.
    public var steps = 40_000
    /// Clients issuing gets, puts and appends, one request at a time each.
    public var clients = 3
    /// A bug planted in the simulator's disk (the checks must catch it).
    public var bug: PlantedBug?

    public init(seed: UInt64) { self.seed = seed }

    /// The command line that repeats this run.
    public var reproduce: String {
        var line = "swift run paxos-sim --seed \(seed) --nodes \(nodes) --steps \(steps) --clients \(clients)"
        if let bug { line += " --bug \(bug.rawValue)" }
        return line
    }
}

/// What one run found.
public struct SimulationReport: Sendable {
    public var options: SimulationOptions
    /// The faults injected and what else happened, stamped with virtual time.
    public var transcript: [String]
    /// Broken invariants; empty when the run passed.
    public var violations: [String]
    /// Checks that could not decide either way.
    public var inconclusive: [String]
    /// A digest of every message sent (two runs of one seed have the same).
    public var digest: UInt64
    public var messages: Int
    public var steps: Int
    /// Virtual nanoseconds the run took.
    public var elapsed: UInt64
    /// Client operations: acknowledged, certainly failed, outcome unknown.
    public var acknowledged = 0
    public var failed = 0
    public var unknown = 0
    /// Reads leaders served under their lease, with no round of messages (lease runs only).
    public var leaseReads: UInt64 = 0

    public var passed: Bool { violations.isEmpty }

    /// The report's closing lines: counts, the digest, the verdict and how to repeat the run.
    public var summary: [String] {
        [
            "steps \(steps), virtual time \(Observer.stamp(elapsed)), messages \(messages), digest \(String(digest, radix: 16))",
            "operations: \(acknowledged) acknowledged, \(failed) failed, \(unknown) unknown, \(leaseReads) reads under a lease",
            !passed
                ? "FAIL seed \(options.seed): \(violations.count) violation(s)"
                : inconclusive.isEmpty ? "PASS seed \(options.seed)" : "INCONCLUSIVE seed \(options.seed)",
            "reproduce: \(options.reproduce)",
        ]
    }
}

/// The production replica (``LogPeer`` over ``ReplicaRuntime``, with the key-value machine) in a
/// deterministic world: one thread, a virtual clock, a network that loses, duplicates, delays
/// and partitions, disks with fsync latency and failing commits (that may still have landed),
/// crashes between any two jobs of any task, right after commits and inside a restart, and power
/// losses of every node at once (TigerBeetle's VOPR, FoundationDB's simulation).
///
/// A run checks, as it goes and at its end:
/// - agreement: no slot is ever durably chosen with two different entries, and no two replicas
///   hold different rows as of one applied slot (however they got there: entries or snapshot);
/// - linearizability of every client operation (``LinearizabilityChecker``), with final reads
///   of every key, so an acknowledged write that was lost fails the run;
/// - that once healed, the cluster serves again and every replica converges to the same rows;
/// - that no node refuses a correct node's request or answers a request twice.
public enum Simulation {
    /// Runs one seed; `echo` sees each transcript line as it is written.
    public static func run(_ options: SimulationOptions, echo: (@Sendable (String) -> Void)? = nil)
        -> SimulationReport
    {
        let scheduler = Scheduler(seed: options.seed)
        let observer = Observer(scheduler: scheduler, echo: echo)
        let world = World(options: options, scheduler: scheduler, observer: observer)
        let finished = Finished()
        let root = Task(executorPreference: scheduler) {
            await world.scenario()
            finished.flag.store(true, ordering: .relaxed)
        }
        let isDone = { finished.flag.load(ordering: .relaxed) }
        if !Scheduler.hashingIsDeterministic {
            observer.event(
                "note: SWIFT_DETERMINISTIC_HASHING is not 1, so dictionaries iterate in a per-process order: this run will not repeat exactly"
            )
        }
        scheduler.run(until: { isDone() || world.phase == .faults }, maxSteps: 2_000_000)
        if world.phase == .faults {
            scheduler.run(until: isDone, maxSteps: options.steps, between: world.betweenSteps)
            world.phase = .healing
        }
        // Healed, the cluster must finish its clients' work within a bound of virtual time.
        let deadline = scheduler.now + Duration.seconds(120).nanoseconds
        if !scheduler.run(until: { isDone() || scheduler.now > deadline }, maxSteps: 20_000_000) || !isDone()
        {
            observer.violation(
                scheduler.isIdle
                    ? "stuck: nothing is left to run and the run is not done (a task waits on something outside the simulation)"
                    : "liveness: the healed cluster did not finish its clients' work within 120 s")
            root.cancel()
        }
        scheduler.finish()
        if scheduler.escaped > 0 {
            observer.violation(
                "determinism: \(scheduler.escaped) job(s) reached the scheduler from another thread (work escaped the simulation)"
            )
        }
        var report = SimulationReport(
            options: options, transcript: observer.lines, violations: observer.violations,
            inconclusive: observer.inconclusive,
            digest: observer.digest, messages: observer.messages, steps: scheduler.steps,
            elapsed: scheduler.now)
        report.leaseReads = world.leaseReads
        for operation in world.history {
            switch operation.status {
            case .ok: report.acknowledged += 1
            case .fail: report.failed += 1
            case .info: report.unknown += 1
            }
        }
        return report
    }
}

private final class Finished: Sendable {
    let flag = Atomic(false)
}

/// The simulated cluster and the work done on it.
final class World: Sendable {
    enum Phase: Sendable { case starting, faults, healing, healed }

    let options: SimulationOptions
    let scheduler: Scheduler
    let observer: Observer
    let links: SimulatedLinks
    let ids: [NodeID]
    let disks: [SimulatedDisk]
    private let peers: Mutex<[LogPeer<KVStateMachine>?]>
    /// Nodes inside ``LogPeer/make``: a crash there retires the disk it opens.
    private let startingNodes = Mutex<Set<Int>>([])
    private let lastStamp = Mutex<Int64>(0)
    private let phaseState = Mutex(Phase.starting)
    private let operations = Mutex<[HistoryOperation]>([])
    /// Incarnations crashed between two steps, whose tasks the reaper ends.
    private let reaped: AsyncStream<LogPeer<KVStateMachine>>.Continuation
    private let dead: AsyncStream<LogPeer<KVStateMachine>>
    let configuration: LogConfiguration
    /// The network when no fault is on.
    let network: SimulatedLinks.Faults
    let tick = Duration.milliseconds(10)
    let keys = ["x", "y", "z"]
    /// Lease reads: how much slower than virtual time each node's clock runs (1: not at all;
    /// every sleep lasts that much longer, every clock reading is that much smaller). Empty:
    /// leases are off in this run.
    let clockRates: [Double]
    /// Lease reads: the virtual time until which each node's tick loop stalls (its sleeps end
    /// no earlier), as a paused process's would, while it still handles messages and reads.
    private let stalledUntil: Mutex<[UInt64]>
    /// Reads served under a lease by every incarnation that has ended (each counts its own).
    private let leaseReadTally = Mutex<UInt64>(0)
    var leaseReads: UInt64 { leaseReadTally.withLock { $0 } }

    init(options: SimulationOptions, scheduler: Scheduler, observer: Observer) {
        self.options = options
        self.scheduler = scheduler
        self.observer = observer
        self.links = SimulatedLinks(scheduler: scheduler, observer: observer, callTimeout: .milliseconds(100))
        self.ids = (0..<options.nodes).map { NodeID(UInt32($0)) }
        (dead, reaped) = AsyncStream.makeStream(of: LogPeer<KVStateMachine>.self)
        // Each run draws its hardware: every disk fast (an SSD's flush) or slow (a disk's), and a
        // network as near as a rack's or as far as another zone's. A slow disk beside a near
        // network is where an early acknowledgement shows.
        let disks = ids.map { node in
            let fsync: ClosedRange<UInt64> = scheduler.chance(0.5) ? 20...300 : 1_000...8_000
            return SimulatedDisk(
                node: node, scheduler: scheduler, observer: observer, bug: options.bug,
                fsyncMicroseconds: fsync)
        }
        self.disks = disks
        self.peers = Mutex(Array(repeating: nil, count: options.nodes))
        var configuration = LogConfiguration()
        configuration.electionTicks = 20
        // Short enough that a replica back from a crash often catches up by snapshot.
        configuration.retainEntries = 24
        configuration.snapshotChunkBytes = 64
        // As paxos-node runs.
        configuration.refuseBallotsAfterStart = true
        // Half the runs read under leases, with clocks up to 10% apart (the most the lease
        // bound tolerates is 11%), and the tick loops of the nodes a partition cuts off stall
        // now and then: a lease measured on the tick count, or longer than the bound allows,
        // serves stale reads here.
        stalledUntil = Mutex(Array(repeating: 0, count: options.nodes))
        if scheduler.chance(0.5) {
            configuration.leaseTicks = LogConfiguration.maxLeaseTicks(
                electionTicks: configuration.electionTicks)
            clockRates = ids.map { _ in 1 + Double(scheduler.random(in: 0...100)) / 1_000 }
        } else {
            clockRates = []
        }
        self.configuration = configuration
        var network = SimulatedLinks.Faults()
        if scheduler.chance(0.5) {
            network.minLatency = .microseconds(20)
            network.maxLatency = .microseconds(300)
        }
        self.network = network
        links.faults = network
        for (index, disk) in disks.enumerated() {
            disk.onCommit = { [weak self] in self?.committed(index) }
        }
    }

    var phase: Phase {
        get { phaseState.withLock { $0 } }
        set { phaseState.withLock { $0 = newValue } }
    }

    var history: [HistoryOperation] { operations.withLock { $0 } }

    private func peer(_ index: Int) -> LogPeer<KVStateMachine>? { peers.withLock { $0[index] } }

    private var running: [Int] { peers.withLock { $0.indices.filter { [peers = $0] in peers[$0] != nil } } }

    // MARK: The run

    func scenario() async {
        observer.event(
            "seed \(options.seed): \(options.nodes) nodes, \(options.clients) clients, \(options.steps) steps of faults"
                + (options.bug.map { ", planted bug \($0.rawValue)" } ?? ""))
        observer.event(
            "disks: "
                + disks.map {
                    "n\($0.node.rawValue) fsync \($0.fsyncRange.lowerBound)-\($0.fsyncRange.upperBound) us"
                }
                .joined(separator: ", ")
                + "; network latency \(network.minLatency.nanoseconds / 1_000)-\(network.maxLatency.nanoseconds / 1_000) us"
        )
        observer.event(
            clockRates.isEmpty
                ? "reads: read index"
                : "reads: leases of \(configuration.leaseTicks) ticks; clocks slow by "
                    + clockRates.enumerated().map { "n\($0.offset) \(Int(($0.element - 1) * 1_000))‰" }
                    .joined(separator: ", "))
        for index in ids.indices { await start(index) }
        // A new cluster serves once all its replicas were up together (the first leader needs
        // every one's promise); faults start after that.
        guard await settle(within: .seconds(30), { await self.isBootstrapped() }) else {
            observer.violation("liveness: the new cluster did not record its first membership")
            return await stopAll()
        }
        observer.event("cluster up; faults on")
        phase = .faults
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await peer in self.dead { await self.end(peer) }
            }
            group.addTask {
                await self.nemesis()
                // Healed: no crash comes between two steps any more.
                self.reaped.finish()
            }
            for client in 0..<options.clients { group.addTask { await self.client(client) } }
        }
        await check()
        await stopAll()
    }

    private func isBootstrapped() async -> Bool {
        for index in ids.indices {
            guard let peer = peer(index), await !peer.inspect({ $0.membership.isProvisional }) else {
                return false
            }
        }
        return true
    }

    /// Polls `condition` every tick for up to `limit` of virtual time.
    private func settle(within limit: Duration, _ condition: () async -> Bool) async -> Bool {
        let deadline = scheduler.now + limit.nanoseconds
        while scheduler.now < deadline {
            if await condition() { return true }
            do { try await scheduler.sleep(tick) } catch { return false }
        }
        return await condition()
    }

    // MARK: Nodes

    private func start(_ index: Int) async {
        let disk = disks[index]
        let handle = disk.open()
        let transport = links.attach(ids[index], generation: handle.generation)
        let scheduler = scheduler
        startingNodes.withLock { _ = $0.insert(index) }
        defer { startingNodes.withLock { _ = $0.remove(index) } }
        do {
            let peer = try await LogPeer<KVStateMachine>.make(
                me: ids[index], peers: ids, machine: KVStateMachine(), store: handle, transport: transport,
                configuration: configuration, tickInterval: tick, submitTimeout: .seconds(1),
                snapshotIdle: .seconds(2), seed: scheduler.random(in: 1...UInt64.max),
                sleep: sleep(index), clock: clock(index), executor: scheduler,
                snapshotTokens: { scheduler.random(in: 1...UInt64.max) })
            guard disk.isCurrent(handle.generation) else {
                // It crashed while starting: what started is already dead.
                links.detach(ids[index])
                return await peer.kill()
            }
            peers.withLock { $0[index] = peer }
        } catch {
            observer.event("n\(index) does not start: \(error)")
            if disk.isCurrent(handle.generation) {
                links.detach(ids[index])
                disk.crash()
            }
        }
    }

    /// A running node that believes it leads, if any.
    private func leaderIndex() async -> Int? {
        for index in ids.indices {
            if let peer = peer(index), await peer.inspect({ $0.isLeader }) { return index }
        }
        return nil
    }

    /// Node `index`'s sleep: on its own clock, and now and then much longer (its process
    /// stalls), when leases are on.
    private func sleep(_ index: Int) -> @Sendable (Duration) async throws -> Void {
        guard !clockRates.isEmpty else { return { [scheduler] in try await scheduler.sleep($0) } }
        let rate = clockRates[index]
        return { [self] duration in
            // Rounded up, and a nanosecond more: the node's clock (virtual time / rate, rounded
            // down) must move by at least `duration` in every sleep of it, as a real monotonic
            // clock does by the time a sleep on it ends (found by review).
            let virtual = (Double(duration.nanoseconds) * rate).rounded(.up)
            try await scheduler.sleep(.nanoseconds(Int64(virtual) + 1))
            let until = stalledUntil.withLock { $0[index] }
            if until > scheduler.now { try await scheduler.sleep(.nanoseconds(Int64(until - scheduler.now))) }
        }
    }

    /// Node `index`'s monotonic clock (lease reads are checked against it), or none.
    private func clock(_ index: Int) -> (@Sendable () -> Duration)? {
        guard !clockRates.isEmpty else { return nil }
        let rate = clockRates[index]
        return { [scheduler] in .nanoseconds(Int64(Double(scheduler.now) / rate)) }
    }

    /// Crashes node `index` at this very point: nothing it has not made durable survives, and
    /// nothing it still runs is heard.
    private func crash(_ index: Int) async {
        guard let peer = crashNow(index) else { return }
        await end(peer)
    }

    /// Ends an incarnation's tasks, counting the reads it served under a lease.
    private func end(_ peer: LogPeer<KVStateMachine>) async {
        let served = await peer.inspect { $0.leaseReads }
        leaseReadTally.withLock { $0 += served }
        await peer.kill()
    }

    /// The crash itself, synchronous, so it can land between any two steps; returns the dead
    /// incarnation, whose tasks are still to be ended.
    private func crashNow(_ index: Int) -> LogPeer<KVStateMachine>? {
        let (peer, starting) = peers.withLock { peers in
            defer { peers[index] = nil }
            return (peers[index], startingNodes.withLock { $0.contains(index) })
        }
        guard peer != nil || starting else { return nil }
        links.detach(ids[index])
        disks[index].crash()
        observer.event(starting ? "crash n\(index) while it starts" : "crash n\(index)")
        return peer
    }

    /// Between two jobs of the fault phase: now and then a node crashes right there, whatever
    /// it was in the middle of (a commit's fsync, a message half handled, a restart).
    func betweenSteps() {
        guard scheduler.chance(0.000_1) else { return }
        let minority = (options.nodes - 1) / 2
        guard options.nodes - running.count < minority else { return }
        let index = Int(scheduler.random(in: 0...UInt64(options.nodes - 1)))
        if let peer = crashNow(index) { reaped.yield(peer) }
    }

    /// A disk finished a commit of node `index`: sometimes crash the node, or every node, within
    /// the next fsync's time, where a store that acknowledged too early loses what it
    /// acknowledged.
    private func committed(_ index: Int) {
        guard phase == .faults, scheduler.chance(0.02) else { return }
        let everyNode = scheduler.chance(0.3)
        let minority = (options.nodes - 1) / 2
        guard everyNode || options.nodes - running.count < minority else { return }
        let window = disks[index].fsyncRange.upperBound * 2
        scheduler.after(.microseconds(Int64(scheduler.random(in: 0...window)))) { [self] in
            guard phase == .faults else { return }
            if everyNode { observer.event("power loss") }
            for node in everyNode ? Array(ids.indices) : [index] {
                if let peer = crashNow(node) { reaped.yield(peer) }
            }
        }
    }

    private func stopAll() async {
        for index in ids.indices {
            if let peer = peers.withLock({ peers in
                defer { peers[index] = nil }; return peers[index]
            }) {
                links.detach(ids[index])
                await end(peer)
            }
        }
    }

    // MARK: Faults

    private func nemesis() async {
        let minority = (options.nodes - 1) / 2
        var partitioned = false
        while phase == .faults {
            do {
                try await scheduler.sleep(.microseconds(Int64(scheduler.random(in: 20_000...400_000))))
            } catch { break }
            guard phase == .faults else { break }
            var down: [Int] = []
            for index in ids.indices {
                if let peer = peer(index) {
                    if await peer.failure != nil { down.append(index) }
                } else {
                    down.append(index)
                }
            }
            switch scheduler.random(in: 0...9) {
            case 0...2 where down.count < minority || (down.count == minority && scheduler.chance(0.2)):
                // Sometimes more than a minority: the cluster must stall, not lose anything.
                let up = ids.indices.filter { !down.contains($0) }
                guard !up.isEmpty else { continue }
                await crash(up[Int(scheduler.random(in: 0...UInt64(up.count - 1)))])
            case 0...4 where !down.isEmpty:
                let index = down[Int(scheduler.random(in: 0...UInt64(down.count - 1)))]
                if peer(index) != nil { await crash(index) }
                observer.event("restart n\(index)")
                await start(index)
            case 5 where !partitioned:
                let size = Int(scheduler.random(in: 1...UInt64(Swift.max(1, options.nodes / 2))))
                var side: Set<NodeID> = []
                if !clockRates.isEmpty, scheduler.chance(0.8), let leader = await leaderIndex() {
                    // Under leases, often the leader: where a lease that outlives its guarantee
                    // answers a stale read.
                    side.insert(ids[leader])
                }
                while side.count < size {
                    side.insert(ids[Int(scheduler.random(in: 0...UInt64(ids.count - 1)))])
                }
                links.partition(side, from: ids)
                partitioned = true
                observer.event(
                    "partition \(side.map { "n\($0.rawValue)" }.sorted().joined(separator: ",")) from the rest"
                )
                if !clockRates.isEmpty {
                    let length = scheduler.random(in: 500...2_500)
                    let until = scheduler.now + length * 1_000_000
                    stalledUntil.withLock { stalled in
                        for node in side { stalled[Int(node.rawValue)] = until }
                    }
                    observer.event(
                        "the tick loops of \(side.map { "n\($0.rawValue)" }.sorted().joined(separator: ",")) stall for \(length) ms"
                    )
                }
            case 5 where partitioned, 6 where partitioned:
                links.heal()
                partitioned = false
                observer.event("heal the partition")
            case 7:
                let up = ids.indices.filter { !down.contains($0) }
                guard !up.isEmpty else { continue }
                let index = up[Int(scheduler.random(in: 0...UInt64(up.count - 1)))]
                disks[index].failNextCommit()
                observer.event("n\(index)'s next commit will fail")
            case 8:
                var faults = network
                faults.loss = Double(scheduler.random(in: 0...15)) / 100
                faults.duplication = Double(scheduler.random(in: 0...10)) / 100
                faults.maxLatency =
                    faults.minLatency + .microseconds(Int64(scheduler.random(in: 100...20_000)))
                links.faults = faults
                observer.event(
                    "network: loss \(Int(faults.loss * 100))%, duplication \(Int(faults.duplication * 100))%, latency up to \(faults.maxLatency.nanoseconds / 1_000) us"
                )
            case 9:
                // A power loss: every node at once. Only what each made durable survives.
                observer.event("power loss")
                let dead = ids.indices.compactMap { crashNow($0) }
                for peer in dead { await end(peer) }
            default:
                continue
            }
        }
        observer.event("healing: every node up, links whole, no loss")
        links.heal()
        links.faults = network
        for disk in disks { disk.clearFaults() }
        // A failure injected before the heal may be landing now: let it, then restart.
        try? await scheduler.sleep(tick * 5)
        for _ in 0..<10 {
            var allUp = true
            for index in ids.indices {
                if let peer = peer(index), await peer.failure == nil { continue }
                allUp = false
                await crash(index)
                observer.event("restart n\(index)")
                await start(index)
            }
            if allUp { break }
        }
        observer.event("healed")
        phase = .healed
    }

    // MARK: Clients

    private func client(_ number: Int) async {
        var session: UInt64 = 0
        var request: UInt64 = 0
        while session == 0 {
            let id = scheduler.random(in: 1...UInt64.max)
            guard let service = await service() else { continue }
            if case .done(let result) = await service.openSession(id: id), result.status == .ok {
                session = id
            } else {
                await pause()
            }
        }
        while phase == .faults {
            let key = keys[Int(scheduler.random(in: 0...UInt64(keys.count - 1)))]
            request += 1
            let value = "c\(number).\(request);"
            let kind: HistoryOperation.Kind =
                switch scheduler.random(in: 0...9) {
                case 0...3: .get
                case 4...7: .put
                default: .append
                }
            await perform(kind, key: key, value: value, client: number, session: session, request: request)
            do { try await scheduler.sleep(.microseconds(Int64(scheduler.random(in: 0...5_000)))) } catch {
                return
            }
        }
        // Once healed, read every key: a write acknowledged and then lost cannot hide, and a
        // cluster that does not serve again fails the run.
        while phase != .healed { await pause() }
        for key in keys {
            var read = false
            for _ in 0..<100 where !read {
                request += 1
                read = await perform(
                    .get, key: key, value: "", client: number, session: session, request: request)
                if !read { await pause() }
            }
            if !read { observer.violation("liveness: client \(number) could not read \(key) once healed") }
        }
    }

    /// A tick of virtual time, so a client that failed at once does not spin.
    private func pause() async { try? await scheduler.sleep(tick) }

    /// A running replica's key-value service, picked at random; waits a tick when none runs.
    private func service() async -> KVService? {
        let running = running
        guard !running.isEmpty else {
            await pause()
            return nil
        }
        guard let peer = peer(running[Int(scheduler.random(in: 0...UInt64(running.count - 1)))]) else {
            return nil
        }
        return KVService(peer: peer)
    }

    /// Virtual nanoseconds, strictly increasing from one call to the next: operations that
    /// follow one another in real time never look concurrent to the checker.
    private func stamp() -> Int64 {
        let now = Int64(scheduler.now)
        return lastStamp.withLock { last in
            last = Swift.max(last + 1, now)
            return last
        }
    }

    /// Runs one operation and records it; whether it was acknowledged. An unknown outcome is
    /// retried with the same request number, as a clerk does: the session answers a repeat from
    /// its record, so the operation takes effect once, somewhere between the first call and the
    /// last return.
    @discardableResult
    private func perform(
        _ kind: HistoryOperation.Kind, key: String, value: String, client: Int, session: UInt64,
        request: UInt64
    ) async -> Bool {
        let operation: KVOperation =
            switch kind {
            case .get: .get(key: Array(key.utf8))
            case .append: .append(key: Array(key.utf8), value: Array(value.utf8))
            default: .put(key: Array(key.utf8), value: Array(value.utf8))
            }
        let command = KVCommand(client: session, request: request, operation: operation)
        var record = HistoryOperation(
            client: client, op: kind, key: key, value: value, callNs: stamp(), returnNs: 0)
        record.status = .fail
        attempts: for attempt in 0..<20 {
            guard let service = await service() else { continue }
            let outcome = await service.execute(command)
            record.returnNs = stamp()
            switch outcome {
            case .done(let result) where result.status == .ok || (kind == .get && result.status == .notFound):
                record.status = .ok
                record.output = result.value.map { String(decoding: $0, as: UTF8.self) } ?? ""
                break attempts
            case .done(let result):
                // The machine did nothing (a stale or expired session): this attempt certainly
                // did not execute, an earlier unknown one may have.
                record.output = "\(result.status)"
                break attempts
            case .failed:
                // Certainly not executed this time; an earlier attempt's outcome stays unknown.
                if attempt == 0 { break attempts }
                await pause()
            case .unknown:
                record.status = .info
                await pause()
            }
        }
        operations.withLock { $0.append(record) }
        return record.status == .ok
    }

    // MARK: Checks

    private func check() async {
        let history = history
        let verdict = LinearizabilityChecker.check(history)
        observer.event("history: \(history.count) operations, \(verdict)")
        switch verdict {
        case .linearizable: break
        case .notLinearizable: observer.violation("linearizability: \(verdict)")
        // Not a verdict either way: reported, and counted by a run of many seeds.
        case .unknown: observer.inconclusive("linearizability: \(verdict)")
        }
        // Every replica ends with the same rows: the same log, applied the same way.
        let converged = await settle(within: .seconds(20)) {
            var rows: [[MachineKey: [UInt8]]] = []
            for index in ids.indices {
                guard let peer = peer(index), let machine = try? await peer.machineRows() else {
                    return false
                }
                rows.append(machine)
            }
            return rows.allSatisfy { $0 == rows[0] }
        }
        if !converged {
            var states: [String] = []
            for index in ids.indices {
                guard let peer = peer(index) else {
                    states.append("n\(index) down")
                    continue
                }
                let (applied, firstUnchosen, leader) = await peer.inspect {
                    ($0.applied, $0.firstUnchosen, $0.isLeader)
                }
                let rows = (try? await peer.machineRows())?.count ?? -1
                let failure = await peer.failure ?? "serving"
                states.append(
                    "n\(index) applied \(applied), first unchosen \(firstUnchosen), \(rows) rows, \(leader ? "leader" : "follower"), \(failure)"
                )
            }
            observer.violation(
                "convergence: the healed replicas' state machines differ: \(states.joined(separator: "; "))")
        }
    }
}
