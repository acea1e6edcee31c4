import PaxosCore
import Testing

/// Claims about the acceptor, each checked through the node's public inputs.
@Suite("Acceptor")
struct AcceptorTests {
    func prepare(_ seq: Int, _ round: UInt64, from: NodeID = 1) -> RequestEnvelope {
        RequestEnvelope(
            from: from, done: -1, request: .prepare(seq: seq, ballot: Ballot(round: round, node: from)))
    }

    func accept(_ seq: Int, _ round: UInt64, _ value: String, from: NodeID = 1) -> RequestEnvelope {
        RequestEnvelope(
            from: from, done: -1,
            request: .accept(seq: seq, ballot: Ballot(round: round, node: from), value: .text(value)))
    }

    @Test("an acceptor promises a prepare above everything it promised, and persists the promise")
    func promisesHigher() {
        var acceptor = node(0)
        let ready = acceptor.onRequest(prepare(0, 5))
        #expect(ready.reply?.reply == .promise(seq: 0, ballot: Ballot(round: 5, node: 1), accepted: nil))
        #expect(ready.mutations.contains(.promise(seq: 0, ballot: Ballot(round: 5, node: 1))))
    }

    @Test("an acceptor rejects a prepare at or below its promise and reports the promise")
    func rejectsLowerPrepare() {
        var acceptor = node(0)
        _ = acceptor.onRequest(prepare(0, 5, from: 2))
        let lower = acceptor.onRequest(prepare(0, 5, from: 1))
        #expect(
            lower.reply?.reply
                == .rejected(seq: 0, ballot: Ballot(round: 5, node: 1), promised: Ballot(round: 5, node: 2)))
        #expect(lower.mutations.isEmpty)
        let same = acceptor.onRequest(prepare(0, 5, from: 2))
        if case .rejected = same.reply?.reply {
        } else {
            Issue.record("a repeated prepare must not be promised again")
        }
    }

    @Test("an acceptor never accepts below its promise")
    func neverAcceptsBelowPromise() {
        var acceptor = node(0)
        _ = acceptor.onRequest(prepare(0, 7, from: 2))
        let ready = acceptor.onRequest(accept(0, 6, "low", from: 1))
        #expect(
            ready.reply?.reply
                == .rejected(seq: 0, ballot: Ballot(round: 6, node: 1), promised: Ballot(round: 7, node: 2)))
        #expect(ready.mutations.isEmpty)
        #expect(acceptor.record(0)?.accepted == nil)
    }

    @Test("an acceptor accepts at its promise and persists ballot and value")
    func acceptsAtPromise() {
        var acceptor = node(0)
        _ = acceptor.onRequest(prepare(0, 7))
        let ready = acceptor.onRequest(accept(0, 7, "v"))
        #expect(ready.reply?.reply == .accepted(seq: 0, ballot: Ballot(round: 7, node: 1)))
        #expect(ready.mutations == [.accept(seq: 0, ballot: Ballot(round: 7, node: 1), value: .text("v"))])
    }

    @Test("an accept above the promise raises the promise, so a lower prepare is then rejected")
    func acceptRaisesPromise() {
        var acceptor = node(0)
        _ = acceptor.onRequest(accept(0, 9, "v", from: 2))
        let ready = acceptor.onRequest(prepare(0, 8, from: 1))
        if case .rejected = ready.reply?.reply {
        } else {
            Issue.record("expected rejection, got \(String(describing: ready.reply))")
        }
    }

    @Test("a promise reports the proposal the acceptor accepted before")
    func promiseCarriesAccepted() {
        var acceptor = node(0)
        _ = acceptor.onRequest(accept(0, 3, "old", from: 2))
        let ready = acceptor.onRequest(prepare(0, 4, from: 1))
        let accepted = AcceptedProposal(ballot: Ballot(round: 3, node: 2), value: .text("old"))
        #expect(ready.reply?.reply == .promise(seq: 0, ballot: Ballot(round: 4, node: 1), accepted: accepted))
    }

    @Test("an acceptor that knows the decision answers with it instead of voting")
    func decidedAnswersWithValue() {
        var acceptor = node(0)
        _ = acceptor.onRequest(
            RequestEnvelope(from: 1, done: -1, request: .decided(seq: 0, value: .text("d"))))
        let ready = acceptor.onRequest(prepare(0, 50))
        #expect(ready.reply?.reply == .decided(seq: 0, value: .text("d")))
        #expect(ready.mutations.isEmpty)
    }

    @Test("requests from a node outside the cluster get no reply and change nothing")
    func unknownSenderIgnored() {
        var acceptor = node(0)
        let ready = acceptor.onRequest(prepare(0, 5, from: 42))
        #expect(ready.reply == nil)
        #expect(ready.mutations.isEmpty)
        #expect(acceptor.record(0) == nil)
    }

    @Test("an acceptor restored from its durable state keeps its promise")
    func restartKeepsPromise() {
        var before = node(0)
        var disk = DurableState()
        for mutation in before.onRequest(prepare(0, 9, from: 2)).mutations { disk.apply(mutation) }
        var after = node(0, state: disk)
        let ready = after.onRequest(prepare(0, 8, from: 1))
        if case .rejected(_, _, let promised) = ready.reply?.reply {
            #expect(promised == Ballot(round: 9, node: 2))
        } else {
            Issue.record("a restarted acceptor broke its promise: \(String(describing: ready.reply))")
        }
    }
}
