// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-paxos",
    products: [
        .library(name: "PaxosCore", targets: ["PaxosCore"]),
        .library(name: "PaxosWire", targets: ["PaxosWire"]),
        .library(name: "Paxos", targets: ["Paxos"]),
        .library(name: "PaxosTesting", targets: ["PaxosTesting"]),
    ],
    targets: [
        // Pure protocol core: standard library only (no Foundation, no clocks, no threads, no I/O).
        .target(name: "PaxosCore"),
        // Versioned binary codec for peer messages.
        .target(name: "PaxosWire", dependencies: ["PaxosCore"]),
        // The shell: PaxosPeer actor (core + store + transport + ticks) and the Transport protocol.
        .target(name: "Paxos", dependencies: ["PaxosCore"]),
        // Allocator statistics for the lab's memory test (glibc mallinfo2 is not in Swift's Glibc module).
        .target(name: "CAllocatorStats"),
        // Test support: the simulated network and lab helpers.
        .target(
            name: "PaxosTesting",
            dependencies: ["Paxos", "PaxosCore", "PaxosWire", "CAllocatorStats"]
        ),
        // A 3-peer cluster in one process, for a first look.
        .executableTarget(name: "paxos-demo", dependencies: ["Paxos", "PaxosCore", "PaxosTesting"]),
        .testTarget(name: "PaxosCoreTests", dependencies: ["PaxosCore"]),
        .testTarget(name: "PaxosWireTests", dependencies: ["PaxosWire", "PaxosCore"]),
        .testTarget(
            name: "PaxosLabTests",
            dependencies: ["Paxos", "PaxosCore", "PaxosTesting"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
