// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-paxos",
    products: [
        .library(name: "PaxosCore", targets: ["PaxosCore"]),
        .library(name: "PaxosWire", targets: ["PaxosWire"]),
        .library(name: "Paxos", targets: ["Paxos"]),
        .library(name: "PaxosSQLite", targets: ["PaxosSQLite"]),
        .library(name: "PaxosNIO", targets: ["PaxosNIO"]),
        .library(name: "PaxosServer", targets: ["PaxosServer"]),
        .library(name: "PaxosTesting", targets: ["PaxosTesting"]),
        .library(name: "PaxosKV", targets: ["PaxosKV"]),
        .library(name: "PaxosHistory", targets: ["PaxosHistory"]),
        .library(name: "PaxosCertificates", targets: ["PaxosCertificates"]),
        .library(name: "PaxosFrames", targets: ["PaxosFrames"]),
        .library(name: "PaxosAPI", targets: ["PaxosAPI"]),
        .library(name: "PaxosKVClient", targets: ["PaxosKVClient"]),
        .library(name: "PaxosSimulation", targets: ["PaxosSimulation"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        // paxosctl's client: URLSession on Linux cannot trust a private CA (--cacert).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Metrics: the shell records through swift-metrics' API; the node exports Prometheus text.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Without the swift-configuration trait: the node reads its settings from flags.
        .package(
            url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0",
            traits: ["FullFoundation"]),
    ],
    targets: [
        // Pure protocol core: standard library only (no Foundation, no clocks, no threads, no I/O).
        .target(name: "PaxosCore"),
        // Versioned binary codec for peer messages.
        .target(name: "PaxosWire", dependencies: ["PaxosCore"]),
        // The runtime (ReplicaRuntime: core + store + transport + ticks), its two faces PaxosPeer
        // and LogPeer, and the PeerTransport it sends and serves on.
        .target(
            name: "Paxos",
            dependencies: [
                "PaxosCore", "PaxosWire", .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // The replicated key-value state machine (pure), its command codec, and KVService, which
        // drives it through a LogPeer.
        .target(name: "PaxosKV", dependencies: ["Paxos", "PaxosCore", "PaxosWire"]),
        // Recorded client histories and the linearizability checker.
        .target(name: "PaxosHistory"),
        // The system libsqlite3 (Debian: libsqlite3-dev).
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // The durable AcceptorStore on SQLite, with the migrations carried in the binary.
        .target(name: "PaxosSQLite", dependencies: ["PaxosCore", "PaxosWire", "CSQLite"]),
        // The peer frame codec on a NIO channel (length-prefixed, with a limit raised after the
        // handshake); apart from PaxosNIO so that the fuzzers build it without TLS.
        .target(
            name: "PaxosFrames",
            dependencies: ["PaxosWire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // A cluster's certificates: node identity from a certificate's SAN, and a test CA.
        .target(
            name: "PaxosCertificates",
            dependencies: [
                "PaxosCore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The TCP transport (SwiftNIO): framed, versioned, mutually authenticated peer connections.
        .target(
            name: "PaxosNIO",
            dependencies: [
                "Paxos", "PaxosCore", "PaxosWire", "PaxosCertificates", "PaxosFrames",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The HTTP API's request and answer bodies (Codable, Foundation only), shared by the server
        // and its clients.
        .target(name: "PaxosAPI"),
        // The release and the git commit of the build, recorded by the GitCommitPlugin.
        .target(name: "PaxosBuildInfo", plugins: ["GitCommitPlugin"]),
        .plugin(name: "GitCommitPlugin", capability: .buildTool()),
        // The Swift client of the key-value store: sessions, retries, endpoint failover, typed errors.
        .target(
            name: "PaxosKVClient",
            dependencies: [
                "PaxosAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // The HTTP/JSON API (Hummingbird): the lab routes over a PaxosPeer, the key-value store,
        // members, snapshots, health and metrics over a LogPeer.
        .target(
            name: "PaxosServer",
            dependencies: [
                "Paxos", "PaxosCore", "PaxosKV", "PaxosWire", "PaxosAPI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The production node: flags, wiring, lifecycle.
        .executableTarget(
            name: "paxos-node",
            dependencies: [
                "Paxos", "PaxosCore", "PaxosKV", "PaxosSQLite", "PaxosNIO", "PaxosServer", "PaxosBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        // The command-line client and the read-only database inspector.
        .executableTarget(
            name: "paxosctl",
            dependencies: [
                "PaxosSQLite", "PaxosHistory", "PaxosCertificates", "PaxosServer", "PaxosAPI",
                "PaxosKVClient",
                "PaxosBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Allocator statistics for the lab's memory test (glibc mallinfo2 is not in Swift's Glibc module).
        .target(name: "CAllocatorStats"),
        // Test support: the simulated network and lab helpers.
        .target(
            name: "PaxosTesting",
            dependencies: ["Paxos", "PaxosCore", "PaxosWire", "PaxosKV", "CAllocatorStats"]
        ),
        // The deterministic simulator: the production replica (LogPeer, ReplicaRuntime, the KV
        // machine) on one thread, with a virtual clock, network and disks; one seed, one run.
        .target(
            name: "PaxosSimulation",
            dependencies: ["Paxos", "PaxosCore", "PaxosWire", "PaxosKV", "PaxosHistory"]
        ),
        .executableTarget(
            name: "paxos-sim",
            dependencies: [
                "PaxosSimulation", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks of the store and the peer, and the commit stream the kill -9 test runs.
        .executableTarget(
            name: "paxos-bench",
            dependencies: [
                "Paxos", "PaxosCore", "PaxosSQLite", "CSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // testdata/ holds the transcript scripts, read from the source tree (#filePath), not bundled.
        .testTarget(name: "PaxosCoreTests", dependencies: ["PaxosCore"], exclude: ["testdata"]),
        .testTarget(
            name: "PaxosKVTests",
            dependencies: [
                "PaxosKV", "Paxos", "PaxosCore", "PaxosWire", "PaxosTesting", "PaxosSQLite", "PaxosHistory",
                "PaxosSimulation",
            ]
        ),
        .testTarget(name: "PaxosWireTests", dependencies: ["PaxosWire", "PaxosCore"]),
        .testTarget(
            name: "PaxosLabTests",
            dependencies: [
                "Paxos", "PaxosCore", "PaxosTesting", "PaxosSQLite",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PaxosNIOTests",
            dependencies: [
                "PaxosNIO", "Paxos", "PaxosCore", "PaxosWire", "PaxosTesting", "PaxosCertificates",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PaxosNodeTests",
            dependencies: [
                "PaxosServer", "Paxos", "PaxosCore", "PaxosKV", "PaxosTesting", "PaxosCertificates",
                "PaxosKVClient", "PaxosNIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "PaxosSQLiteTests", dependencies: ["PaxosSQLite", "PaxosCore", "CSQLite"]),
    ],
    swiftLanguageModes: [.v6]
)
