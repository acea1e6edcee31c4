import FuzzSupport
import PaxosCore
import PaxosKV
import PaxosWire

/// Keys and sessions that commands can hit: one existing key, one open session (client 1, last
/// request 5) and the next client id.
let startRows: [MachineKey: [UInt8]] = {
    var machine = MemoryMachine(KVStateMachine())
    let setup = [
        KVCommand(operation: .register),
        KVCommand(client: 1, request: 5, operation: .put(key: Array("k".utf8), value: Array("v".utf8))),
    ]
    for (slot, command) in setup.enumerated() {
        _ = try? machine.apply(proposal(command.encode()), slot: slot + 1)
    }
    return machine.rows
}()

func proposal(_ command: [UInt8]) -> Proposal {
    Proposal(id: ProposalID(node: 1, incarnation: 1, number: 1), command: command)
}

// The command codec (what clients' requests become in the log) and the result codec (what comes
// back): round trips, and whatever bytes reach the state machine, it answers with a decodable
// result and its row changes rebuild the machine it became.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKVCommand(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = fuzzInput(start, count)
    if let command = try? KVCommand.decode(bytes) {
        let again = try? KVCommand.decode(command.encode())
        require(again == command, "command round trip: \(command) came back as \(String(describing: again))")
    }
    if let result = try? KVResult.decode(bytes) {
        let again = try? KVResult.decode(result.encode())
        require(again == result, "result round trip: \(result) came back as \(String(describing: again))")
    }
    var machine = MemoryMachine(KVStateMachine(), rows: startRows)
    var rows = machine.rows
    guard let (output, mutations) = try? machine.apply(proposal(bytes), slot: 3) else {
        require(false, "applying \(bytes) threw with rows in memory")
        return 0
    }
    require((try? KVResult.decode(output)) != nil, "the machine answered \(output), which does not decode")
    for mutation in mutations {
        switch mutation {
        case .put(let key, let value): rows[key] = value
        case .delete(let key): rows[key] = nil
        }
    }
    require(rows == machine.rows, "the row changes of \(bytes) do not rebuild the rows they came from")
    return 0
}
