import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Paxos
import PaxosCore
import PaxosFrames
import PaxosWire
import Synchronization

/// Where a node listens for its peers.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` (IPv6 hosts in brackets: `[::1]:7000`).
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The production ``PeerTransport``: length-prefixed, versioned frames over TCP (SwiftNIO), both
/// protocols on one connection per pair of nodes, told apart by each request's ``PeerChannel``.
///
/// Every connection starts with a handshake that names the cluster and both node ids; a node of
/// another cluster, an unknown node id, or a connection meant for another node is refused and
/// logged. A malformed, truncated, oversized or unexpected frame closes that connection with a
/// log line; nothing a peer sends can crash the process. A connection's reading task hands each
/// request to its channel's handler, which answers by writing the reply to the connection from
/// wherever it is computed. With an ``EventLoopExecutor`` the connections and their tasks run on
/// its loop, so a handler must not block.
public final class TCPTransport: PeerTransport {
    public struct Configuration: Sendable {
        /// Nodes of other clusters are refused.
        public var clusterID: String
        public var me: NodeID
        /// Every node's peer-to-peer address, this one's included (where it listens).
        public var peers: [NodeID: PeerAddress]
        public var maxFrameBytes = PeerFrame.defaultMaxFrameBytes
        /// A call with no reply after this long fails (the peer may be stuck).
        public var callTimeout = Duration.seconds(2)
        public var connectTimeout = Duration.milliseconds(500)
        public var minReconnectBackoff = Duration.milliseconds(20)
        public var maxReconnectBackoff = Duration.seconds(1)
        /// Where to listen when it is not the address peers dial (a proxy or a NAT in front of
        /// this node, as etcd's listen and advertise URLs): nil listens at this node's address in
        /// ``peers``, which stays the address this node introduces itself by.
        public var listenAddress: PeerAddress?
        /// The local IP address outgoing peer connections come from; nil lets the system choose.
        public var sourceHost: String?
        /// Mutual TLS for every peer connection; nil is plaintext, where any process that can
        /// reach the port can speak as any node (only for tests and single machines).
        public var tls: PeerTLS?
        /// A connection whose hello (and TLS handshake) has not completed after this long closes.
        public var handshakeTimeout = Duration.seconds(5)
        /// Warnings about unauthenticated connections (anyone can open them) are logged at most
        /// 20 per this window, then one line says how many were left out.
        public var unauthenticatedLogWindow = Duration.seconds(10)
        /// The largest frame accepted before the peer is authenticated (a hello is a few hundred
        /// bytes), so that unauthenticated connections hold little memory.
        public var handshakeFrameBytes = 16 * 1024
        /// Unauthenticated inbound peer connections open at once; more are closed at accept.
        /// Authenticated ones are bounded apart: one per peer, a newer one replaces the older.
        public var maxInboundConnections = 128
        /// Requests one connection may have in the handlers at once; a peer that sends more waits.
        public var maxRequestsInFlight = 1024

        public init(clusterID: String, me: NodeID, peers: [NodeID: PeerAddress]) {
            self.clusterID = clusterID
            self.me = me
            self.peers = peers
        }
    }

    private struct State {
        var handlers: [PeerChannel: PeerHandler] = [:]
        var server: NIOAsyncChannel<InboundConnection?, Never>?
        var acceptTask: Task<Void, Never>?
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// The one inbound connection of each authenticated peer.
        var peerConnections: [NodeID: any Channel] = [:]
        var closed = false
    }

    /// Every node's address as this node knows it (this node's own: where it listens). Shared with
    /// the clients, which introduce this node by its address in every hello.
    final class AddressBook: Sendable {
        let addresses: Mutex<[NodeID: PeerAddress]>
        init(_ addresses: [NodeID: PeerAddress]) { self.addresses = Mutex(addresses) }
        subscript(node: NodeID) -> PeerAddress? { addresses.withLock { $0[node] } }
        func set(_ address: PeerAddress, for node: NodeID) { addresses.withLock { $0[node] = address } }
    }

    public let configuration: Configuration
    private let group: any EventLoopGroup
    private let executor: EventLoopExecutor?
    private let logger: Logger
    private let clientTable: Mutex<[NodeID: PeerClient]>
    private var clients: [NodeID: PeerClient] { clientTable.withLock { $0 } }
    private let state = Mutex(State())
    private let book: AddressBook
    private let admission: Admission
    /// What unauthenticated connections cause is logged at a bounded rate: anyone can open them.
    private let unauthenticatedLog: LogThrottle

