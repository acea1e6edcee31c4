import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Paxos
import PaxosCertificates
import PaxosCore
import PaxosFrames
import PaxosWire
import Synchronization

/// The dialing side of one peer connection: one persistent TCP connection that carries many
/// concurrent RPCs, matched to replies by id. Calls fail promptly while the peer is unreachable;
/// the connection is re-dialed after a backoff that doubles up to a bound.
actor PeerClient {
    private struct Pending {
        var continuation: CheckedContinuation<[UInt8], any Error>
        var deadline: ContinuousClock.Instant
    }

    /// Calls waiting for their reply, by id, under a lock, so the connection's reading task can
    /// complete a call without entering the actor. (The caller still resumes in the actor:
    /// `exchange` and the reply's decoding are actor-isolated, a hop the runtime of issue 15
    /// removes.)
    private final class Calls: Sendable {
        private let pending = Mutex<[UInt64: Pending]>([:])

        func insert(_ id: UInt64, _ call: Pending) { pending.withLock { $0[id] = call } }

        func complete(_ id: UInt64, _ result: Result<[UInt8], any Error>) {
            pending.withLock { $0.removeValue(forKey: id) }?.continuation.resume(with: result)
        }

        func failAll(_ error: any Error) {
            let all = pending.withLock { calls in
                defer { calls = [:] }
                return calls
            }
            for (_, call) in all { call.continuation.resume(throwing: error) }
        }

        func expire(now: ContinuousClock.Instant, _ error: @Sendable () -> any Error) {
            let expired = pending.withLock { calls in
                let late = calls.filter { $0.value.deadline <= now }
                for id in late.keys { calls[id] = nil }
                return late
            }
            for (_, call) in expired { call.continuation.resume(throwing: error()) }
        }
    }

    private struct Connection {
        var generation: Int
        /// Frames are written straight to the channel (thread-safe), not through a queue task.
        var channel: any Channel
    }

    struct Closed: Error, CustomStringConvertible {
        var description: String { "connection closed" }
    }

    let peer: NodeID
    private let settings: TCPTransport.Configuration
    private let group: any EventLoopGroup
    private let logger: Logger
    private var address: PeerAddress
    private var connection: Connection?
    private var connecting = false
    private var waiters: [CheckedContinuation<Void, any Error>] = []
    private var retryAfter: ContinuousClock.Instant?
    private var backoff: Duration
    private let calls = Calls()
    private var nextID: UInt64 = 1
    private var generation = 0
    private var closed = false
    private var lastError: String?
    private var sweeper: Task<Void, Never>?

    /// Where this node listens, as it introduces itself in every hello.
    private let ownAddress: @Sendable () -> String

    init(
        peer: NodeID, address: PeerAddress, settings: TCPTransport.Configuration, group: any EventLoopGroup,
        logger: Logger, ownAddress: @escaping @Sendable () -> String
    ) {
        self.ownAddress = ownAddress
        self.peer = peer
        self.address = address
        self.settings = settings
        self.group = group
        self.logger = logger
        self.backoff = settings.minReconnectBackoff
    }

    var isConnected: Bool { connection != nil }

    func setAddress(_ address: PeerAddress) { self.address = address }

    func call(_ request: RequestEnvelope) async throws -> ReplyEnvelope {
        let payload = try await exchange(PaxosWire.encode(request))
        return try PaxosWire.decodeReply(payload, maxValueBytes: settings.maxFrameBytes)
    }

    func call(_ request: LogRequestEnvelope) async throws -> LogReplyEnvelope {
        let payload = try await exchange(LogWire.encode(request))
        return try LogWire.decodeReply(payload, maxValueBytes: settings.maxFrameBytes)
    }

    /// Sends one request frame and waits for the matching reply's payload.
    private func exchange(_ bytes: [UInt8]) async throws -> [UInt8] {
        let channel = try await connected()
        let id = nextID
        nextID += 1
        let deadline = ContinuousClock.now.advanced(by: settings.callTimeout)
        startSweeper()
        return try await withCheckedThrowingContinuation { continuation in
            calls.insert(id, Pending(continuation: continuation, deadline: deadline))
            // A failed write closes the channel, which fails every pending call.
            channel.writeAndFlush(PeerFrame.request(id: id, payload: bytes), promise: nil)
        }
    }

    func shutdown() {
        closed = true
        connection?.channel.close(promise: nil)
        connection = nil
        sweeper?.cancel()
        let failure = TransportError("transport to \(peer) is shut down")
        failWaiters(failure)
        failAll(failure)
    }

    // MARK: Connection management

    private func connected() async throws -> any Channel {
        if closed { throw TransportError("transport to \(peer) is shut down") }
        if let connection { return connection.channel }
        if let retryAfter, ContinuousClock.now < retryAfter {
            throw TransportError("\(peer) at \(address) is unreachable (\(lastError ?? "not connected"))")
        }
        if !connecting {
            connecting = true
            generation += 1
            let generation = self.generation
            Task { await self.run(generation) }
        }
        try await withCheckedThrowingContinuation { waiters.append($0) }
        guard let connection else { throw TransportError("\(peer) at \(address) is unreachable") }
        return connection.channel
    }

    private nonisolated func run(_ generation: Int) async {
        let address = await self.address
        let settings = self.settings
        let me = settings.me
        let peer = self.peer
        let ownAddress = self.ownAddress()
        let calls = self.calls
        do {
            var bootstrap = ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(settings.connectTimeout))
                .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
                .channelOption(ChannelOptions.tcpOption(.tcp_keepidle), value: 30)
                .channelOption(ChannelOptions.tcpOption(.tcp_keepintvl), value: 10)
                .channelOption(ChannelOptions.tcpOption(.tcp_keepcnt), value: 3)
            if let source = settings.sourceHost {
                bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
            }
            let limit = FrameLimit(settings.handshakeFrameBytes)
            // TLS checks that the dialed node's certificate names it: its "host name" is
            // paxos-node-N, whatever address it is reached at.
            let clientTLS = settings.tls.map { tls in
                { @Sendable in
                    try NIOSSLClientHandler(
                        context: tls.clientContext, serverHostname: NodeIdentity.dnsName(for: peer))
                }
            }
            let channel =
                try await bootstrap
                .connect(host: address.host, port: address.port) { channel in
                    channel.makePeerFrameChannel(limit: limit, tls: clientTLS)
                }
            try await channel.executeThenClose { inbound, outbound in
                let raw = channel.channel
                let deadline = raw.eventLoop.scheduleTask(in: TimeAmount(settings.handshakeTimeout)) {
                    raw.close(promise: nil)
                }
                defer { deadline.cancel() }
                try await outbound.write(
                    .hello(clusterID: settings.clusterID, from: me, to: peer, fromAddress: ownAddress))
                var frames = inbound.makeAsyncIterator()
                switch try await frames.next() {
                case .welcome?: break
                case .refuse(let reason)?:
                    // Not yet authenticated: its words are logged, but only so many of them.
                    throw TransportError("\(peer) refused the connection: \(reason.prefix(200))")
                case let other:
                    throw TransportError(
                        "\(peer) answered hello with \(other.map(\.description) ?? "nothing")")
                }
                if settings.tls != nil {
                    // The only check of the listener's node: TLS's host name check also passes on any
                    // IP address the certificate names, and test certificates name 127.0.0.1.
                    let certificate = try await raw.eventLoop.submit {
                        try raw.pipeline.syncOperations.nioSSL_peerCertificate()
                    }.get()
                    let named = try PeerTLS.node(in: certificate)
                    guard named == peer else {
                        throw TransportError(
                            "the node dialed as \(peer) presented a certificate of node \(named)")
                    }
                }
                deadline.cancel()
                limit.raise(to: settings.maxFrameBytes)
                await self.didConnect(generation, channel.channel)
                while let frame = try await frames.next() {
                    switch frame {
                    case .reply(let id, let payload): calls.complete(id, .success(payload))
                    case .noReply(let id):
                        calls.complete(id, .failure(TransportError("\(peer) declined to answer")))
                    default: throw TransportError("\(peer) sent an unexpected \(frame)")
                    }
                }
                throw Closed()
            }
        } catch {
            await didDisconnect(generation, error)
            return
        }
        await didDisconnect(generation, Closed())
    }

    private func didConnect(_ generation: Int, _ channel: any Channel) {
        guard generation == self.generation, !closed else {
            channel.close(promise: nil)
            failWaiters(TransportError("transport to \(peer) is shut down"))
            return
        }
        if lastError != nil {
            logger.info("connected to peer", metadata: ["peer": "\(peer)", "address": "\(address)"])
        }
        connection = Connection(generation: generation, channel: channel)
        connecting = false
        retryAfter = nil
        lastError = nil
        backoff = settings.minReconnectBackoff
        let waiting = waiters
        waiters = []
        for waiter in waiting { waiter.resume() }
    }

    private func didDisconnect(_ generation: Int, _ error: any Error) {
        guard generation == self.generation else { return }
        let message = "\(error)"
        if lastError != message, !closed {
            logger.info(
                "peer unreachable",
                metadata: ["peer": "\(peer)", "address": "\(address)", "reason": "\(message)"])
        }
        lastError = message
        connection?.channel.close(promise: nil)
        connection = nil
        connecting = false
        retryAfter = ContinuousClock.now.advanced(by: backoff)
        backoff = min(backoff * 2, settings.maxReconnectBackoff)
        let failure = TransportError("\(peer) at \(address) is unreachable: \(message)")
        failWaiters(failure)
        failAll(failure)
    }

    /// Fails every caller waiting for a connection.
    private func failWaiters(_ error: any Error) {
        let waiting = waiters
        waiters = []
        for waiter in waiting { waiter.resume(throwing: error) }
    }

    private func failAll(_ error: any Error) { calls.failAll(error) }

    /// Fails calls whose reply did not come in time (the peer may be alive but stuck).
    private func startSweeper() {
        guard sweeper == nil else { return }
        sweeper = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(50))
                await self?.expire()
            }
        }
    }

    private func expire() {
        let message = "no reply from \(peer) within \(settings.callTimeout)"
        calls.expire(now: ContinuousClock.now) { TransportError(message) }
    }
}
