import Paxos
import PaxosNIO
import PaxosTesting
import Testing

/// The lab's fault scenarios with every message on real TCP connections between the peers, in
/// plaintext and over mutual TLS; the simulated network's partitions, deafness and unreliability
/// sit in front of each transport.
@Suite("6.824 Paxos lab over TCP", .serialized)
struct LabOverTCPTests {
    static let security = [false, true]

    func setup(tls: Bool) -> LabSetup {
        LabSetup(transports: { count in try await makeTCPTransports(count, tls: tls) })
    }

    @Test("Out-of-order instances (after the other basic steps), TCP or TLS", arguments: security)
    func basic(tls: Bool) async throws {
        try await LabScenarios.basic(through: .outOfOrder, setup: setup(tls: tls))
    }

    @Test("Deaf proposer, TCP or TLS", arguments: security)
    func deaf(tls: Bool) async throws {
        try await LabScenarios.deaf(setup: setup(tls: tls))
    }

    @Test("Forgetting, TCP or TLS", arguments: security)
    func forgetting(tls: Bool) async throws {
        try await LabScenarios.forget(setup: setup(tls: tls))
    }

    @Test("Minority proposal ignored, TCP or TLS", arguments: security)
    func minority(tls: Bool) async throws {
        try await LabScenarios.old(setup: setup(tls: tls))
    }

    @Test("Many instances, unreliable RPC, TCP or TLS", arguments: security)
    func manyUnreliable(tls: Bool) async throws {
        try await LabScenarios.manyUnreliable(setup: setup(tls: tls))
    }

    @Test(
        "One peer switches partitions, unreliable (after all partition steps), TCP or TLS",
        arguments: security)
    func partitions(tls: Bool) async throws {
        try await LabScenarios.partition(through: .oneSwitchesUnreliable, setup: setup(tls: tls))
    }

    @Test("Many requests, changing partitions, TCP or TLS (10 s)", arguments: security)
    func lots(tls: Bool) async throws {
        try await LabScenarios.lots(setup: setup(tls: tls), duration: .seconds(10))
    }
}
