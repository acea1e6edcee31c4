import PaxosCore
import PaxosWire
import Testing

@Suite("Log wire codec")
struct LogWireTests {
    static let ballot = Ballot(round: 7, node: NodeID(2))
    static let entry: LogEntry = [
        Proposal(id: ProposalID(node: NodeID(1), incarnation: 3, number: 9), command: Array("put x".utf8)),
        Proposal(id: ProposalID(node: NodeID(2), incarnation: 1, number: 1), command: []),
    ]

    static let requests: [LogRequestEnvelope] = [
        LogRequestEnvelope(from: NodeID(1), request: .prepare(ballot: ballot, from: 5)),
        LogRequestEnvelope(
            from: NodeID(2),
            request: .accept(
                ballot: ballot, entries: [SlotEntry(slot: 5, entry: entry), SlotEntry(slot: 6, entry: [])],
                firstUnchosen: 5, releasable: 3)),
        LogRequestEnvelope(
            from: NodeID(2), request: .accept(ballot: ballot, entries: [], firstUnchosen: 9, releasable: 1)),
        LogRequestEnvelope(from: NodeID(3), request: .fetch(from: 12)),
        LogRequestEnvelope(from: NodeID(3), request: .forward(entry)),
        LogRequestEnvelope(from: NodeID(3), request: .preVote(ballot: ballot)),
        LogRequestEnvelope(from: NodeID(3), request: .confirm(ballot: ballot, round: .max)),
        LogRequestEnvelope(from: NodeID(3), request: .snapshotChunk(token: 0, after: nil)),
        LogRequestEnvelope(
            from: NodeID(3), request: .snapshotChunk(token: .max, after: MachineKey(space: 2, key: [0, 9]))),
    ]

    static let replies: [LogReplyEnvelope] = [
        LogReplyEnvelope(
            from: NodeID(1),
            reply: .promise(
                ballot: ballot, firstUnchosen: 4,
                records: [
                    ReportedRecord(slot: 4, record: LogRecord(ballot: ballot, entry: entry, chosen: false)),
                    ReportedRecord(slot: 5, record: LogRecord(ballot: nil, entry: [], chosen: true)),
                ], membershipSlot: 3)),
        LogReplyEnvelope(from: NodeID(2), incarnation: 0xDEAD_BEEF_0000_0001, reply: .refused(known: 0xFEED)),
        LogReplyEnvelope(
            from: NodeID(1), reply: .accepted(ballot: ballot, slots: [5, 6], firstUnchosen: 5, applied: 4)),
        LogReplyEnvelope(
            from: NodeID(1), reply: .rejected(ballot: ballot, promised: Ballot(round: 8, node: NodeID(0)))),
        LogReplyEnvelope(
            from: NodeID(1), reply: .chosen(entries: [SlotEntry(slot: 12, entry: entry)], firstUnchosen: 13)),
        LogReplyEnvelope(from: NodeID(1), reply: .snapshotAvailable(applied: 40)),
        LogReplyEnvelope(
            from: NodeID(1),
            reply: .snapshotChunk(
                token: 77, applied: 40, after: nil,
                rows: [
                    MachineRow(key: MachineKey(space: 1, key: [1, 2]), value: [3]),
                    MachineRow(key: MachineKey(space: 2, key: []), value: []),
                ], done: true)),
        LogReplyEnvelope(
            from: NodeID(2),
            reply: .snapshotChunk(
                token: 1, applied: 3, after: MachineKey(space: 0, key: []), rows: [], done: false)),
        LogReplyEnvelope(from: NodeID(1), reply: .snapshotGone),
        LogReplyEnvelope(from: NodeID(1), reply: .forwarded(taken: true)),
        LogReplyEnvelope(from: NodeID(1), reply: .preVote(ballot: ballot, granted: true, promised: nil)),
        LogReplyEnvelope(from: NodeID(1), reply: .confirmed(ballot: ballot, round: 1, promised: nil)),
        LogReplyEnvelope(from: NodeID(2), reply: .leaseConfirmed(ballot: ballot, round: 3)),
        LogReplyEnvelope(
            from: NodeID(3),
            reply: .confirmed(ballot: ballot, round: 7, promised: Ballot(round: 9, node: NodeID(2)))),
        LogReplyEnvelope(
            from: NodeID(2),
            reply: .preVote(ballot: ballot, granted: false, promised: Ballot(round: 9, node: NodeID(3)))),
    ]

