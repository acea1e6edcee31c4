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

// A snapshot chunk's rows as a peer sends them, followed by commands, each `length:u32 bytes`.
// Whatever the rows hold (sessions that do not decode, an index that names no session, more
// sessions than the bound), applying never traps or loops, every answer decodes, and two
// machines agree on every answer: the one on the rows as received, and one on the rows after a
// second trip through the wire (what it would send on as a snapshot). The committed row changes
// rebuild the rows (a restart reads them back).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKVSnapshot(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    var reader = ByteReader(fuzzInput(start, count))
    guard let received = try? LogWire.readRows(&reader, 1 << 16) else { return 0 }
    var rows: [MachineKey: [UInt8]] = [:]
    for row in received { rows[row.key] = row.value }
    var writer = ByteWriter()
    LogWire.writeRows(
        rows.map { MachineRow(key: $0.key, value: $0.value) }.sorted { $0.key < $1.key }, &writer)
    var again = ByteReader(writer.bytes)
    var resentRows: [MachineKey: [UInt8]] = [:]
    for row in (try? LogWire.readRows(&again, 1 << 16)) ?? [] { resentRows[row.key] = row.value }
    require(resentRows == rows, "the rows do not survive a second trip through the wire")
    // A small session bound, so eviction runs on whatever index the rows hold.
    let machine = KVStateMachine(maxSessions: 2)
    var installed = MemoryMachine(machine, rows: rows)
    var resent = MemoryMachine(machine, rows: resentRows)
    var durable = rows
    var slot = 1
    while let command = try? reader.readBytes("command", limit: 1 << 16) {
        guard let (output, mutations) = try? installed.apply(proposal(command), slot: slot),
            let (resentOutput, _) = try? resent.apply(proposal(command), slot: slot)
        else {
            require(false, "applying threw with rows in memory")
            return 0
        }
        commit(mutations, to: &durable)
        require((try? KVResult.decode(output)) != nil, "answer \(output) does not decode")
        require(output == resentOutput, "a re-sent snapshot answers \(resentOutput), the original \(output)")
        require(durable == installed.rows, "the committed rows differ from the machine's")
        slot += 1
    }
    return 0
}
