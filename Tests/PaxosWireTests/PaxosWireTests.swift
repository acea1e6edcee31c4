import PaxosCore
import PaxosWire
import Testing

@Suite("Wire codec")
struct PaxosWireTests {
    static let ballot = Ballot(round: 0x0102_0304_0506_0708, node: 7)
    static let value: Value = Array("a value ✓".utf8)

    static let requests: [RequestEnvelope] = [
        RequestEnvelope(from: 1, done: -1, request: .prepare(seq: 0, ballot: ballot)),
        RequestEnvelope(
            from: 2, done: 41, request: .accept(seq: Int(Int32.max) + 5, ballot: ballot, value: value)),
        RequestEnvelope(from: 3, done: 0, request: .accept(seq: 3, ballot: ballot, value: [])),
        RequestEnvelope(from: NodeID(UInt32.max), done: 9, request: .decided(seq: 12, value: value)),
        RequestEnvelope(from: 5, done: -1, request: .recoveryQuery),
        RequestEnvelope(from: 6, done: (1 << 62) - 1, request: .recoveryQuery),
    ]

    static let replies: [ReplyEnvelope] = [
        ReplyEnvelope(from: 1, done: -1, reply: .promise(seq: 4, ballot: ballot, accepted: nil)),
        ReplyEnvelope(
            from: 1, done: 3,
            reply: .promise(
                seq: 4, ballot: ballot,
                accepted: AcceptedProposal(ballot: Ballot(round: 2, node: 1), value: value))),
        ReplyEnvelope(from: 2, done: 0, reply: .accepted(seq: 5, ballot: ballot)),
        ReplyEnvelope(
            from: 2, done: 0,
            reply: .rejected(seq: 5, ballot: ballot, promised: Ballot(round: Ballot.roundLimit - 1, node: 3))
        ),
        ReplyEnvelope(from: 3, done: 7, reply: .decided(seq: 6, value: value)),
        ReplyEnvelope(from: 3, done: 7, reply: .decidedAck(seq: 6)),
        ReplyEnvelope(from: 4, done: 100, reply: .forgotten(seq: 1)),
        ReplyEnvelope(from: 4, done: 2, reply: .refused(seq: 9, ballot: ballot)),
        ReplyEnvelope(from: 5, done: -1, reply: .recoveryReport(maxSeq: -1, maxRound: 0, recovering: true)),
        ReplyEnvelope(
            from: 5, done: 8,
            reply: .recoveryReport(maxSeq: (1 << 62) - 1, maxRound: Ballot.roundLimit - 1, recovering: false)),
    ]

    @Test("every request type survives a round trip", arguments: requests)
    func requestRoundTrip(envelope: RequestEnvelope) throws {
        #expect(try PaxosWire.decodeRequest(PaxosWire.encode(envelope)) == envelope)
    }

    @Test("every reply type survives a round trip", arguments: replies)
    func replyRoundTrip(envelope: ReplyEnvelope) throws {
        #expect(try PaxosWire.decodeReply(PaxosWire.encode(envelope)) == envelope)
    }

    @Test("rounds from 2^62, done values and instance numbers out of range are refused, not answered")
    func outOfRangeNumbersAreRefused() throws {
        for round: UInt64 in [Ballot.roundLimit, (1 << 63) + 5, .max] {
            let high = Ballot(round: round, node: 2)
            let prepare = RequestEnvelope(from: 2, done: -1, request: .prepare(seq: 1, ballot: high))
            #expect(throws: WireError.self) { try PaxosWire.decodeRequest(PaxosWire.encode(prepare)) }
            let accept = RequestEnvelope(from: 2, done: -1, request: .accept(seq: 1, ballot: high, value: []))
            #expect(throws: WireError.self) { try PaxosWire.decodeRequest(PaxosWire.encode(accept)) }
            let rejected = ReplyEnvelope(
                from: 2, done: -1, reply: .rejected(seq: 1, ballot: Self.ballot, promised: high))
            #expect(throws: WireError.self) { try PaxosWire.decodeReply(PaxosWire.encode(rejected)) }
        }
        let bigDone = RequestEnvelope(from: 2, done: Int.max, request: .prepare(seq: 1, ballot: Self.ballot))
        #expect(throws: WireError.self) { try PaxosWire.decodeRequest(PaxosWire.encode(bigDone)) }
        let bigSeq = RequestEnvelope(from: 2, done: -1, request: .prepare(seq: 1 << 62, ballot: Self.ballot))
        #expect(throws: WireError.self) { try PaxosWire.decodeRequest(PaxosWire.encode(bigSeq)) }
        let top = RequestEnvelope(
            from: 2, done: (1 << 62) - 1,
            request: .prepare(seq: (1 << 62) - 1, ballot: Ballot(round: Ballot.roundLimit - 1, node: 2)))
        #expect(try PaxosWire.decodeRequest(PaxosWire.encode(top)) == top)
    }

