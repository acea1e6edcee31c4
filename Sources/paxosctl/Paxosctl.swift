import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import PaxosSQLite

@main
struct Paxosctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paxosctl",
        abstract: "Talk to a paxos-node over its HTTP API, or inspect a node's database.",
        subcommands: [
            Start.self, Status.self, Done.self, Min.self, Max.self, ClusterStatus.self, Inspect.self,
            Put.self, Get.self, Delete.self, Append.self, CompareAndSet.self, CheckHistory.self, Certs.self,
            Member.self, Snapshot.self,
        ])
}

/// The node to talk to.
struct Endpoint: ParsableArguments {
    @Option(help: "The node's HTTP API.")
    var endpoint: String = "http://127.0.0.1:7001"

    @Option(
        help: ArgumentHelp(
            "The bearer token of the node's --client-token-file (default: $PAXOSCTL_TOKEN).",
            valueName: "token"))
    var token: String?

    /// `--token`, else `PAXOSCTL_TOKEN`: an environment variable keeps the secret out of `ps`.
    var bearerToken: String? {
        token ?? ProcessInfo.processInfo.environment["PAXOSCTL_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    @Option(
        help: ArgumentHelp(
            "PEM file of the CA (or the certificate itself) to trust for an https --endpoint, instead of "
                + "the system's roots.",
            valueName: "file"))
    var cacert: String?

    func url(_ path: String) throws -> URL {
        guard let url = URL(string: endpoint.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path)
        else {
            throw ValidationError("--endpoint '\(endpoint)' is not a URL")
        }
        return url
    }

    /// Sends one request (with the credential, if there is one); the status and the body,
    /// without judging them.
    ///
    /// AsyncHTTPClient rather than URLSession: on Linux, URLSession cannot be told to trust a
    /// private CA, and a cluster's HTTP certificates usually come from one.
    func perform(_ method: String, _ path: String, body: Data? = nil) async throws -> (Int, Data) {
        let target = try url(path)
        var configuration = HTTPClient.Configuration()
        if let cacert {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(cacert)
            configuration.tlsConfiguration = tls
        }
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(10))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        var request = HTTPClientRequest(url: target.absoluteString)
        request.method = NIOHTTP1.HTTPMethod(rawValue: method)
        if let bearerToken { request.headers.add(name: "Authorization", value: "Bearer \(bearerToken)") }
        if let body { request.body = HTTPClientRequest.Body.bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            let bytes = try await response.body.collect(upTo: 1 << 30)
            try? await client.shutdown()
            return (Int(response.status.code), Data(buffer: bytes))
        } catch {
            try? await client.shutdown()
            throw CommandFailure("cannot reach \(endpoint): \(error)")
        }
    }

    /// Sends a request and returns the decoded JSON body, or fails with the API's error message.
    func send(_ method: String, _ path: String, body: Data? = nil) async throws -> [String: Any] {
        let (status, data) = try await perform(method, path, body: body)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard (200..<300).contains(status) else {
            let detail = (object["error"] as? [String: Any]).map {
                "\($0["code"] ?? "error"): \($0["message"] ?? "")"
            }
            throw CommandFailure(
                "\(method) \(path) failed with HTTP \(status): \(detail ?? String(decoding: data, as: UTF8.self))"
            )
        }
        return object
    }
}

struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension ParsableCommand {
    static func printJSON(_ object: [String: Any]) {
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]))
            ?? Data()
        print(String(decoding: data, as: UTF8.self))
    }
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start agreement on instance SEQ with VALUE (returns at once).")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "The instance's sequence number.") var seq: Int
    @Argument(help: "The value to propose.") var value: String

    func run() async throws {
        _ = try await endpoint.send("PUT", "/v1/instances/\(seq)", body: Data(value.utf8))
        print("started \(seq)")
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What the node knows about instance SEQ.")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "The instance's sequence number.") var seq: Int
    @Flag(help: "Print the JSON answer.") var json = false
    @Option(help: "Wait up to this many seconds for the instance to be decided.") var wait: Double = 0

    func run() async throws {
        let deadline = Date().addingTimeInterval(wait)
        var object = try await endpoint.send("GET", "/v1/instances/\(seq)")
        while object["fate"] as? String == "pending", Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            object = try await endpoint.send("GET", "/v1/instances/\(seq)")
        }
        if json { return Self.printJSON(object) }
        let fate = object["fate"] as? String ?? "?"
        if fate == "decided" {
            let value =
                object["value"] as? String ?? "<binary, base64 \(object["valueBase64"] as? String ?? "")>"
            print("\(seq) decided \(value)")
        } else {
            print("\(seq) \(fate)")
        }
    }
}

