import PaxosCore
import Testing

@Suite("Ballot")
struct BallotTests {
    @Test("ballots order by round first, then by node id")
    func orderRoundFirst() {
        #expect(Ballot(round: 1, node: 9) < Ballot(round: 2, node: 0))
        #expect(Ballot(round: 2, node: 0) < Ballot(round: 2, node: 1))
        #expect(!(Ballot(round: 2, node: 1) < Ballot(round: 2, node: 1)))
    }

    @Test("ordering agrees with a naive model: compare the pair (round, node) lexicographically")
    func orderMatchesModel() {
        var random = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let a = Ballot(round: random.next() % 4, node: NodeID(UInt32(random.next() % 4)))
            let b = Ballot(round: random.next() % 4, node: NodeID(UInt32(random.next() % 4)))
            let model = a.round < b.round || (a.round == b.round && a.node.rawValue < b.node.rawValue)
            #expect((a < b) == model, "\(a) < \(b)")
        }
    }

    @Test("ballots render as round.node")
    func rendering() {
        #expect(Ballot(round: 12, node: 3).description == "12.3")
    }
}
