import PaxosCore
import Testing

@Suite("Proposer")
struct ProposerTests {
    @Test("start prepares at every other node, calls its own acceptor locally, and persists maxRound first")
    func startPrepares() {
        var proposer = node(0)
        let ready = proposer.start(seq: 0, value: .text("v"))
        #expect(ready.prepares.map(\.to) == [1, 2])
        #expect(ready.mutations.contains(.maxRound(1)))
        #expect(ready.localReplies.count == 1)
        if case .promise(_, let ballot, _) = ready.localReplies.first?.reply {
            #expect(ballot == Ballot(round: 1, node: 0))
        } else {
            Issue.record("the local acceptor should have promised")
        }
        // Every ballot sent carries a round that the same Ready persists, and is logged as used.
        for message in ready.prepares {
            if case .prepare(let seq, let ballot) = message.envelope.request {
                #expect(ready.mutations.contains(.maxRound(ballot.round)))
                #expect(ready.mutations.contains(.ballotUsed(seq: seq, ballot: ballot)))
            }
        }
    }

    @Test("the proposer does not count its own vote until the driver feeds it back")
    func ownVoteCountsOnlyWhenFedBack() {
        var proposer = node(0)
        let start = proposer.start(seq: 0, value: .text("v"))
        let ballot = Ballot(round: 1, node: 0)
        // One remote promise alone is not a majority of 3 while the local vote is still held back.
        let afterRemote = proposer.onReply(
            ReplyEnvelope(from: 1, done: -1, reply: .promise(seq: 0, ballot: ballot, accepted: nil)))
        #expect(afterRemote.accepts.isEmpty)
        let afterLocal = proposer.onReply(start.localReplies[0])
        #expect(afterLocal.accepts.map(\.to) == [1, 2])
    }

    @Test("a proposer adopts the value of the highest-ballot accepted proposal among the promises")
    func adoptsHighestAccepted() {
        var proposer = node(0, of: 5)
        let start = proposer.start(seq: 0, value: .text("mine"))
        let ballot = Ballot(round: 1, node: 0)
        _ = proposer.onReply(start.localReplies[0])
        let low = AcceptedProposal(ballot: Ballot(round: 0, node: 3), value: .text("low"))
        let high = AcceptedProposal(ballot: Ballot(round: 0, node: 4), value: .text("high"))
        _ = proposer.onReply(
            ReplyEnvelope(from: 1, done: -1, reply: .promise(seq: 0, ballot: ballot, accepted: low)))
        let ready = proposer.onReply(
            ReplyEnvelope(from: 2, done: -1, reply: .promise(seq: 0, ballot: ballot, accepted: high)))
        #expect(!ready.accepts.isEmpty)
        for message in ready.accepts {
            if case .accept(_, _, let value) = message.envelope.request { #expect(value == .text("high")) }
        }
    }

    @Test("a proposer proposes its own value when no acceptor accepted anything")
    func proposesOwnValue() {
        var proposer = node(0)
        let start = proposer.start(seq: 0, value: .text("mine"))
        _ = proposer.onReply(start.localReplies[0])
        let ready = proposer.onReply(
            ReplyEnvelope(
                from: 2, done: -1, reply: .promise(seq: 0, ballot: Ballot(round: 1, node: 0), accepted: nil)))
        for message in ready.accepts {
            if case .accept(_, _, let value) = message.envelope.request { #expect(value == .text("mine")) }
        }
        #expect(ready.accepts.count == 2)
    }

    @Test("ballots are unique per node: two nodes from the same state never use the same ballot")
    func ballotsUniquePerNode() {
        var a = node(0)
        var b = node(1)
        let ballotA = a.start(seq: 0, value: .text("a")).prepares.first.map(\.envelope.request)
        let ballotB = b.start(seq: 0, value: .text("b")).prepares.first.map(\.envelope.request)
        #expect(ballotA != nil && ballotA != ballotB)
    }

    @Test("each new ballot of a node is above every ballot it used before")
    func ballotsIncrease() {
        var proposer = node(0)
        var last: Ballot?
        for seq in 0..<20 {
            let ready = proposer.start(seq: seq, value: .text("v"))
            guard case .prepare(_, let ballot)? = ready.prepares.first?.envelope.request else {
                Issue.record("no prepare for seq \(seq)")
                return
            }
            if let last { #expect(ballot > last) }
            last = ballot
        }
    }

    @Test("after a rejection the next ballot is above the ballot that caused it")
    func jumpsPastRejection() {
        var proposer = node(0, of: 3)
        _ = proposer.start(seq: 0, value: .text("v"))
        let mine = Ballot(round: 1, node: 0)
        let theirs = Ballot(round: 40, node: 2)
        _ = proposer.onReply(
            ReplyEnvelope(from: 1, done: -1, reply: .rejected(seq: 0, ballot: mine, promised: theirs)))
        _ = proposer.onReply(
            ReplyEnvelope(from: 2, done: -1, reply: .rejected(seq: 0, ballot: mine, promised: theirs)))
        var next: Ballot?
        for _ in 0..<100 where next == nil {
            for message in proposer.tick().prepares {
                if case .prepare(_, let ballot) = message.envelope.request { next = ballot }
            }
        }
        #expect(next.map { $0 > theirs } == true, "next ballot \(String(describing: next))")
    }

    @Test("a restarted node's next ballot is above every ballot it used before the crash")
    func restartNeverReusesBallot() {
        var before = node(0)
        var disk = DurableState()
        var used: [Ballot] = []
        for seq in 0..<5 {
            let ready = before.start(seq: seq, value: .text("v"))
            for mutation in ready.mutations { disk.apply(mutation) }
            for message in ready.prepares {
                if case .prepare(_, let ballot) = message.envelope.request { used.append(ballot) }
            }
        }
        var after = node(0, state: disk)
        let ready = after.start(seq: 9, value: .text("w"))
        guard case .prepare(_, let ballot)? = ready.prepares.first?.envelope.request else {
            Issue.record("no prepare")
            return
        }
        #expect(used.allSatisfy { ballot > $0 })
    }

    @Test("start below min() is ignored and sends nothing")
    func startBelowMinIgnored() {
        var proposer = node(0, of: 1)
        _ = proposer.done(4)
        #expect(proposer.min == 5)
        #expect(proposer.start(seq: 3, value: .text("late")).isEmpty)
        #expect(proposer.status(3) == .forgotten)
    }

    @Test("start on an instance already decided here sends nothing")
    func startOnDecidedIsQuiet() {
        var proposer = node(0)
        _ = proposer.onRequest(
            RequestEnvelope(from: 1, done: -1, request: .decided(seq: 0, value: .text("d"))))
        #expect(proposer.start(seq: 0, value: .text("other")).messages.isEmpty)
        #expect(proposer.status(0) == .decided(.text("d")))
    }
}
