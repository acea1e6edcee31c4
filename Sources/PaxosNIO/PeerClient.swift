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
///
/// A send never suspends: under a lock it files the call and writes the frame to the channel
/// (thread-safe), or queues it until the connection is up. The reply completes the call from the
/// connection's reading task. The tasks it needs (dialing and reading one connection, the sweeper
/// of late calls) are held here and cancelled by ``shutdown()``.
final class PeerClient: Sendable {
    typealias Done = @Sendable (Result<[UInt8], TransportError>) -> Void

    private struct Pending {
        var done: Done
        var deadline: ContinuousClock.Instant
    }

    /// Calls waiting for their reply, by id, under a lock of their own, so the connection's
    /// reading task completes a call without touching the connection state.
    private final class Calls: Sendable {
        private let pending = Mutex<[UInt64: Pending]>([:])

        func insert(_ id: UInt64, _ call: Pending) { pending.withLock { $0[id] = call } }

        func complete(_ id: UInt64, _ result: Result<[UInt8], TransportError>) {
            pending.withLock { $0.removeValue(forKey: id) }?.done(result)
        }

        func failAll(_ error: TransportError) {
            let all = pending.withLock { calls in
                defer { calls = [:] }
                return calls
            }
            for (_, call) in all { call.done(.failure(error)) }
        }

        func expire(now: ContinuousClock.Instant, _ error: TransportError) {
            let expired = pending.withLock { calls in
                let late = calls.filter { $0.value.deadline <= now }
                for id in late.keys { calls[id] = nil }
                return late
            }
            for (_, call) in expired { call.done(.failure(error)) }
        }
    }

    struct Closed: Error, CustomStringConvertible {
        var description: String { "connection closed" }
    }

    private struct State {
        var address: PeerAddress
        var channel: (any Channel)?
        var connecting = false
        /// Requests written once the connection is up (their calls are filed already).
        var queued: [PeerFrame] = []
        var retryAfter: ContinuousClock.Instant?
        var backoff: Duration
        var nextID: UInt64 = 1
        var generation = 0
        var closed = false
        var lastError: String?
        var connection: Task<Void, Never>?
        var sweeper: Task<Void, Never>?
    }

    private enum Action {
        case write(any Channel, PeerFrame)
        case fail(TransportError)
        case dial(Int)
        case wait
    }

    let peer: NodeID
    private let settings: TCPTransport.Configuration
    private let group: any EventLoopGroup
    /// Where the connection's and the sweeper's tasks run (the node's event loop); nil: the
    /// global executor.
    private let executor: EventLoopExecutor?
    private let logger: Logger
    private let calls = Calls()
    private let state: Mutex<State>

    /// Where this node listens, as it introduces itself in every hello.
    private let ownAddress: @Sendable () -> String

    init(
        peer: NodeID, address: PeerAddress, settings: TCPTransport.Configuration, group: any EventLoopGroup,
        executor: EventLoopExecutor?, logger: Logger, ownAddress: @escaping @Sendable () -> String
    ) {
        self.executor = executor
        self.ownAddress = ownAddress
        self.peer = peer
        self.settings = settings
        self.group = group
        self.logger = logger
        self.state = Mutex(State(address: address, backoff: settings.minReconnectBackoff))
    }

    var isConnected: Bool { state.withLock { $0.channel != nil } }

    func setAddress(_ address: PeerAddress) { state.withLock { $0.address = address } }