struct Done: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tell the node its application is done with every instance <= SEQ.")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "The highest instance the application is done with.") var seq: Int

    func run() async throws {
        let object = try await endpoint.send("POST", "/v1/done/\(seq)")
        print("done \(seq); min is \(object["min"] ?? "?")")
    }
}

struct Min: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print min(): instances below it are forgotten.")
    @OptionGroup var endpoint: Endpoint

    func run() async throws {
        print(try await endpoint.send("GET", "/v1/status")["min"] ?? "?")
    }
}

struct Max: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print max(): the highest instance the node knows of.")
    @OptionGroup var endpoint: Endpoint

    func run() async throws {
        print(try await endpoint.send("GET", "/v1/status")["max"] ?? "?")
    }
}

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-status",
        abstract: "The node's view of the cluster: ids, addresses, reachability.")
    @OptionGroup var endpoint: Endpoint
    @Flag(help: "Print the JSON answer.") var json = false

    func run() async throws {
        let object = try await endpoint.send("GET", "/v1/status")
        if json { return Self.printJSON(object) }
        print(
            "node \(object["node"] ?? "?") of cluster '\(object["cluster"] ?? "?")', serving: \((object["serving"] as? Bool).map { $0 ? "yes" : "no" } ?? "?"),"
                + " min \(object["min"] ?? "?"), max \(object["max"] ?? "?"), version \(object["version"] ?? "?")"
        )
        print("data: \(object["dataDir"] ?? "?")")
        for peer in object["peers"] as? [[String: Any]] ?? [] {
            let reachable = (peer["reachable"] as? Bool) == true ? "reachable" : "unreachable"
            let me = (peer["isSelf"] as? Bool) == true ? " (this node)" : ""
            print("  node \(peer["id"] ?? "?") at \(peer["address"] ?? "?"): \(reachable)\(me)")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Print a node's durable state from its database, read-only (the node may be running or not).")
    @Option(help: "The node's --data-dir.") var dataDir: String
    @Option(help: "How many of the newest instances to list.") var recent: Int = 20

    func run() throws {
        let path = URL(fileURLWithPath: dataDir).appendingPathComponent("node.db").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw CommandFailure("no database at \(path)")
        }
        let report: DatabaseReport
        do {
            report = try DatabaseReport.read(path: path, recent: recent)
        } catch let error as SQLiteError {
            throw CommandFailure(error.message)
        }
        print("database: \(report.path) (schema version \(report.schemaVersion))")
        if let node = report.nodeID {
            print("node \(node) of cluster '\(report.clusterID ?? "?")', created \(report.createdAt ?? "?")")
        }
        print(
            "maxRound \(report.maxRound), min \(report.min), \(report.instanceCount) instances stored, \(report.decidedCount) decided"
        )
        print("done by peer: " + report.doneByPeer.map { "\($0.peer)=\($0.done)" }.joined(separator: " "))
        for instance in report.recent {
            var line = "  \(instance.seq): \(instance.fate)"
            if let promised = instance.promised { line += ", promised \(promised)" }
            if let accepted = instance.accepted {
                line += ", accepted \(accepted) \(instance.acceptedText.map { "'\($0)'" } ?? "")"
            }
            if instance.fate == "decided" {
                line +=
                    " " + (instance.decidedText.map { "'\($0)'" } ?? "<\(instance.decidedBytes ?? 0) bytes>")
            }
            print(line)
        }
        guard let log = report.log else { return }
        print("replicated log:")
        print(
            "  promised \(log.promised ?? "none"), maxRound \(log.maxRound), applied \(log.applied), log start \(log.logStart), \(log.entries) entries kept"
                + (log.incarnation.map { ", incarnation \(String($0, radix: 16))" } ?? ""))
        print(
            "  key-value store: \(log.keys) keys, \(log.sessions) client sessions"
                + (log.stagedRows > 0 ? ", \(log.stagedRows) snapshot rows staged" : ""))
        for slot in log.recent {
            print(
                "  slot \(slot.slot): \(slot.status), ballot \(slot.ballot ?? "-"), \(slot.commands) commands, \(slot.bytes) bytes"
            )
        }
        for (key, bytes) in log.sampleKeys { print("  key '\(key)': \(bytes) bytes") }
        if log.keys > log.sampleKeys.count { print("  … \(log.keys - log.sampleKeys.count) more keys") }
    }
}
