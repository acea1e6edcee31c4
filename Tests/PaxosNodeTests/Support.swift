import Foundation
import Hummingbird
import Logging
import PaxosServer
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One HTTP exchange: status code, JSON body (if any) and raw body.
struct HTTPAnswer {
    var status: Int
    var json: [String: Any]
    var body: Data
    var headers: [String: String] = [:]

    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
}

func http(
    _ method: String, _ url: String, body: Data? = nil, headers: [String: String] = [:],
    timeout: TimeInterval = 10
) async throws -> HTTPAnswer {
    var request = URLRequest(url: URL(string: url)!)
    request.httpMethod = method
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    request.httpBody = body
    request.timeoutInterval = timeout
    let (data, response) = try await URLSession.shared.data(for: request)
    let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    let http = response as? HTTPURLResponse
    var headers: [String: String] = [:]
    for (name, value) in http?.allHeaderFields ?? [:] {
        headers["\(name)".lowercased()] = "\(value)"
    }
    return HTTPAnswer(status: http?.statusCode ?? 0, json: json, body: data, headers: headers)
}

/// Ports handed out so far in this process: each is given once.
private let handedOutPorts = Mutex<Set<Int>>([])

/// A loopback TCP port that is free now and that nothing in this process takes before a node
/// binds it: outside the kernel's ephemeral range (32768-60999), where the test servers that bind port 0 and every outgoing connection
/// take theirs. A port from that range could be taken between this probe and the node's bind
/// (a multi-process test failed with "address already in use" that way), as the kill test
/// learned before (its ports are outside the range too).
func freePort() throws -> Int {
    for _ in 0..<1000 {
        let port = Int.random(in: 20_000...32_000)
        guard handedOutPorts.withLock({ $0.insert(port).inserted }) else { continue }
        if canBind(port) { return port }
    }
    throw TestError("no free port between 20000 and 32000")
}

private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    return bound == 0
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An executable built next to the test bundle.
func builtExecutable(_ name: String) throws -> URL {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path),
        directory.path != "/"
    {
        directory.deleteLastPathComponent()
    }
    let url = directory.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw TestError("\(name) is not built next to the tests; run `swift build` first")
    }
    return url
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
func eventually(
    _ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    if try await condition() { return }
    throw TestError("timed out after \(timeout): \(what)")
}

/// Serves `router` on a free loopback port for the duration of `body`, which gets the base URL.
func withServer(_ router: Router<BasicRequestContext>, _ body: (String) async throws -> Void) async throws {
    let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
    // The node's own server, limits and all.
    let application = HTTPServer.application(
        router: router, address: .hostname("127.0.0.1", port: 0), limits: HTTPLimits(maxConnections: 64),
        logger: Logger(label: "test-server"),
        onServerRunning: { channel in portSink.yield(channel.localAddress?.port ?? 0) })
    let server = Task { try await application.runService(gracefulShutdownSignals: []) }
    defer { server.cancel() }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else { throw TestError("the HTTP server did not start") }
    try await body("http://127.0.0.1:\(port)")
}
