import PaxosSimulation
import Testing

/// Lease reads through the production runtime (``LogPeer`` with its lease clock) in the
/// deterministic simulator, where time is virtual: whether a read finds the lease held does not
/// depend on how loaded the machine running the tests is.
@Suite("Lease reads in the simulator")
struct SimulatedLeaseTests {
    @Test("a lease run serves reads under the lease and stays linearizable; a read-index run serves none")
    func leaseRunServesLeaseReads() {
        // Seed 3 draws leases, seed 2 read index (the transcript's `reads:` line says which).
        let leased = Simulation.run(SimulationOptions(seed: 3))
        #expect(
            leased.transcript.contains { $0.contains("reads: leases of") }, "\(leased.transcript.prefix(3))")
        #expect(leased.passed, "\(leased.violations)")
        #expect(leased.leaseReads > 0, "no read was served under a lease")

        let plain = Simulation.run(SimulationOptions(seed: 2))
        #expect(
            plain.transcript.contains { $0.contains("reads: read index") }, "\(plain.transcript.prefix(3))")
        #expect(plain.passed, "\(plain.violations)")
        #expect(plain.leaseReads == 0)
    }
}
