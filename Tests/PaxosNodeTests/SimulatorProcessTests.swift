import Foundation
import Testing

/// `paxos-sim`, run as a user runs it: the production replica in the deterministic simulator.
@Suite("paxos-sim")
struct SimulatorProcessTests {
    /// Runs the built `paxos-sim` with `arguments`: its exit status and output.
    func simulate(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        // Not inherited: the simulator must set it itself for a seed to repeat across processes.
        try await runBuilt(
            "paxos-sim", arguments,
            environment: ProcessInfo.processInfo.environment.filter {
                $0.key != "SWIFT_DETERMINISTIC_HASHING"
            })
    }

    @Test("one seed, one run: two processes print the same transcript, and another seed another one")
    func sameSeedSameRun() async throws {
        let first = try await simulate(["--seed", "5", "--steps", "15000"])
        let second = try await simulate(["--seed", "5", "--steps", "15000"])
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output == second.output)
        #expect(first.output.contains("PASS seed 5"))
        #expect(first.output.contains("reproduce: swift run paxos-sim --seed 5 --nodes 3 --steps 15000"))
        // The run did something worth repeating: faults, and operations acknowledged.
        #expect(first.output.contains("crash n") || first.output.contains("partition"), "\(first.output)")
        #expect(!first.output.contains("operations: 0 acknowledged"), "\(first.output)")
        let other = try await simulate(["--seed", "6", "--steps", "15000"])
        #expect(other.output != first.output)
    }

    @Test("seeds pass on three and on five nodes")
    func seedsPass() async throws {
        let three = try await simulate(["--seed", "100", "--seeds", "8"])
        #expect(three.status == 0, "\(three.output)")
        #expect(three.output.contains("all 8 seeds passed"), "\(three.output)")
        let five = try await simulate(["--seed", "200", "--seeds", "4", "--nodes", "5"])
        #expect(five.status == 0, "\(five.output)")
    }

    @Test(
        "a disk that acknowledges before its fsync, or votes committed without one, are caught, and the failing seed says how to repeat it",
        arguments: ["ack-before-fsync", "unsynced-votes"])
    func plantedLostFsyncIsCaught(bug: String) async throws {
        let run = try await simulate(["--seed", "1", "--seeds", "10", "--bug", bug])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("FAIL seed"), "\(run.output)")
        // Votes lost in a crash show first as replicas whose rows differ at one applied slot.
        let caught = ["agreement:", "linearizability:"] + (bug == "unsynced-votes" ? ["divergence:"] : [])
        #expect(caught.contains { run.output.contains($0) }, "\(run.output)")
        #expect(run.output.contains("reproduce: swift run paxos-sim --seed"), "\(run.output)")
    }

    @Test("bad arguments are refused with a clear error")
    func badArguments() async throws {
        let bug = try await simulate(["--bug", "nonsense"])
        #expect(bug.status == 64 && bug.output.contains("unknown --bug nonsense"), "\(bug.output)")
        let nodes = try await simulate(["--nodes", "0"])
        #expect(nodes.status == 64, "\(nodes.output)")
        let overflow = try await simulate(["--seed", "18446744073709551615", "--seeds", "2"])
        #expect(overflow.status == 64, "\(overflow.output)")
    }
}
