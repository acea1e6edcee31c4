extension APIBody {
    /// One member as `GET /v1/members` shows it.
    public struct MemberInfo: Codable, Equatable, Sendable {
        public var id: UInt32
        /// The data directory's incarnation, in hex (`0`: not heard from yet).
        public var incarnation: String
        /// Its peer-to-peer address, `HOST:PORT` (not its HTTP API).
        public var address: String
        /// `voter` or `learner`.
        public var role: String
        public var voter: Bool
        /// Its applied index, as the leader last heard it (this node's own for itself); `null`
        /// when not known here (ask the leader).
        public var applied: Int?
        /// Whether this node has a connection to it now (`true` for itself).
        public var reachable: Bool

        public init(
            id: UInt32, incarnation: String, address: String, role: String, voter: Bool, applied: Int?,
            reachable: Bool
        ) {
            self.id = id
            self.incarnation = incarnation
            self.address = address
            self.role = role
            self.voter = voter
            self.applied = applied
            self.reachable = reachable
        }
    }

    /// `GET /v1/members`.
    public struct Members: Codable, Equatable, Sendable {
        /// The node that answered.
        public var node: UInt32
        public var leader: UInt32?
        /// The slot of the entry that made this membership (0: the provisional one of a new
        /// cluster, not yet recorded in the log).
        public var membershipSlot: Int
        public var members: [MemberInfo]

        public init(node: UInt32, leader: UInt32?, membershipSlot: Int, members: [MemberInfo]) {
            self.node = node
            self.leader = leader
            self.membershipSlot = membershipSlot
            self.members = members
        }
    }

    /// The body of `POST /v1/members`.
    public struct AddMember: Codable, Equatable, Sendable {
        public var id: UInt32
        /// Where its peers dial it, `HOST:PORT`.
        public var address: String

        public init(id: UInt32, address: String) {
            self.id = id
            self.address = address
        }
    }

    /// The answer of a membership change.
    public struct MembershipResult: Codable, Equatable, Sendable {
        public var status: String
        /// Whether a majority of the new voters had applied the change when the answer left;
        /// `false` after the server's wait ran out (or when the node answering cannot tell);
        /// `nil` from a server that does not say.
        public var propagated: Bool?
        public var members: [MemberInfo]

        public init(status: String, propagated: Bool?, members: [MemberInfo]) {
            self.status = status
            self.propagated = propagated
            self.members = members
        }
    }
}
