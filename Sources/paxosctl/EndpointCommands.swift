import ArgumentParser
import Foundation
import PaxosAPI
import PaxosKVClient

/// `paxosctl endpoint status | health [--cluster] [-w table|json]`: each endpoint's own view, as
/// etcdctl shows it.
struct EndpointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint",
        abstract: "Each endpoint's status or health, as a table or JSON.",
        subcommands: [EndpointStatus.self, EndpointHealth.self])
}

enum WriteOut: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct EndpointOptions: ParsableArguments {
    @Option(name: [.customShort("w"), .customLong("write-out")], help: "table or json.")
    var writeOut: WriteOut = .table

    @Flag(
        help: ArgumentHelp(
            "Cover every member of the cluster: members none of the endpoints given is are listed too. The "
                + "membership records peer addresses only, not HTTP APIs, so the endpoints given are the ones "
                + "asked."))
    var cluster = false
}

/// One row of `endpoint status`.
struct EndpointStatusRow: Codable, Equatable {
    var endpoint: String?
    var id: UInt32?
    /// The member's peer address (from the membership), when known.
    var peerAddress: String?
    var role: String?
    var leader: UInt32?
    var applied: Int?
    var firstUnchosen: Int?
    var dbSizeBytes: Int?
    var version: String?
    var serving: Bool?
    var error: String?
}

/// What `endpoint status -w json` prints.
struct EndpointStatusReport: Codable, Equatable {
    var endpoints: [EndpointStatusRow]
    /// Said when `--cluster` could not ask a member itself.
    var note: String?
}

/// One row of `endpoint health`.
struct EndpointHealthRow: Codable, Equatable {
    var endpoint: String?
    var id: UInt32?
    var health: Bool
    /// `GET /ready`: a leader is known and reachable (`nil`: the node has no `/ready`).
    var ready: Bool?
    var tookMilliseconds: Double?
    var error: String?
}

struct EndpointHealthReport: Codable, Equatable {
    var endpoints: [EndpointHealthRow]
    var note: String?
}

/// The note `--cluster` gives when some members are known only by their peer addresses.
func clusterNote(_ unasked: [APIBody.MemberInfo]) -> String? {
    guard !unasked.isEmpty else { return nil }
    return "the membership records peer addresses only, so only the endpoints given were asked; "
        + "not asked: "
        + unasked.map { "node \($0.id) (peer \($0.address))" }.joined(separator: ", ")
        + " (give their HTTP APIs in --endpoints)"
}

/// Prints `rows` under `header` in columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        print(
            row.enumerated().map {
                $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0)
            }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}

struct EndpointStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract:
            "Each endpoint's id, role, leader, applied index, first unchosen slot, database size, version.",
        discussion: "Exits 5 when an endpoint cannot be reached (the table still lists the others).")
    @OptionGroup var endpoint: Endpoint
    @OptionGroup var options: EndpointOptions

    func run() async throws {
        let targets = endpoint.endpoints
        let (rows, note) = try await endpoint.withClient { client -> ([EndpointStatusRow], String?) in
            var rows = await withTaskGroup(
                of: (Int, EndpointStatusRow).self, returning: [EndpointStatusRow].self
            ) {
                group in
                for (index, target) in targets.enumerated() {
                    group.addTask {
                        do throws(PaxosKVError) {
                            let status = try await client.status(at: target)
                            let address = status.peers.first(where: \.isSelf)?.address
                            return (
                                index,
                                EndpointStatusRow(
                                    endpoint: target, id: status.node, peerAddress: address,
                                    role: status.role,
                                    leader: status.leader, applied: status.applied,
                                    firstUnchosen: status.firstUnchosen, dbSizeBytes: status.dbSizeBytes,
                                    version: status.version, serving: status.serving, error: status.failure)
                            )
                        } catch {
                            return (index, EndpointStatusRow(endpoint: target, error: error.description))
                        }
                    }
                }
                var rows: [(Int, EndpointStatusRow)] = []
                for await row in group { rows.append(row) }
                return rows.sorted { $0.0 < $1.0 }.map(\.1)
            }
            guard options.cluster else { return (rows, String?.none) }
            let members = try await client.members().members
            let asked = Set(rows.compactMap(\.id))
            let unasked = members.filter { !asked.contains($0.id) }
            rows += unasked.map {
                EndpointStatusRow(
                    id: $0.id, peerAddress: $0.address, role: $0.role,
                    error: "not asked: no HTTP endpoint known")
            }
            return (rows, clusterNote(unasked))
        }
        switch options.writeOut {
        case .json:
            try printJSON(EndpointStatusReport(endpoints: rows, note: note))
        case .table:
            printTable(
                [
                    "ENDPOINT", "ID", "ROLE", "LEADER", "APPLIED", "FIRST UNCHOSEN", "DB SIZE", "VERSION",
                    "ERROR",
                ],
                rows.map { row in
                    [
                        row.endpoint ?? "-", row.id.map(String.init) ?? "-", row.role ?? "-",
                        row.leader.map(String.init) ?? "-", row.applied.map(String.init) ?? "-",
                        row.firstUnchosen.map(String.init) ?? "-", row.dbSizeBytes.map(byteCount) ?? "-",
                        row.version ?? "-", row.error ?? "",
                    ]
                })
            if let note { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        }
        if rows.contains(where: { $0.endpoint != nil && $0.id == nil }) {
            throw ExitCode(ExitStatus.unreachable.rawValue)
        }
    }
}

