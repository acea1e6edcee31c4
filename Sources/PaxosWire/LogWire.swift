import PaxosCore

/// The versioned binary encoding of replicated-log messages, and of log entries at rest.
///
/// Layout (big-endian): `message = version:u8 type:u8 from:u32 incarnation:u64 body` (the
/// incarnation is the sender's data directory's, ``Member/incarnation``). The type bytes do not
/// overlap ``PaxosWire``'s (``isLogMessage(_:)``), though a connection tells the protocols apart
/// by the frame's ``PeerChannel``, never by the payload.
///
///     ballot   = round:u64 node:u32              slot = i64
///     entry    = count:u32 (node:u32 incarnation:u64 number:u64 command:bytes)*
///     record   = slot has-ballot:u8 [ballot] chosen:u8 entry
///     rows     = count:u32 (space:u8 key:bytes value:bytes)*
///
/// Requests: prepare (0x21) ballot from:slot; accept (0x22) ballot firstUnchosen:slot
/// releasable:slot count:u32 (slot entry)*; fetch (0x23) from:slot; forward (0x24) entry;
/// pre-vote (0x25) ballot; snapshot chunk (0x26) token:u64 has-after:u8 [space:u8 key:bytes];
/// confirm (0x27) ballot round:u64.
/// Replies: promise (0xA1) ballot firstUnchosen:slot membershipSlot:slot count:u32 record*; accepted (0xA2) ballot
/// firstUnchosen applied count:u32 slot*; rejected (0xA3) ballot promised:ballot; chosen (0xA4)
/// firstUnchosen count:u32 (slot entry)*; forwarded (0xA6) taken:u8; pre-vote (0xA7) ballot
/// granted:u8 has-promised:u8 [promised:ballot]; snapshot available (0xA8) applied:slot;
/// snapshot chunk (0xA9) token:u64 applied:slot done:u8 has-after:u8 [space:u8 key:bytes] rows
/// (in strictly rising key order);
/// snapshot gone (0xAA); refused (0xAB) known:u64; confirmed (0xAC) ballot round:u64
/// has-promised:u8 [promised:ballot]; lease confirmed (0xAD) ballot round:u64. (0xA5 was the whole snapshot in one message, which no longer exists.)
public enum LogWire {
    /// 2: the sender's incarnation in every message, the promise's membership slot, `refused`.
    public static let version: UInt8 = 2
    /// Slots, on the wire, are below this.
    public static let maxSlot: Int64 = 1 << 62

    enum MessageType: UInt8 {
        case prepare = 0x21
        case accept = 0x22
        case fetch = 0x23
        case forward = 0x24
        case preVote = 0x25
        case snapshotChunkRequest = 0x26
        case confirm = 0x27
        case promise = 0xA1
        case accepted = 0xA2
        case rejected = 0xA3
        case chosen = 0xA4
        case forwarded = 0xA6
        case preVoteReply = 0xA7
        case snapshotAvailable = 0xA8
        case snapshotChunk = 0xA9
        case snapshotGone = 0xAA
        case refused = 0xAB
        case confirmed = 0xAC
        case leaseConfirmed = 0xAD
    }

    /// Whether an encoded message belongs to this protocol rather than ``PaxosWire``'s.
    public static func isLogMessage(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && MessageType(rawValue: bytes[1]) != nil
    }

    // MARK: Encoding

