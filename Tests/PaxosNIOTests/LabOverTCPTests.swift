import Paxos
import PaxosNIO
import PaxosTesting
import Testing

/// The lab's fault scenarios with every message on real TCP connections between the peers; the
/// simulated network's partitions, deafness and unreliability sit in front of each transport.
@Suite("6.824 Paxos lab over TCP", .serialized)
struct LabOverTCPTests {
    let setup = LabSetup(transports: { count in try await makeTCPTransports(count) })

    @Test("Out-of-order instances (after the other basic steps), TCP")
    func basic() async throws {
        try await LabScenarios.basic(through: .outOfOrder, setup: setup)
    }

    @Test("Deaf proposer, TCP") func deaf() async throws {
        try await LabScenarios.deaf(setup: setup)
    }

    @Test("Forgetting, TCP") func forgetting() async throws {
        try await LabScenarios.forget(setup: setup)
    }

    @Test("Minority proposal ignored, TCP") func minority() async throws {
        try await LabScenarios.old(setup: setup)
    }

    @Test("Many instances, unreliable RPC, TCP") func manyUnreliable() async throws {
        try await LabScenarios.manyUnreliable(setup: setup)
    }

    @Test("One peer switches partitions, unreliable (after all partition steps), TCP")
    func partitions() async throws {
        try await LabScenarios.partition(through: .oneSwitchesUnreliable, setup: setup)
    }

    @Test("Many requests, changing partitions, TCP (10 s)")
    func lots() async throws {
        try await LabScenarios.lots(setup: setup, duration: .seconds(10))
    }
}

/// The same scenarios with every peer connection mutually authenticated by TLS 1.3.
@Suite("6.824 Paxos lab over mutual TLS", .serialized)
struct LabOverTLSTests {
    let setup = LabSetup(transports: { count in try await makeTCPTransports(count, tls: true) })

    @Test("Out-of-order instances (after the other basic steps), TLS")
    func basic() async throws {
        try await LabScenarios.basic(through: .outOfOrder, setup: setup)
    }

    @Test("Deaf proposer, TLS") func deaf() async throws {
        try await LabScenarios.deaf(setup: setup)
    }

    @Test("Forgetting, TLS") func forgetting() async throws {
        try await LabScenarios.forget(setup: setup)
    }

    @Test("Minority proposal ignored, TLS") func minority() async throws {
        try await LabScenarios.old(setup: setup)
    }

    @Test("Many instances, unreliable RPC, TLS") func manyUnreliable() async throws {
        try await LabScenarios.manyUnreliable(setup: setup)
    }

    @Test("One peer switches partitions, unreliable (after all partition steps), TLS")
    func partitions() async throws {
        try await LabScenarios.partition(through: .oneSwitchesUnreliable, setup: setup)
    }

    @Test("Many requests, changing partitions, TLS (10 s)")
    func lots() async throws {
        try await LabScenarios.lots(setup: setup, duration: .seconds(10))
    }
}
