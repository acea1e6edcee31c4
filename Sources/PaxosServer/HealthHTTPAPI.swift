import Hummingbird
import Paxos
import PaxosCore

extension APIBody {
    /// The answer of `GET /ready`: `ready`, or `not_ready` with the reason.
    public struct Readiness: ResponseEncodable, Codable, Equatable, Sendable {
        public var status: String
        public var reason: String?
        /// The leader this node sends its requests to, when it knows one.
        public var leader: UInt32?
    }
}

/// `GET /ready`: whether this node can serve linearizable requests now. `GET /health` (in
/// ``PaxosHTTPAPI``) says whether the process can serve at all (storage ok, every part running);
/// a load balancer sends clients only to nodes that are ready.
///
/// Ready means: every part serves (no failed commit, not shutting down), the cluster recorded
/// its first membership (a new cluster is not provisional any more) and this node is in it,
/// and a leader is known and reachable: this node leads and holds connections to a majority
/// of the voters (itself included), or it heard from its leader within an election timeout.
/// 200 `{"status": "ready", "leader": N}`, or 503 `{"status": "not_ready", "reason": "..."}`.
/// Unauthenticated, like `/health`: a probe learns only that.
public enum HealthHTTPAPI {
    public static func add<Machine: StateMachine>(
        to router: Router<BasicRequestContext>, log: LogPeer<Machine>, components: [ComponentHealth],
        isReachable: @escaping @Sendable (NodeID) async -> Bool
    ) {
        router.get("/ready") { _, _ -> EditedResponse<APIBody.Readiness> in
            let (reason, leader) = await readiness(log: log, components: components, isReachable: isReachable)
            guard let reason else {
                return EditedResponse(
                    status: .ok, response: APIBody.Readiness(status: "ready", reason: nil, leader: leader))
            }
            return EditedResponse(
                status: .serviceUnavailable,
                response: APIBody.Readiness(status: "not_ready", reason: reason, leader: leader))
        }
    }

    /// Why the node is not ready (nil when it is), and the leader it knows.
    static func readiness<Machine: StateMachine>(
        log: LogPeer<Machine>, components: [ComponentHealth],
        isReachable: @escaping @Sendable (NodeID) async -> Bool
    ) async -> (reason: String?, leader: UInt32?) {
        if let stopped = await PaxosHTTPAPI.firstStopped(components) {
            return ("the \(stopped.name) stopped: \(stopped.state.reason)", nil)
        }
        guard await log.isServing else { return ("the replicated log is not serving", nil) }
        let state = await log.inspect { core in
            (
                me: core.me, leader: core.leader, heard: core.heardLeaderRecently, isLeader: core.isLeader,
                provisional: core.membership.isProvisional, unknown: core.membership.isUnknown,
                member: core.membership.member(core.me) != nil, voters: core.membership.voters
            )
        }
        let leader = state.leader?.rawValue
        if state.unknown {
            return ("this node joins the cluster and has not learned its membership yet", leader)
        }
        if state.provisional {
            return (
                "the new cluster has not recorded its first membership yet (every bootstrap peer must be up)",
                leader
            )
        }
        guard state.member else { return ("this node is not a member of the cluster's membership", leader) }
        guard let known = state.leader else { return ("no leader is known", nil) }
        if state.isLeader {
            var connected = state.voters.contains(state.me) ? 1 : 0
            for voter in state.voters where voter != state.me {
                if await isReachable(voter) { connected += 1 }
            }
            let needed = state.voters.count / 2 + 1
            guard connected >= needed else {
                return (
                    "this node leads but reaches only \(connected) of the \(state.voters.count) voters (itself included); it needs \(needed)",
                    leader
                )
            }
            return (nil, leader)
        }
        guard state.heard else {
            return ("leader \(known) has not been heard from within an election timeout", leader)
        }
        return (nil, leader)
    }
}