    /// Sends one request and calls `done` with the reply's payload or the failure, exactly once.
    func send(_ payload: [UInt8], on channel: PeerChannel, done: @escaping Done) {
        let now = ContinuousClock.now
        let deadline = now.advanced(by: settings.callTimeout)
        let action = state.withLock { state -> Action in
            if state.closed { return .fail(TransportError("transport to \(peer) is shut down")) }
            if state.channel == nil, let retryAfter = state.retryAfter, now < retryAfter {
                return .fail(
                    TransportError(
                        "\(peer) at \(state.address) is unreachable (\(state.lastError ?? "not connected"))"))
            }
            let id = state.nextID
            state.nextID += 1
            calls.insert(id, Pending(done: done, deadline: deadline))
            let frame = PeerFrame.request(id: id, channel: channel, payload: payload)
            if state.sweeper == nil {
                state.sweeper = Task(executorPreference: executor) { [weak self, executor] in
                    while !Task.isCancelled {
                        if let executor {
                            try? await executor.sleep(for: .milliseconds(50))
                        } else {
                            try? await Task.sleep(for: .milliseconds(50))
                        }
                        guard let self else { return }
                        self.expire()
                    }
                }
            }
            if let open = state.channel { return .write(open, frame) }
            state.queued.append(frame)
            guard !state.connecting else { return .wait }
            state.connecting = true
            state.generation += 1
            return .dial(state.generation)
        }
        switch action {
        case .write(let channel, let frame):
            // A failed write closes the channel, which fails every pending call.
            channel.writeAndFlush(frame, promise: nil)
        case .fail(let error):
            done(.failure(error))
        case .dial(let generation):
            let task = Task(executorPreference: executor) { await self.run(generation) }
            state.withLock { state in
                if state.generation == generation, !state.closed {
                    state.connection = task
                } else {
                    task.cancel()
                }
            }
        case .wait:
            break
        }
    }

    func shutdown() {
        let (channel, tasks) = state.withLock { state in
            state.closed = true
            state.queued = []
            defer {
                state.channel = nil
                state.connection = nil
                state.sweeper = nil
            }
            return (state.channel, [state.connection, state.sweeper])
        }
        channel?.close(promise: nil)
        for task in tasks { task?.cancel() }
        calls.failAll(TransportError("transport to \(peer) is shut down"))
    }

    // MARK: Connection management

    private func run(_ generation: Int) async {
        let address = state.withLock { $0.address }
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
                didConnect(generation, channel.channel)
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
            didDisconnect(generation, error)
            return
        }
        didDisconnect(generation, Closed())
    }

    private func didConnect(_ generation: Int, _ channel: any Channel) {
        let (current, reconnected, address) = state.withLock { state -> (Bool, Bool, PeerAddress) in
            guard generation == state.generation, !state.closed else { return (false, false, state.address) }
            let reconnected = state.lastError != nil
            // Written before the channel is published, under the lock: a send that sees the
            // channel writes after the frames queued before it (writes from another thread only
            // enqueue on the event loop, in order).
            for frame in state.queued { channel.write(frame, promise: nil) }
            channel.flush()
            state.queued = []
            state.channel = channel
            state.connecting = false
            state.retryAfter = nil
            state.lastError = nil
            state.backoff = settings.minReconnectBackoff
            return (true, reconnected, state.address)
        }
        guard current else {
            channel.close(promise: nil)
            calls.failAll(TransportError("transport to \(peer) is shut down"))
            return
        }
        if reconnected {
            logger.info("connected to peer", metadata: ["peer": "\(peer)", "address": "\(address)"])
        }
    }

    private func didDisconnect(_ generation: Int, _ error: any Error) {
        let message = "\(error)"
        let outcome = state.withLock { state -> (channel: (any Channel)?, log: Bool, address: PeerAddress)? in
            guard generation == state.generation else { return nil }
            let log = state.lastError != message && !state.closed
            state.lastError = message
            defer { state.channel = nil }
            state.connecting = false
            state.queued = []
            state.retryAfter = ContinuousClock.now.advanced(by: state.backoff)
            state.backoff = min(state.backoff * 2, settings.maxReconnectBackoff)
            return (state.channel, log, state.address)
        }
        guard let outcome else { return }
        if outcome.log {
            logger.info(
                "peer unreachable",
                metadata: ["peer": "\(peer)", "address": "\(outcome.address)", "reason": "\(message)"])
        }
        outcome.channel?.close(promise: nil)
        calls.failAll(TransportError("\(peer) at \(outcome.address) is unreachable: \(message)"))
    }

    /// Fails calls whose reply did not come in time (the peer may be alive but stuck).
    private func expire() {
        calls.expire(
            now: ContinuousClock.now, TransportError("no reply from \(peer) within \(settings.callTimeout)"))
    }
}
