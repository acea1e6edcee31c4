import PaxosCore
import Testing

@Suite("Done, Min, Max")
struct DoneMinMaxTests {
    @Test("min() starts at 0 and is 1 + the minimum done over all peers")
    func minIsOnePlusMinimumDone() {
        var peer = node(0)
        #expect(peer.min == 0)
        _ = peer.done(5)
        #expect(peer.min == 0, "the other peers have not called done")
        _ = peer.onRequest(
            RequestEnvelope(from: 1, done: 3, request: .prepare(seq: 9, ballot: Ballot(round: 1, node: 1))))
        #expect(peer.min == 0)
        _ = peer.onRequest(
            RequestEnvelope(from: 2, done: 7, request: .prepare(seq: 9, ballot: Ballot(round: 2, node: 2))))
        #expect(peer.min == 4)
    }

    @Test("done values at Int.max, on disk or from a caller, saturate instead of trapping")
    func doneAtIntMaxSaturates() {
        var state = DurableState()
        for peer: NodeID in [0, 1, 2] { state.doneByPeer[peer] = Int.max }
        let restarted = node(0, state: state)
        #expect(restarted.min == Int.max)
        var fresh = node(0, of: 1)
        _ = fresh.done(Int.max)
        #expect(fresh.min == Int.max)
        #expect(fresh.status(5) == .forgotten)
    }

    @Test("done keeps the maximum it was given")
    func doneKeepsMaximum() {
        var peer = node(0, of: 1)
        _ = peer.done(6)
        let lower = peer.done(2)
        #expect(peer.ownDone == 6)
        #expect(lower.mutations.isEmpty)
    }

    @Test("instances below min() are forgotten: status says so and their memory is released")
    func forgettingReleases() {
        var peer = node(0, of: 1)
        for seq in 0..<10 {
            _ = peer.onRequest(
                RequestEnvelope(from: 0, done: -1, request: .decided(seq: seq, value: .text("x"))))
            _ = peer.start(seq: seq, value: .text("v"))
        }
        #expect(peer.instanceCount == 10)
        let ready = peer.done(6)
        #expect(ready.mutations.contains(.forget(below: 7)))
        #expect(peer.instanceCount == 3)
        #expect(peer.status(6) == .forgotten)
        #expect(peer.status(7) != .forgotten)
    }

    @Test("an acceptor answers 'forgotten' for an instance below its min() and does not vote")
    func forgottenInstancesGetNoVote() {
        var peer = node(0, of: 2)
        _ = peer.done(3)
        _ = peer.onRequest(
            RequestEnvelope(from: 1, done: 3, request: .prepare(seq: 8, ballot: Ballot(round: 1, node: 1))))
        #expect(peer.min == 4)
        let ready = peer.onRequest(
            RequestEnvelope(from: 1, done: 3, request: .prepare(seq: 2, ballot: Ballot(round: 9, node: 1))))
        #expect(ready.reply?.reply == .forgotten(seq: 2))
        #expect(ready.mutations.isEmpty)
    }

    @Test("max() is the highest instance seen, started or heard of, and never decreases")
    func maxNeverDecreases() {
        var peer = node(0, of: 2)
        #expect(peer.max == -1)
        _ = peer.start(seq: 4, value: .text("v"))
        #expect(peer.max == 4)
        _ = peer.onRequest(
            RequestEnvelope(from: 1, done: -1, request: .prepare(seq: 9, ballot: Ballot(round: 1, node: 1))))
        #expect(peer.max == 9)
        _ = peer.done(9)
        _ = peer.onRequest(
            RequestEnvelope(from: 1, done: 9, request: .prepare(seq: 10, ballot: Ballot(round: 2, node: 1))))
        #expect(peer.min == 10)
        #expect(peer.max == 10)
    }

    @Test("done values and the forget floor survive a restart")
    func doneSurvivesRestart() {
        var before = node(0, of: 2)
        var disk = DurableState()
        for mutation in before.done(5).mutations { disk.apply(mutation) }
        let request = RequestEnvelope(
            from: 1, done: 8, request: .prepare(seq: 9, ballot: Ballot(round: 1, node: 1)))
        for mutation in before.onRequest(request).mutations { disk.apply(mutation) }
        #expect(before.min == 6)
        let after = node(0, of: 2, state: disk)
        #expect(after.min == 6)
        #expect(after.done(of: 1) == 8)
        #expect(after.status(5) == .forgotten)
    }
}
