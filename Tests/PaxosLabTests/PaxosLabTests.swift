import PaxosCore
import PaxosTesting
import Testing

extension ClusterSuites {
    /// The 6.824 Paxos lab suite on the simulated network with in-memory stores, one test per lab
    /// test, named as the lab names them. Serialized: the lab ran them one at a time, and the memory
    /// test measures the whole process's allocator.
    @Suite("6.824 Paxos lab (in-memory stores)", .serialized)
    struct PaxosLabTests {
        let setup = LabSetup()

        @Test("Single proposer") func singleProposer() async throws {
            try await LabScenarios.basic(through: .singleProposer, setup: setup)
        }

        @Test("Many proposers, same value") func manyProposersSameValue() async throws {
            try await LabScenarios.basic(through: .manyProposersSameValue, setup: setup)
        }

        @Test("Many proposers, different values") func manyProposersDifferentValues() async throws {
            try await LabScenarios.basic(through: .manyProposersDifferentValues, setup: setup)
        }

        @Test("Out-of-order instances") func outOfOrderInstances() async throws {
            try await LabScenarios.basic(through: .outOfOrder, setup: setup)
        }

        @Test("Deaf proposer") func deafProposer() async throws {
            try await LabScenarios.deaf(setup: setup)
        }

        @Test("Forgetting") func forgetting() async throws {
            try await LabScenarios.forget(setup: setup)
        }

        @Test("Lots of forgetting") func lotsOfForgetting() async throws {
            try await LabScenarios.manyForget(setup: setup)
        }

        @Test("Paxos frees forgotten instance memory") func freesForgottenMemory() async throws {
            let figures = try await LabScenarios.forgetMem(setup: setup)
            print(
                "memory: allocator bytes in use \(figures.initial) initially, \(figures.peak) at peak,"
                    + " \(figures.afterForgetting) after forgetting")
        }

        @Test("Paxos Max() after Done()s") func maxAfterDone() async throws {
            try await LabScenarios.doneMax(setup: setup)
        }

        @Test("RPC counts aren't too high") func rpcCounts() async throws {
            let figures = try await LabScenarios.rpcCount(setup: setup)
            print(
                "rpc counts: \(figures.serial) for 5 serial agreements (bound 45), \(figures.concurrent) for 5 concurrent (bound 225)"
            )
        }

        @Test("Many instances") func manyInstances() async throws {
            try await LabScenarios.many(setup: setup)
        }

        @Test("Minority proposal ignored") func minorityProposalIgnored() async throws {
            try await LabScenarios.old(setup: setup)
        }

        @Test("Many instances, unreliable RPC") func manyInstancesUnreliable() async throws {
            try await LabScenarios.manyUnreliable(setup: setup)
        }

        @Test("No decision if partitioned") func noDecisionIfPartitioned() async throws {
            try await LabScenarios.partition(through: .noDecision, setup: setup)
        }

        @Test("Decision in majority partition") func decisionInMajorityPartition() async throws {
            try await LabScenarios.partition(through: .majorityDecides, setup: setup)
        }

        @Test("All agree after full heal") func allAgreeAfterFullHeal() async throws {
            try await LabScenarios.partition(through: .allAgreeAfterHeal, setup: setup)
        }

        @Test("One peer switches partitions") func onePeerSwitchesPartitions() async throws {
            try await LabScenarios.partition(through: .oneSwitches, setup: setup)
        }

        @Test("One peer switches partitions, unreliable") func onePeerSwitchesPartitionsUnreliable()
            async throws
        {
            try await LabScenarios.partition(through: .oneSwitchesUnreliable, setup: setup)
        }

        @Test("Many requests, changing partitions") func manyRequestsChangingPartitions() async throws {
            try await LabScenarios.lots(setup: setup)
        }
    }
}
