import PaxosCore
import PaxosKV
import PaxosWire
import Testing

/// Sessions opened under ids the proposer chose, request numbers bound to their operation, and
/// appends bounded by a limit carried in the command (issue 11, finding 7 and 8).
@Suite("KV sessions and bounded appends")
struct KVSessionTests {
    var machine = MemoryMachine(KVStateMachine())
    var slot = 0

    mutating func apply(_ command: KVCommand) -> KVResult {
        slot += 1
        let proposal = Proposal(
            id: ProposalID(node: NodeID(0), incarnation: 1, number: UInt64(slot)), command: command.encode())
        return try! KVResult.decode(machine.apply(proposal, slot: slot).output)
    }

    @Test("openSession opens the id it carries; a taken id and id 0 are refused")
    mutating func openSession() {
        let id: UInt64 = 0x9e37_79b9_7f4a_7c15
        #expect(apply(KVCommand(operation: .openSession(id: id))).clientID == id)
        #expect(apply(KVCommand(operation: .openSession(id: id))).status == .sessionExists)
        #expect(apply(KVCommand(operation: .openSession(id: 0))).status == .malformed)
        #expect(machine.sessionCount == 1)
        // An id nobody opened is no session, however close to a real one.
        let guess = KVCommand(client: id + 1, request: 1, operation: .put(key: [1], value: [1]))
        #expect(apply(guess).status == .sessionExpired)
        #expect(machine.data[[1]] == nil)
    }

    @Test("register skips ids taken by openSession, so two clients never share a session")
    mutating func registerSkipsTakenIDs() {
        #expect(apply(KVCommand(operation: .openSession(id: 1))).clientID == 1)
        #expect(apply(KVCommand(operation: .openSession(id: 2))).clientID == 2)
        #expect(apply(KVCommand(operation: .register)).clientID == 3)
        #expect(apply(KVCommand(operation: .register)).clientID == 4)
    }

    @Test("a request number reused for another operation is refused; the same one is answered again")
    mutating func requestMismatch() {
        let id: UInt64 = 77
        _ = apply(KVCommand(operation: .openSession(id: id)))
        let put = KVCommand(client: id, request: 5, operation: .put(key: [1], value: [2]))
        #expect(apply(put).status == .ok)
        #expect(apply(put).status == .ok, "a retry of the same request")
        for other in [
            KVOperation.delete(key: [1]), .put(key: [1], value: [3]), .put(key: [9], value: [2]),
            .get(key: [1]), .append(key: [1], value: [2]),
        ] {
            #expect(apply(KVCommand(client: id, request: 5, operation: other)).status == .requestMismatch)
        }
        #expect(machine.data[[1]] == [2], "nothing the refused requests named was done")
        #expect(apply(KVCommand(client: id, request: 6, operation: .delete(key: [1]))).status == .ok)
    }

    @Test("the fingerprint survives the rows (restart and snapshot)")
    mutating func fingerprintInRows() {
        _ = apply(KVCommand(operation: .openSession(id: 8)))
        _ = apply(KVCommand(client: 8, request: 1, operation: .put(key: [1], value: [2])))
        machine = MemoryMachine(KVStateMachine(), rows: machine.rows)
        #expect(
            apply(KVCommand(client: 8, request: 1, operation: .delete(key: [1]))).status == .requestMismatch)
        #expect(apply(KVCommand(client: 8, request: 1, operation: .put(key: [1], value: [2]))).status == .ok)
    }

    @Test("a session row stored before fingerprints still decodes and answers its retry")
    mutating func legacySessionRow() {
        var writer = ByteWriter(capacity: 32)
        writer.write(UInt64(4))  // last request
        writer.write(Int64(10))  // slot
        writer.writeBytes(KVResult(.ok).encode())
        var key = ByteWriter(capacity: 8)
        key.write(UInt64(3))
        machine = MemoryMachine(
            KVStateMachine(),
            rows: [
                MachineKey(space: KVStateMachine.sessionSpace, key: key.bytes): writer.bytes
            ])
        slot = 10
        #expect(machine.sessionCount == 1)
        let retry = KVCommand(client: 3, request: 4, operation: .put(key: [1], value: [1]))
        #expect(apply(retry) == KVResult(.ok))
        #expect(machine.data[[1]] == nil, "answered from the session, not executed")
        #expect(apply(KVCommand(client: 3, request: 5, operation: .put(key: [1], value: [1]))).status == .ok)
    }

    @Test("the fingerprint ignores the client and request numbers and sees every operation byte")
    func fingerprint() {
        let put = KVOperation.put(key: [1], value: [2])
        #expect(
            KVCommand(client: 1, request: 2, operation: put).fingerprint
                == KVCommand(client: 3, request: 4, operation: put).fingerprint)
        #expect(
            KVCommand(operation: put).fingerprint
                != KVCommand(operation: .put(key: [1], value: [3])).fingerprint)
        #expect(
            KVCommand(operation: put).fingerprint
                != KVCommand(operation: .append(key: [1], value: [2])).fingerprint)
        // Fixed across runs and processes (FNV-1a, not Swift's seeded Hasher); computed independently.
        #expect(KVCommand(operation: .get(key: [])).fingerprint == 0x07fd_7bf1_b8fb_1567)
    }

    @Test("appendWithin stops at its limit and changes nothing; the commands round-trip")
    mutating func boundedAppend() throws {
        #expect(
            apply(KVCommand(operation: .appendWithin(key: [1], value: [1, 2, 3], maxBytes: 4))).status == .ok)
        #expect(
            apply(KVCommand(operation: .appendWithin(key: [1], value: [4, 5], maxBytes: 4))).status
                == .tooLarge)
        #expect(machine.data[[1]] == [1, 2, 3])
        #expect(
            apply(KVCommand(operation: .appendWithin(key: [1], value: [4], maxBytes: 4)))
                == KVResult(.ok, [1, 2, 3, 4]))
        for operation in [
            KVOperation.openSession(id: .max), .appendWithin(key: [7], value: [8], maxBytes: .max),
        ] {
            let command = KVCommand(client: 5, request: 6, operation: operation)
            #expect(try KVCommand.decode(command.encode()) == command)
        }
    }
}