    @Test("every request and reply round-trips, and is told apart from the lab protocol")
    func roundTrip() throws {
        for request in Self.requests {
            let bytes = LogWire.encode(request)
            #expect(LogWire.isLogMessage(bytes))
            #expect(try LogWire.decodeRequest(bytes) == request)
        }
        for reply in Self.replies {
            #expect(try LogWire.decodeReply(LogWire.encode(reply)) == reply)
        }
        let lab = PaxosWire.encode(
            RequestEnvelope(from: NodeID(1), done: -1, request: .prepare(seq: 1, ballot: Self.ballot)))
        #expect(!LogWire.isLogMessage(lab))
        #expect(try LogWire.decodeEntry(LogWire.encodeEntry(Self.entry)) == Self.entry)
    }

    @Test("snapshot rows out of key order, or repeated, are refused")
    func snapshotRowsOutOfOrder() {
        for keys in [
            [MachineKey(space: 1, key: [2]), MachineKey(space: 1, key: [1])],
            [MachineKey(space: 2, key: []), MachineKey(space: 1, key: [9])],
            [MachineKey(space: 1, key: [1]), MachineKey(space: 1, key: [1])],
        ] {
            let reply = LogReplyEnvelope(
                from: NodeID(1),
                reply: .snapshotChunk(
                    token: 5, applied: 9, after: nil, rows: keys.map { MachineRow(key: $0, value: [7]) },
                    done: false))
            #expect(throws: WireError.self) { try LogWire.decodeReply(LogWire.encode(reply)) }
        }
    }

    @Test("every truncation and a trailing byte are refused with an error")
    func truncation() {
        for bytes in Self.requests.map(LogWire.encode) {
            for cut in 0..<bytes.count {
                #expect(throws: WireError.self) { try LogWire.decodeRequest(Array(bytes[..<cut])) }
            }
            #expect(throws: WireError.self) { try LogWire.decodeRequest(bytes + [0]) }
        }
        for bytes in Self.replies.map(LogWire.encode) {
            for cut in 0..<bytes.count {
                #expect(throws: WireError.self) { try LogWire.decodeReply(Array(bytes[..<cut])) }
            }
        }
    }

    @Test("a slot near the integer limit is refused")
    func hugeSlot() {
        var bytes = LogWire.encode(LogRequestEnvelope(from: NodeID(3), request: .fetch(from: 12)))
        bytes.replaceSubrange((bytes.count - 8)..., with: [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: WireError.self) { try LogWire.decodeRequest(bytes) }
    }

    @Test("random bytes never crash the decoder")
    func randomBytes() {
        var random = SplitMix64(seed: 11)
        for _ in 0..<20_000 {
            var bytes = (0..<Int.random(in: 0..<64, using: &random)).map { _ in
                UInt8.random(in: 0...255, using: &random)
            }
            if bytes.count > 2, Bool.random(using: &random) {
                bytes[0] = LogWire.version
                bytes[1] = [0x21, 0x22, 0x23, 0x24, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6].randomElement(
                    using: &random)!
            }
            _ = try? LogWire.decodeRequest(bytes)
            _ = try? LogWire.decodeReply(bytes)
        }
    }

    @Test(
        "rounds at or above 2^62 are refused, in requests and replies",
        arguments: [Ballot.roundLimit, (UInt64(1) << 63) + 5, UInt64.max])
    func roundsOutOfRangeAreRefused(round: UInt64) throws {
        let high = Ballot(round: round, node: NodeID(2))
        let requests = [
            LogRequestEnvelope(from: NodeID(2), request: .prepare(ballot: high, from: 1)),
            LogRequestEnvelope(
                from: NodeID(2), request: .accept(ballot: high, entries: [], firstUnchosen: 1, releasable: 1)),
            LogRequestEnvelope(from: NodeID(2), request: .preVote(ballot: high)),
        ]
        for request in requests {
            #expect(throws: WireError.self) { try LogWire.decodeRequest(LogWire.encode(request)) }
        }
        let reply = LogReplyEnvelope(from: NodeID(2), reply: .rejected(ballot: Self.ballot, promised: high))
        #expect(throws: WireError.self) { try LogWire.decodeReply(LogWire.encode(reply)) }
        let top = Ballot(round: (1 << 62) - 1, node: NodeID(2))
        let fine = LogRequestEnvelope(from: NodeID(2), request: .prepare(ballot: top, from: 1))
        #expect(try LogWire.decodeRequest(LogWire.encode(fine)) == fine)
    }
}
