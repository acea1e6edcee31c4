import PaxosCore
import PaxosWire

/// The replicated key-value store: a deterministic ``StateMachine`` with exactly-once client
/// sessions.
///
/// Rows (what a person sees in the `machine_rows` table): space 1 holds the keys and values;
/// space 2 holds one session per client id (last request number, the slot it was applied in,
/// its answer and, since sessions are checked for reused request numbers, the fingerprint of
/// its operation); space 0 holds the next sequential client id (for `register` only).
///
/// A session row written before fingerprints existed has none: a retry of its last request is
/// answered from the session as before, whatever its operation.
///
/// Sessions are bounded: past ``maxSessions`` the least recently used one is evicted, in apply
/// order, so every replica evicts the same one. A client whose session was evicted gets
/// `sessionExpired` and nothing is executed: it can never be executed twice.
public struct KVStateMachine: StateMachine {
    struct Session: Hashable, Sendable {
        var request: UInt64
        var slot: Slot
        var output: Value
        /// ``KVCommand/fingerprint`` of the last request's operation; nil for a session opened
        /// but not used yet, or one stored before fingerprints.
        var fingerprint: UInt64?
    }

    public static let dataSpace: UInt8 = 1
    public static let sessionSpace: UInt8 = 2
    public static let metaSpace: UInt8 = 0
    static let nextClientKey = MachineKey(space: metaSpace, key: Array("next_client".utf8))

    /// The most sessions kept.
    public static let maxSessions = 10_000

    public private(set) var data: [[UInt8]: [UInt8]] = [:]
    private var sessions: [UInt64: Session] = [:]
    private var nextClient: UInt64 = 1

    public init(rows: [MachineKey: [UInt8]]) {
        for (key, value) in rows {
            switch key.space {
            case Self.dataSpace:
                data[key.key] = value
            case Self.sessionSpace:
                guard let (client, session) = Self.session(key: key.key, value: value) else { continue }
                sessions[client] = session
            case Self.metaSpace where key == Self.nextClientKey:
                var reader = ByteReader(value)
                nextClient = (try? reader.readUInt64("next client")) ?? 1
            default:
                continue
            }
        }
    }

    /// A session row as ``sessionRow(_:)`` writes it, or `nil`. Rows come from a peer's snapshot
    /// too, so nothing short of an exact row is taken: a cached answer that does not decode
    /// would be replayed to the client as an undecodable reply, and a key with extra bytes would
    /// name the same client as another row, leaving the winner to dictionary order, which
    /// differs between processes.
    static func session(key: [UInt8], value: [UInt8]) -> (UInt64, Session)? {
        var reader = ByteReader(key)
        var valueReader = ByteReader(value)
        guard key.count == 8, let client = try? reader.readUInt64("client"),
            let request = try? valueReader.readUInt64("request"),
            let slot = try? valueReader.readInt64("slot"),
            let output = try? valueReader.readBytes("output", limit: Int.max),
            (try? KVResult.decode(output)) != nil
        else { return nil }
        // A row from before fingerprints ends after the output; a newer one has exactly 8 more bytes.
        var fingerprint: UInt64?
        if valueReader.remaining > 0 {
            guard valueReader.remaining == 8, let read = try? valueReader.readUInt64("fingerprint") else {
                return nil
            }
            fingerprint = read
        }
        return (client, Session(request: request, slot: Slot(slot), output: output, fingerprint: fingerprint))
    }

    /// Number of open sessions.
    public var sessionCount: Int { sessions.count }