    @Test("a recovery report's instance and round are range-checked like every other")
    func recoveryReportRanges() throws {
        for (maxSeq, maxRound) in [
            (-2, UInt64(0)), (1 << 62, 0), (Int.max, 0), (0, Ballot.roundLimit), (0, .max),
        ] {
            let report = ReplyEnvelope(
                from: 2, done: -1,
                reply: .recoveryReport(maxSeq: maxSeq, maxRound: maxRound, recovering: false))
            #expect(
                code { _ = try PaxosWire.decodeReply(PaxosWire.encode(report)) } == .invalidField,
                "maxSeq \(maxSeq), maxRound \(maxRound)")
        }
        // Laid out as documented: header, then maxSeq:i64, maxRound:u64 (big-endian), recovering:u8.
        let report = ReplyEnvelope(
            from: 1, done: -1, reply: .recoveryReport(maxSeq: 5, maxRound: 9, recovering: true))
        #expect(
            PaxosWire.encode(report)
                == [1, 0x88, 0, 0, 0, 1] + Array(repeating: 0xff, count: 8) + [0, 0, 0, 0, 0, 0, 0, 5]
                + [0, 0, 0, 0, 0, 0, 0, 9, 1])
        var badFlag = PaxosWire.encode(report)
        badFlag[badFlag.count - 1] = 2
        #expect(code { _ = try PaxosWire.decodeReply(badFlag) } == .invalidField)
        let query = RequestEnvelope(from: 1, done: -1, request: .recoveryQuery)
        #expect(PaxosWire.encode(query) == [1, 0x04, 0, 0, 0, 1] + Array(repeating: 0xff, count: 8))
        // Each is of its own side: a query is no reply, a report no request.
        #expect(code { _ = try PaxosWire.decodeReply(PaxosWire.encode(query)) } == .unknownMessageType)
        #expect(code { _ = try PaxosWire.decodeRequest(PaxosWire.encode(report)) } == .unknownMessageType)
    }

    @Test("every truncation of a valid message is refused as truncated")
    func truncations() {
        for envelope in Self.requests {
            let bytes = PaxosWire.encode(envelope)
            for length in 0..<bytes.count {
                #expect(throws: WireError.self) { try PaxosWire.decodeRequest(Array(bytes.prefix(length))) }
            }
        }
        for envelope in Self.replies {
            let bytes = PaxosWire.encode(envelope)
            for length in 0..<bytes.count {
                #expect(throws: WireError.self) { try PaxosWire.decodeReply(Array(bytes.prefix(length))) }
            }
        }
    }

    @Test("random bytes never crash the decoder: they decode or give a WireError")
    func randomBytes() {
        var random = SplitMix64(seed: 99)
        for _ in 0..<20_000 {
            let count = Int(random.next() % 64)
            var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            // Make most inputs get past the version check, so the fields are exercised too.
            if count > 0, random.next() % 4 != 0 { bytes[0] = PaxosWire.version }
            do { _ = try PaxosWire.decodeRequest(bytes) } catch {}
            do { _ = try PaxosWire.decodeReply(bytes) } catch {}
        }
    }

    @Test("mutated valid messages never crash the decoder")
    func mutatedMessages() {
        var random = SplitMix64(seed: 100)
        let encoded = Self.requests.map { PaxosWire.encode($0) } + Self.replies.map { PaxosWire.encode($0) }
        for _ in 0..<20_000 {
            var bytes = encoded[Int(random.next() % UInt64(encoded.count))]
            for _ in 0..<(1 + random.next() % 3) {
                bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            do { _ = try PaxosWire.decodeRequest(bytes) } catch {}
            do { _ = try PaxosWire.decodeReply(bytes) } catch {}
        }
    }

    func code(_ body: () throws -> Void) -> WireError.Code? {
        do {
            try body()
            return nil
        } catch let error as WireError {
            return error.code
        } catch {
            Issue.record("not a WireError: \(error)")
            return nil
        }
    }

    @Test("a message of another version is refused with a clear error")
    func unsupportedVersion() {
        var bytes = PaxosWire.encode(Self.requests[0])
        bytes[0] = 2
        #expect(code { _ = try PaxosWire.decodeRequest(bytes) } == .unsupportedVersion)
    }

    @Test("an unknown message type, or a reply where a request belongs, is refused")
    func unknownType() {
        var bytes = PaxosWire.encode(Self.requests[0])
        bytes[1] = 0x7f
        #expect(code { _ = try PaxosWire.decodeRequest(bytes) } == .unknownMessageType)
        #expect(
            code { _ = try PaxosWire.decodeRequest(PaxosWire.encode(Self.replies[0])) } == .unknownMessageType
        )
        #expect(
            code { _ = try PaxosWire.decodeReply(PaxosWire.encode(Self.requests[0])) } == .unknownMessageType)
    }

    @Test("a value above the limit is refused before it is read")
    func valueTooLarge() {
        let bytes = PaxosWire.encode(
            RequestEnvelope(
                from: 1, done: -1, request: .decided(seq: 1, value: Array(repeating: 1, count: 100))))
        #expect(code { _ = try PaxosWire.decodeRequest(bytes, maxValueBytes: 99) } == .valueTooLarge)
        #expect(code { _ = try PaxosWire.decodeRequest(bytes, maxValueBytes: 100) } == nil)
    }

    @Test("trailing bytes after a message are refused")
    func trailingBytes() {
        let bytes = PaxosWire.encode(Self.requests[0]) + [0]
        #expect(code { _ = try PaxosWire.decodeRequest(bytes) } == .trailingBytes)
    }

    @Test("negative sequence numbers and done values below -1 are refused")
    func invalidFields() {
        var negativeSeq = PaxosWire.encode(
            RequestEnvelope(from: 1, done: -1, request: .prepare(seq: 0, ballot: Self.ballot)))
        negativeSeq[14] = 0xff  // first byte of seq (after version, type, from:4, done:8)
        #expect(code { _ = try PaxosWire.decodeRequest(negativeSeq) } == .invalidField)
        var lowDone = PaxosWire.encode(Self.requests[0])
        for index in 6..<14 { lowDone[index] = 0xff }
        lowDone[13] = 0xfe  // done = -2
        #expect(code { _ = try PaxosWire.decodeRequest(lowDone) } == .invalidField)
    }
}

