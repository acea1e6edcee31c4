import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// Bounds on what one HTTP client can hold: time to send a request's head and body, time a
/// connection may sit idle, and how many connections are open at once.
public struct HTTPLimits: Sendable, Equatable {
    /// From a request's first byte until its head (request line and headers) is complete.
    public var headerTimeout: Duration
    /// From a request's head until its body is complete (a never-ending body is cut here).
    public var bodyTimeout: Duration
    /// A connection with no request in progress and nothing read for this long is closed.
    public var idleTimeout: Duration
    /// Connections beyond this many are closed as soon as they are accepted.
    public var maxConnections: Int

    public init(
        headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(60), maxConnections: Int = HTTPLimits.defaultMaxConnections()
    ) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
    }

    /// 1000, or half the process's open-files limit when that is lower: the other half is left
    /// for peers, the database and the runtime, which must never find the table full.
    public static func defaultMaxConnections() -> Int {
        min(1000, connectionsAllowedByOpenFilesLimit() ?? 1000)
    }

    /// Half the process's soft open-files limit (nil when unlimited or unknown). At the limit
    /// itself the runtime traps (libdispatch cannot get a descriptor: SIGILL), so HTTP
    /// connections must never be what uses the descriptors up.
    public static func connectionsAllowedByOpenFilesLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else {
            return nil
        }
        return max(1, Int(limit.rlim_cur) / 2)
    }
}

/// The node's HTTP server: Hummingbird's HTTP/1 server with ``HTTPLimits`` enforced.
public enum HTTPServer {
    /// An application serving `router` on `address` within `limits`.
    ///
    /// `tls`: serve HTTPS with it (see ``tlsConfiguration(certificateFile:keyFile:)``).
    /// `onServerRunning` runs once the server listens (after the connection guard is in place).
    /// `eventLoopGroup`: where connections run (paxos-node: its clients' event loops, apart from
    /// the replicas'); nil: NIO's singleton.
    /// `connectionExecutor`: the task executor a connection's task (reading its requests, running
    /// the handlers, writing the answers) prefers, given the connection's event loop; nil: the
    /// task's inherited preference (Swift's pool unless the caller set one).
    public static func application(
        router: Router<BasicRequestContext>, address: BindAddress, limits: HTTPLimits,
        tls: TLSConfiguration? = nil, serverName: String? = nil, logger: Logger,
        eventLoopGroup: (any EventLoopGroup)? = nil,
        connectionExecutor: (@Sendable (any EventLoop) -> any TaskExecutor)? = nil,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let http1 = HTTP1Channel.Configuration(idleTimeout: TimeAmount(limits.idleTimeout))
        let server = HTTPServerBuilder { responder -> any ServerChildChannel in
            let http = HTTP1Channel(responder: responder, configuration: http1)
            guard let tls else {
                return GuardedChildChannel(
                    base: http, limits: limits, logger: logger, executor: connectionExecutor)
            }
            // The handshake is bounded by the idle timeout: nothing reaches HTTP before it ends.
            return GuardedChildChannel(
                base: try TLSChannel(http, tlsConfiguration: tls), limits: limits, logger: logger,
                executor: connectionExecutor)
        }
        return Application(
            router: router, server: server,
            configuration: .init(address: address, serverName: serverName),
            onServerRunning: { channel in
                // The listening channel's own pipeline: counts connections, and keeps an accept
                // error (out of file descriptors) from ending the server's accept loop.
                try? await channel.eventLoop.submit {
                    let guardHandler = ConnectionGuard(maxConnections: limits.maxConnections, logger: logger)
                    try channel.pipeline.syncOperations.addHandler(guardHandler, position: .first)
                }.get()
                await onServerRunning(channel)
            },
            eventLoopGroupProvider: eventLoopGroup.map { .shared($0) } ?? .singleton,
            logger: logger)
    }
}

