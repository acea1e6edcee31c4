import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Paxos
import PaxosBuildInfo
import PaxosCore
import PaxosKV
import PaxosNIO
import PaxosSQLite
import PaxosServer
import ServiceLifecycle

/// The version `paxos-node --version` and `GET /v1/status` report: the release and the git commit.
let paxosVersion = BuildInfo.version

@main
struct PaxosNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paxos-node",
        abstract: "Run one durable Paxos node: peers over TCP, clients over HTTP/JSON, state in SQLite.",
        discussion: """
            With no arguments it starts a single-node cluster on 127.0.0.1 (peers on 7101, HTTP on
            7001) with its data in ./paxos-data. For a cluster, give every node the same --peers and
            --cluster-id and its own --id, --http and --data-dir (tools/local-cluster does this).
            """,
        version: paxosVersion)

    @Flag(
        help: ArgumentHelp(
            "Join an existing cluster as a new member (etcd's --initial-cluster-state existing): a new data "
                + "directory starts knowing no membership, never votes, and learns the membership from the "
                + "cluster once an operator added it (paxosctl member add). --peers then lists the cluster's "
                + "nodes and this one. Ignored for a data directory that already has state."))
    var join = false

    @Option(help: "This node's id; must be one of the ids in --peers.")
    var id: UInt32 = 1

    @Option(
        help: ArgumentHelp(
            "Every node's peer-to-peer address, this one's included: ID=HOST:PORT,ID=HOST:PORT,…",
            valueName: "peers"))
    var peers: String?

    @Option(
        help: ArgumentHelp(
            "Where to listen for peers, when it is not this node's address in --peers (a proxy or NAT in "
                + "front of it; that address stays the one it introduces itself by).",
            valueName: "host:port"))
    var peerListen: String?

    @Option(
        help: ArgumentHelp(
            "The local IP address outgoing peer connections come from (default: the system's choice).",
            valueName: "ip"))
    var peerSource: String?

    @Option(
        help: ArgumentHelp(
            "This node's peer certificate (PEM; intermediates may follow). Its DNS name paxos-node-N "
                + "must name this node: peers take a node's id from its certificate.",
            valueName: "file"))
    var peerCert: String?

    @Option(help: ArgumentHelp("The private key of --peer-cert (PEM).", valueName: "file"))
    var peerKey: String?

    @Option(
        name: .customLong("peer-ca"),
        help: ArgumentHelp(
            "The CA certificates (PEM) every peer's certificate must chain to; only the cluster's CA.",
            valueName: "file"))
    var peerCA: String?

    @Flag(
        help: ArgumentHelp(
            "Talk to peers in plaintext, unauthenticated: anyone who can reach the peer port can "
                + "speak as any node. Only for tests on one machine; a single-node cluster needs no flag."))
    var insecurePeers = false

    @Option(
        help: ArgumentHelp(
            "Seconds an inbound peer connection has to finish its TLS handshake and hello.",
            valueName: "seconds"))
    var peerHandshakeTimeout: Double = 5

    @Option(
        help: ArgumentHelp(
            "Unauthenticated inbound peer connections open at once; more are closed at accept "
                + "(authenticated peers have one connection each, apart from these).",
            valueName: "count"))
    var peerMaxConnections: Int = TCPTransport.Configuration(clusterID: "", me: 0, peers: [:])
        .maxInboundConnections

    @Option(help: ArgumentHelp("Where to serve the HTTP client API (HOST:PORT).", valueName: "host:port"))
    var http: String = "127.0.0.1:7001"

    @Option(help: "Directory for this node's SQLite database (created if missing).")
    var dataDir: String = "./paxos-data"

    @Option(
        help: "The cluster's name; nodes of other clusters are refused, and the data directory remembers it.")
    var clusterId: String = "local"

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(
        help: ArgumentHelp(
            "Bootstrap a new cluster from a backup (paxosctl snapshot save): every node of the new "
                + "cluster starts once with the same file, a new --data-dir and a --cluster-id other "
                + "than the backup's. A directory that already holds state is refused.",
            valueName: "file"))
    var restore: String?

    @Option(
        help: ArgumentHelp(
            "text (one readable line per event) or json (one JSON object per line: time, level, label, "
                + "message, source and the metadata as fields), on standard error.",
            valueName: "format"))
    var logFormat: LogFormat = .text

    @Option(help: "The largest value a client may propose, in bytes.")
    var maxValueBytes: Int = PaxosHTTPAPI.defaultMaxValueBytes

    @Option(
        help: ArgumentHelp(
            "PEM certificate chain (leaf first) for serving the HTTP API over TLS; with --client-key.",
            valueName: "file"))
    var clientCert: String?

    @Option(help: ArgumentHelp("PEM private key of --client-cert.", valueName: "file"))
    var clientKey: String?

    @Option(
        help: ArgumentHelp(
            "A file holding the bearer token clients must send (Authorization: Bearer TOKEN) on every "
                + "route but GET /health and GET /ready (and /metrics with --metrics-unauthenticated). Without it the HTTP API is open to anyone who can reach it.",
            valueName: "file"))
    var clientTokenFile: String?

    @Flag(
        help: ArgumentHelp(
            "Serve GET /metrics without the --client-token-file token, for a Prometheus that has none "
                + "(the metrics tell an attacker the cluster's shape and load, never keys or values)."))
    var metricsUnauthenticated = false

    @Option(
        help: ArgumentHelp(
            "Seconds an HTTP client has from a request's first byte to the end of its headers.",
            valueName: "seconds"))
    var httpHeaderTimeout: Double = 10

    @Option(
        help: ArgumentHelp(
            "Seconds an HTTP client has from a request's headers to the end of its body.",
            valueName: "seconds"))
    var httpBodyTimeout: Double = 30

    @Option(
        help: ArgumentHelp(
            "Seconds an HTTP connection may sit idle between requests (or before its first) before it is closed.",
            valueName: "seconds"))
    var httpIdleTimeout: Double = 60

    @Option(
        help: ArgumentHelp(
            "Most HTTP connections open at once; more are closed on arrival (default: 1000, or half the "
                + "open-files limit when that is lower; never more than half that limit).",
            valueName: "count"))
    var httpMaxConnections: Int?

    @Option(
        help: ArgumentHelp(
            "Threads (event loops) for HTTP clients; each connection stays on one. The replicas run "
                + "on a loop of their own whatever this is; with fewer HTTP threads than cores, a flood of "
                + "clients cannot take every core (default: the number of cores, at most 64).",
            valueName: "count"))
    var httpThreads: Int?

    @Option(help: "The longest key-value key a client may name, in bytes (after percent-decoding).")
    var maxKeyBytes: Int = KVHTTPAPI.defaultMaxKeyBytes

    @Flag(
        help: ArgumentHelp(
            "Serve linearizable reads under a leader lease: no round of messages while the lease holds "
                + "(off: every linearizable read confirms the leader with one round). Safe only while no "
                + "node's monotonic clock runs more than 5% fast or slow. A node with it refuses to promise "
                + "another node's ballot for 300 ms after granting a lease (and every node refuses every "
                + "ballot for 300 ms after it starts, with or without it); a node without it grants none, "
                + "so a leader holds a lease only when a majority runs with it."))
    var leaseReads = false

    @Option(
        help: ArgumentHelp(
            "Log slots the leader may have proposed but not yet seen chosen. Fewer slots in flight put "
                + "more commands in each slot (fewer fsyncs per command); more lower the latency of a "
                + "lightly loaded leader.",
            valueName: "slots"))
    var pipelineWindow: Int = LogConfiguration().maxSlotsInFlight

    @Option(
        help: ArgumentHelp(
            "Applied log entries kept for a peer that lags; one further behind catches up from a "
                + "snapshot (at most 64 MiB of entries are kept whatever their number).",
            valueName: "entries"))
    var retainEntries: Int = LogConfiguration().retainEntries

    @Option(
        help: ArgumentHelp(
            "Bytes of rows per snapshot chunk sent to a peer that catches up.", valueName: "bytes"))
    var snapshotChunkBytes: Int = LogConfiguration().snapshotChunkBytes

    func validate() throws {
        guard (1...1024).contains(pipelineWindow) else {
            throw ValidationError("--pipeline-window must be between 1 and 1024, got \(pipelineWindow)")
        }
        guard (16...10_000_000).contains(retainEntries) else {
            throw ValidationError("--retain-entries must be between 16 and 10000000, got \(retainEntries)")
        }
        guard ((4 << 10)...(16 << 20)).contains(snapshotChunkBytes) else {
            throw ValidationError(
                "--snapshot-chunk-bytes must be between 4096 and 16777216, got \(snapshotChunkBytes)")
        }
        _ = try parsedPeers()
        if let peerListen, PeerAddress(parsing: peerListen) == nil {
            throw ValidationError("--peer-listen must be HOST:PORT, got '\(peerListen)'")
        }
        if let peerSource, !TCPTransport.isIPAddress(peerSource) {
            throw ValidationError("--peer-source must be an IP address, got '\(peerSource)'")
        }
        guard PeerAddress(parsing: http) != nil else {
            throw ValidationError("--http must be HOST:PORT, got '\(http)'")
        }
        guard !clusterId.isEmpty, clusterId.utf8.count <= 255 else {
            throw ValidationError("--cluster-id must be 1 to 255 bytes")
        }
        guard maxValueBytes > 0 else { throw ValidationError("--max-value-bytes must be positive") }
        let tlsFiles = [peerCert, peerKey, peerCA].compactMap { $0 }
        guard tlsFiles.isEmpty || tlsFiles.count == 3 else {
            throw ValidationError("--peer-cert, --peer-key and --peer-ca go together; give all three")
        }
        if insecurePeers, !tlsFiles.isEmpty {
            throw ValidationError("--insecure-peers and --peer-cert/--peer-key/--peer-ca exclude each other")
        }
        if tlsFiles.isEmpty, !insecurePeers, try parsedPeers().count > 1 {
            throw ValidationError(
                "peers need mutual TLS: give --peer-cert, --peer-key and --peer-ca (tools/make-certs makes "
                    + "them for a test cluster), or --insecure-peers for plaintext on a trusted test machine")
        }
        guard peerHandshakeTimeout >= 0.1, peerHandshakeTimeout <= 3600 else {
            throw ValidationError("--peer-handshake-timeout must be between 0.1 and 3600 seconds")
        }
        guard peerMaxConnections >= 1, peerMaxConnections <= 100_000 else {
            throw ValidationError("--peer-max-connections must be between 1 and 100000")
        }
        for (flag, value) in [
            ("--http-header-timeout", httpHeaderTimeout), ("--http-body-timeout", httpBodyTimeout),
            ("--http-idle-timeout", httpIdleTimeout),
        ] where !(value > 0 && value <= 86_400) {
            throw ValidationError("\(flag) must be between 0 and 86400 seconds, got \(value)")
        }
        guard (clientCert == nil) == (clientKey == nil) else {
            throw ValidationError("--client-cert and --client-key go together")
        }
        if let httpThreads, !(1...64).contains(httpThreads) {
            throw ValidationError("--http-threads must be between 1 and 64, got \(httpThreads)")
        }
        if let httpMaxConnections, httpMaxConnections < 1 {
            throw ValidationError("--http-max-connections must be positive, got \(httpMaxConnections)")
        }
        guard maxKeyBytes > 0 else { throw ValidationError("--max-key-bytes must be positive") }
    }

    /// The peer TLS settings, checked against this node's id; nil for plaintext.
    func peerTLS() throws -> PeerTLS? {
        guard let peerCert, let peerKey, let peerCA else { return nil }
        let tls: PeerTLS
        do {
            tls = try PeerTLS(certificateFile: peerCert, privateKeyFile: peerKey, caFile: peerCA)
        } catch {
            throw NodeStartupError("cannot use the peer certificates: \(error)")
        }
        guard tls.node == NodeID(id) else {
            throw NodeStartupError(
                "the certificate in \(peerCert) names node \(tls.node) (paxos-node-\(tls.node)), but this is "
                    + "node \(id) (--id): each node needs its own certificate")
        }
        return tls
    }

    /// `--peers`, or a single-node cluster of this node on 127.0.0.1:(7100 + id).
    func parsedPeers() throws -> [NodeID: PeerAddress] {
        guard let peers else { return [NodeID(id): PeerAddress(host: "127.0.0.1", port: 7100 + Int(id))] }
        var result: [NodeID: PeerAddress] = [:]
        for item in peers.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let peerID = UInt32(parts[0].trimmingCharacters(in: .whitespaces)),
                let address = PeerAddress(parsing: parts[1].trimmingCharacters(in: .whitespaces))
            else { throw ValidationError("--peers: '\(item)' is not ID=HOST:PORT") }
            guard result[NodeID(peerID)] == nil else {
                throw ValidationError("--peers: node \(peerID) is listed twice")
            }
            result[NodeID(peerID)] = address
        }
        guard result[NodeID(id)] != nil else {
            throw ValidationError(
                "--peers must include this node (--id \(id)); it lists \(result.keys.sorted())")
        }
        return result
    }

    func run() async throws {
        let level = logLevel
        let format = logFormat
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = TextLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: "paxos-node")
        logger[metadataKey: "node"] = "\(id)"
        do {
            try await runNode(logger: logger)
        } catch let error as NodeStartupError {
            FileHandle.standardError.write(Data("paxos-node: error: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func runNode(logger: Logger) async throws {
        let me = NodeID(id)
        let addresses = try parsedPeers()
        let httpAddress = PeerAddress(parsing: http)!
        // Certificates first: a bad one must stop the node before it touches its data.
        let peerTLSSettings = try peerTLS()
        if peerTLSSettings == nil, addresses.count > 1 {
            logger.warning("--insecure-peers: peer connections are plaintext and unauthenticated")
        }

        // The data directory and its database, claimed for this node and cluster.
        let directory = URL(fileURLWithPath: dataDir).standardizedFileURL
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw NodeStartupError(
                "cannot use data directory \(directory.path): \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: directory.path) else {
            throw NodeStartupError("cannot use data directory \(directory.path): it is not writable")
        }
        // A backup is checked whole before anything is written: a damaged one changes nothing.
        var backup: SnapshotFile.Summary?
        if let restore {
            guard !join else {
                throw NodeStartupError("--restore bootstraps a new cluster; it cannot --join one")
            }
            do {
                backup = try await SnapshotFile.read(
                    path: restore, maxValueBytes: max(maxValueBytes, maxKeyBytes)
                ) {
                    _ in
                }
            } catch {
                throw NodeStartupError("cannot restore from \(restore): \(error)")
            }
            guard backup!.clusterID != clusterId else {
                throw NodeStartupError(
                    "cannot restore from \(restore): it is a backup of cluster '\(clusterId)'; a restore bootstraps a new cluster, so give it another --cluster-id (its nodes must never mix with the old cluster's)"
                )
            }
        }
        // One process per data directory, checked before the database is read or written.
        let lock = try DataDirectoryLock.acquire(directory: directory.path)
        let databasePath = directory.appendingPathComponent("node.db").path
        // A restore marks the directory until its install commit: a node whose restore was cut
        // off must not come up as an empty member of the new cluster as if it were restored.
        let restoring = directory.appendingPathComponent("RESTORING").path
        let interrupted = FileManager.default.fileExists(atPath: restoring)
        if restore == nil, interrupted {
            throw NodeStartupError(
                "a restore into \(directory.path) was interrupted (\(restoring) exists): start it again with --restore and the same backup, or start over with an empty data directory"
            )
        }
        if restore != nil {
            guard interrupted || !FileManager.default.fileExists(atPath: databasePath) else {
                throw NodeStartupError(
                    "cannot restore into \(directory.path): it already holds a node's database; --restore needs a new data directory, and a restored node starts again without --restore"
                )
            }
            guard Self.durablyCreate(restoring, in: directory.path) else {
                throw NodeStartupError("cannot write \(restoring): \(String(cString: strerror(errno)))")
            }
        }
        let store: SQLiteStore
        let identity: SQLiteStore.Identity
        do {
            store = try SQLiteStore(path: databasePath)
            identity = try await store.claimIdentity(nodeID: me, clusterID: clusterId, joining: join)
        } catch let error as SQLiteError {
            throw NodeStartupError("cannot use \(databasePath): \(error.message)")
        }
        if let restore, let backup {
            try await restoreBackup(restore, backup, into: store, path: databasePath, logger: logger)
            guard unlink(restoring) == 0, Self.syncDirectory(directory.path) else {
                throw NodeStartupError("cannot remove \(restoring): \(String(cString: strerror(errno)))")
            }
        }
        let incarnation = String(identity.incarnation, radix: 16)
        if identity.created, !join {
            logger.notice(
                "new data directory: bootstrapping node \(me) of cluster '\(clusterId)' with incarnation \(incarnation). A new cluster serves once all of --peers have been up together. If this node was a member before and lost its data, its peers refuse it: stop it and replace it (README, 'Replacing a failed node': member remove, start with --join, member add, member promote)"
            )
        } else if identity.created {
            logger.notice(
                "new data directory joining cluster '\(clusterId)' as node \(me) with incarnation \(incarnation): it learns the membership once added (paxosctl member add \(me) ADDRESS), and votes once promoted"
            )
        } else if join, !identity.joined {
            logger.notice("--join is ignored: \(databasePath) already belongs to a member")
        }

        // Peers over TCP.
        var transportConfiguration = TCPTransport.Configuration(
            clusterID: clusterId, me: me, peers: addresses)
        transportConfiguration.listenAddress = peerListen.flatMap(PeerAddress.init(parsing:))
        transportConfiguration.sourceHost = peerSource
        transportConfiguration.tls = peerTLSSettings
        transportConfiguration.handshakeTimeout = .milliseconds(Int64(peerHandshakeTimeout * 1000))
        transportConfiguration.maxInboundConnections = peerMaxConnections
        // The largest message: one value with its key, or a snapshot chunk that ends with one.
        transportConfiguration.maxFrameBytes = max(
            transportConfiguration.maxFrameBytes,
            maxValueBytes + maxKeyBytes + snapshotChunkBytes + (64 << 10))
        // One event loop runs the replicas: their actors, their ticks, the peer connections and
        // every task under the service group but the HTTP server's (EventLoopExecutor); only
        // the store's commits leave it. Clients get loops of their own: what anyone who can
        // reach the HTTP port sends (TLS handshakes, bodies, reads of large values) never
        // delays a heartbeat or a vote. A connection's task runs on its connection's loop, so a
        // request is read, handled and answered on one thread; a single loop was the bound of
        // reads under load (one core busy, the others partly idle).
        let loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let executor = EventLoopExecutor(loopGroup.next())
        let httpGroup = MultiThreadedEventLoopGroup(numberOfThreads: httpThreads ?? min(System.coreCount, 64))
        let httpExecutor = EventLoopExecutor(httpGroup.next())
        let transport = TCPTransport(
            configuration: transportConfiguration, logger: logger, executor: executor)
        do {
            try await transport.start()
        } catch {
            await store.close()
            throw NodeStartupError(
                "cannot listen for peers on \(peerListen ?? addresses[me]!.description): \(describe(error))")
        }

        let peer: PaxosPeer
        do {
            // A new data directory may stand for one whose disk was lost: its classic acceptor
            // recovers before it votes (README, "A classic node that lost its disk"). So does a
            // directory with no classic state at all, which covers a crash between creating the
            // file and recording that recovery began; for a node that never voted, recovering
            // only asks its peers once.
            let classic = try await store.load()
            let recover =
                identity.created
                || (classic.voteFloor == nil && classic.maxRound == 0 && classic.instances.isEmpty
                    && classic.forgottenBelow == 0)
            peer = try await PaxosPeer.make(
                me: me, peers: Array(addresses.keys), store: store, transport: transport,
                seed: UInt64(UInt32.random(in: .min ... .max)) << 32 | UInt64(id), recover: recover,
                sleep: { try await executor.sleep(for: $0) }, serialExecutor: executor.eventLoop.executor,
                start: false)
        } catch {
            await transport.shutdown()
            throw NodeStartupError("cannot load the state in \(databasePath): \(error)")
        }

        // The replicated log with the key-value store, on the same database and connections.
        let metrics = NodeMetrics()
        let log: LogPeer<KVStateMachine>
        do {
            var configuration = LogConfiguration()
            configuration.maxSlotsInFlight = pipelineWindow
            configuration.retainEntries = retainEntries
            configuration.snapshotChunkBytes = snapshotChunkBytes
            // Without --lease-reads too: this data directory may have granted a lease in its last
            // run, with the flag.
            configuration.refuseBallotsAfterStart = true
            if leaseReads {
                configuration.leaseTicks = LogConfiguration.maxLeaseTicks(
                    electionTicks: configuration.electionTicks)
            }
            log = try await LogPeer<KVStateMachine>.make(
                me: me, peers: Array(addresses.keys), machine: KVStateMachine(), store: store,
                transport: transport, configuration: configuration,
                seed: UInt64(UInt32.random(in: .min ... .max)) << 32 | UInt64(id),
                incarnation: identity.incarnation, addresses: addresses.mapValues(\.description),
                joining: identity.joined, logger: logger, metrics: LogMetrics(factory: metrics.factory),
                sleep: { try await executor.sleep(for: $0) }, clock: { EventLoopExecutor.leaseClock() },
                serialExecutor: executor.eventLoop.executor, start: false)
        } catch {
            await peer.kill()
            throw NodeStartupError("cannot load the replicated log in \(databasePath): \(error)")
        }

        // Clients over HTTP.
        var clientToken: String?
        if let clientTokenFile {
            do {
                clientToken = try BearerTokenMiddleware<BasicRequestContext>.token(fromFile: clientTokenFile)
            } catch {
                await log.kill()
                await peer.kill()
                throw NodeStartupError(
                    "cannot read --client-token-file \(clientTokenFile): \(describe(error))")
            }
            guard clientToken != nil else {
                await log.kill()
                await peer.kill()
                throw NodeStartupError("--client-token-file \(clientTokenFile) is empty")
            }
        } else {
            logger.warning("no --client-token-file: the HTTP API answers anyone who can reach it")
        }
        let info = NodeInfo(
            clusterID: clusterId, dataDirectory: directory.path, version: paxosVersion,
            peerAddresses: addresses.mapValues(\.description),
            isReachable: { [transport] id in await transport.isConnected(to: id) },
            components: [.log(log)], log: { await NodeInfo.LogSummary.of(log) }, databasePath: databasePath)
        var openPaths = BearerTokenMiddleware<BasicRequestContext>.defaultOpenPaths
        if metricsUnauthenticated { openPaths.insert("/metrics") }
        let router = PaxosHTTPAPI.router(
            peer: peer, info: info, maxValueBytes: maxValueBytes, clientToken: clientToken,
            openPaths: openPaths, metrics: metrics)
        MetricsHTTPAPI.add(
            to: router, metrics: metrics, log: log,
            isReachable: { [transport] id in await transport.isConnected(to: id) },
            sessions: { [store] in try? await store.machineRowCount(in: KVStateMachine.sessionSpace) })
        HealthHTTPAPI.add(
            to: router, log: log, components: [.peer(peer)] + info.components,
            isReachable: { [transport] id in await transport.isConnected(to: id) })
        KVHTTPAPI.add(
            to: router, service: KVService(peer: log), maxValueBytes: maxValueBytes, maxKeyBytes: maxKeyBytes)
        MembersHTTPAPI.add(
            to: router, peer: log, isReachable: { [transport] id in await transport.isConnected(to: id) })
        SnapshotHTTPAPI.add(to: router, peer: log, clusterID: clusterId)
        var tls: TLSConfiguration?
        if let clientCert, let clientKey {
            do {
                tls = try HTTPServer.tlsConfiguration(certificateFile: clientCert, keyFile: clientKey)
            } catch {
                await log.kill()
                await peer.kill()
                throw NodeStartupError("cannot serve HTTPS: \(error)")
            }
        }
        var maxConnections = httpMaxConnections ?? HTTPLimits.defaultMaxConnections()
        if let allowed = HTTPLimits.connectionsAllowedByOpenFilesLimit(), maxConnections > allowed {
            // Running out of descriptors traps the runtime, so the cap is held below the limit.
            logger.warning(
                "--http-max-connections \(maxConnections) is more than half the open-files limit allows; using \(allowed) (raise the limit, e.g. ulimit -n, to allow more)"
            )
            maxConnections = allowed
        }
        let limits = HTTPLimits(
            headerTimeout: .seconds(httpHeaderTimeout), bodyTimeout: .seconds(httpBodyTimeout),
            idleTimeout: .seconds(httpIdleTimeout), maxConnections: maxConnections)
        let scheme = tls == nil ? "http" : "https"
        let application = HTTPServer.application(
            router: router, address: .hostname(httpAddress.host, port: httpAddress.port), limits: limits,
            tls: tls, serverName: "paxos-node", logger: logger, eventLoopGroup: httpGroup,
            connectionExecutor: { EventLoopExecutor($0) },
            onServerRunning: { channel in
                logger.info(
                    "serving the HTTP API",
                    metadata: [
                        "address": "\(channel.localAddress.map { "\($0)" } ?? httpAddress.description)",
                        "max_connections": "\(limits.maxConnections)",
                        "scheme": "\(scheme)",
                    ])
            })

        let node = NodeService(peer: peer, log: log, store: store, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                // Shut down gracefully in reverse order: clients first (the HTTP server), then
                // the log, then the classic peer (which closes the peer connections), then the
                // store. A replica whose commit failed ends its service and nothing else: the
                // node goes on answering clients that it stopped, and /ready says so.
                services: [
                    .init(service: node),
                    .init(service: peer.service, successTerminationBehavior: .ignore),
                    .init(service: log.service, successTerminationBehavior: .ignore),
                    .init(
                        service: PreferringExecutor(base: application, executor: httpExecutor),
                        successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        logger.info(
            "node started",
            metadata: [
                "cluster": "\(clusterId)",
                "peers": "\(addresses.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })",
                "data": "\(databasePath)",
                "lock": "\(directory.path)/\(DataDirectoryLock.fileName) (fd \(lock.descriptor))",
            ])
        do {
            try await withTaskExecutorPreference(executor) { try await group.run() }
        } catch {
            await log.kill()
            await peer.kill()
            await store.close()
            throw NodeStartupError("stopped: \(describe(error))")
        }
        logger.info("node stopped")
    }
}

/// Runs a service's tasks on an executor of their own (the HTTP server's on its event loop).
struct PreferringExecutor<Base: Service>: Service, CustomStringConvertible {
    let base: Base
    let executor: any TaskExecutor

    /// The service group names a service by its description in its logs: the base's name.
    var description: String { "\(base)" }

    func run() async throws {
        try await withTaskExecutorPreference(executor) { try await base.run() }
    }
}

/// Runs until graceful shutdown, then closes the store: last, once the replicas' services ended.
/// The kills are no-ops then; they stop the replicas if the group is cancelled instead.
struct NodeService: Service {
    let peer: PaxosPeer
    let log: LogPeer<KVStateMachine>
    let store: SQLiteStore
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down")
        await log.kill()
        await peer.kill()
        await store.close()
    }
}

/// A startup failure, reported as one line.
struct NodeStartupError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// One line for an error, with the common socket errors in words.
func describe(_ error: any Error) -> String {
    let text = "\(error)"
    if text.contains("Address already in use") || text.contains("errno: 98") {
        return "address already in use"
    }
    if text.contains("Cannot assign requested address") || text.contains("errno: 99") {
        return "cannot assign the requested address"
    }
    return text.replacingOccurrences(of: "\n", with: " ")
}

/// `--log-format`.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

extension PaxosNodeCommand {
    /// Installs the backup's rows as the state machine of a data directory that holds nothing
    /// yet: staged frame by frame (durably, like a snapshot from a peer), installed in one commit
    /// once the second reading's checksum matches too.
    func restoreBackup(
        _ file: String, _ backup: SnapshotFile.Summary, into store: SQLiteStore, path: String, logger: Logger
    ) async throws {
        let state: LogDurableState
        do {
            state = try await store.loadLog()
        } catch {
            throw NodeStartupError("cannot restore into \(path): \(error)")
        }
        let rows = try await store.machineRows()
        guard state.applied == 0, state.records.isEmpty, state.promised == nil, rows.isEmpty,
            state.membership == nil
        else {
            throw NodeStartupError(
                "cannot restore into \(path): it already holds the state of a node (applied slot \(state.applied)); --restore needs a new data directory, and a restored node starts again without --restore"
            )
        }
        let me = NodeID(id)
        var first = true
        do {
            let summary = try await SnapshotFile.read(
                path: file, maxValueBytes: max(maxValueBytes, maxKeyBytes)
            ) {
                rows in
                try await store.commitLog([
                    .stageSnapshot(
                        SnapshotChunk(source: me, token: 1, applied: backup.applied, rows: rows, first: first)
                    )
                ])
                first = false
            }
            guard summary == backup else { throw SnapshotFileError("\(file) changed while it was restored") }
            if backup.applied > 0 {
                if first {
                    try await store.commitLog([
                        .stageSnapshot(
                            SnapshotChunk(
                                source: me, token: 1, applied: backup.applied, rows: [], first: true))
                    ])
                }
                try await store.commitLog([.installSnapshot(applied: backup.applied)])
            }
        } catch {
            try? await store.commitLog([.discardSnapshot])
            throw NodeStartupError("cannot restore from \(file): \(error)")
        }
        logger.notice(
            "restored \(backup.rows) rows of cluster '\(backup.clusterID)' applied through slot \(backup.applied) from \(file) (sha256 \(backup.sha256)): node \(me) bootstraps the new cluster '\(clusterId)' from them"
        )
    }
}

extension PaxosNodeCommand {
    /// Creates an empty file and makes its name durable (file and directory fsynced).
    static func durablyCreate(_ path: String, in directory: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0 && syncDirectory(directory)
    }

    /// fsyncs a directory, so that the names created or removed in it survive a crash.
    static func syncDirectory(_ directory: String) -> Bool {
        let fd = open(directory, O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
