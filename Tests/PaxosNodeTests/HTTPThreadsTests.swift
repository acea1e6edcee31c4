import Hummingbird
import Logging
import NIOCore
import NIOPosix
import PaxosNIO
import PaxosServer
import Testing

/// paxos-node serves HTTP on several event loops, and runs each connection's task on its own
/// connection's loop (`HTTPServer.application(connectionExecutor:)`).
@Suite("HTTP connections' threads")
struct HTTPThreadsTests {
    @Test(
        "with a connection executor, a connection's handlers run on one of the group's loops, always the same one, and the connections spread over the loops"
    )
    func handlersRunOnTheirConnectionsLoop() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Array(group.makeIterator())
        let router = Router()
        router.get("/where") { _, _ -> String in
            loops.firstIndex(where: { $0.inEventLoop }).map { "loop \($0)" } ?? "no loop"
        }
        var logger = Logger(label: "http-threads-test")
        logger.logLevel = .warning
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let application = HTTPServer.application(
            router: router, address: .hostname("127.0.0.1", port: 0), limits: HTTPLimits(), logger: logger,
            eventLoopGroup: group, connectionExecutor: { EventLoopExecutor($0) },
            onServerRunning: { channel in portSink.yield(channel.localAddress?.port ?? 0) })
        let server = Task { try await application.runService(gracefulShutdownSignals: []) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw TestError("the HTTP server did not start") }
        var seen: Set<String> = []
        for _ in 0..<4 {
            let connection = try RawConnection(port: port)
            var answers: Set<String> = []
            for _ in 0..<3 {
                let answer = try await connection.request("GET /where HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.insert(answer.split(separator: "\r\n\r\n").last.map(String.init) ?? answer)
            }
            #expect(answers.count == 1, "one connection's handlers ran in different places: \(answers)")
            seen.formUnion(answers)
        }
        #expect(seen == ["loop 0", "loop 1"])
        server.cancel()
        _ = await server.result
        try await group.shutdownGracefully()
    }

    @Test("--http-threads outside 1...64 is a usage error (exit 64) that names the flag")
    func badThreadCount() async throws {
        let nodes = try NodeProcesses(count: 1)
        for count in ["0", "65"] {
            let process = try nodes.launch(
                [
                    "--id", "1", "--peers", "1=127.0.0.1:1", "--http-threads", count, "--data-dir",
                    nodes.dataDir(1),
                ],
                log: "bad-\(count).log")
            await exited(process)
            #expect(process.terminationStatus == 64)
            #expect(
                nodes.log("bad-\(count).log").contains("--http-threads"), "\(nodes.log("bad-\(count).log"))")
        }
    }
}