@Suite("Peer frames")
struct PeerFrameTests {
    static let frames: [PeerFrame] = [
        .hello(clusterID: "prod-eu", from: 1, to: 2, fromAddress: "10.0.0.1:7101"),
        .hello(clusterID: "", from: 0, to: NodeID(UInt32.max), fromAddress: "[::1]:7000"),
        .welcome,
        .refuse(reason: "wrong cluster"),
        .request(id: 1, payload: [1, 2, 3]),
        .request(id: .max, payload: []),
        .reply(id: 42, payload: Array("reply".utf8)),
        .noReply(id: 7),
    ]

    @Test("every frame survives a round trip", arguments: frames)
    func roundTrip(frame: PeerFrame) throws {
        #expect(try PeerFrame.decodeBody(frame.encodeBody()) == frame)
    }

    @Test("truncated and random frame bodies give a WireError, never a crash")
    func badBodies() {
        for frame in Self.frames where frame != .welcome {
            let body = frame.encodeBody()
            for length in 0..<body.count {
                if case .request = frame, length >= 10 { continue }  // a shorter payload is still a frame
                if case .reply = frame, length >= 10 { continue }
                #expect(throws: WireError.self) { try PeerFrame.decodeBody(Array(body.prefix(length))) }
            }
        }
        var random = SplitMix64(seed: 3)
        for _ in 0..<20_000 {
            var body = (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            if !body.isEmpty, random.next() % 4 != 0 { body[0] = PeerFrame.version }
            do { _ = try PeerFrame.decodeBody(body) } catch {}
        }
    }

    @Test("a hello whose cluster id is not UTF-8 is refused")
    func nonUTF8Cluster() {
        let body: [UInt8] = [
            PeerFrame.version, 1, 0, 0, 0, 2, 0xff, 0xfe, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0,
        ]
        #expect(throws: WireError.self) { try PeerFrame.decodeBody(body) }
    }

    @Test("a refusal whose reason is not UTF-8 is refused, as a hello's texts are")
    func refusalOfInvalidUTF8() throws {
        // Decoded lossily, 1024 such bytes became 1024 replacement characters (3 bytes each),
        // which the encoder then cut: the frame did not survive its own encoding.
        let body = [PeerFrame.version, 3] + [0, 0, 4, 0] + [UInt8](repeating: 0xFF, count: 1024)
        #expect(throws: WireError.self) { try PeerFrame.decodeBody(body) }
        let valid = PeerFrame.refuse(reason: String(repeating: "€", count: 341))
        #expect(try PeerFrame.decodeBody(valid.encodeBody()) == valid)
    }

    @Test("long texts are cut between characters, never inside one")
    func longTextsAreCutBetweenCharacters() throws {
        let long = String(repeating: "€", count: 400)  // 1200 bytes, 3 per character
        let refusal = try PeerFrame.decodeBody(PeerFrame.refuse(reason: long).encodeBody())
        #expect(refusal == .refuse(reason: String(repeating: "€", count: 341)))
        let cluster = String(repeating: "é", count: 200) + "x"  // 401 bytes, 2 per character
        let hello = PeerFrame.hello(clusterID: cluster, from: 1, to: 2, fromAddress: "a" + cluster)
        let decoded = try PeerFrame.decodeBody(hello.encodeBody())
        let short = String(repeating: "é", count: 127)
        #expect(decoded == .hello(clusterID: short, from: 1, to: 2, fromAddress: "a" + short))
    }
}
