import Paxos
import PaxosCore

/// The outcome of one key-value request.
public enum KVOutcome: Hashable, Sendable {
    /// Executed (or answered from the session, for a retry); the store's answer.
    case done(KVResult)
    /// Certainly not executed.
    case failed(String)
    /// May or may not have been executed; retry with the same request number to find out.
    case unknown(String)
}

/// The key-value store on one replica: encodes requests, runs them through the log, decodes
/// the answers. Writes go through the log; a get is answered by read index on the leader (no
/// log write: ``LogPeer/read(_:consistency:)``), through the log on any other node, so every
/// answer is linearizable unless the client asks for a serializable read.
public struct KVService: Sendable {
    public let peer: LogPeer<KVStateMachine>

    public init(peer: LogPeer<KVStateMachine>) { self.peer = peer }

    /// - Parameter consistency: how a get is answered; other commands ignore it.
    public func execute(_ command: KVCommand, consistency: ReadConsistency = .linearizable) async -> KVOutcome
    {
        let outcome: SubmitOutcome
        if command.operation.isReadOnly {
            // A serializable read may run on a node behind the session's last write, where the
            // session's checks would misjudge it (an expired session for one opened a moment
            // ago); a read needs no session, so it goes without.
            let read = consistency == .serializable ? KVCommand(operation: command.operation) : command
            outcome = await peer.read(read.encode(), consistency: consistency)
        } else {
            // A session makes a command safe to resend (the machine answers a repeat from it).
            outcome = await peer.submit(command.encode(), resendable: command.client != 0)
        }
        switch outcome {
        case .applied(let output):
            guard let result = try? KVResult.decode(output) else { return .failed("undecodable answer") }
            return .done(result)
        case .failed(let reason):
            return .failed(reason)
        case .unknown(let reason):
            return .unknown(reason)
        }
    }

    /// Opens a session under a fresh random id; the id goes with every later request of that
    /// client, and knowing it is what lets a client use the session, so it must be unguessable.
    ///
    /// The id is drawn here, in the shell, from the system's CSPRNG and travels in the command:
    /// the state machine stays a deterministic function of the log. A taken id (a 2^-64 chance
    /// per open session) is refused by the machine and drawn again.
    public func register() async -> KVOutcome {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3 {
            let id = UInt64.random(in: 1...UInt64.max, using: &generator)
            let outcome = await openSession(id: id)
            if case .done(let result) = outcome, result.status == .sessionExists { continue }
            return outcome
        }
        return .failed("no free session id after three random draws")
    }

    /// Opens a session under `id` (nonzero); `sessionExists` when it is taken.
    public func openSession(id: UInt64) async -> KVOutcome {
        await execute(KVCommand(operation: .openSession(id: id)))
    }
}

extension KVResult {
    /// The client id carried by a `register` answer.
    public var clientID: UInt64? {
        guard status == .ok, let value, value.count == 8 else { return nil }
        return value.reduce(0) { $0 << 8 | UInt64($1) }
    }
}
