import PaxosCore

/// The versioned binary encoding of peer messages.
///
/// Layout (all integers big-endian):
///
///     message  = version:u8 type:u8 from:u32 done:i64 body
///     ballot   = round:u64 node:u32
///     bytes    = length:u32 byte*
///
/// Request bodies: `prepare` (0x01) seq:i64 ballot; `accept` (0x02) seq:i64 ballot value:bytes;
/// `decided` (0x03) seq:i64 value:bytes; `recoveryQuery` (0x04) with no body. Reply bodies:
/// `promise` (0x81) seq ballot has:u8 [ballot value]; `accepted` (0x82) seq ballot; `rejected`
/// (0x83) seq ballot promised:ballot; `decided` (0x84) seq value; `decidedAck` (0x85) seq;
/// `forgotten` (0x86) seq; `refused` (0x87) seq ballot; `recoveryReport` (0x88) maxSeq:i64
/// (-1 for none) maxRound:u64 recovering:u8.
///
/// Every test message crosses this codec in both directions, so nothing is shared by reference
/// between peers and the codec is exercised by the whole suite.
public enum PaxosWire {
    /// The only version this build writes and reads.
    public static let version: UInt8 = 1
    /// Instance numbers and done values, on the wire, are below this (so `done + 1` and every
    /// window sum stay far from overflow).
    public static let maxSeq: Int64 = 1 << 62
    /// The largest value accepted by default (64 MiB).
    public static let defaultMaxValueBytes = 64 << 20

    enum MessageType: UInt8 {
        case prepare = 0x01
        case accept = 0x02
        case decided = 0x03
        case recoveryQuery = 0x04
        case promise = 0x81
        case accepted = 0x82
        case rejected = 0x83
        case decidedReply = 0x84
        case decidedAck = 0x85
        case forgotten = 0x86
        case refused = 0x87
        case recoveryReport = 0x88
    }

    // MARK: Encoding

    public static func encode(_ envelope: RequestEnvelope) -> [UInt8] {
        var writer = ByteWriter(capacity: 40 + payloadSize(envelope.request))
        switch envelope.request {
        case .prepare(let seq, let ballot):
            header(&writer, .prepare, envelope.from, envelope.done)
            writer.write(Int64(seq))
            write(ballot, &writer)
        case .accept(let seq, let ballot, let value):
            header(&writer, .accept, envelope.from, envelope.done)
            writer.write(Int64(seq))
            write(ballot, &writer)
            writer.writeBytes(value)
        case .decided(let seq, let value):
            header(&writer, .decided, envelope.from, envelope.done)
            writer.write(Int64(seq))
            writer.writeBytes(value)
        case .recoveryQuery:
            header(&writer, .recoveryQuery, envelope.from, envelope.done)
        }
        return writer.bytes
    }

    public static func encode(_ envelope: ReplyEnvelope) -> [UInt8] {
        var writer = ByteWriter()
        switch envelope.reply {
        case .promise(let seq, let ballot, let accepted):
            header(&writer, .promise, envelope.from, envelope.done)
            writer.write(Int64(seq))
            write(ballot, &writer)
            if let accepted {
                writer.write(UInt8(1))
                write(accepted.ballot, &writer)
                writer.writeBytes(accepted.value)
            } else {
                writer.write(UInt8(0))
            }
        case .accepted(let seq, let ballot):
            header(&writer, .accepted, envelope.from, envelope.done)
            writer.write(Int64(seq))
            write(ballot, &writer)
        case .rejected(let seq, let ballot, let promised):
            header(&writer, .rejected, envelope.from, envelope.done)
            writer.write(Int64(seq))
            write(ballot, &writer)
            write(promised, &writer)
        case .decided(let seq, let value):
            header(&writer, .decidedReply, envelope.from, envelope.done)
            writer.write(Int64(seq))
            writer.writeBytes(value)
        case .decidedAck(let seq):
            header(&writer, .decidedAck, envelope.from, envelope.done)
            writer.write(Int64(seq))
        case .forgotten(let seq):
            header(&writer, .forgotten, envelope.from, envelope.done)
            writer.write(Int64(seq))
        case .refused(let seq, let ballot):
            header(&writer, .refused, envelope.from, envelope.done)
            writer.write(Int64(seq))
            write(ballot, &writer)
        case .recoveryReport(let maxSeq, let maxRound, let recovering):
            header(&writer, .recoveryReport, envelope.from, envelope.done)
            writer.write(Int64(maxSeq))
            writer.write(maxRound)
            writer.write(UInt8(recovering ? 1 : 0))
        }
        return writer.bytes
    }

    // MARK: Decoding

    public static func decodeRequest(
        _ bytes: [UInt8], maxValueBytes: Int = defaultMaxValueBytes
    ) throws(WireError) -> RequestEnvelope {
        var reader = ByteReader(bytes)
        let (type, from, done) = try readHeader(&reader)
        let request: Request
        switch type {
        case .prepare:
            request = .prepare(seq: try readSeq(&reader), ballot: try readBallot(&reader, "ballot"))
        case .accept:
            let seq = try readSeq(&reader)
            let ballot = try readBallot(&reader, "ballot")
            request = .accept(
                seq: seq, ballot: ballot, value: try reader.readBytes("value", limit: maxValueBytes))
        case .decided:
            let seq = try readSeq(&reader)
            request = .decided(seq: seq, value: try reader.readBytes("value", limit: maxValueBytes))
        case .recoveryQuery:
            request = .recoveryQuery
        default:
            throw WireError(
                .unknownMessageType, "type 0x\(String(type.rawValue, radix: 16)) is a reply, not a request")
        }
        try finish(reader)
        return RequestEnvelope(from: from, done: done, request: request)
    }