extension HTTPServer {
    /// A TLS 1.2+ server configuration from PEM files: the certificate chain (leaf first) and
    /// its private key. Checked here, so a wrong file or a key that does not match the
    /// certificate is an error at startup, not at the first connection.
    public static func tlsConfiguration(certificateFile: String, keyFile: String) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw TLSSetupError("cannot read a PEM certificate from \(certificateFile): \(error)")
        }
        guard !chain.isEmpty else { throw TLSSetupError("\(certificateFile) holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw TLSSetupError("cannot read a PEM private key from \(keyFile): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(
                "the key in \(keyFile) does not fit the certificate in \(certificateFile): \(error)")
        }
        return configuration
    }
}

/// Why the HTTP server's TLS could not be set up.
public struct TLSSetupError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Logs at most once per interval, with how many events it swallowed meanwhile.
struct RateLimitedLog {
    var interval: TimeAmount = .seconds(10)
    var last: NIODeadline?
    var suppressed = 0

    mutating func log(_ logger: Logger, _ level: Logger.Level, _ message: String) {
        let now = NIODeadline.now()
        if let last, now - last < interval {
            suppressed += 1
            return
        }
        let extra = suppressed > 0 ? " (and \(suppressed) more since the last report)" : ""
        logger.log(level: level, "\(message)\(extra)")
        last = now
        suppressed = 0
    }
}

/// The HTTP/1 child channel with the request deadlines and a JSON answer to unparsable requests.
struct GuardedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    let base: Base
    let limits: HTTPLimits
    let logger: Logger
    let executor: (@Sendable (any EventLoop) -> any TaskExecutor)?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        base.setup(channel: channel, logger: logger).map { value in
            // Never fail here: a failed child setup is an error on the listening channel, and
            // that ends Hummingbird's accept loop. Without the guard the request is still served.
            let operations = channel.pipeline.syncOperations
            if let decoder = try? operations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) {
                try? operations.addHandler(RequestBytesMarker(), position: .before(decoder))
                try? operations.addHandler(
                    RequestGuard(limits: limits, logger: self.logger), position: .after(decoder))
            }
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let executor = executor?(value.channel.eventLoop) else {
            return await base.handle(value: value, logger: logger)
        }
        await withTaskExecutorPreference(executor) { await base.handle(value: value, logger: logger) }
    }
}

/// Bytes of a request arrived (sent by ``RequestBytesMarker`` to ``RequestGuard``).
struct RequestBytesArrived {}

/// Tells ``RequestGuard`` that bytes arrived, before the HTTP decoder sees them: the header
/// deadline starts at a request's first byte, not at the end of the previous response, so a
/// kept-alive connection is governed by the idle timeout alone.
final class RequestBytesMarker: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(RequestBytesArrived())
        context.fireChannelRead(data)
    }
}

