import ArgumentParser
import Foundation
import PaxosAPI
import PaxosKVClient

/// Prints `value` as sorted, pretty JSON.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start agreement on instance SEQ with VALUE (returns at once).")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "The instance's sequence number.") var seq: Int
    @Argument(help: "The value to propose.") var value: String

    func run() async throws {
        try await endpoint.withClient { try await $0.startInstance(seq, Data(value.utf8)) }
        print("started \(seq)")
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What the node knows about instance SEQ.",
        discussion: "With --wait, exits 8 when the instance is still pending when the wait runs out.")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "The instance's sequence number.") var seq: Int
    @Flag(help: "Print the JSON answer.") var json = false
    @Option(help: "Wait up to this many seconds for the instance to be decided.") var wait: Double = 0

    func validate() throws {
        guard wait.isFinite, wait >= 0, wait <= 86_400 else {
            throw ValidationError("--wait must be a number of seconds in [0, 86400]")
        }
    }

    func run() async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int64(wait * 1000))
        let instance = try await endpoint.withClient { client -> APIBody.Instance in
            var instance = try await client.instance(seq)
            while instance.fate == "pending", clock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                instance = try await client.instance(seq)
            }
            return instance
        }
        if json {
            try printJSON(instance)
        } else if instance.fate == "decided" {
            print("\(seq) decided \(instance.value ?? "<binary, base64 \(instance.valueBase64 ?? "")>")")
        } else {
            print("\(seq) \(instance.fate)")
        }
        if wait > 0, instance.fate == "pending" {
            throw cliExit(.timedOut, "instance \(seq) is still pending after --wait \(wait) s")
        }
    }
}

struct Done: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tell the node its application is done with every instance <= SEQ.")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "The highest instance the application is done with.") var seq: Int

    func run() async throws {
        let answer = try await endpoint.withClient { try await $0.done(seq) }
        print("done \(seq); min is \(answer.min)")
    }
}

struct Min: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print min(): instances below it are forgotten.")
    @OptionGroup var endpoint: Endpoint

    func run() async throws {
        print(try await endpoint.withClient { try await $0.status() }.min)
    }
}

struct Max: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print max(): the highest instance the node knows of.")
    @OptionGroup var endpoint: Endpoint

    func run() async throws {
        print(try await endpoint.withClient { try await $0.status() }.max)
    }
}

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-status",
        abstract: "The node's view of the cluster: ids, addresses, reachability.")
    @OptionGroup var endpoint: Endpoint
    @Flag(help: "Print the JSON answer.") var json = false

    func run() async throws {
        let status = try await endpoint.withClient { try await $0.status() }
        if json { return try printJSON(status) }
        print(
            "node \(status.node) of cluster '\(status.cluster)', serving: \(status.serving ? "yes" : "no"),"
                + " min \(status.min), max \(status.max), version \(status.version)")
        if let role = status.role {
            print(
                "log: \(role), leader \(status.leader.map(String.init) ?? "none"), applied \(status.applied ?? 0),"
                    + " first unchosen \(status.firstUnchosen ?? 0)")
        }
        print("data: \(status.dataDir)\(status.dbSizeBytes.map { " (\(byteCount($0)))" } ?? "")")
        for peer in status.peers {
            let me = peer.isSelf ? " (this node)" : ""
            print(
                "  node \(peer.id) at \(peer.address): \(peer.reachable ? "reachable" : "unreachable")\(me)")
        }
    }
}

/// `1.2 MB`-style sizes for tables.
func byteCount(_ bytes: Int) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000, unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
}
