import Logging
import NIOCore
import NIOPosix
import Paxos
import PaxosCertificates
import PaxosCore
import PaxosNIO
import Synchronization

/// Collects log records so tests can assert that something was logged.
final class LogRecorder: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])

    var all: [Record] { records.withLock { $0 } }

    func logger(_ label: String = "test") -> Logger {
        Logger(label: label) { _ in Handler(recorder: self) }
    }

    fileprivate func append(_ record: Record) { records.withLock { $0.append(record) } }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let extra = event.metadata { all.merge(extra) { $1 } }
            recorder.append(
                Record(level: event.level, message: "\(event.message)", metadata: all.mapValues { "\($0)" }))
        }
    }
}

/// Warnings and errors only: lab scenarios over TCP make peers come and go by design.
let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

/// The cluster CA the TLS tests share (one key pair per test process).
let testAuthority: ClusterAuthority = {
    do { return try ClusterAuthority(name: "swift-paxos test CA") } catch { fatalError("test CA: \(error)") }
}()

/// Mutual TLS settings for `node`, issued by `authority`.
func peerTLS(_ node: NodeID, authority: ClusterAuthority = testAuthority, extraNodeNames: [NodeID] = [])
    throws -> PeerTLS
{
    let issued = try authority.issue(node: node, extraNodeNames: extraNodeNames)
    return try PeerTLS(
        certificatePEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM,
        caPEM: authority.certificatePEM)
}

/// Builds `count` TCP transports on loopback ephemeral ports, all pointing at each other; with
/// `tls`, every connection is mutual TLS with certificates from ``testAuthority``.
func makeTCPTransports(
    _ count: Int, clusterID: String = "test-cluster", tls: Bool = false, logger: Logger = quietLogger,
    executors: [EventLoopExecutor]? = nil, configure: (inout TCPTransport.Configuration) -> Void = { _ in }
) async throws -> [TCPTransport] {
    let ids = (0..<count).map { NodeID(UInt32($0)) }
    let unbound = Dictionary(uniqueKeysWithValues: ids.map { ($0, PeerAddress(host: "127.0.0.1", port: 0)) })
    var transports: [TCPTransport] = []
    var ports: [NodeID: Int] = [:]
    for id in ids {
        var configuration = TCPTransport.Configuration(clusterID: clusterID, me: id, peers: unbound)
        configuration.callTimeout = .seconds(2)
        if tls { configuration.tls = try peerTLS(id) }
        configure(&configuration)
        let transport = TCPTransport(
            configuration: configuration, logger: logger, executor: executors?[Int(id.rawValue)])
        ports[id] = try await transport.start()
        transports.append(transport)
    }
    for transport in transports {
        for (id, port) in ports where id != transport.configuration.me {
            await transport.setAddress(PeerAddress(host: "127.0.0.1", port: port), for: id)
        }
    }
    return transports
}

/// Connects a raw TCP client, writes `bytes`, and waits (up to `timeout`) for the server to close
/// the connection. Returns whatever the server sent before closing, or nil if it did not close.
func sendRawAndAwaitClose(port: Int, _ bytes: [UInt8], timeout: Duration = .seconds(5)) async throws
    -> [UInt8]?
{
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
        group.addTask {
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(bytes: bytes))
                var received: [UInt8] = []
                do {
                    for try await chunk in inbound { received += Array(chunk.readableBytesView) }
                } catch {}
                return received
            }
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        if first == nil { try? await channel.channel.close() }
        return first
    }
}

func frame(_ body: [UInt8]) -> [UInt8] {
    let length = UInt32(body.count)
    return [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
        + body
}
