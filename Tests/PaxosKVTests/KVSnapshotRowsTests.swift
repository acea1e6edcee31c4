import PaxosCore
import PaxosKV
import PaxosWire
import Testing

/// Rows installed from a snapshot come from another node: a session row that is not exactly
/// what the machine writes is dropped (that client's session is unknown, so nothing runs twice),
/// never replayed. Inputs found by the FuzzKVSnapshot fuzzer.
@Suite("KV state machine: rows from a snapshot")
struct KVSnapshotRowsTests {
    func proposal(_ command: KVCommand) -> Proposal {
        Proposal(id: ProposalID(node: 1, incarnation: 1, number: 1), command: command.encode())
    }

    func u64(_ value: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(value)
        return writer.bytes
    }

    /// `request:u64 slot:i64 output:bytes`, the layout of a session row's value.
    func sessionValue(request: UInt64, output: [UInt8], extra: [UInt8] = []) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(request)
        writer.write(Int64(1))
        writer.writeBytes(output)
        return writer.bytes + extra
    }

    @Test("a cached answer that does not decode is not replayed: the session is unknown")
    func undecodableCachedAnswer() throws {
        let rows = [
            MachineKey(space: KVStateMachine.sessionSpace, key: u64(5)): sessionValue(request: 3, output: [])
        ]
        var machine = MemoryMachine(KVStateMachine(), rows: rows)
        let retry = KVCommand(client: 5, request: 3, operation: .put(key: [1], value: [2]))
        let output = try machine.apply(proposal(retry), slot: 2).output
        #expect(try KVResult.decode(output) == KVResult(.sessionExpired))
    }

    @Test("a session key or value with extra bytes is dropped, not read as another client's session")
    func sessionRowWithExtraBytes() throws {
        let answer = KVResult(.ok).encode()
        for rows in [
            [
                MachineKey(space: KVStateMachine.sessionSpace, key: u64(5) + [0]): sessionValue(
                    request: 7, output: answer)
            ],
            [
                MachineKey(space: KVStateMachine.sessionSpace, key: u64(5)): sessionValue(
                    request: 7, output: answer, extra: [0])
            ],
        ] {
            var machine = MemoryMachine(KVStateMachine(), rows: rows)
            let output = try machine.apply(
                proposal(KVCommand(client: 5, request: 3, operation: .get(key: [1]))), slot: 2
            ).output
            #expect(try KVResult.decode(output) == KVResult(.sessionExpired))
        }
    }

    @Test("a well-formed session row is kept: a retry gets the cached answer")
    func wellFormedSessionRow() throws {
        let answer = KVResult(.ok, [9]).encode()
        let rows = [
            MachineKey(space: KVStateMachine.sessionSpace, key: u64(5)): sessionValue(
                request: 3, output: answer)
        ]
        var machine = MemoryMachine(KVStateMachine(), rows: rows)
        let retry = KVCommand(client: 5, request: 3, operation: .put(key: [1], value: [2]))
        let (output, changes) = try machine.apply(proposal(retry), slot: 2)
        #expect(output == answer)
        #expect(changes.isEmpty, "answered from the session, nothing executed")
    }
}
