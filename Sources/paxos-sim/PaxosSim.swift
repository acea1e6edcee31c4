import ArgumentParser
import PaxosSimulation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@main
struct PaxosSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paxos-sim",
        abstract: "Runs the production replica in a deterministic simulation, one seed at a time.",
        discussion: """
            Each run starts a cluster of replicas (the same LogPeer, runtime and key-value machine \
            the node runs) on one thread with a virtual clock, network and disks, and injects \
            faults: crashes at any point, failed commits, lost, duplicated and delayed messages, \
            partitions. Then it heals the cluster and checks agreement, linearizability, \
            convergence and that the cluster serves again. The same seed and options give the \
            same run: the transcript and the digest of every message are equal.
            """)

    @Option(help: "The seed of the (first) run.")
    var seed: UInt64 = 1

    @Option(help: "How many seeds to run, from --seed on; prints one line per seed.")
    var seeds: Int = 1

    @Option(help: "Replicas in the cluster.")
    var nodes: Int = 3

    @Option(help: "Scheduler steps with faults on (each step runs one job or fires one timer).")
    var steps: Int = 40_000

    @Option(help: "Clients issuing operations.")
    var clients: Int = 3

    @Option(
        help:
            "Plant a bug in the simulated disk, to see the checks catch it: ack-before-fsync, unsynced-votes."
    )
    var bug: String?

    @Flag(help: "Print only the summary of each run.")
    var quiet = false

    func validate() throws {
        guard (1...9).contains(nodes) else { throw ValidationError("--nodes must be 1 to 9") }
        guard steps >= 0 else { throw ValidationError("--steps must not be negative") }
        guard (1...100_000).contains(seeds) else { throw ValidationError("--seeds must be 1 to 100000") }
        guard (0...32).contains(clients) else { throw ValidationError("--clients must be 0 to 32") }
        guard seed <= UInt64.max - UInt64(seeds - 1) else {
            throw ValidationError("--seed + --seeds overflows")
        }
        if let bug, PlantedBug(rawValue: bug) == nil {
            throw ValidationError(
                "unknown --bug \(bug); known: \(PlantedBug.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        Self.ensureDeterministicHashing()
        var failures: [UInt64] = []
        var undecided: [UInt64] = []
        for offset in 0..<seeds {
            var options = SimulationOptions(seed: seed + UInt64(offset))
            options.nodes = nodes
            options.steps = steps
            options.clients = clients
            options.bug = bug.flatMap(PlantedBug.init(rawValue:))
            let single = seeds == 1 && !quiet
            let echo: (@Sendable (String) -> Void)? = single ? Self.printLine : nil
            let report = Simulation.run(options, echo: echo)
            if single {
                report.summary.forEach { print($0) }
            } else {
                let verdict = report.passed ? (report.inconclusive.isEmpty ? "PASS" : "INCONCLUSIVE") : "FAIL"
                print(
                    "\(verdict) seed \(options.seed): \(report.acknowledged) acknowledged, \(report.unknown) unknown, digest \(String(report.digest, radix: 16))"
                )
                if !report.passed {
                    report.violations.forEach { print("  \($0)") }
                    print("  reproduce: \(options.reproduce)")
                }
            }
            if !report.passed { failures.append(options.seed) }
            if report.passed, !report.inconclusive.isEmpty { undecided.append(options.seed) }
        }
        if seeds > 1 {
            if !undecided.isEmpty {
                print(
                    "\(undecided.count) seed(s) inconclusive (a check ran out of budget): \(undecided.map(String.init).joined(separator: " "))"
                )
            }
            print(
                failures.isEmpty
                    ? "all \(seeds) seeds passed"
                    : "\(failures.count) of \(seeds) seeds failed: \(failures.map(String.init).joined(separator: " "))"
            )
        }
        if !failures.isEmpty { throw ExitCode(1) }
    }

    @Sendable static func printLine(_ line: String) { print(line) }

    /// Dictionaries iterate in an order seeded per process unless SWIFT_DETERMINISTIC_HASHING is
    /// set before the process starts, and the replicas iterate some: so the simulator starts
    /// itself again with it set, and a seed repeats across processes, not just within one.
    static func ensureDeterministicHashing() {
        guard !Scheduler.hashingIsDeterministic else { return }
        setenv("SWIFT_DETERMINISTIC_HASHING", "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // Only reached if exec failed (no /proc): runs repeat within this process only.
        print("paxos-sim: could not restart with deterministic hashing; seeds repeat only within one process")
    }
}
