import PaxosCore
import Testing

/// Whole-protocol claims, driven synchronously and deterministically from a seed.
@Suite("Agreement")
struct AgreementTests {
    @Test("a serial agreement among 3 nodes costs 6 remote requests and leaves the cluster quiet")
    func minimalMessages() {
        var cluster = SyncCluster(count: 3, seed: 1)
        cluster.start(0, 0, .text("v"))
        cluster.run()
        #expect(cluster.remoteRequests == 6)
        for node in cluster.nodes {
            #expect(node.status(0) == .decided(.text("v")))
            #expect(!node.hasActiveWork)
        }
        // Quiet: ticking a decided cluster produces nothing to send.
        for index in cluster.nodes.indices {
            for _ in 0..<200 { #expect(cluster.nodes[index].tick().isEmpty) }
        }
    }

    @Test("every decision is persisted in the same Ready that reports it")
    func decisionsArePersisted() {
        var proposer = node(0, of: 1)
        let start = proposer.start(seq: 0, value: .text("v"))
        let promised = proposer.onReply(start.localReplies[0])
        let accepted = proposer.onReply(promised.localReplies[0])
        #expect(accepted.decisions == [0])
        #expect(accepted.mutations.contains(.decide(seq: 0, value: .text("v"))))
    }

    @Test(
        "agreement holds under loss, duplication, reordering and crash-restarts",
        arguments: Array(UInt64(1)...UInt64(60)))
    func agreementUnderFaults(seed: UInt64) async {
        await simulating {
            var cluster = SyncCluster(count: 5, seed: seed)
            cluster.dropPercent = 20
            cluster.duplicatePercent = 10
            var random = SplitMix64(seed: seed &* 31)
            // Several proposers compete on a few instances with distinct values.
            for round in 0..<6 {
                for index in 0..<5 where random.next() % 2 == 0 {
                    cluster.start(index, Int(random.next() % 3), .text("v\(round)-\(index)"))
                }
                for _ in 0..<Int(random.next() % 400) {
                    if !cluster.step() { cluster.tick() }
                }
                if random.next() % 3 == 0 {
                    cluster.crashAndRestart(Int(random.next() % 5), seed: random.next())
                }
            }
            cluster.dropPercent = 0
            cluster.duplicatePercent = 0
            // Re-start every instance everywhere so each node ends up knowing the outcome.
            for seq in 0..<3 {
                for index in 0..<5 { cluster.start(index, seq, .text("final-\(index)")) }
            }
            cluster.run()
            #expect(cluster.violations.isEmpty, "\(cluster.violations)")
            for seq in 0..<3 {
                let fates = cluster.nodes.map { $0.status(seq) }
                #expect(Set(fates).count == 1, "seq \(seq): \(fates)")
                if case .decided = fates[0] {} else { Issue.record("seq \(seq) not decided: \(fates)") }
            }
        }
    }
}
