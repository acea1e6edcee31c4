import PaxosCore
import Testing

@Suite("DurableState")
struct DurableStateTests {
    @Test("maxRound, done values and the forget floor never go down")
    func monotonic() {
        var state = DurableState()
        state.apply(.maxRound(9))
        state.apply(.maxRound(3))
        state.apply(.done(peer: 1, seq: 5))
        state.apply(.done(peer: 1, seq: 2))
        state.apply(.forget(below: 4))
        state.apply(.forget(below: 1))
        #expect(state.maxRound == 9)
        #expect(state.doneByPeer[1] == 5)
        #expect(state.forgottenBelow == 4)
    }

    @Test("forgetting drops the records below the floor, and nothing below it is recreated")
    func forgetDrops() {
        var state = DurableState()
        for seq in 0..<6 { state.apply(.decide(seq: seq, value: [UInt8(seq)])) }
        state.apply(.forget(below: 4))
        #expect(state.instances.keys.sorted() == [4, 5])
        state.apply(.promise(seq: 2, ballot: Ballot(round: 1, node: 0)))
        #expect(state.instances[2] == nil)
    }

    @Test("accept records the ballot as promised too")
    func acceptPromises() {
        var state = DurableState()
        let ballot = Ballot(round: 4, node: 2)
        state.apply(.accept(seq: 0, ballot: ballot, value: [1]))
        #expect(state.instances[0]?.promised == ballot)
        #expect(state.instances[0]?.accepted == AcceptedProposal(ballot: ballot, value: [1]))
    }

    @Test("the in-memory store commits all of a batch or, when a commit fails, none of it")
    func inMemoryStoreAtomic() async throws {
        let store = InMemoryStore()
        try await store.commit([.maxRound(2), .promise(seq: 0, ballot: Ballot(round: 2, node: 0))])
        await store.failNextCommit()
        await #expect(throws: InMemoryStore.InjectedFailure.self) {
            try await store.commit([.maxRound(5)])
        }
        let state = await store.load()
        #expect(state.maxRound == 2)
        #expect(state.instances[0]?.promised == Ballot(round: 2, node: 0))
    }
}