/// Closes a connection whose request head or body does not arrive in time, and answers a
/// request the decoder cannot parse (a 1 MB URL, a broken header) with a JSON error instead of
/// an empty body.
final class RequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case awaitingHead
        case readingBody
        case responding
    }

    private let limits: HTTPLimits
    private let logger: Logger
    private var state = State.awaitingHead
    /// When the connection must have sent `awaited`, if it must send anything.
    private var expiry: NIODeadline?
    private var awaited = ""
    private var awaitedTimeout = Duration.zero
    /// The one timer of the connection, and when it fires. It is moved only when a deadline
    /// comes before it: a deadline met, or pushed later, costs no timer (two per request
    /// otherwise); a timer that fires early finds the later deadline and waits for it.
    private var timer: Scheduled<Void>?
    private var timerFires = NIODeadline.distantFuture
    private var answeredError = false
    /// The response ended before its request's body did (an early 413, say).
    private var respondedEarly = false

    init(limits: HTTPLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    func handlerRemoved(context: ChannelHandlerContext) { stopTimer() }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimer()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is RequestBytesArrived else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if case .awaitingHead = state, expiry == nil {
            startDeadline(context, limits.headerTimeout, "its request head")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            cancelDeadline()
            respondedEarly = false
            state = .readingBody
            startDeadline(context, limits.bodyTimeout, "its request body")
        case .body:
            break
        case .end:
            cancelDeadline()
            state = respondedEarly ? .awaitingHead : .responding
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            if case .responding = state { state = .awaitingHead } else { respondedEarly = true }
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After the answer, the decoder reports every further byte as an error; one answer is enough.
        guard !answeredError else { return }
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // Answered here, not passed on: Hummingbird would answer 400 with an empty body.
        answeredError = true
        cancelDeadline()
        let (status, code, message): (HTTPResponseStatus, String, String) =
            switch parserError {
            case .headerOverflow:
                (
                    .requestHeaderFieldsTooLarge, "request_too_large",
                    "the request line and headers are larger than this node accepts"
                )
            default:
                (.badRequest, "bad_request", "the request could not be parsed as HTTP/1.1: \(parserError)")
            }
        let body = APIBody.ErrorEnvelope(error: .init(code: code, message: message))
        let bytes = ByteBuffer(bytes: (try? JSONEncoder().encode(body)) ?? Data())
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(bytes.readableBytes)")
        headers.add(name: "Connection", value: "close")
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
        )
        .whenFailure { _ in }
        context.write(wrapOutboundOut(.body(.byteBuffer(bytes)))).whenFailure { _ in }
        let closing = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            closing.close(promise: nil)
        }
    }

    private func startDeadline(_ context: ChannelHandlerContext, _ timeout: Duration, _ what: String) {
        let at = NIODeadline.now() + TimeAmount(timeout)
        expiry = at
        awaited = what
        awaitedTimeout = timeout
        if timer == nil || at < timerFires { arm(context.channel, at) }
    }

    private func arm(_ channel: any Channel, _ at: NIODeadline) {
        timer?.cancel()
        timerFires = at
        timer = channel.eventLoop.assumeIsolated().scheduleTask(deadline: at) { [self] in
            timerFired(channel)
        }
    }

    private func timerFired(_ channel: any Channel) {
        timer = nil
        timerFires = .distantFuture
        guard let expiry else { return }
        guard NIODeadline.now() >= expiry else { return arm(channel, expiry) }
        stopTimer()
        logger.debug(
            "closing an HTTP connection that did not send \(awaited) within \(awaitedTimeout)",
            metadata: ["remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"])
        channel.close(promise: nil)
    }

    /// Nothing is awaited now; the timer stays, and finds nothing when it fires.
    private func cancelDeadline() { expiry = nil }

    private func stopTimer() {
        expiry = nil
        timer?.cancel()
        timer = nil
        timerFires = .distantFuture
    }
}

/// On the listening channel: closes connections beyond the cap as they are accepted, and
/// pauses accepting for a moment when the process is out of file descriptors instead of
/// letting the error end the server's accept loop (which would stop the node).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never
    typealias OutboundOut = Never

    private let maxConnections: Int
    private let logger: Logger
    private var open = 0
    private var paused = false
    private var readWanted = false
    private var capLog = RateLimitedLog()
    private var exhaustionLog = RateLimitedLog()

    init(maxConnections: Int, logger: Logger) {
        self.maxConnections = maxConnections
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        guard open < maxConnections else {
            capLog.log(
                logger, .warning,
                "HTTP connection cap reached: \(open) connections open (--http-max-connections \(maxConnections)); closing new ones"
            )
            child.close(promise: nil)
            return
        }
        open += 1
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        child.closeFuture.hop(to: loop).whenComplete { _ in bound.value.open -= 1 }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError,
            [EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED].contains(error.errnoCode)
        else {
            context.fireErrorCaught(error)
            return
        }
        exhaustionLog.log(
            logger, .error,
            "cannot accept an HTTP connection (\(error)); pausing accepts for 100 ms, \(open) connections open"
        )
        guard !paused else { return }
        paused = true
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(100)) {
            self.paused = false
            if self.readWanted {
                self.readWanted = false
                context.read()
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        guard !paused else {
            readWanted = true
            return
        }
        context.read()
    }
}