    public mutating func apply(_ proposal: Proposal, slot: Slot) -> (
        output: Value, mutations: [MachineMutation]
    ) {
        guard let command = try? KVCommand.decode(proposal.command) else {
            return (KVResult(.malformed).encode(), [])
        }
        var mutations: [MachineMutation] = []
        switch command.operation {
        case .register:
            // Skips ids taken by openSession; logs from before openSession never had any, so
            // they replay exactly as they first applied.
            var client = nextClient
            while client == 0 || sessions[client] != nil { client &+= 1 }
            nextClient = client &+ 1
            mutations.append(.put(Self.nextClientKey, u64(nextClient)))
            return open(client, slot: slot, &mutations)
        case .openSession(let id):
            guard id != 0 else { return (KVResult(.malformed).encode(), []) }
            guard sessions[id] == nil else { return (KVResult(.sessionExists).encode(), []) }
            return open(id, slot: slot, &mutations)
        default:
            break
        }
        guard command.client != 0 else {
            return (execute(command.operation, &mutations).encode(), mutations)
        }
        guard var session = sessions[command.client] else {
            return (KVResult(.sessionExpired).encode(), [])
        }
        if command.request == session.request {
            let fingerprint = KVCommand.fingerprint(encoded: proposal.command)
            guard session.fingerprint == nil || session.fingerprint == fingerprint else {
                return (KVResult(.requestMismatch).encode(), [])
            }
            return (session.output, [])
        }
        if command.request < session.request { return (KVResult(.staleRequest).encode(), []) }
        let output = execute(command.operation, &mutations).encode()
        // A read leaves the session alone: it is safe to repeat, and every session field must be
        // durable (eviction order depends on it, and must be the same on every replica).
        guard !command.operation.isReadOnly else { return (output, mutations) }
        session.request = command.request
        session.output = output
        session.slot = slot
        session.fingerprint = KVCommand.fingerprint(encoded: proposal.command)
        sessions[command.client] = session
        mutations.append(sessionRow(command.client))
        return (output, mutations)
    }

    public func rows() -> [MachineKey: [UInt8]] {
        var rows: [MachineKey: [UInt8]] = [Self.nextClientKey: u64(nextClient)]
        for (key, value) in data { rows[MachineKey(space: Self.dataSpace, key: key)] = value }
        for client in sessions.keys {
            if case .put(let key, let value) = sessionRow(client) { rows[key] = value }
        }
        return rows
    }

    private mutating func execute(_ operation: KVOperation, _ mutations: inout [MachineMutation]) -> KVResult
    {
        switch operation {
        case .get(let key):
            guard let value = data[key] else { return KVResult(.notFound) }
            return KVResult(.ok, value)
        case .put(let key, let value):
            set(key, value, &mutations)
            return KVResult(.ok)
        case .append(let key, let value):
            let new = (data[key] ?? []) + value
            set(key, new, &mutations)
            return KVResult(.ok, new)
        case .appendWithin(let key, let value, let maxBytes):
            let old = data[key] ?? []
            guard UInt64(old.count) + UInt64(value.count) <= maxBytes else { return KVResult(.tooLarge) }
            let new = old + value
            set(key, new, &mutations)
            return KVResult(.ok, new)
        case .delete(let key):
            guard data.removeValue(forKey: key) != nil else { return KVResult(.notFound) }
            mutations.append(.delete(MachineKey(space: Self.dataSpace, key: key)))
            return KVResult(.ok)
        case .compareAndSet(let key, let expected, let new):
            guard data[key] == expected else { return KVResult(.compareFailed, data[key]) }
            set(key, new, &mutations)
            return KVResult(.ok)
        case .register, .openSession:
            return KVResult(.malformed)
        }
    }

    private mutating func set(_ key: [UInt8], _ value: [UInt8], _ mutations: inout [MachineMutation]) {
        data[key] = value
        mutations.append(.put(MachineKey(space: Self.dataSpace, key: key), value))
    }

    private mutating func open(_ client: UInt64, slot: Slot, _ mutations: inout [MachineMutation]) -> (
        output: Value, mutations: [MachineMutation]
    ) {
        let output = KVResult(.ok, u64(client)).encode()
        sessions[client] = Session(request: 0, slot: slot, output: output, fingerprint: nil)
        mutations.append(sessionRow(client))
        evictIfNeeded(&mutations)
        return (output, mutations)
    }

    private mutating func evictIfNeeded(_ mutations: inout [MachineMutation]) {
        while sessions.count > Self.maxSessions {
            guard let oldest = sessions.min(by: { ($0.value.slot, $0.key) < ($1.value.slot, $1.key) })?.key
            else { return }
            sessions[oldest] = nil
            mutations.append(.delete(MachineKey(space: Self.sessionSpace, key: u64(oldest))))
        }
    }

    private func sessionRow(_ client: UInt64) -> MachineMutation {
        let session = sessions[client]!
        var writer = ByteWriter(capacity: 32 + session.output.count)
        writer.write(session.request)
        writer.write(Int64(session.slot))
        writer.writeBytes(session.output)
        // Trailing and optional, so rows written before it still decode.
        if let fingerprint = session.fingerprint { writer.write(fingerprint) }
        return .put(MachineKey(space: Self.sessionSpace, key: u64(client)), writer.bytes)
    }

    private func u64(_ value: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.write(value)
        return writer.bytes
    }
}
