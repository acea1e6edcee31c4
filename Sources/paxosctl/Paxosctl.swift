import ArgumentParser
import Foundation
import PaxosBuildInfo
import PaxosSQLite

@main
struct Paxosctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paxosctl",
        abstract: "Talk to a paxos-node over its HTTP API, or inspect a node's database.",
        discussion: ExitStatus.help,
        version: BuildInfo.version,
        subcommands: [
            Start.self, Status.self, Done.self, Min.self, Max.self, ClusterStatus.self, Inspect.self,
            Put.self, Get.self, Delete.self, Append.self, CompareAndSet.self, CheckHistory.self, Certs.self,
            Member.self,
            EndpointCommand.self, Snapshot.self,
        ])
}

struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
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
