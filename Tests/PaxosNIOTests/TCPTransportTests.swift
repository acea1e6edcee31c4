import Logging
import NIOPosix
import Paxos
import PaxosCore
import PaxosNIO
import PaxosTesting
import PaxosWire
import Synchronization
import Testing

@Suite("TCP transport", .serialized)
struct TCPTransportTests {
    @Test("three peers over real TCP agree on many instances started at different peers")
    func agreementOverTCP() async throws {
        let transports = try await makeTCPTransports(3)
        let cluster = try await LabCluster(3, seed: 41, transports: transports)
        defer { Task { await cluster.cleanup() } }
        for seq in 0..<30 {
            await cluster[seq % 3]!.start(seq, .text("value \(seq)"))
        }
        for seq in 0..<30 {
            try await cluster.waitn(seq, 3)
            #expect(await cluster[0]!.status(seq) == .decided(.text("value \(seq)")))
        }
        #expect(await transports[0].isConnected(to: 1))
    }

    @Test("a node of another cluster is refused, and the refusal is logged")
    func wrongClusterRefused() async throws {
        let recorder = LogRecorder()
        let ours = try await makeTCPTransports(2, clusterID: "ours", logger: recorder.logger())
        let port = try await listeningPort(ours[0])
        var configuration = TCPTransport.Configuration(
            clusterID: "theirs", me: 1,
            peers: [
                0: PeerAddress(host: "127.0.0.1", port: port), 1: PeerAddress(host: "127.0.0.1", port: 0),
            ])
        configuration.callTimeout = .seconds(2)
        let stranger = TCPTransport(configuration: configuration)
        ours[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        let request = RequestEnvelope(
            from: 1, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 1)))
        await #expect(throws: TransportError.self) { try await stranger.call(request, to: 0) }
        do {
            _ = try await stranger.call(request, to: 0)
        } catch {
            // Either the refusal itself, or the backoff that follows it, names the reason.
            #expect("\(error)".contains("wrong cluster"), "\(error)")
        }
        #expect(
            recorder.all.contains {
                $0.message == "refused peer connection"
                    && $0.metadata["reason"]?.contains("wrong cluster") == true
            })
        // A member of the cluster still gets through.
        let member = try await ours[1].call(request, to: 0)
        #expect(member.reply == .decidedAck(seq: 0))
        await stranger.shutdown()
        for transport in ours { await transport.shutdown() }
    }

    @Test("an unknown node id is refused")
    func unknownNodeRefused() async throws {
        let recorder = LogRecorder()
        let ours = try await makeTCPTransports(2, logger: recorder.logger())
        let port = try await listeningPort(ours[0])
        let stranger = TCPTransport(
            configuration: .init(
                clusterID: "test-cluster", me: 9,
                peers: [
                    0: PeerAddress(host: "127.0.0.1", port: port), 9: PeerAddress(host: "127.0.0.1", port: 0),
                ]))
        ours[0].serve { _ in nil }
        let request = RequestEnvelope(
            from: 9, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 9)))
        do {
            _ = try await stranger.call(request, to: 0)
            Issue.record("an unknown node got through")
        } catch {
            #expect("\(error)".contains("unknown node 9"), "\(error)")
        }
        #expect(recorder.all.contains { $0.metadata["reason"]?.contains("unknown node 9") == true })
        await stranger.shutdown()
        for transport in ours { await transport.shutdown() }
    }

    @Test(
        "malformed, oversized, truncated and out-of-place frames close that connection, and the node keeps serving"
    )
    func badFramesCloseTheConnection() async throws {
        let recorder = LogRecorder()
        let transports = try await makeTCPTransports(2, logger: recorder.logger())
        let port = try await listeningPort(transports[0])
        transports[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        let hello = frame(
            PeerFrame.hello(
                clusterID: "test-cluster", from: 1, to: 0,
                fromAddress: "127.0.0.1:\(try await listeningPort(transports[1]))"
            ).encodeBody())
        let cases: [(String, [UInt8])] = [
            ("garbage", Array("GET / HTTP/1.1\r\n\r\n".utf8)),
            ("oversized length", [0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
            ("unknown frame version", frame([9, 1])),
            ("unknown frame kind", frame([PeerFrame.version, 0x42])),
            ("request before hello", frame(PeerFrame.request(id: 1, payload: [1, 2]).encodeBody())),
            (
                "malformed request payload",
                hello + frame(PeerFrame.request(id: 1, payload: [1, 2, 3]).encodeBody())
            ),
            (
                "truncated frame",
                hello
                    + Array(
                        frame(PeerFrame.request(id: 1, payload: Array(repeating: 0, count: 100)).encodeBody())
                            .prefix(50))
            ),
        ]
        for (name, bytes) in cases where name != "truncated frame" {
            let received = try await sendRawAndAwaitClose(port: port, bytes)
            #expect(received != nil, "\(name): the connection was not closed")
        }
        // A partial frame waits for the rest; when the connection ends mid-frame, that is logged.
        let truncated = try #require(cases.last?.1)
        #expect(try await sendRawAndAwaitClose(port: port, truncated, timeout: .milliseconds(300)) == nil)
        var logged = false
        for _ in 0..<100 where !logged {
            logged = recorder.all.contains { $0.metadata["reason"]?.contains("middle of a frame") == true }
            if !logged { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(logged, "the truncated frame was not reported")
        #expect(recorder.all.contains { $0.message == "closed peer connection" })
        #expect(
            recorder.all.contains {
                $0.metadata["reason"]?.contains("malformed or forged request from node 1") == true
            },
            "the refusal of the malformed request was not the reason logged")
        // The node still serves a well-behaved peer.
        let request = RequestEnvelope(
            from: 1, done: -1, request: .prepare(seq: 3, ballot: Ballot(round: 1, node: 1)))
        #expect(try await transports[1].call(request, to: 0).reply == .decidedAck(seq: 3))
        for transport in transports { await transport.shutdown() }
    }

    @Test("a peer that is down fails calls promptly, and is reached again once it is back")
    func reconnects() async throws {
        let transports = try await makeTCPTransports(2)
        let port = try await listeningPort(transports[0])
        let request = RequestEnvelope(
            from: 1, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 1)))
        transports[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        #expect(try await transports[1].call(request, to: 0).reply == .decidedAck(seq: 0))
        await transports[0].shutdown()
        await #expect(throws: (any Error).self) { try await transports[1].call(request, to: 0) }
        // Restart a listener on the same port.
        let portOf1 = try await listeningPort(transports[1])
        let again = TCPTransport(
            configuration: .init(
                clusterID: "test-cluster", me: 0,
                peers: [
                    0: PeerAddress(host: "127.0.0.1", port: port),
                    1: PeerAddress(host: "127.0.0.1", port: portOf1),
                ]))
        try await again.start()
        again.serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        var answered = false
        for _ in 0..<100 where !answered {
            answered = (try? await transports[1].call(request, to: 0)) != nil
            if !answered { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(answered)
        await again.shutdown()
        await transports[1].shutdown()
    }
}

extension TCPTransportTests {
    @Test(
        "with an event loop executor, a request reaches its handler on the server's loop and a reply its callback on the client's, with no hop to another thread"
    )
    func requestsAndRepliesStayOnTheLoop() async throws {
        let groups = [
            MultiThreadedEventLoopGroup(numberOfThreads: 1), MultiThreadedEventLoopGroup(numberOfThreads: 1),
        ]
        let executors = groups.map { EventLoopExecutor($0.next()) }
        let transports = try await makeTCPTransports(2, executors: executors)
        let handledOnLoop = Mutex<[Bool]>([])
        transports[0].serve(.log) { _, payload, respond in
            handledOnLoop.withLock { $0.append(executors[0].eventLoop.inEventLoop) }
            respond(.reply(payload.reversed()))
        }
        for round in 0..<20 {
            let (onLoop, reply) = await withCheckedContinuation { continuation in
                transports[1].send([1, 2, UInt8(round)], on: .log, to: 0) { result in
                    continuation.resume(returning: (executors[1].eventLoop.inEventLoop, result))
                }
            }
            #expect(try reply.get() == [UInt8(round), 2, 1])
            #expect(onLoop, "round \(round): the reply's callback ran off the client's event loop")
        }
        #expect(handledOnLoop.withLock { $0 } == Array(repeating: true, count: 20))
        for transport in transports { await transport.shutdown() }
        for group in groups { try await group.shutdownGracefully() }
    }
}

func listeningPort(_ transport: TCPTransport) async throws -> Int {
    try #require(await transport.listeningPort)
}
