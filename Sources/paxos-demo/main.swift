import Paxos
import PaxosCore
import PaxosTesting

// Runs a 3-peer cluster in this process (simulated network, in-memory stores), agrees on one
// instance per command-line argument, proposing each from a different peer, and prints what
// every peer decided. The real multi-process node is `paxos-node` (issue 4).
let values =
    CommandLine.arguments.dropFirst().isEmpty ? ["hello", "paxos"] : Array(CommandLine.arguments.dropFirst())
let cluster = try await LabCluster(3)
let peers = cluster.peers().map { $0! }
for (seq, value) in values.enumerated() {
    await peers[seq % peers.count].start(seq, .text(value))
}
for seq in values.indices {
    try await cluster.waitn(seq, peers.count)
    var line = "seq \(seq):"
    for peer in peers { line += " peer \(peer.me) \(await peer.status(seq))," }
    print(line.dropLast())
}
print("remote RPCs: \(cluster.network.totalRPCCount) for \(values.count) agreement(s)")
await cluster.cleanup()
