import ArgumentParser
import Foundation
import PaxosAPI
import PaxosKVClient

/// `paxosctl member list | add ID PEER_ADDR | promote ID | remove ID`: the cluster's membership,
/// changed through the log one member at a time (see the README's "Replacing a failed node").
struct Member: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or change the cluster's members (voters and learners).",
        subcommands: [MemberList.self, MemberAdd.self, MemberPromote.self, MemberRemove.self])
}

struct MemberOutput: ParsableArguments {
    @Flag(help: "Print the answer as JSON instead of a table.")
    var json = false

    func show(_ members: [APIBody.MemberInfo], leader: UInt32?, status: String? = nil) throws {
        if json {
            struct Output: Encodable {
                var status: String?
                var leader: UInt32?
                var members: [APIBody.MemberInfo]
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(
                String(
                    decoding: try encoder.encode(Output(status: status, leader: leader, members: members)),
                    as: UTF8.self))
            return
        }
        if let status { print(status) }
        let header = ["ID", "INCARNATION", "ADDRESS", "ROLE", "APPLIED", "REACHABLE"]
        let rows =
            [header]
            + members.map { member in
                [
                    "\(member.id)\(member.id == leader ? " (leader)" : "")", member.incarnation,
                    member.address,
                    member.role, member.applied.map(String.init) ?? "-", member.reachable ? "yes" : "no",
                ]
            }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                row.enumerated().map {
                    $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0)
                }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}

struct MemberList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract:
            "The members: id, incarnation, address, role, applied index (as the leader knows it), reachable.")
    @OptionGroup var endpoint: Endpoint
    @OptionGroup var output: MemberOutput

    func run() async throws {
        let answer = try await endpoint.withClient { try await $0.members() }
        try output.show(answer.members, leader: answer.leader)
    }
}

struct MemberAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract:
            "Add node ID, listening for peers at PEER_ADDR (HOST:PORT), as a learner: it receives the log and does not vote.",
        discussion:
            "Start it first with --join and an empty data directory; promote it once it has caught up.")
    @OptionGroup var endpoint: Endpoint
    @OptionGroup var output: MemberOutput
    @Argument var id: UInt32
    @Argument(help: ArgumentHelp("Its peer address, HOST:PORT.", valueName: "peer-addr")) var peerAddress:
        String

    func run() async throws {
        let answer = try await endpoint.withClient { try await $0.addMember(id: id, address: peerAddress) }
        warnUnlessPropagated(answer)
        try output.show(answer.members, leader: nil, status: "added node \(id) as a learner")
    }
}

struct MemberPromote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote", abstract: "Make learner ID a voter (refused until it has caught up).")
    @OptionGroup var endpoint: Endpoint
    @OptionGroup var output: MemberOutput
    @Argument var id: UInt32

    func run() async throws {
        let answer = try await endpoint.withClient { try await $0.promoteMember(id) }
        warnUnlessPropagated(answer)
        try output.show(answer.members, leader: nil, status: "node \(id) is a voter")
    }
}

struct MemberRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove member ID (it stops voting; its messages are refused).")
    @OptionGroup var endpoint: Endpoint
    @OptionGroup var output: MemberOutput
    @Argument var id: UInt32

    func run() async throws {
        let answer = try await endpoint.withClient { try await $0.removeMember(id) }
        warnUnlessPropagated(answer)
        try output.show(answer.members, leader: nil, status: "removed node \(id)")
    }
}

/// A change the cluster made but whose propagation the node could not confirm: stopping a voter
/// right now could leave the others counting in the old membership (README, "Membership").
func warnUnlessPropagated(_ answer: APIBody.MembershipResult) {
    guard answer.propagated == false else { return }
    FileHandle.standardError.write(
        Data(
            "Warning: the change is made, but the node could not confirm that a majority of the new voters applied it; check `paxosctl member list` (applied) before stopping a voter\n"
                .utf8))
}
