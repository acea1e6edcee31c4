/// Why a call of ``PaxosKVClient`` failed: one case per outcome a caller handles differently.
public enum PaxosKVError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The key has no value (`get`, `delete`).
    case notFound(key: String)
    /// Compare-and-swap found another value (`nil`: the key is absent); nothing was changed.
    case casMismatch(key: String, current: String?)
    /// No node could get a leader to take the request: certainly not executed.
    case noLeader(String)
    /// The request may or may not have been executed (a 504 `outcome_unknown`, or a connection
    /// lost after the request left), and retrying could not tell.
    case outcomeUnknown(String)
    /// No endpoint answered: each endpoint tried and why it failed.
    case unreachable([String: String])
    /// The session is gone (never opened, or evicted) and the client could not open another
    /// without risking a second execution.
    case sessionExpired(String)
    /// Any other error answer: the HTTP status and the API's error code and message.
    case http(status: Int, code: String, message: String)
    /// The node answered something that is not the API's answer.
    case badAnswer(String)
    /// The call was refused before anything was sent: a bad key, endpoint or argument.
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .notFound(let key): "no key '\(key)'"
        case .casMismatch(let key, let current):
            "not swapped: '\(key)' is \(current.map { "'\($0)'" } ?? "absent")"
        case .noLeader(let message): "no leader: \(message)"
        case .outcomeUnknown(let message): "outcome unknown: \(message)"
        case .unreachable(let reasons):
            "cannot reach "
                + (reasons.isEmpty
                    ? "any endpoint"
                    : reasons.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(
                        separator: ", "))
        case .sessionExpired(let message): "session expired: \(message)"
        case .http(let status, let code, let message): "HTTP \(status) \(code): \(message)"
        case .badAnswer(let message): "bad answer: \(message)"
        case .invalidRequest(let message): message
        }
    }
}
