import PaxosCore
import PaxosKV
import PaxosWire

/// Valid encodings of every message kind, the starting points of each target's corpus: libFuzzer
/// mutates from them, so every decoder branch is a few mutations away from the first input.
public enum Seeds {
    static let ballot = Ballot(round: 7, node: 2)
    static let entry: LogEntry = [
        Proposal(id: ProposalID(node: 1, incarnation: 3, number: 9), command: Array("put k v".utf8)),
        Proposal(id: ProposalID(node: 2, incarnation: 1, number: 1), command: []),
    ]

    /// Seeds by target name.
    public static func all() -> [String: [[UInt8]]] {
        [
            "FuzzPeerFrame": frames.map { $0.encodeBody() },
            "FuzzFrameStream": [0, 3, 6].map { [$0] + stream(frames) },
            "FuzzPaxosWire": requests.map(PaxosWire.encode) + replies.map(PaxosWire.encode),
            "FuzzLogWire": logRequests.map(LogWire.encode) + logReplies.map(LogWire.encode)
                + [LogWire.encodeEntry(entry)],
            "FuzzKVCommand": commands.map { $0.encode() } + results.map { $0.encode() },
            "FuzzKVSnapshot": [snapshot(commands), snapshot([])],
        ]
    }

    static let frames: [PeerFrame] = [
        .hello(clusterID: "fuzz", from: 1, to: 2, fromAddress: "127.0.0.1:7001"),
        .welcome,
        .refuse(reason: "another cluster"),
        .request(id: 1, payload: PaxosWire.encode(requests[0])),
        .reply(id: 1, payload: PaxosWire.encode(replies[0])),
        .noReply(id: UInt64.max),
    ]

    static func stream(_ frames: [PeerFrame]) -> [UInt8] {
        var writer = ByteWriter()
        for frame in frames { writer.writeBytes(frame.encodeBody()) }
        return writer.bytes
    }

    static let requests: [RequestEnvelope] = [
        RequestEnvelope(from: 1, done: -1, request: .prepare(seq: 3, ballot: ballot)),
        RequestEnvelope(from: 1, done: 2, request: .accept(seq: 3, ballot: ballot, value: [1, 2, 3])),
        RequestEnvelope(from: 3, done: 0, request: .decided(seq: 4, value: [])),
        RequestEnvelope(from: 3, done: -1, request: .recoveryQuery),
    ]

    static let replies: [ReplyEnvelope] = [
        ReplyEnvelope(from: 2, done: -1, reply: .promise(seq: 3, ballot: ballot, accepted: nil)),
        ReplyEnvelope(
            from: 2, done: 1,
            reply: .promise(seq: 3, ballot: ballot, accepted: AcceptedProposal(ballot: ballot, value: [9]))),
        ReplyEnvelope(from: 2, done: 1, reply: .accepted(seq: 3, ballot: ballot)),
        ReplyEnvelope(from: 2, done: 1, reply: .rejected(seq: 3, ballot: ballot, promised: ballot)),
        ReplyEnvelope(from: 2, done: 1, reply: .decided(seq: 3, value: [4, 5])),
        ReplyEnvelope(from: 2, done: 1, reply: .decidedAck(seq: 3)),
        ReplyEnvelope(from: 2, done: 1, reply: .forgotten(seq: 3)),
        ReplyEnvelope(from: 2, done: 1, reply: .refused(seq: 3, ballot: ballot)),
        ReplyEnvelope(from: 2, done: -1, reply: .recoveryReport(maxSeq: 3, maxRound: 7, recovering: true)),
    ]

    static let logRequests: [LogRequestEnvelope] = [
        LogRequestEnvelope(from: 1, request: .prepare(ballot: ballot, from: 4)),
        LogRequestEnvelope(
            from: 1,
            request: .accept(
                ballot: ballot, entries: [SlotEntry(slot: 4, entry: entry)], firstUnchosen: 4, releasable: 2)),
        LogRequestEnvelope(from: 1, request: .fetch(from: 1)),
        LogRequestEnvelope(from: 1, request: .forward(entry)),
        LogRequestEnvelope(from: 1, request: .preVote(ballot: ballot)),
    ]

    static let logReplies: [LogReplyEnvelope] = [
        LogReplyEnvelope(
            from: 3,
            reply: .promise(
                ballot: ballot, firstUnchosen: 2,
                records: [
                    ReportedRecord(slot: 2, record: LogRecord(ballot: ballot, entry: entry, chosen: false)),
                    ReportedRecord(slot: 3, record: LogRecord(ballot: nil, entry: [], chosen: true)),
                ], membershipSlot: 1)),
        LogReplyEnvelope(from: 3, incarnation: 0x1234_5678_9ABC_DEF1, reply: .refused(known: 0xFEED)),
        LogReplyEnvelope(
            from: 3, reply: .accepted(ballot: ballot, slots: [4, 5], firstUnchosen: 4, applied: 3)),
        LogReplyEnvelope(from: 3, reply: .rejected(ballot: ballot, promised: ballot)),
        LogReplyEnvelope(
            from: 3, reply: .chosen(entries: [SlotEntry(slot: 1, entry: entry)], firstUnchosen: 2)),
        LogReplyEnvelope(from: 3, reply: .snapshotAvailable(applied: 5)),
        LogReplyEnvelope(
            from: 3,
            reply: .snapshotChunk(
                token: 9, applied: 5, after: MachineKey(space: 1, key: []),
                rows: [MachineRow(key: MachineKey(space: 1, key: Array("k".utf8)), value: Array("v".utf8))],
                done: true)),
        LogReplyEnvelope(from: 3, reply: .snapshotGone),
        LogReplyEnvelope(from: 3, reply: .forwarded(taken: true)),
        LogReplyEnvelope(from: 3, reply: .preVote(ballot: ballot, granted: false, promised: ballot)),
    ]

    static let commands: [KVCommand] = [
        KVCommand(operation: .register),
        KVCommand(client: 1, request: 1, operation: .put(key: Array("k".utf8), value: Array("v".utf8))),
        KVCommand(client: 1, request: 2, operation: .append(key: Array("k".utf8), value: Array("w".utf8))),
        KVCommand(operation: .get(key: Array("k".utf8))),
        KVCommand(
            client: 1, request: 3,
            operation: .compareAndSet(key: Array("k".utf8), expected: Array("vw".utf8), new: [0])),
        KVCommand(
            client: 1, request: 4, operation: .compareAndSet(key: Array("n".utf8), expected: nil, new: [])),
        KVCommand(client: 1, request: 5, operation: .delete(key: Array("k".utf8))),
        KVCommand(client: 1, request: 5, operation: .delete(key: Array("k".utf8))),
        KVCommand(client: 9, request: 1, operation: .get(key: [])),
    ]

    static let results: [KVResult] = [KVResult(.ok, [1]), KVResult(.notFound), KVResult(.compareFailed, [])]

    /// A machine's rows after `commands` (as a snapshot carries them), then the commands again.
    static func snapshot(_ commands: [KVCommand]) -> [UInt8] {
        var machine = MemoryMachine(KVStateMachine(maxSessions: 2))
        for (index, command) in commands.enumerated() {
            _ = try? machine.apply(
                Proposal(id: ProposalID(node: 1, incarnation: 1, number: 1), command: command.encode()),
                slot: index + 1)
        }
        var writer = ByteWriter()
        LogWire.writeRows(
            machine.rows.map { MachineRow(key: $0.key, value: $0.value) }.sorted { $0.key < $1.key }, &writer)
        for command in commands { writer.writeBytes(command.encode()) }
        return writer.bytes
    }
}