    /// - Parameters:
    ///   - group: where connections run, when `executor` is nil.
    ///   - executor: the node's event loop: every connection, dialed or accepted, runs on it, and
    ///     so do the tasks that read them, so a frame reaches a replica on the same thread (see
    ///     ``EventLoopExecutor``). Nil: connections spread over `group`, their tasks on the global
    ///     executor.
    public init(
        configuration: Configuration, logger: Logger = Logger(label: "swift-paxos.tcp"),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, executor: EventLoopExecutor? = nil
    ) {
        self.configuration = configuration
        unauthenticatedLog = LogThrottle(perWindow: 20, window: configuration.unauthenticatedLogWindow)
        let group = executor?.eventLoop ?? group
        self.group = group
        self.executor = executor
        let book = AddressBook(configuration.peers)
        self.book = book
        self.admission = Admission(limit: configuration.maxInboundConnections, logger: logger)
        var logger = logger
        logger[metadataKey: "node"] = "\(configuration.me)"
        self.logger = logger
        var clients: [NodeID: PeerClient] = [:]
        for (peer, address) in configuration.peers where peer != configuration.me {
            clients[peer] = PeerClient(
                peer: peer, address: address, settings: configuration, group: group, executor: executor,
                logger: logger,
                ownAddress: { [me = configuration.me] in book[me]?.description ?? "" })
        }
        self.clientTable = Mutex(clients)
    }

    /// Takes the replicated log's membership: dials its members at their recorded addresses and
    /// takes their hellos from there (a member added later is unknown until then). The peers of
    /// `--peers` stay known: the classic protocol runs on them.
    public func updateMembers(_ addresses: [NodeID: String]) async { updateMemberAddresses(addresses) }

    private func updateMemberAddresses(_ addresses: [NodeID: String]) {
        // After shutdown a late update must not dial anew.
        guard !state.withLock({ $0.closed }) else { return }
        for (peer, text) in addresses where peer != configuration.me {
            guard let address = PeerAddress(parsing: text) else {
                logger.warning(
                    "the membership records an address that does not parse",
                    metadata: ["peer": "\(peer)", "address": "\(text)"])
                continue
            }
            if book[peer]?.description == address.description { continue }
            book.set(address, for: peer)
            let created: PeerClient? = clientTable.withLock { table in
                guard table[peer] == nil else { return nil }
                let client = PeerClient(
                    peer: peer, address: address, settings: configuration, group: group, executor: executor,
                    logger: logger,
                    ownAddress: { [book, me = configuration.me] in book[me]?.description ?? "" })
                table[peer] = client
                return client
            }
            if created == nil { clients[peer]?.setAddress(address) }
            logger.info(
                "peer address from the membership", metadata: ["peer": "\(peer)", "address": "\(address)"])
        }
    }

    /// Whether `text` is an IPv4 or IPv6 address (what ``Configuration/sourceHost`` accepts).
    public static func isIPAddress(_ text: String) -> Bool {
        (try? SocketAddress(ipAddress: text, port: 0)) != nil
    }

