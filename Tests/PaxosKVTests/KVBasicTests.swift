import Paxos
import PaxosCore
import PaxosKV
import PaxosTesting
import Testing

@Suite("kvpaxos (lab 3B) over the simulated network")
struct KVLabTests {
    @Test("Basic put/append/get")
    func basic() async throws {
        let cluster = try await KVCluster(3)
        defer { Task { await cluster.shutdown() } }
        let clerk = cluster.clerk()
        try await clerk.put("a", "aa")
        #expect(try await clerk.get("a") == "aa")
        try await clerk.append("a", "x")
        #expect(try await clerk.get("a") == "aax")
        for server in 0..<3 {
            let only = cluster.clerk([server])
            #expect(try await only.get("a") == "aax")
        }
    }
}
