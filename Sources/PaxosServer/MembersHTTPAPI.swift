import Foundation
import HTTPTypes
import Hummingbird
import Paxos
import PaxosCore

/// The membership API: `GET /v1/members`; `POST /v1/members` with `{"id", "address"}` adds a
/// learner; `POST /v1/members/{id}/promote` makes a learner that has caught up a voter;
/// `DELETE /v1/members/{id}` removes a member. Changes go through the log, one at a time; 200
/// with the new membership once applied here, 409 `membership_refused` with the reason, 503
/// `no_leader` (not made), 504 `outcome_unknown` (may have been made: `GET` tells).
public enum MembersHTTPAPI {
    public static func add<Machine: StateMachine>(
        to router: Router<BasicRequestContext>, peer: LogPeer<Machine>,
        isReachable: @escaping @Sendable (NodeID) async -> Bool
    ) {
        router.get("/v1/members") { _, _ -> APIBody.Members in
            try await members(peer, isReachable)
        }
        router.post("/v1/members") { request, context -> APIBody.MembershipResult in
            let body = try await request.decode(as: APIBody.AddMember.self, context: context)
            guard body.id > 0 else { throw APIError(.badRequest, "bad_member", "node ids start at 1") }
            guard !body.address.isEmpty, body.address.utf8.count <= 1024, body.address.contains(":") else {
                throw APIError(.badRequest, "bad_member", "address must be HOST:PORT")
            }
            return try await change(peer, .addLearner(NodeID(body.id), address: body.address), isReachable)
        }
        router.post("/v1/members/:id/promote") { _, context -> APIBody.MembershipResult in
            try await change(peer, .promote(try id(context)), isReachable)
        }
        router.delete("/v1/members/:id") { _, context -> APIBody.MembershipResult in
            try await change(peer, .remove(try id(context)), isReachable)
        }
    }

    static func id(_ context: BasicRequestContext) throws -> NodeID {
        guard let text = context.parameters.get("id"), let id = UInt32(text), id > 0 else {
            throw APIError(
                .badRequest, "bad_member", "the member id must be a number from 1 to \(UInt32.max)")
        }
        return NodeID(id)
    }

    static func change<Machine: StateMachine>(
        _ peer: LogPeer<Machine>, _ change: MembershipChange,
        _ isReachable: @escaping @Sendable (NodeID) async -> Bool
    ) async throws -> APIBody.MembershipResult {
        switch await peer.changeMembership(change) {
        case .applied(let output):
            let answer = String(decoding: output, as: UTF8.self)
            guard answer == "ok" else {
                throw APIError(
                    .conflict, "membership_refused",
                    answer.hasPrefix("refused: ") ? String(answer.dropFirst(9)) : answer)
            }
            let propagated = await waitForPropagation(peer)
            return APIBody.MembershipResult(
                status: "ok", propagated: propagated, members: try await members(peer, isReachable).members)
        case .failed(let reason):
            throw APIError(.serviceUnavailable, "no_leader", "not made: \(reason)")
        case .unknown(let reason):
            throw APIError(
                .gatewayTimeout, "outcome_unknown", "\(reason); GET /v1/members tells whether it was made")
        }
    }

    /// How long a change's answer waits for a majority of the new voters to apply it.
    public static let propagationWait = Duration.seconds(5)

    /// Waits until a majority of the voters of the membership in force has applied the entry that
    /// made it. The change is chosen once a quorum of the *old* voters accepted it, but they learn
    /// that it was chosen from this leader: had it stopped right after answering, the survivors
    /// could still count in the old membership, where the stopped leader's vote may be needed (a
    /// replacement runs at n − 1 voters). Once a majority of the new voters knows, the survivors of
    /// any minority failure include one that counts in the new membership.
    static func waitForPropagation<Machine: StateMachine>(_ peer: LogPeer<Machine>) async -> Bool {
        let deadline = ContinuousClock.now + propagationWait
        while true {
            let (membership, progress, applied, leader) = await peer.inspect {
                ($0.membership, $0.peerApplied, $0.applied, $0.leader)
            }
            let knowing = membership.voters.count { voter in
                (voter == peer.me ? applied : progress[voter] ?? 0) >= membership.slot
            }
            if knowing > membership.voters.count / 2 { return true }
            // Only the leader hears who applied what: a follower that forwarded the change, or a
            // leader that removed itself, cannot tell. A leader whose voters changed campaigns again
            // first (its followers learn what was chosen once it leads again), so not leading for a
            // moment is no reason to give up.
            guard leader == nil || leader == peer.me, membership.voters.contains(peer.me),
                ContinuousClock.now < deadline, !Task.isCancelled
            else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    static func members<Machine: StateMachine>(
        _ peer: LogPeer<Machine>, _ isReachable: @escaping @Sendable (NodeID) async -> Bool
    ) async throws -> APIBody.Members {
        let (membership, leader, progress, applied) = await peer.inspect {
            ($0.membership, $0.leader, $0.peerApplied, $0.applied)
        }
        var list: [APIBody.MemberInfo] = []
        for member in membership.members {
            let isMe = member.id == peer.me
            list.append(
                APIBody.MemberInfo(
                    id: member.id.rawValue, incarnation: String(member.incarnation, radix: 16),
                    address: member.address, role: member.isVoter ? "voter" : "learner",
                    voter: member.isVoter,
                    applied: isMe ? applied : progress[member.id],
                    reachable: isMe ? true : await isReachable(member.id)))
        }
        return APIBody.Members(
            node: peer.me.rawValue, leader: leader?.rawValue, membershipSlot: membership.slot, members: list)
    }
}
