import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Paxos
import PaxosCertificates
import PaxosCore
import PaxosTesting
import PaxosWire
import Synchronization
import Testing

@testable import PaxosNIO

/// Peers are who their certificates say, and an unauthenticated connection costs little.
@Suite("Peer authentication and connection bounds", .serialized)
struct PeerSecurityTests {
    static let prepare = RequestEnvelope(
        from: 1, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 1)))

    /// A transport for `me` that knows the given listening ports of the others, unstarted.
    static func stranger(
        me: NodeID, ports: [NodeID: Int], tls: PeerTLS?, logger: Logger = quietLogger
    ) -> TCPTransport {
        var peers = ports.mapValues { PeerAddress(host: "127.0.0.1", port: $0) }
        peers[me] = peers[me] ?? PeerAddress(host: "127.0.0.1", port: 0)
        var configuration = TCPTransport.Configuration(clusterID: "test-cluster", me: me, peers: peers)
        configuration.tls = tls
        return TCPTransport(configuration: configuration, logger: logger)
    }

    /// PeerTLS for a certificate whatever it names: a hostile peer's.
    static func unchecked(_ issued: ClusterAuthority.Issued, node: NodeID) throws -> PeerTLS {
        try PeerTLS(
            certificateChain: NIOSSLCertificate.fromPEMBytes(Array(issued.certificatePEM.utf8)),
            privateKey: NIOSSLPrivateKey(bytes: Array(issued.privateKeyPEM.utf8), format: .pem),
            trustRoots: NIOSSLCertificate.fromPEMBytes(Array(testAuthority.certificatePEM.utf8)), node: node)
    }

    static func ports(_ transports: [TCPTransport]) async throws -> [NodeID: Int] {
        var ports: [NodeID: Int] = [:]
        for transport in transports { ports[transport.configuration.me] = try await listeningPort(transport) }
        return ports
    }

    /// Serves every prepare with an ack, counting what reached the handler.
    static func serveAcks(_ transport: TCPTransport, counter: Counter) async {
        transport.serve { request in
            counter.increment()
            return ReplyEnvelope(
                from: transport.configuration.me, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
    }

    /// ``refusals(_:containing:)`` within 5 s: a refused peer's call may give up before the
    /// listener has read its hello and logged why.
    static func refused(_ recorder: LogRecorder, containing text: String) async -> Bool {
        for _ in 0..<100 {
            if refusals(recorder, containing: text) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return refusals(recorder, containing: text)
    }

    static func refusals(_ recorder: LogRecorder, containing text: String) -> Bool {
        recorder.all.contains {
            $0.message == "refused peer connection" && $0.metadata["reason"]?.contains(text) == true
        }
    }

    @Test("a peer without a certificate, or with one from another CA, is refused; members get through")
    func forgedPeersRefused() async throws {
        let ours = try await makeTCPTransports(2, tls: true)
        let counter = Counter()
        await Self.serveAcks(ours[0], counter: counter)
        let ports = try await Self.ports(ours)
        let plaintext = Self.stranger(me: 1, ports: ports, tls: nil)
        let otherCA = try ClusterAuthority(name: "someone else's CA")
        let foreign = Self.stranger(me: 1, ports: ports, tls: try peerTLS(1, authority: otherCA))
        for stranger in [plaintext, foreign] {
            await #expect(throws: (any Error).self) { try await stranger.call(Self.prepare, to: 0) }
            await stranger.shutdown()
        }
        #expect(counter.value == 0, "a request from an unauthenticated peer reached the node")
        #expect(try await ours[1].call(Self.prepare, to: 0).reply == .decidedAck(seq: 0))
        #expect(counter.value == 1)
        for transport in ours { await transport.shutdown() }
    }

    @Test("a valid certificate for one node cannot speak as another")
    func certificateCannotImpersonate() async throws {
        let recorder = LogRecorder()
        let ours = try await makeTCPTransports(3, tls: true, logger: recorder.logger())
        let counter = Counter()
        await Self.serveAcks(ours[0], counter: counter)
        let ports = try await Self.ports(ours)
        // Node 1's key and certificate, node 2's id and address in the hello and the messages.
        let impostor = Self.stranger(me: 2, ports: ports, tls: try peerTLS(1))
        let asTwo = RequestEnvelope(
            from: 2, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 2)))
        do {
            _ = try await impostor.call(asTwo, to: 0)
            Issue.record("node 1's certificate spoke as node 2")
        } catch {}
        #expect(counter.value == 0)
        // The impostor's call may time out on a loaded machine before node 0 has read its hello
        // and logged the refusal.
        #expect(await Self.refused(recorder, containing: "node 1's certificate cannot speak as node 2"))
        // The real node 2 is not affected. It retries as real peers do: one debug TLS handshake
        // in the loaded full suite outlasted a 2 s call in CI.
        var answer: ReplyEnvelope?
        for _ in 0..<5 where answer == nil { answer = try? await ours[2].call(asTwo, to: 0) }
        #expect(answer?.reply == .decidedAck(seq: 0))
        await impostor.shutdown()
        for transport in ours { await transport.shutdown() }
    }

    @Test("a certificate that names several nodes is refused")
    func certificateNamingSeveralNodesRefused() async throws {
        let recorder = LogRecorder()
        let ours = try await makeTCPTransports(2, tls: true, logger: recorder.logger())
        let counter = Counter()
        await Self.serveAcks(ours[0], counter: counter)
        // PeerTLS refuses such a certificate for this node; a hostile peer need not.
        let issued = try testAuthority.issue(node: 1, extraNodeNames: [2])
        let tls = try PeerTLS(
            certificateChain: NIOSSLCertificate.fromPEMBytes(Array(issued.certificatePEM.utf8)),
            privateKey: NIOSSLPrivateKey(bytes: Array(issued.privateKeyPEM.utf8), format: .pem),
            trustRoots: NIOSSLCertificate.fromPEMBytes(Array(testAuthority.certificatePEM.utf8)), node: 1)
        let ambiguous = Self.stranger(me: 1, ports: try await Self.ports(ours), tls: tls)
        await #expect(throws: (any Error).self) { try await ambiguous.call(Self.prepare, to: 0) }
        #expect(counter.value == 0)
        #expect(await Self.refused(recorder, containing: "names several nodes"))
        await ambiguous.shutdown()
        for transport in ours { await transport.shutdown() }
    }

    @Test("the dialer refuses a listener whose certificate names another node")
    func dialerChecksTheListener() async throws {
        let ours = try await makeTCPTransports(2, tls: true)
        // Node 1's address is held by a process with node 2's certificate.
        var configuration = TCPTransport.Configuration(
            clusterID: "test-cluster", me: 1,
            peers: [
                0: PeerAddress(host: "127.0.0.1", port: try await listeningPort(ours[0])),
                1: .init(host: "127.0.0.1", port: 0),
            ])
        configuration.tls = try peerTLS(2)
        let squatter = TCPTransport(configuration: configuration, logger: quietLogger)
        let port = try await squatter.start()
        let counter = Counter()
        await Self.serveAcks(squatter, counter: counter)
        await ours[0].setAddress(PeerAddress(host: "127.0.0.1", port: port), for: 1)
        let request = RequestEnvelope(
            from: 0, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 0)))
        await #expect(throws: (any Error).self) { try await ours[0].call(request, to: 1) }
        #expect(counter.value == 0, "the node sent its request to a listener that is not node 1")
        await squatter.shutdown()
        for transport in ours { await transport.shutdown() }
    }

    @Test("before the hello is accepted, a frame above the handshake limit closes the connection at once")
    func largeFrameBeforeHandshakeCloses() async throws {
        let transports = try await makeTCPTransports(1) { $0.handshakeTimeout = .seconds(120) }
        let port = try await listeningPort(transports[0])
        // The header of a 1 MiB frame and a little of its body: under the full frame limit, so
        // only the handshake limit can close it (the handshake timeout is far away).
        let header: [UInt8] = [0x00, 0x10, 0x00, 0x00]
        let received = try await sendRawAndAwaitClose(
            port: port, header + Array(repeating: 7, count: 1000), timeout: .seconds(20))
        #expect(received != nil, "the connection was held open for the rest of a large frame")
        for transport in transports { await transport.shutdown() }
    }

    @Test("a connection that does not finish its handshake in time is closed", arguments: [false, true])
    func handshakeTimesOut(tls: Bool) async throws {
        let transports = try await makeTCPTransports(2, tls: tls) { $0.handshakeTimeout = .milliseconds(300) }
        let port = try await listeningPort(transports[0])
        // Half a hello.
        let hello = frame(
            PeerFrame.hello(clusterID: "test-cluster", from: 1, to: 0, fromAddress: "127.0.0.1:1")
                .encodeBody())
        // Over TLS, nothing at all: garbage would fail the TLS handshake at once.
        let received = try await sendRawAndAwaitClose(
            port: port, tls ? [] : Array(hello.prefix(hello.count / 2)), timeout: .seconds(20))
        #expect(received != nil, "a half-sent hello held its connection open")
        // A real peer still completes its handshake within the same timeout.
        transports[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        // A real peer redials when a call fails: a TLS handshake of a debug build on a loaded
        // machine may take longer than 300 ms once, but not every time.
        var reply: Reply?
        for _ in 0..<20 where reply == nil {
            reply = try? await transports[1].call(Self.prepare, to: 0).reply
            if reply == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(reply == .decidedAck(seq: 0))
        for transport in transports { await transport.shutdown() }
    }

    @Test("connections over the cap are closed at accept, and peers get in again once others close")
    func connectionCap() async throws {
        let recorder = LogRecorder()
        let transports = try await makeTCPTransports(2, logger: recorder.logger()) {
            $0.maxInboundConnections = 2
            $0.handshakeTimeout = .seconds(120)
        }
        let port = try await listeningPort(transports[0])
        transports[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        // Three raw connections; accepted connections are admitted on their own event loops,
        // in any order, so which one is over the cap is not known: exactly one must be closed.
        var raw: [any Channel] = []
        for _ in 0..<3 {
            raw.append(
                try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: "127.0.0.1", port: port).get())
        }
        for _ in 0..<1000 where raw.allSatisfy(\.isActive) { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(raw.filter { !$0.isActive }.count == 1, "connections over the cap: not exactly one closed")
        #expect(recorder.all.contains { $0.message == "refusing peer connections: too many open" })
        await #expect(throws: (any Error).self) { try await transports[1].call(Self.prepare, to: 0) }
        for channel in raw { try? await channel.close() }
        // The peer reconnects after its backoff once the idle connections are gone.
        var reply: ReplyEnvelope?
        for _ in 0..<200 where reply == nil {
            reply = try? await transports[1].call(Self.prepare, to: 0)
            if reply == nil { try await Task.sleep(for: .milliseconds(25)) }
        }
        #expect(reply?.reply == .decidedAck(seq: 0))
        for transport in transports { await transport.shutdown() }
    }

    @Test("one connection has at most maxRequestsInFlight requests in the handlers; the rest wait their turn")
    func requestsInFlightBounded() async throws {
        let transports = try await makeTCPTransports(2) {
            $0.maxRequestsInFlight = 2
            $0.callTimeout = .seconds(30)
        }
        let entered = Counter()
        let gate = Gate()
        transports[0].serve { request in
            entered.increment()
            await gate.wait()
            return ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        try await withThrowingTaskGroup { group in
            for seq in 0..<3 {
                group.addTask {
                    let request = RequestEnvelope(
                        from: 1, done: -1, request: .prepare(seq: seq, ballot: Ballot(round: 1, node: 1)))
                    _ = try await transports[1].call(request, to: 0)
                }
            }
            for _ in 0..<500 where entered.value < 2 { try await Task.sleep(for: .milliseconds(10)) }
            // Time for a third to get in, if it could.
            try await Task.sleep(for: .milliseconds(300))
            #expect(entered.value == 2, "\(entered.value) requests were in the handler at once")
            gate.open()
            try await group.waitForAll()
        }
        #expect(entered.value == 3)
        for transport in transports { await transport.shutdown() }
    }

    @Test("warnings about unauthenticated connections are rate limited, and what was left out is counted")
    func unauthenticatedWarningsThrottled() async throws {
        let recorder = LogRecorder()
        let throttle = LogThrottle(perWindow: 20, window: .milliseconds(50))
        for i in 0..<25 {
            throttle.warning(recorder.logger(), "refused peer connection", metadata: ["i": "\(i)"])
        }
        #expect(recorder.all.count == 20)
        try await Task.sleep(for: .milliseconds(60))
        throttle.warning(recorder.logger(), "refused peer connection", metadata: [:])
        let summary = recorder.all.filter { $0.message.hasPrefix("left out warnings") }
        #expect(summary.count == 1 && summary.first?.metadata["count"] == "5", "\(summary)")
        #expect(recorder.all.count == 22)
    }

    @Test("authenticated connections leave the unauthenticated cap: two peers get in with a cap of one")
    func authenticatedConnectionsLeaveTheCap() async throws {
        let transports = try await makeTCPTransports(3) { $0.maxInboundConnections = 1 }
        transports[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        #expect(try await transports[1].call(Self.prepare, to: 0).reply == .decidedAck(seq: 0))
        let asTwo = RequestEnvelope(
            from: 2, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 2)))
        #expect(try await transports[2].call(asTwo, to: 0).reply == .decidedAck(seq: 0))
        #expect(try await transports[1].call(Self.prepare, to: 0).reply == .decidedAck(seq: 0))
        for transport in transports { await transport.shutdown() }
    }

    /// With certificates as `paxosctl certs` makes them (every node's names 127.0.0.1), NIOSSL's
    /// host name check passes for any node's certificate (it matches the IP SAN against the
    /// dialed address); only PeerClient's explicit check stops the squatter. (From a review.)
    @Test(
        "dialer: a squatter whose certificate carries the dialed IP passes TLS; the explicit check stops it")
    func squatterWithIPSAN() async throws {
        let ours = try await makeTCPTransports(2, tls: true)
        var configuration = TCPTransport.Configuration(
            clusterID: "test-cluster", me: 1,
            peers: [
                0: PeerAddress(host: "127.0.0.1", port: try await listeningPort(ours[0])),
                1: .init(host: "127.0.0.1", port: 0),
            ])
        let issued = try testAuthority.issue(
            node: 2, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"])
        configuration.tls = try PeerSecurityTests.unchecked(issued, node: 2)
        let squatter = TCPTransport(configuration: configuration, logger: quietLogger)
        let port = try await squatter.start()
        let counter = Counter()
        squatter.serve { request in
            counter.increment()
            return ReplyEnvelope(from: 1, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        await ours[0].setAddress(PeerAddress(host: "127.0.0.1", port: port), for: 1)
        let request = RequestEnvelope(
            from: 0, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 0)))
        var message = ""
        do {
            _ = try await ours[0].call(request, to: 1)
            Issue.record("the request went to a listener holding node 2's certificate")
        } catch { message = "\(error)" }
        #expect(counter.value == 0)
        // The TLS handshake succeeded: the refusal comes from the explicit check.
        #expect(message.contains("presented a certificate of node 2"), "\(message)")
        await squatter.shutdown()
        for transport in ours { await transport.shutdown() }
    }

    /// Found by a review: authenticated connections never time out, so before one connection per
    /// peer, one node's certificate could hold every inbound slot.
    @Test("one node's certificate cannot hold the inbound slots: a newer connection replaces the older")
    func authenticatedConnectionsExhaustTheCap() async throws {
        let transports = try await makeTCPTransports(3, tls: true) {
            $0.maxInboundConnections = 3
            $0.handshakeTimeout = .milliseconds(300)
        }
        transports[0].serve { request in
            ReplyEnvelope(from: 0, done: -1, reply: .decidedAck(seq: request.request.seq))
        }
        let ports = try await Self.ports(transports)
        // Three processes holding node 1's key, each with one persistent connection to node 0.
        var hogs: [TCPTransport] = []
        for _ in 0..<3 {
            let hog = Self.stranger(me: 1, ports: ports, tls: try peerTLS(1))
            // The hello's fromAddress must be what node 0 knows for node 1.
            await hog.setAddress(PeerAddress(host: "127.0.0.1", port: ports[1]!), for: 1)
            // It redials as a real peer does: one debug TLS handshake on a loaded machine can take
            // longer than the 300 ms under test (the full suite failed here once).
            var connected = false
            for _ in 0..<20 where !connected {
                connected = (try? await hog.call(Self.prepare, to: 0)) != nil
                if !connected { try await Task.sleep(for: .milliseconds(50)) }
            }
            try #require(connected, "a connection with node 1's certificate")
            hogs.append(hog)
        }
        // Well past the handshake timeout: the hogs are authenticated and stay.
        try await Task.sleep(for: .seconds(1))
        let asTwo = RequestEnvelope(
            from: 2, done: -1, request: .prepare(seq: 0, ballot: Ballot(round: 1, node: 2)))
        var reply: ReplyEnvelope?
        for _ in 0..<40 where reply == nil {
            reply = try? await transports[2].call(asTwo, to: 0)
            if reply == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(
            reply != nil, "node 2 is locked out of node 0 by three connections holding node 1's certificate")
        for hog in hogs { await hog.shutdown() }
        for transport in transports { await transport.shutdown() }
    }

    @Test("unauthenticated garbage connections do not flood the log")
    func garbageDoesNotFloodTheLog() async throws {
        let recorder = LogRecorder()
        // One window for the whole run: on a loaded machine the 50 connections took longer than
        // the default 10 s, and a second window rightly logged more (the full suite failed).
        let transports = try await makeTCPTransports(1, tls: true, logger: recorder.logger()) {
            $0.unauthenticatedLogWindow = .seconds(3600)
        }
        let port = try await listeningPort(transports[0])
        let before = recorder.all.filter { $0.level >= .warning }.count
        for _ in 0..<50 {
            _ = try await sendRawAndAwaitClose(port: port, Array("GET / HTTP/1.1\r\n\r\n".utf8))
        }
        try await Task.sleep(for: .milliseconds(200))
        let warnings = recorder.all.filter { $0.level >= .warning }.count - before
        #expect(warnings <= 21, "\(warnings) warnings for 50 garbage connections")
        for transport in transports { await transport.shutdown() }
    }

    @Test("certificates written for a cluster: keys private from creation, existing files never replaced")
    func writtenCertificates() throws {
        let directory = "/tmp/swift-paxos-certs-\(UInt64.random(in: 0 ... .max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let written = try testAuthority.write(to: directory, nodes: [1, 2])
        #expect(written.count == 5)
        for path in written {
            let mode = try #require(
                try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
            #expect(
                mode == (path.hasSuffix("-key.pem") ? 0o600 : 0o644), "\(path): \(String(mode, radix: 8))")
        }
        // Each written pair loads, and names its node.
        let tls = try PeerTLS(
            certificateFile: "\(directory)/node-2.pem", privateKeyFile: "\(directory)/node-2-key.pem",
            caFile: "\(directory)/ca.pem")
        #expect(tls.node == 2)
        let before = try String(contentsOfFile: "\(directory)/node-1-key.pem", encoding: .utf8)
        #expect(throws: CertificateError.self) { try testAuthority.write(to: directory, nodes: [1]) }
        #expect(try String(contentsOfFile: "\(directory)/node-1-key.pem", encoding: .utf8) == before)
    }

    @Test("a node's own certificate must name exactly one node")
    func ownCertificateChecked() throws {
        let issued = try testAuthority.issue(node: 1, extraNodeNames: [2])
        #expect(throws: TLSSetupError.self) {
            try PeerTLS(
                certificatePEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM,
                caPEM: testAuthority.certificatePEM)
        }
        let other = try testAuthority.issue(node: 3)
        // A key that is not the certificate's.
        #expect(throws: TLSSetupError.self) {
            try PeerTLS(
                certificatePEM: issued.certificatePEM, privateKeyPEM: other.privateKeyPEM,
                caPEM: testAuthority.certificatePEM)
        }
        #expect(
            try PeerTLS(
                certificatePEM: other.certificatePEM, privateKeyPEM: other.privateKeyPEM,
                caPEM: testAuthority.certificatePEM
            ).node == 3)
    }

    @Test("node names: only the canonical paxos-node-N names a node")
    func nodeNames() {
        #expect(NodeIdentity.node(named: "paxos-node-3") == 3)
        #expect(NodeIdentity.node(named: "PAXOS-NODE-12") == 12)
        #expect(NodeIdentity.node(named: "paxos-node-0") == 0)
        #expect(NodeIdentity.node(named: "paxos-node-4294967295") == NodeID(UInt32.max))
        for name in [
            "paxos-node-", "paxos-node-03", "paxos-node-+3", "paxos-node--3", "paxos-node-4294967296",
            "paxos-node-3.example", "paxos-node-3x", "xpaxos-node-3", "paxos-node-99999999999",
        ] {
            #expect(NodeIdentity.node(named: name) == nil, "\(name)")
        }
    }
}

/// A thread-safe count.
final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

/// Holds its waiters until opened.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let proceed = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
