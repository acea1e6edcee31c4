import Foundation
import PaxosSimulation
import Testing

/// Lease reads through the production runtime (``LogPeer`` with its lease clock) in the
/// deterministic simulator, where time is virtual: whether a read finds the lease held does not
/// depend on how loaded the machine running the tests is.
@Suite("Lease reads in the simulator")
struct SimulatedLeaseTests {
    /// Runs `body` on a thread of its own: a simulation is seconds of synchronous work, and on
    /// the cooperative pool (one thread per core) it starves the suites that run real replicas
    /// in this process, whose new clusters then find no leader within 20 s.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    @Test("a lease run serves reads under the lease and stays linearizable; a read-index run serves none")
    func leaseRunServesLeaseReads() async {
        // Seed 3 draws leases, seed 2 read index (the transcript's `reads:` line says which).
        let (leased, plain) = await Self.offThePool {
            (Simulation.run(SimulationOptions(seed: 3)), Simulation.run(SimulationOptions(seed: 2)))
        }
        #expect(
            leased.transcript.contains { $0.contains("reads: leases of") }, "\(leased.transcript.prefix(3))")
        #expect(leased.passed, "\(leased.violations)")
        #expect(leased.leaseReads > 0, "no read was served under a lease")

        #expect(
            plain.transcript.contains { $0.contains("reads: read index") }, "\(plain.transcript.prefix(3))")
        #expect(plain.passed, "\(plain.violations)")
        #expect(plain.leaseReads == 0)
    }
}