    public static func decodeReply(
        _ bytes: [UInt8], maxValueBytes: Int = defaultMaxValueBytes
    ) throws(WireError) -> ReplyEnvelope {
        var reader = ByteReader(bytes)
        let (type, from, done) = try readHeader(&reader)
        let reply: Reply
        switch type {
        case .promise:
            let seq = try readSeq(&reader)
            let ballot = try readBallot(&reader, "ballot")
            var accepted: AcceptedProposal?
            switch try reader.readUInt8("accepted flag") {
            case 0: accepted = nil
            case 1:
                let acceptedBallot = try readBallot(&reader, "accepted ballot")
                accepted = AcceptedProposal(
                    ballot: acceptedBallot,
                    value: try reader.readBytes("accepted value", limit: maxValueBytes))
            case let flag:
                throw WireError(.invalidField, "accepted flag must be 0 or 1, got \(flag)")
            }
            reply = .promise(seq: seq, ballot: ballot, accepted: accepted)
        case .accepted:
            reply = .accepted(seq: try readSeq(&reader), ballot: try readBallot(&reader, "ballot"))
        case .rejected:
            let seq = try readSeq(&reader)
            let ballot = try readBallot(&reader, "ballot")
            reply = .rejected(seq: seq, ballot: ballot, promised: try readBallot(&reader, "promised ballot"))
        case .decidedReply:
            let seq = try readSeq(&reader)
            reply = .decided(seq: seq, value: try reader.readBytes("value", limit: maxValueBytes))
        case .decidedAck:
            reply = .decidedAck(seq: try readSeq(&reader))
        case .forgotten:
            reply = .forgotten(seq: try readSeq(&reader))
        case .refused:
            reply = .refused(seq: try readSeq(&reader), ballot: try readBallot(&reader, "ballot"))
        case .recoveryReport:
            // Range-checked like every seq and round: the recovering node adds 1 to the highest
            // instance and proposes at the highest round + 1.
            let maxSeq = try reader.readInt64("max seq")
            guard maxSeq >= -1, maxSeq < Self.maxSeq else {
                throw WireError(.invalidField, "max seq \(maxSeq) is outside -1..<2^62")
            }
            let maxRound = try reader.readUInt64("max round")
            guard maxRound < Ballot.roundLimit else {
                throw WireError(.invalidField, "max round \(maxRound) is outside 0..<2^62")
            }
            let recovering: Bool
            switch try reader.readUInt8("recovering flag") {
            case 0: recovering = false
            case 1: recovering = true
            case let flag: throw WireError(.invalidField, "recovering flag must be 0 or 1, got \(flag)")
            }
            reply = .recoveryReport(maxSeq: Int(maxSeq), maxRound: maxRound, recovering: recovering)
        default:
            throw WireError(
                .unknownMessageType, "type 0x\(String(type.rawValue, radix: 16)) is a request, not a reply")
        }
        try finish(reader)
        return ReplyEnvelope(from: from, done: done, reply: reply)
    }

    // MARK: Pieces

    private static func payloadSize(_ request: Request) -> Int {
        switch request {
        case .prepare, .recoveryQuery: 0
        case .accept(_, _, let value), .decided(_, let value): value.count
        }
    }

    private static func header(_ writer: inout ByteWriter, _ type: MessageType, _ from: NodeID, _ done: Int) {
        writer.write(version)
        writer.write(type.rawValue)
        writer.write(from.rawValue)
        writer.write(Int64(done))
    }

    private static func write(_ ballot: Ballot, _ writer: inout ByteWriter) {
        writer.write(ballot.round)
        writer.write(ballot.node.rawValue)
    }

    private static func readHeader(_ reader: inout ByteReader) throws(WireError) -> (MessageType, NodeID, Int)
    {
        let messageVersion = try reader.readUInt8("version")
        guard messageVersion == version else {
            throw WireError(
                .unsupportedVersion,
                "version \(messageVersion) is not supported (this build speaks \(version))")
        }
        let rawType = try reader.readUInt8("message type")
        guard let type = MessageType(rawValue: rawType) else {
            throw WireError(.unknownMessageType, "unknown message type 0x\(String(rawType, radix: 16))")
        }
        let from = NodeID(try reader.readUInt32("sender"))
        let done = try reader.readInt64("done")
        guard done >= -1, done < Self.maxSeq else {
            throw WireError(.invalidField, "done \(done) is outside -1..<2^62")
        }
        return (type, from, Int(done))
    }

    private static func readSeq(_ reader: inout ByteReader) throws(WireError) -> Int {
        let seq = try reader.readInt64("seq")
        guard seq >= 0, seq < Self.maxSeq else {
            throw WireError(.invalidField, "seq \(seq) is outside 0..<2^62")
        }
        return Int(seq)
    }

    private static func readBallot(_ reader: inout ByteReader, _ field: String) throws(WireError) -> Ballot {
        let round = try reader.readUInt64(field + " round")
        guard round < Ballot.roundLimit else {
            throw WireError(.invalidField, "\(field) round \(round) is outside 0..<2^62")
        }
        return Ballot(round: round, node: NodeID(try reader.readUInt32(field + " node")))
    }

    private static func finish(_ reader: ByteReader) throws(WireError) {
        guard reader.remaining == 0 else {
            throw WireError(.trailingBytes, "\(reader.remaining) unexpected bytes after the message")
        }
    }
}