    /// Binds the listening socket at this node's address and starts accepting peers.
    /// - Returns: the bound port (the real one when the configured port is 0).
    @discardableResult
    public func start() async throws -> Int {
        guard let advertised = configuration.peers[configuration.me] else {
            throw TransportError("node \(configuration.me) has no address among the peers")
        }
        let address = configuration.listenAddress ?? advertised
        let handshakeFrameBytes = configuration.handshakeFrameBytes
        let tls = configuration.tls
        let admission = self.admission
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_keepidle), value: 30)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_keepintvl), value: 10)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_keepcnt), value: 3)
            .bind(host: address.host, port: address.port) { channel -> EventLoopFuture<InboundConnection?> in
                // Never fails: a failed initializer would leave the accepted socket open.
                guard admission.admit(channel) else {
                    channel.close(promise: nil)
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                let limit = FrameLimit(handshakeFrameBytes)
                let serverTLS = tls.map { tls in
                    { @Sendable in NIOSSLServerHandler(context: tls.serverContext) }
                }
                return channel.makePeerFrameChannel(limit: limit, tls: serverTLS)
                    .map { Optional(InboundConnection(channel: $0, limit: limit)) }
                    .flatMapError { _ in
                        channel.close(promise: nil)
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
            }
        let port = server.channel.localAddress?.port ?? address.port
        let task = Task(executorPreference: executor) { await self.acceptLoop(server) }
        state.withLock {
            $0.server = server
            $0.acceptTask = task
        }
        if configuration.listenAddress == nil {
            book.set(PeerAddress(host: address.host, port: port), for: configuration.me)
        }
        logger.info(
            "listening for peers",
            metadata: [
                "address": "\(address.host):\(port)", "advertised": "\(book[configuration.me] ?? advertised)",
                "tls": "\(configuration.tls == nil ? "off" : "mutual TLS 1.3")",
            ])
        if configuration.tls == nil {
            logger.warning(
                "peer connections are plaintext and unauthenticated: anyone who can reach the peer port can speak as any node"
            )
        }
        return port
    }

    /// Points the client for `peer` at a new address (e.g. when tests bind port 0 first).
    public func setAddress(_ address: PeerAddress, for peer: NodeID) async {
        book.set(address, for: peer)
        clients[peer]?.setAddress(address)
    }

    /// Where this node listens, as it tells the peers it dials.
    var ownAddress: PeerAddress? { book[configuration.me] }

    /// The port this node listens on, once started.
    public var listeningPort: Int? {
        get async { state.withLock { $0.server?.channel.localAddress?.port } }
    }

    /// Whether a connection to `peer` is currently open.
    public func isConnected(to peer: NodeID) async -> Bool {
        clients[peer]?.isConnected ?? false
    }

    public func send(
        _ payload: [UInt8], on channel: PeerChannel, to peer: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
    ) {
        guard let client = clients[peer] else {
            return done(.failure(TransportError("unknown peer \(peer)")))
        }
        client.send(payload, on: channel, done: done)
    }

    public func serve(_ channel: PeerChannel, with handler: PeerHandler?) {
        state.withLock { $0.handlers[channel] = handler }
    }

    public func shutdown() async {
        let (server, task, connections) = state.withLock { state in
            state.closed = true
            state.handlers = [:]
            defer {
                state.server = nil
                state.acceptTask = nil
                state.connections = [:]
            }
            return (state.server, state.acceptTask, Array(state.connections.values))
        }
        for client in clients.values { client.shutdown() }
        try? await server?.channel.close()
        for connection in connections { try? await connection.close() }
        task?.cancel()
    }

    // MARK: Listening side

    private func acceptLoop(_ server: NIOAsyncChannel<InboundConnection?, Never>) async {
        do {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in inbound {
                        guard let connection else { continue }
                        group.addTask { await self.serveConnection(connection) }
                    }
                }
            }
        } catch {
            if !state.withLock({ $0.closed }) { logger.error("stopped accepting peers: \(error)") }
        }
    }

    /// Why a hello must be refused, or nil when it is fine. `authenticated` is the node the
    /// peer's certificate names (nil without TLS): a peer speaks only as itself.
    func refusal(
        clusterID: String, from: NodeID, to: NodeID, fromAddress: String, authenticated: NodeID? = nil
    ) -> String? {
        if let authenticated, authenticated != from {
            return "node \(authenticated)'s certificate cannot speak as node \(from)"
        }
        if clusterID != configuration.clusterID {
            return
                "wrong cluster: this node belongs to cluster '\(configuration.clusterID)', not '\(clusterID)'"
        }
        if to != configuration.me { return "wrong node: this is node \(configuration.me), not \(to)" }
        guard from != configuration.me, let known = book[from] else {
            return "unknown node \(from): not a peer of node \(configuration.me)"
        }
        if known.description != fromAddress {
            return
                "peer lists disagree: node \(from) says it listens at \(fromAddress), but this node knows it at \(known)"
        }
        return nil
    }

    private func serveConnection(_ inbound: InboundConnection) async {
        let connection = inbound.channel
        let channel = connection.channel
        let key = ObjectIdentifier(channel)
        let remote = channel.remoteAddress.map { "\($0)" } ?? "unknown"
        guard
            state.withLock({ state -> Bool in
                guard !state.closed else { return false }
                state.connections[key] = channel
                return true
            })
        else {
            try? await channel.close()
            return
        }
        defer {
            state.withLock { state in
                state.connections[key] = nil
                for (node, open) in state.peerConnections where ObjectIdentifier(open) == key {
                    state.peerConnections[node] = nil
                }
            }
        }
        var peer: NodeID?
        do {
            try await connection.executeThenClose { frames, outbound in
                // The TLS handshake and the hello must both be done in time.
                let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(configuration.handshakeTimeout))
                {
                    channel.close(promise: nil)
                }
                defer { deadline.cancel() }
                var frames = frames.makeAsyncIterator()
                guard let first = try await frames.next() else { return }
                guard case .hello(let clusterID, let from, let to, let fromAddress) = first else {
                    try? await outbound.write(.refuse(reason: "expected hello, got \(first)"))
                    throw TransportError("expected hello, got \(first)")
                }
                // A frame arrives only after the handshake, so the certificate is known by now.
                var authenticated: NodeID?
                if configuration.tls != nil {
                    do {
                        let certificate = try await channel.eventLoop.submit {
                            try channel.pipeline.syncOperations.nioSSL_peerCertificate()
                        }.get()
                        authenticated = try PeerTLS.node(in: certificate)
                    } catch {
                        let reason = "\(error)"
                        unauthenticatedLog.warning(
                            logger, "refused peer connection",
                            metadata: ["remote": "\(remote)", "reason": "\(reason)"])
                        try? await outbound.write(.refuse(reason: reason))
                        return
                    }
                }
                if let reason = refusal(
                    clusterID: clusterID, from: from, to: to, fromAddress: fromAddress,
                    authenticated: authenticated)
                {
                    unauthenticatedLog.warning(
                        logger, "refused peer connection",
                        metadata: ["remote": "\(remote)", "reason": "\(reason)"])
                    try? await outbound.write(.refuse(reason: reason))
                    return
                }
                peer = from
                deadline.cancel()
                admission.release(channel)
                // One connection per peer: a node that dials again (after a crash, or a network
                // that dropped the old flow without a reset) replaces its old connection, so
                // half-open connections cannot pile up.
                let replaced = state.withLock { state -> (any Channel)? in
                    defer { state.peerConnections[from] = channel }
                    return state.peerConnections[from]
                }
                if let replaced {
                    logger.info(
                        "peer connected again; closing its old connection", metadata: ["peer": "\(from)"])
                    replaced.close(promise: nil)
                }
                inbound.limit.raise(to: configuration.maxFrameBytes)
                try await outbound.write(.welcome)
                // Each request goes to its channel's handler from this task; the reply is written
                // straight to the connection (thread-safe) by whoever computed it. At most
                // maxRequestsInFlight requests wait for their reply: past that the reads stop,
                // and TCP's flow control holds the peer back. A request counts until its reply is
                // written, so a peer that does not read cannot grow the buffer.
                let inFlight = InFlight(limit: configuration.maxRequestsInFlight)
                let refused = Mutex<String?>(nil)
                while true {
                    let next: PeerFrame?
                    do {
                        next = try await frames.next()
                    } catch {
                        // A refusal closed the connection: its reason is what to log.
                        if let reason = refused.withLock({ $0 }) { throw TransportError(reason) }
                        throw error
                    }
                    guard let frame = next else { break }
                    guard case .request(let id, let peerChannel, let payload) = frame else {
                        throw TransportError("unexpected \(frame) from node \(from)")
                    }
                    await inFlight.acquire()
                    if let reason = refused.withLock({ $0 }) { throw TransportError(reason) }
                    guard let handler = state.withLock({ $0.handlers[peerChannel] }) else {
                        channel.writeAndFlush(PeerFrame.noReply(id: id)).whenComplete { _ in
                            inFlight.release()
                        }
                        continue
                    }
                    handler(from, payload) { answer in
                        switch answer {
                        case .reply(let bytes):
                            channel.writeAndFlush(PeerFrame.reply(id: id, payload: bytes)).whenComplete { _ in
                                inFlight.release()
                            }
                        case .none:
                            channel.writeAndFlush(PeerFrame.noReply(id: id)).whenComplete { _ in
                                inFlight.release()
                            }
                        case .refuse(let reason):
                            // Malformed or forged: this connection ends (the reading loop throws
                            // the reason at its next frame, and closing ends a wait for one).
                            refused.withLock { $0 = $0 ?? reason }
                            inFlight.release()
                            channel.close(promise: nil)
                        }
                    }
                }
                if let reason = refused.withLock({ $0 }) { throw TransportError(reason) }
            }
        } catch {
            if !state.withLock({ $0.closed }) {
                let metadata: Logger.Metadata = [
                    "remote": "\(remote)", "peer": "\(peer.map(\.description) ?? "?")", "reason": "\(error)",
                ]
                if peer == nil {
                    unauthenticatedLog.warning(logger, "closed peer connection", metadata: metadata)
                } else {
                    logger.warning("closed peer connection", metadata: metadata)
                }
            }
        }
    }
}