struct EndpointHealth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract:
            "Whether each endpoint serves (GET /health) and, where the node has it, is ready (GET /ready).",
        discussion: "Exits 5 when an endpoint cannot be reached, else 1 when one is not healthy.")
    @OptionGroup var endpoint: Endpoint
    @OptionGroup var options: EndpointOptions

    func run() async throws {
        let targets = endpoint.endpoints
        let (rows, note, unreachable) = try await endpoint.withClient {
            client -> ([EndpointHealthRow], String?, Bool) in
            let checked = await withTaskGroup(
                of: (Int, EndpointHealthRow, Bool).self, returning: [(Int, EndpointHealthRow, Bool)].self
            ) { group in
                for (index, target) in targets.enumerated() {
                    group.addTask { await Self.check(target, client: client, index: index) }
                }
                var rows: [(Int, EndpointHealthRow, Bool)] = []
                for await row in group { rows.append(row) }
                return rows.sorted { $0.0 < $1.0 }
            }
            let unreachable = checked.contains { $0.2 }
            var rows = checked.map(\.1)
            guard options.cluster else { return (rows, String?.none, unreachable) }
            let members = try await client.members().members
            let asked = Set(rows.compactMap(\.id))
            let unasked = members.filter { !asked.contains($0.id) }
            rows += unasked.map {
                EndpointHealthRow(id: $0.id, health: false, error: "not asked: no HTTP endpoint known")
            }
            return (rows, clusterNote(unasked), unreachable)
        }
        switch options.writeOut {
        case .json:
            try printJSON(EndpointHealthReport(endpoints: rows, note: note))
        case .table:
            printTable(
                ["ENDPOINT", "ID", "HEALTH", "READY", "TOOK", "ERROR"],
                rows.map { row in
                    [
                        row.endpoint ?? "-", row.id.map(String.init) ?? "-",
                        row.health ? "healthy" : "unhealthy",
                        row.ready.map { $0 ? "yes" : "no" } ?? "-",
                        row.tookMilliseconds.map { "\($0) ms" } ?? "-", row.error ?? "",
                    ]
                })
            if let note { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        }
        if unreachable { throw ExitCode(ExitStatus.unreachable.rawValue) }
        if rows.contains(where: { !$0.health }) { throw ExitCode(ExitStatus.failure.rawValue) }
    }

    /// One endpoint's row, and whether it could not be reached at all.
    static func check(_ target: String, client: PaxosKVClient, index: Int) async -> (
        Int, EndpointHealthRow, Bool
    ) {
        let clock = ContinuousClock()
        let start = clock.now
        do throws(PaxosKVError) {
            let status = try await client.status(at: target)
            _ = try await client.health(at: target)
            let ready = try await client.ready(at: target)
            let took = (clock.now - start) / .milliseconds(1)
            let row = EndpointHealthRow(
                endpoint: target, id: status.node, health: ready.isReady != false, ready: ready.isReady,
                tookMilliseconds: (took * 10).rounded() / 10, error: ready.reason)
            return (index, row, false)
        } catch {
            let unreachable: Bool
            if case .unreachable = error { unreachable = true } else { unreachable = false }
            return (
                index, EndpointHealthRow(endpoint: target, health: false, error: error.description),
                unreachable
            )
        }
    }
}
