// swift-tools-version: 6.1
import PackageDescription

// Coverage-guided fuzz targets (libFuzzer) for every decoder that reads bytes from outside the
// process. A separate package, so the main build and `swift test` never need the sanitizers.
// Build and run with `tools/fuzz` (see tools/README.md).
let package = Package(
    name: "swift-paxos-fuzz",
    dependencies: [
        .package(name: "swift-paxos", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    ],
    targets: [
        // The checks every target shares, and the seed generator's encodings.
        .target(
            name: "FuzzSupport",
            dependencies: [
                .product(name: "PaxosCore", package: "swift-paxos"),
                .product(name: "PaxosWire", package: "swift-paxos"),
                .product(name: "PaxosKV", package: "swift-paxos"),
            ]
        ),
        fuzzer("FuzzPeerFrame", ["PaxosWire"]),
        fuzzer(
            "FuzzFrameStream", ["PaxosWire", "PaxosFrames"],
            extra: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]),
        fuzzer("FuzzPaxosWire", ["PaxosCore", "PaxosWire"]),
        fuzzer("FuzzLogWire", ["PaxosCore", "PaxosWire"]),
        fuzzer("FuzzKVCommand", ["PaxosCore", "PaxosWire", "PaxosKV"]),
        fuzzer("FuzzKVSnapshot", ["PaxosCore", "PaxosWire", "PaxosKV"]),
        // Writes the seed corpora (Corpus/<target>/) from valid encodings.
        .executableTarget(
            name: "fuzz-seeds",
            dependencies: [
                "FuzzSupport",
                .product(name: "PaxosCore", package: "swift-paxos"),
                .product(name: "PaxosWire", package: "swift-paxos"),
                .product(name: "PaxosKV", package: "swift-paxos"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

/// One libFuzzer executable: `Sources/NAME/main.swift` defines `LLVMFuzzerTestOneInput`.
func fuzzer(_ name: String, _ products: [String], extra: [Target.Dependency] = []) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: "swift-paxos") } + extra
    )
}