/// At most `perWindow` warnings per window; then one line says how many were left out.
final class LogThrottle: Sendable {
    private struct State {
        var windowStart: ContinuousClock.Instant?
        var logged = 0
        var suppressed = 0
    }

    let perWindow: Int
    let window: Duration
    private let state = Mutex(State())

    init(perWindow: Int, window: Duration) {
        self.perWindow = perWindow
        self.window = window
    }

    func warning(_ logger: Logger, _ message: Logger.Message, metadata: Logger.Metadata) {
        let now = ContinuousClock.now
        let (log, suppressed) = state.withLock { state -> (Bool, Int) in
            var suppressed = 0
            if state.windowStart.map({ now - $0 >= window }) ?? true {
                suppressed = state.suppressed
                state = State(windowStart: now, logged: 0, suppressed: 0)
            }
            guard state.logged < perWindow else {
                state.suppressed += 1
                return (false, suppressed)
            }
            state.logged += 1
            return (true, suppressed)
        }
        if suppressed > 0 {
            logger.warning(
                "left out warnings about unauthenticated peer connections",
                metadata: ["count": "\(suppressed)", "window": "\(window)"])
        }
        if log { logger.warning(message, metadata: metadata) }
    }
}

/// An accepted connection, with the frame limit the transport raises once the peer is known.
struct InboundConnection: Sendable {
    var channel: NIOAsyncChannel<PeerFrame, PeerFrame>
    var limit: FrameLimit
}

