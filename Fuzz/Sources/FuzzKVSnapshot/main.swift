import FuzzSupport
import PaxosCore
import PaxosKV
import PaxosWire

func proposal(_ command: [UInt8]) -> Proposal {
    Proposal(id: ProposalID(node: 2, incarnation: 1, number: 1), command: command)
}

func commit(_ mutations: [MachineMutation], to rows: inout [MachineKey: [UInt8]]) {
    for mutation in mutations {
        switch mutation {
        case .put(let key, let value): rows[key] = value
        case .delete(let key): rows[key] = nil
        }
    }
}

// A snapshot as a peer sends it (the rows of a snapshot reply) followed by commands, each
// `length:u32 bytes`. Whatever the rows hold, installing them never traps, and three machines
// agree on every answer: the one built from the rows, one built from its own rows() (what it
// would send on as a snapshot), and one rebuilt from the committed row changes after every
// command (a restart).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKVSnapshot(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var reader = ByteReader(fuzzInput(start, count))
    guard let rows = try? LogWire.readRows(&reader, 1 << 16) else { return 0 }
    var installed = KVStateMachine(rows: rows)
    var resent = KVStateMachine(rows: installed.rows())
    var durable = installed.rows()
    var slot = 1
    while let command = try? reader.readBytes("command", limit: 1 << 16) {
        let (output, mutations) = installed.apply(proposal(command), slot: slot)
        let (resentOutput, _) = resent.apply(proposal(command), slot: slot)
        commit(mutations, to: &durable)
        var restarted = KVStateMachine(rows: durable)
        require((try? KVResult.decode(output)) != nil, "answer \(output) does not decode")
        require(output == resentOutput, "a re-sent snapshot answers \(resentOutput), the original \(output)")
        require(restarted.rows() == installed.rows(), "the committed rows do not rebuild the machine")
        let probe = KVCommand(client: 0, operation: .get(key: command)).encode()
        require(
            restarted.apply(proposal(probe), slot: slot + 1).output
                == installed.apply(proposal(probe), slot: slot + 1).output,
            "a restarted machine reads another value")
        slot += 2
    }
    return 0
}