    public static func encode(_ envelope: LogRequestEnvelope) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch envelope.request {
        case .prepare(let ballot, let from):
            header(&writer, .prepare, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(Int64(from))
        case .accept(let ballot, let entries, let firstUnchosen, let releasable):
            header(&writer, .accept, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(Int64(firstUnchosen))
            writer.write(Int64(releasable))
            writeSlotEntries(entries, &writer)
        case .fetch(let from):
            header(&writer, .fetch, envelope.from, envelope.incarnation)
            writer.write(Int64(from))
        case .forward(let proposals):
            header(&writer, .forward, envelope.from, envelope.incarnation)
            write(proposals, &writer)
        case .preVote(let ballot):
            header(&writer, .preVote, envelope.from, envelope.incarnation)
            write(ballot, &writer)
        case .snapshotChunk(let token, let after):
            header(&writer, .snapshotChunkRequest, envelope.from, envelope.incarnation)
            writer.write(token)
            writeAfter(after, &writer)
        case .confirm(let ballot, let round):
            header(&writer, .confirm, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(round)
        }
        return writer.bytes
    }

    public static func encode(_ envelope: LogReplyEnvelope) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        switch envelope.reply {
        case .promise(let ballot, let firstUnchosen, let records, let membershipSlot):
            header(&writer, .promise, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(Int64(firstUnchosen))
            writer.write(Int64(membershipSlot))
            writer.write(UInt32(records.count))
            for reported in records {
                writer.write(Int64(reported.slot))
                if let ballot = reported.record.ballot {
                    writer.write(UInt8(1))
                    write(ballot, &writer)
                } else {
                    writer.write(UInt8(0))
                }
                writer.write(UInt8(reported.record.chosen ? 1 : 0))
                write(reported.record.entry, &writer)
            }
        case .accepted(let ballot, let slots, let firstUnchosen, let applied):
            header(&writer, .accepted, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(Int64(firstUnchosen))
            writer.write(Int64(applied))
            writer.write(UInt32(slots.count))
            for slot in slots { writer.write(Int64(slot)) }
        case .rejected(let ballot, let promised):
            header(&writer, .rejected, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            write(promised, &writer)
        case .chosen(let entries, let firstUnchosen):
            header(&writer, .chosen, envelope.from, envelope.incarnation)
            writer.write(Int64(firstUnchosen))
            writeSlotEntries(entries, &writer)
        case .snapshotAvailable(let applied):
            header(&writer, .snapshotAvailable, envelope.from, envelope.incarnation)
            writer.write(Int64(applied))
        case .snapshotChunk(let token, let applied, let after, let rows, let done):
            header(&writer, .snapshotChunk, envelope.from, envelope.incarnation)
            writer.write(token)
            writer.write(Int64(applied))
            writer.write(UInt8(done ? 1 : 0))
            writeAfter(after, &writer)
            writeRows(rows, &writer)
        case .refused(let known):
            header(&writer, .refused, envelope.from, envelope.incarnation)
            writer.write(known)
        case .snapshotGone:
            header(&writer, .snapshotGone, envelope.from, envelope.incarnation)
        case .forwarded(let taken):
            header(&writer, .forwarded, envelope.from, envelope.incarnation)
            writer.write(UInt8(taken ? 1 : 0))
        case .preVote(let ballot, let granted, let promised):
            header(&writer, .preVoteReply, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(UInt8(granted ? 1 : 0))
            writeOptional(promised, &writer)
        case .confirmed(let ballot, let round, let promised):
            header(&writer, .confirmed, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(round)
            writeOptional(promised, &writer)
        case .leaseConfirmed(let ballot, let round):
            header(&writer, .leaseConfirmed, envelope.from, envelope.incarnation)
            write(ballot, &writer)
            writer.write(round)
        }
        return writer.bytes
    }

    /// A log entry as stored at rest.
    public static func encodeEntry(_ entry: LogEntry) -> [UInt8] {
        var writer = ByteWriter(capacity: 16 + entry.reduce(0) { $0 + $1.command.count + 24 })
        write(entry, &writer)
        return writer.bytes
    }

    public static func decodeEntry(_ bytes: [UInt8], maxValueBytes: Int = PaxosWire.defaultMaxValueBytes)
        throws(WireError)
        -> LogEntry
    {
        var reader = ByteReader(bytes)
        let entry = try readEntry(&reader, maxValueBytes)
        try finish(reader)
        return entry
    }

    // MARK: Decoding

    public static func decodeRequest(_ bytes: [UInt8], maxValueBytes: Int = PaxosWire.defaultMaxValueBytes)
        throws(WireError) -> LogRequestEnvelope
    {
        var reader = ByteReader(bytes)
        let (type, from, incarnation) = try readHeader(&reader)
        let request: LogRequest
        switch type {
        case .prepare:
            request = .prepare(ballot: try readBallot(&reader), from: try readSlot(&reader, "from"))
        case .accept:
            let ballot = try readBallot(&reader)
            let firstUnchosen = try readSlot(&reader, "first unchosen")
            let releasable = try readSlot(&reader, "releasable")
            let entries = try readSlotEntries(&reader, maxValueBytes)
            request = .accept(
                ballot: ballot, entries: entries, firstUnchosen: firstUnchosen, releasable: releasable)
        case .fetch:
            request = .fetch(from: try readSlot(&reader, "from"))
        case .forward:
            request = .forward(try readEntry(&reader, maxValueBytes))
        case .preVote:
            request = .preVote(ballot: try readBallot(&reader))
        case .snapshotChunkRequest:
            let token = try reader.readUInt64("token")
            request = .snapshotChunk(token: token, after: try readAfter(&reader, maxValueBytes))
        case .confirm:
            request = .confirm(ballot: try readBallot(&reader), round: try reader.readUInt64("round"))
        default:
            throw WireError(.unknownMessageType, "log message type \(type.rawValue) is not a request")
        }
        try finish(reader)
        return LogRequestEnvelope(from: from, incarnation: incarnation, request: request)
    }

    public static func decodeReply(_ bytes: [UInt8], maxValueBytes: Int = PaxosWire.defaultMaxValueBytes)
        throws(WireError) -> LogReplyEnvelope
    {
        var reader = ByteReader(bytes)
        let (type, from, incarnation) = try readHeader(&reader)
        let reply: LogReply
        switch type {
        case .promise:
            let ballot = try readBallot(&reader)
            let firstUnchosen = try readSlot(&reader, "first unchosen")
            let membershipSlot = try readSlot(&reader, "membership slot")
            let count = try readCount(&reader, minimumItemBytes: 14)
            var records: [ReportedRecord] = []
            records.reserveCapacity(count)
            for _ in 0..<count {
                let slot = try readSlot(&reader, "slot")
                let hasBallot = try readFlag(&reader, "has ballot")
                let recordBallot = hasBallot ? try readBallot(&reader) : nil
                let chosen = try readFlag(&reader, "chosen")
                let entry = try readEntry(&reader, maxValueBytes)
                records.append(
                    ReportedRecord(
                        slot: slot, record: LogRecord(ballot: recordBallot, entry: entry, chosen: chosen)))
            }
            reply = .promise(
                ballot: ballot, firstUnchosen: firstUnchosen, records: records, membershipSlot: membershipSlot
            )
        case .accepted:
            let ballot = try readBallot(&reader)
            let firstUnchosen = try readSlot(&reader, "first unchosen")
            let applied = try readSlot(&reader, "applied")
            let count = try readCount(&reader, minimumItemBytes: 8)
            var slots: [Slot] = []
            slots.reserveCapacity(count)
            for _ in 0..<count { slots.append(try readSlot(&reader, "slot")) }
            reply = .accepted(ballot: ballot, slots: slots, firstUnchosen: firstUnchosen, applied: applied)
        case .rejected:
            reply = .rejected(ballot: try readBallot(&reader), promised: try readBallot(&reader))
        case .chosen:
            let firstUnchosen = try readSlot(&reader, "first unchosen")
            let entries = try readSlotEntries(&reader, maxValueBytes)
            reply = .chosen(entries: entries, firstUnchosen: firstUnchosen)
        case .snapshotAvailable:
            reply = .snapshotAvailable(applied: try readSlot(&reader, "applied"))
        case .snapshotChunk:
            let token = try reader.readUInt64("token")
            let applied = try readSlot(&reader, "applied")
            let done = try readFlag(&reader, "done")
            let after = try readAfter(&reader, maxValueBytes)
            reply = .snapshotChunk(
                token: token, applied: applied, after: after, rows: try readRows(&reader, maxValueBytes),
                done: done)
        case .snapshotGone:
            reply = .snapshotGone
        case .refused:
            reply = .refused(known: try reader.readUInt64("known incarnation"))
        case .forwarded:
            reply = .forwarded(taken: try readFlag(&reader, "taken"))
        case .preVoteReply:
            let ballot = try readBallot(&reader)
            let granted = try readFlag(&reader, "granted")
            let promised = try readFlag(&reader, "has promised") ? try readBallot(&reader) : nil
            reply = .preVote(ballot: ballot, granted: granted, promised: promised)
        case .confirmed:
            let ballot = try readBallot(&reader)
            let round = try reader.readUInt64("round")
            let promised = try readFlag(&reader, "has promised") ? try readBallot(&reader) : nil
            reply = .confirmed(ballot: ballot, round: round, promised: promised)
        case .leaseConfirmed:
            reply = .leaseConfirmed(ballot: try readBallot(&reader), round: try reader.readUInt64("round"))
        default:
            throw WireError(.unknownMessageType, "log message type \(type.rawValue) is not a reply")
        }
        try finish(reader)
        return LogReplyEnvelope(from: from, incarnation: incarnation, reply: reply)
    }

    // MARK: Pieces

    private static func writeOptional(_ ballot: Ballot?, _ writer: inout ByteWriter) {
        if let ballot {
            writer.write(UInt8(1))
            write(ballot, &writer)
        } else {
            writer.write(UInt8(0))
        }
    }

    private static func header(
        _ writer: inout ByteWriter, _ type: MessageType, _ from: NodeID, _ incarnation: UInt64
    ) {
        writer.write(version)
        writer.write(type.rawValue)
        writer.write(from.rawValue)
        writer.write(incarnation)
    }

    private static func readHeader(_ reader: inout ByteReader) throws(WireError) -> (
        MessageType, NodeID, UInt64
    ) {
        let messageVersion = try reader.readUInt8("version")
        guard messageVersion == version else {
            throw WireError(
                .unsupportedVersion,
                "log message version \(messageVersion) is not supported (this build speaks \(version))")
        }
        let raw = try reader.readUInt8("message type")
        guard let type = MessageType(rawValue: raw) else {
            throw WireError(.unknownMessageType, "unknown log message type \(raw)")
        }
        let from = NodeID(try reader.readUInt32("sender"))
        return (type, from, try reader.readUInt64("sender incarnation"))
    }

    private static func finish(_ reader: ByteReader) throws(WireError) {
        guard reader.remaining == 0 else {
            throw WireError(.trailingBytes, "\(reader.remaining) unexpected bytes after the message")
        }
    }

    private static func write(_ ballot: Ballot, _ writer: inout ByteWriter) {
        writer.write(ballot.round)
        writer.write(ballot.node.rawValue)
    }

    private static func readBallot(_ reader: inout ByteReader) throws(WireError) -> Ballot {
        let round = try reader.readUInt64("ballot round")
        guard round < Ballot.roundLimit else {
            throw WireError(.invalidField, "ballot round \(round) is outside 0..<2^62")
        }
        return Ballot(round: round, node: NodeID(try reader.readUInt32("ballot node")))
    }

    private static func readSlot(_ reader: inout ByteReader, _ field: String) throws(WireError) -> Slot {
        let value = try reader.readInt64(field)
        // Far below Int.max, so slot arithmetic (slot + 1, window sums) can never overflow.
        guard value >= 0, value < Self.maxSlot else {
            throw WireError(.invalidField, "\(field) \(value) is outside 0..<2^62")
        }
        return Slot(value)
    }

    private static func readFlag(_ reader: inout ByteReader, _ field: String) throws(WireError) -> Bool {
        switch try reader.readUInt8(field) {
        case 0: return false
        case 1: return true
        case let other: throw WireError(.invalidField, "\(field) flag is \(other), not 0 or 1")
        }
    }

    /// A count whose items could not possibly fit in what is left is refused before anything is
    /// allocated for them.
    private static func readCount(_ reader: inout ByteReader, minimumItemBytes: Int) throws(WireError) -> Int
    {
        let count = Int(try reader.readUInt32("count"))
        guard count <= reader.remaining / minimumItemBytes else {
            throw WireError(.truncated, "count \(count) does not fit in the \(reader.remaining) bytes left")
        }
        return count
    }

    private static func writeSlotEntries(_ entries: [SlotEntry], _ writer: inout ByteWriter) {
        writer.write(UInt32(entries.count))
        for item in entries {
            writer.write(Int64(item.slot))
            write(item.entry, &writer)
        }
    }

    private static func readSlotEntries(_ reader: inout ByteReader, _ maxValueBytes: Int) throws(WireError)
        -> [SlotEntry]
    {
        let count = try readCount(&reader, minimumItemBytes: 12)
        var entries: [SlotEntry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let slot = try readSlot(&reader, "slot")
            entries.append(SlotEntry(slot: slot, entry: try readEntry(&reader, maxValueBytes)))
        }
        return entries
    }

    private static func write(_ entry: LogEntry, _ writer: inout ByteWriter) {
        writer.write(UInt32(entry.count))
        for proposal in entry {
            writer.write(proposal.id.node.rawValue)
            writer.write(proposal.id.incarnation)
            writer.write(proposal.id.number)
            writer.writeBytes(proposal.command)
        }
    }

    private static func readEntry(_ reader: inout ByteReader, _ maxValueBytes: Int) throws(WireError)
        -> LogEntry
    {
        let count = try readCount(&reader, minimumItemBytes: 24)
        var entry: LogEntry = []
        entry.reserveCapacity(count)
        for _ in 0..<count {
            let node = NodeID(try reader.readUInt32("proposal node"))
            let incarnation = try reader.readUInt64("proposal incarnation")
            let number = try reader.readUInt64("proposal number")
            let command = try reader.readBytes("command", limit: maxValueBytes)
            entry.append(
                Proposal(
                    id: ProposalID(node: node, incarnation: incarnation, number: number), command: command))
        }
        return entry
    }

    private static func writeAfter(_ after: MachineKey?, _ writer: inout ByteWriter) {
        guard let after else {
            writer.write(UInt8(0))
            return
        }
        writer.write(UInt8(1))
        writer.write(after.space)
        writer.writeBytes(after.key)
    }

    private static func readAfter(_ reader: inout ByteReader, _ maxValueBytes: Int) throws(WireError)
        -> MachineKey?
    {
        guard try readFlag(&reader, "has after") else { return nil }
        return MachineKey(
            space: try reader.readUInt8("after space"),
            key: try reader.readBytes("after key", limit: maxValueBytes))
    }

    /// State machine rows, as carried by a snapshot chunk, in the order given.
    public static func writeRows(_ rows: [MachineRow], _ writer: inout ByteWriter) {
        writer.write(UInt32(rows.count))
        for row in rows {
            writer.write(row.key.space)
            writer.writeBytes(row.key.key)
            writer.writeBytes(row.value)
        }
    }

    /// Rows as ``writeRows(_:_:)`` wrote them; refused unless their keys strictly rise, so a
    /// chunk names every row once and in the order the receiver stages them.
    public static func readRows(_ reader: inout ByteReader, _ maxValueBytes: Int) throws(WireError)
        -> [MachineRow]
    {
        let count = try readCount(&reader, minimumItemBytes: 9)
        var rows: [MachineRow] = []
        rows.reserveCapacity(count)
        for _ in 0..<count {
            let space = try reader.readUInt8("row space")
            let key = MachineKey(space: space, key: try reader.readBytes("row key", limit: maxValueBytes))
            if let last = rows.last, !(last.key < key) {
                throw WireError(.invalidField, "snapshot rows are not in strictly rising key order")
            }
            rows.append(MachineRow(key: key, value: try reader.readBytes("row value", limit: maxValueBytes)))
        }
        return rows
    }
}