/// Caps the unauthenticated inbound connections open at once; the one over the cap is closed at
/// accept, with a log line at most every ten seconds (a flood must not flood the log too). A
/// connection leaves the count when it closes or when its peer is authenticated: authenticated
/// connections are bounded apart, one per peer.
final class Admission: Sendable {
    private struct State {
        var open: Set<ObjectIdentifier> = []
        var refusedSinceLog = 0
        var lastLog: ContinuousClock.Instant?
    }

    let limit: Int
    private let state = Mutex(State())
    private let logger: Logger

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    var open: Int { state.withLock { $0.open.count } }

    /// Counts `channel` in until it closes or is released, or refuses it when `limit` are in.
    func admit(_ channel: any Channel) -> Bool {
        let now = ContinuousClock.now
        let key = ObjectIdentifier(channel)
        let (admitted, report) = state.withLock { state -> (Bool, Int?) in
            if state.open.count < limit {
                state.open.insert(key)
                return (true, nil)
            }
            state.refusedSinceLog += 1
            guard state.lastLog.map({ now - $0 >= .seconds(10) }) ?? true else { return (false, nil) }
            state.lastLog = now
            defer { state.refusedSinceLog = 0 }
            return (false, state.refusedSinceLog)
        }
        if let report {
            logger.warning(
                "refusing peer connections: too many open",
                metadata: ["limit": "\(limit)", "refused": "\(report)"])
        }
        if admitted {
            channel.closeFuture.whenComplete { [self] _ in release(key) }
        }
        return admitted
    }

    /// Takes `channel` out of the count (idempotent).
    func release(_ channel: any Channel) { release(ObjectIdentifier(channel)) }

    private func release(_ key: ObjectIdentifier) { _ = state.withLock { $0.open.remove(key) } }
}

extension NIOBSDSocket.Option {
    // TCP keepalive timing (Linux): a peer that vanished without a reset is found out in about
    // a minute instead of the system's two hours.
    static let tcp_keepidle = Self(rawValue: TCP_KEEPIDLE)
    static let tcp_keepintvl = Self(rawValue: TCP_KEEPINTVL)
    static let tcp_keepcnt = Self(rawValue: TCP_KEEPCNT)
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Counts a connection's requests waiting for their reply; the reading loop waits while
/// `limit` are out.
final class InFlight: Sendable {
    private struct State {
        var count = 0
        var waiter: CheckedContinuation<Void, Never>?
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = Swift.max(1, limit) }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { state -> Bool in
                guard state.count >= limit else {
                    state.count += 1
                    return true
                }
                state.waiter = continuation
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                // The slot passes to the waiting reader: the count stays.
                state.waiter = nil
                return waiter
            }
            state.count -= 1
            return nil
        }
        waiter?.resume()
    }
}
