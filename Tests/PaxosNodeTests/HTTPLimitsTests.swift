import Foundation
import Hummingbird
import Logging
import PaxosServer
import Testing

/// The HTTP server's bounds (issue 11, finding 5), against the real server on a loopback port
/// and raw sockets that misbehave. Every wait has a generous deadline: the tests assert that a
/// connection is closed, never how fast.
@Suite("HTTP limits", .serialized)
struct HTTPLimitsTests {
    static let deadline: Duration = .seconds(20)

    func withLimits(_ limits: HTTPLimits, _ body: (Int) async throws -> Void) async throws {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        router.get("/ping") { _, _ in "pong" }
        router.put("/sink") { request, _ -> String in
            let body = try await request.body.collect(upTo: 1 << 30)
            return "\(body.readableBytes)"
        }
        var logger = Logger(label: "http-limits-test")
        logger.logLevel = .warning
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let application = HTTPServer.application(
            router: router, address: .hostname("127.0.0.1", port: 0), limits: limits, logger: logger,
            onServerRunning: { channel in portSink.yield(channel.localAddress?.port ?? 0) })
        let server = Task { try await application.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestError("the HTTP server did not start") }
        try await body(port)
    }

    @Test("half a request head is closed after the header timeout, long before the idle timeout")
    func slowloris() async throws {
        let limits = HTTPLimits(
            headerTimeout: .milliseconds(300), bodyTimeout: .seconds(60), idleTimeout: .seconds(120),
            maxConnections: 10)
        try await withLimits(limits) { port in
            let connection = try RawConnection(port: port)
            try connection.send("GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            // Keep dripping header bytes: only a deadline on the whole head stops this.
            let closed = try await connection.dripUntilClosed(
                "a", every: .milliseconds(100), within: Self.deadline)
            #expect(closed, "the server still holds a connection that never finished its head")
        }
    }

    @Test(
        "a slow head right after an answered request is closed after the header timeout: the connection's timer, set for the first head, finds the later deadline and waits for it"
    )
    func slowSecondHead() async throws {
        // 1 s: the first request is answered before its timer fires, so the second head finds
        // that timer armed and moves it, rather than arming a fresh one.
        let limits = HTTPLimits(
            headerTimeout: .seconds(1), bodyTimeout: .seconds(60), idleTimeout: .seconds(120),
            maxConnections: 10)
        try await withLimits(limits) { port in
            let connection = try RawConnection(port: port)
            #expect(try await connection.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
            try connection.send("GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            let closed = try await connection.dripUntilClosed(
                "a", every: .milliseconds(100), within: Self.deadline)
            #expect(closed, "the server still holds a connection that never finished its second head")
        }
    }

    @Test(
        "a head that ends within its own header timeout is answered, though it is still arriving when the timer set for the request before it fires"
    )
    func secondHeadInTime() async throws {
        let header: Duration = .seconds(2)
        let limits = HTTPLimits(
            headerTimeout: header, bodyTimeout: .seconds(60), idleTimeout: .seconds(120), maxConnections: 10)
        try await withLimits(limits) { port in
            // Up to three tries: a try counts only if this test sent the head's end within the
            // header timeout (a stall of the test process would break that, not the server).
            for _ in 1...3 {
                let connection = try RawConnection(port: port)
                #expect(
                    try await connection.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
                // The first request's bytes came before this instant, so its timer fires before
                // answered + header, while the second head is half sent.
                let answered = ContinuousClock.now
                try await Task.sleep(until: answered + header / 2)
                let headStarted = ContinuousClock.now
                try connection.send("GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                try await Task.sleep(until: answered + header * 5 / 4)
                let ended = ContinuousClock.now
                guard ended - headStarted < header - .milliseconds(100) else { continue }
                let answer = try await connection.request("a\r\n\r\n")
                #expect(
                    answer.contains("pong"),
                    "a head sent within its header timeout was not answered: \(answer)")
                return
            }
            Issue.record("the test process was too slow three times to send a head within its header timeout")
        }
    }

    @Test("a never-ending chunked body is closed after the body timeout")
    func endlessBody() async throws {
        let limits = HTTPLimits(
            headerTimeout: .seconds(60), bodyTimeout: .milliseconds(500), idleTimeout: .seconds(120),
            maxConnections: 10)
        try await withLimits(limits) { port in
            let connection = try RawConnection(port: port)
            try connection.send("PUT /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            let closed = try await connection.dripUntilClosed(
                "1\r\nx\r\n", every: .milliseconds(50), within: Self.deadline)
            #expect(closed, "the server still reads a body that never ends")
        }
    }

    @Test("a connection that sends nothing is closed after the idle timeout")
    func idle() async throws {
        let limits = HTTPLimits(
            headerTimeout: .seconds(60), bodyTimeout: .seconds(60), idleTimeout: .milliseconds(300),
            maxConnections: 10)
        try await withLimits(limits) { port in
            let connection = try RawConnection(port: port)
            #expect(try await connection.waitForClose(within: Self.deadline))
        }
    }

    @Test("a kept-alive connection outlives the header timeout between requests")
    func keepAlive() async throws {
        let limits = HTTPLimits(
            headerTimeout: .milliseconds(200), bodyTimeout: .seconds(60), idleTimeout: .seconds(120),
            maxConnections: 10)
        try await withLimits(limits) { port in
            let connection = try RawConnection(port: port)
            #expect(try await connection.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
            try await Task.sleep(for: .milliseconds(600))
            #expect(try await connection.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
        }
    }

    @Test("connections beyond the cap are closed; the open ones keep working")
    func connectionCap() async throws {
        let limits = HTTPLimits(maxConnections: 2)
        try await withLimits(limits) { port in
            let first = try RawConnection(port: port)
            #expect(try await first.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
            let second = try RawConnection(port: port)
            #expect(try await second.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
            let third = try RawConnection(port: port)
            #expect(try await third.waitForClose(within: Self.deadline), "a third connection was kept")
            #expect(try await first.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong"))
            // A closed connection frees its place.
            second.close()
            try await eventually("a place is free again") {
                let next = try RawConnection(port: port)
                return try await next.request("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").contains("pong")
            }
        }
    }

    @Test("a request head too large to parse gets a 431 with a JSON error body")
    func hugeRequestLine() async throws {
        try await withLimits(HTTPLimits(maxConnections: 10)) { port in
            let connection = try RawConnection(port: port)
            let key = String(repeating: "k", count: 1 << 20)
            try? connection.send("GET /v1/kv/\(key) HTTP/1.1\r\nHost: x\r\n\r\n")
            let answer = try await connection.readUntilClosed(within: Self.deadline)
            #expect(answer.hasPrefix("HTTP/1.1 431"), "\(answer.prefix(200))")
            #expect(answer.contains(#""code":"request_too_large""#), "\(answer.prefix(400))")
        }
    }
}

/// A blocking loopback TCP client for misbehaving on purpose.
final class RawConnection: @unchecked Sendable {
    private let fd: Int32
    private var closed = false

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw TestError("cannot connect to port \(port): errno \(errno)")
        }
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else { throw TestError("send failed: errno \(errno)") }
            sent += n
        }
    }

    /// Reads what is there within `timeout`: nil when nothing came, empty when the peer closed.
    ///
    /// Polls without blocking and sleeps between polls: a blocking `poll` would hold one of the
    /// cooperative pool's threads (two on a 2-core CI machine) for the whole wait, and the
    /// server under test answers on that pool, as do the other suites running beside this one.
    private func read(timeout: Duration) async -> [UInt8]? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let end = ContinuousClock.now + timeout
        while poll(&poller, 1, 0) <= 0 {
            guard ContinuousClock.now < end else { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? Array(buffer[0..<n]) : []
    }

    /// Sends `chunk` every `interval` until the server closes the connection (true) or `within`
    /// passes (false).
    func dripUntilClosed(_ chunk: String, every interval: Duration, within: Duration) async throws -> Bool {
        let end = ContinuousClock.now + within
        while ContinuousClock.now < end {
            if (try? send(chunk)) == nil { return true }
            if let bytes = await read(timeout: interval) {
                if bytes.isEmpty { return true }
            }
        }
        return false
    }

    /// Waits until the server closes the connection (true) or `within` passes (false).
    func waitForClose(within: Duration) async throws -> Bool {
        let end = ContinuousClock.now + within
        while ContinuousClock.now < end {
            if let bytes = await read(timeout: .milliseconds(100)), bytes.isEmpty { return true }
            await Task.yield()
        }
        return false
    }

    /// Everything the server sends until it closes, or until `within` passes.
    func readUntilClosed(within: Duration) async throws -> String {
        var data: [UInt8] = []
        let end = ContinuousClock.now + within
        while ContinuousClock.now < end {
            guard let bytes = await read(timeout: .milliseconds(100)) else { continue }
            if bytes.isEmpty { break }
            data += bytes
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Sends one request and reads its response (headers and a small body, one read's worth).
    func request(_ text: String) async throws -> String {
        try send(text)
        var data: [UInt8] = []
        let end = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < end {
            guard let bytes = await read(timeout: .milliseconds(100)) else {
                if !data.isEmpty { break }
                continue
            }
            if bytes.isEmpty { break }
            data += bytes
            if String(decoding: data, as: UTF8.self).contains("\r\n\r\n") { break }
        }
        return String(decoding: data, as: UTF8.self)
    }
}
