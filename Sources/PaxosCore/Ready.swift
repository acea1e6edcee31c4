/// What the driver must do after handing one input to a ``PaxosNode``.
///
/// THE DRIVER MUST CARRY OUT A READY IN THIS ORDER:
///
/// 1. PERSIST: commit ``mutations`` atomically and durably (fsync) to the ``AcceptorStore``.
/// 2. SEND: only after that commit returned, send ``messages`` and ``reply``, and feed
///    ``localReplies`` back into the node with ``PaxosNode/onReply(_:)``.
/// 3. APPLY: only after that commit returned, deliver ``decisions`` to the application.
///
/// MESSAGES AND REPLIES MAY DEPEND ON STATE PERSISTED BY EARLIER READIES, TOO: a driver that
/// group-commits must release a Ready's messages only after every batch up to and including the
/// one that holds this Ready's mutations is durable (committing batches in order guarantees it).
/// IF A COMMIT FAILS, NOTHING IN THIS READY OR ANY LATER ONE MAY BE RELEASED: the node must stop
/// answering as an acceptor rather than answer from state that is not on disk.
public struct Ready: Sendable, CustomStringConvertible {
    /// MUST BE DURABLE BEFORE ANYTHING ELSE IN THIS READY IS RELEASED.
    public var mutations: [StoreMutation] = []
    /// Requests to other nodes. SEND ONLY AFTER ``mutations`` ARE DURABLE.
    public var messages: [OutboundRequest] = []
    /// This node's acceptor's replies to this node's own proposer (the local call the lab asks
    /// for). FEED BACK ONLY AFTER ``mutations`` ARE DURABLE: a proposer may count its own vote
    /// only once that vote survives a crash.
    public var localReplies: [ReplyEnvelope] = []
    /// The reply to the request being handled, if any. SEND ONLY AFTER ``mutations`` ARE DURABLE.
    public var reply: ReplyEnvelope?
    /// Instances newly decided at this node. APPLY ONLY AFTER ``mutations`` ARE DURABLE.
    public var decisions: [Int] = []

    public init() {}

    /// True when there is nothing to persist, send or apply.
    public var isEmpty: Bool {
        mutations.isEmpty && messages.isEmpty && localReplies.isEmpty && reply == nil && decisions.isEmpty
    }

    public var description: String {
        var lines: [String] = []
        for mutation in mutations { lines.append("persist \(mutation)") }
        for message in messages { lines.append("send \(message)") }
        for reply in localReplies { lines.append("local \(reply)") }
        if let reply { lines.append("reply \(reply)") }
        for seq in decisions { lines.append("apply decided(\(seq))") }
        return lines.joined(separator: "\n")
    }
}
