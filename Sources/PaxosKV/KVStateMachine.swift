import PaxosCore
import PaxosWire

/// The replicated key-value store: a deterministic ``StateMachine`` with exactly-once client
/// sessions. It holds nothing in memory: every read and write goes to the store's rows (on disk
/// for SQLite, inside the transaction that applies), so a node's memory does not grow with the
/// number or the size of its keys.
///
/// Rows (what a person sees in the `machine_rows` table): space 1 holds the keys and values;
/// space 2 holds one session per client id (last request number, the slot it was applied in,
/// its answer and, since sessions are checked for reused request numbers, the fingerprint of
/// its operation); space 3 indexes the sessions by the slot they were last used in (key: slot
/// and client, 8 bytes each, big-endian; empty value), so the least recently used one is found
/// without reading them all; space 0 holds the next sequential client id (for `register` only),
/// beside the cluster's membership row (``Membership/rowKey``, which ``ClusterMachine`` writes).
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
    public static let sessionBySlotSpace: UInt8 = 3
    public static let metaSpace: UInt8 = 0
    static let nextClientKey = MachineKey(space: metaSpace, key: Array("next_client".utf8))

    /// The most sessions kept by default.
    public static let defaultMaxSessions = 10_000

    /// The most sessions kept. Every replica must use the same value.
    public let maxSessions: Int

    public init(maxSessions: Int = KVStateMachine.defaultMaxSessions) {
        self.maxSessions = maxSessions
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

    public func apply<Rows: MachineRows>(_ proposal: Proposal, slot: Slot, rows: inout Rows) throws -> Value {
        guard let command = try? KVCommand.decode(proposal.command) else {
            return KVResult(.malformed).encode()
        }
        switch command.operation {
        case .register:
            // Skips ids taken by openSession; logs from before openSession never had any, so
            // they replay exactly as they first applied.
            var reader = ByteReader(try rows.value(Self.nextClientKey) ?? [])
            var client = (try? reader.readUInt64("next client")) ?? 1
            while try client == 0 || rows.value(Self.sessionKey(client)) != nil { client &+= 1 }
            try rows.put(Self.nextClientKey, u64(client &+ 1))
            return try open(client, slot: slot, &rows)
        case .openSession(let id):
            guard id != 0 else { return KVResult(.malformed).encode() }
            guard try rows.value(Self.sessionKey(id)) == nil else { return KVResult(.sessionExists).encode() }
            return try open(id, slot: slot, &rows)
        default:
            break
        }
        guard command.client != 0 else {
            return try execute(command.operation, &rows).encode()
        }
        let session: Session
        switch try sessionCheck(command, encoded: proposal.command, rows) {
        case .answer(let answer): return answer
        case .run(let current): session = current
        }
        let output = try execute(command.operation, &rows).encode()
        // A read leaves the session alone: it is safe to repeat, and every session field must be
        // durable (eviction order depends on it, and must be the same on every replica).
        guard !command.operation.isReadOnly else { return output }
        try store(
            command.client,
            Session(
                request: command.request, slot: slot, output: output,
                fingerprint: KVCommand.fingerprint(encoded: proposal.command)),
            replacing: session.slot, &rows)
        return output
    }

    /// A get, from the rows alone: exactly what ``apply(_:slot:rows:)`` would answer for it at
    /// this point of the log (a get changes no row, its session's included), so it needs no slot.
    public func read<Rows: MachineRows>(_ command: Value, rows: Rows) throws -> Value? {
        guard let decoded = try? KVCommand.decode(command), case .get(let key) = decoded.operation else {
            return nil
        }
        if decoded.client != 0, case .answer(let answer) = try sessionCheck(decoded, encoded: command, rows) {
            return answer
        }
        guard let value = try rows.value(Self.dataKey(key)) else { return KVResult(.notFound).encode() }
        return KVResult(.ok, value).encode()
    }

    private enum SessionCheck {
        /// The command does not run: this is its answer (a retry's, or why it is refused).
        case answer(Value)
        /// The command runs, in this session.
        case run(Session)
    }

    /// What a command of a session (`client` ≠ 0) meets before it runs: the same for writes
    /// applied and for gets read without the log. Reads no more than the session's row.
    private func sessionCheck<Rows: MachineRows>(_ command: KVCommand, encoded: Value, _ rows: Rows) throws
        -> SessionCheck
    {
        guard let row = try rows.value(Self.sessionKey(command.client)),
            let (_, session) = Self.session(key: u64(command.client), value: row)
        else {
            return .answer(KVResult(.sessionExpired).encode())
        }
        if command.request == session.request {
            let fingerprint = KVCommand.fingerprint(encoded: encoded)
            guard session.fingerprint == nil || session.fingerprint == fingerprint else {
                return .answer(KVResult(.requestMismatch).encode())
            }
            return .answer(session.output)
        }
        if command.request < session.request { return .answer(KVResult(.staleRequest).encode()) }
        return .run(session)
    }

    private func execute<Rows: MachineRows>(_ operation: KVOperation, _ rows: inout Rows) throws -> KVResult {
        switch operation {
        case .get(let key):
            guard let value = try rows.value(Self.dataKey(key)) else { return KVResult(.notFound) }
            return KVResult(.ok, value)
        case .put(let key, let value):
            try rows.put(Self.dataKey(key), value)
            return KVResult(.ok)
        case .append(let key, let value):
            let new = (try rows.value(Self.dataKey(key)) ?? []) + value
            try rows.put(Self.dataKey(key), new)
            return KVResult(.ok, new)
        case .appendWithin(let key, let value, let maxBytes):
            let old = try rows.value(Self.dataKey(key)) ?? []
            guard UInt64(old.count) + UInt64(value.count) <= maxBytes else { return KVResult(.tooLarge) }
            let new = old + value
            try rows.put(Self.dataKey(key), new)
            return KVResult(.ok, new)
        case .delete(let key):
            guard try rows.value(Self.dataKey(key)) != nil else { return KVResult(.notFound) }
            try rows.delete(Self.dataKey(key))
            return KVResult(.ok)
        case .compareAndSet(let key, let expected, let new):
            let current = try rows.value(Self.dataKey(key))
            guard current == expected else { return KVResult(.compareFailed, current) }
            try rows.put(Self.dataKey(key), new)
            return KVResult(.ok)
        case .register, .openSession:
            return KVResult(.malformed)
        }
    }

    private func open<Rows: MachineRows>(_ client: UInt64, slot: Slot, _ rows: inout Rows) throws -> Value {
        let output = KVResult(.ok, u64(client)).encode()
        try store(
            client, Session(request: 0, slot: slot, output: output, fingerprint: nil), replacing: nil, &rows)
        try evictIfNeeded(&rows)
        return output
    }

    /// Evicts the sessions used least recently (by slot, then client id) while there are too many.
    /// Rows may come from a peer's snapshot, so an index row that names no session is dropped
    /// and the loop ends when the index is empty: every turn deletes one index row.
    private func evictIfNeeded<Rows: MachineRows>(_ rows: inout Rows) throws {
        while try rows.count(in: Self.sessionSpace) > maxSessions {
            guard let oldest = try rows.first(in: Self.sessionBySlotSpace) else { return }
            try rows.delete(oldest)
            guard oldest.key.count == 16 else { continue }
            try rows.delete(MachineKey(space: Self.sessionSpace, key: Array(oldest.key[8...])))
        }
    }

    private func store<Rows: MachineRows>(
        _ client: UInt64, _ session: Session, replacing oldSlot: Slot?, _ rows: inout Rows
    ) throws {
        if let oldSlot { try rows.delete(Self.indexKey(client, slot: oldSlot)) }
        var writer = ByteWriter(capacity: 32 + session.output.count)
        writer.write(session.request)
        writer.write(Int64(session.slot))
        writer.writeBytes(session.output)
        // Trailing and optional, so rows written before it still decode.
        if let fingerprint = session.fingerprint { writer.write(fingerprint) }
        try rows.put(Self.sessionKey(client), writer.bytes)
        try rows.put(Self.indexKey(client, slot: session.slot), [])
    }

    static func dataKey(_ key: [UInt8]) -> MachineKey { MachineKey(space: dataSpace, key: key) }

    static func sessionKey(_ client: UInt64) -> MachineKey {
        var writer = ByteWriter(capacity: 8)
        writer.write(client)
        return MachineKey(space: sessionSpace, key: writer.bytes)
    }

    static func indexKey(_ client: UInt64, slot: Slot) -> MachineKey {
        var writer = ByteWriter(capacity: 16)
        writer.write(Int64(slot))
        writer.write(client)
        return MachineKey(space: sessionBySlotSpace, key: writer.bytes)
    }

    private func u64(_ value: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.write(value)
        return writer.bytes
    }
}

extension MemoryMachine where Machine == KVStateMachine {
    /// The keys and values (space 1).
    public var data: [[UInt8]: [UInt8]] {
        var data: [[UInt8]: [UInt8]] = [:]
        for (key, value) in rows where key.space == KVStateMachine.dataSpace { data[key.key] = value }
        return data
    }

    /// Number of open sessions.
    public var sessionCount: Int { memory.count(in: KVStateMachine.sessionSpace) }
}
