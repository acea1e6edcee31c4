import ArgumentParser
import Foundation
import PaxosCertificates
import PaxosCore

/// `paxosctl certs DIR N`: a CA and one certificate per node, for a test cluster.
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a cluster CA and a certificate for each node (for a test cluster).",
        discussion: """
            Writes DIR/ca.pem, and DIR/node-N.pem with DIR/node-N-key.pem for nodes 1 to COUNT: \
            the files paxos-node's --peer-ca, --peer-cert and --peer-key take. Each node's \
            certificate names it by the DNS name paxos-node-N (peers take a node's id from it), and \
            also names the hosts given (localhost, 127.0.0.1 and ::1 by default), so the same \
            files can serve the HTTP API over TLS. The CA's private key is not kept: to add a node \
            later, make a new set. Existing files are never overwritten.
            """)

    @Argument(help: "The directory to write the files into (created if missing).")
    var directory: String

    @Argument(help: "How many nodes (ids 1 to COUNT).")
    var count: Int

    @Option(name: .customLong("host"), help: "A further DNS name for every node's certificate (repeatable).")
    var hosts: [String] = []

    @Option(name: .customLong("ip"), help: "A further IP address for every node's certificate (repeatable).")
    var ips: [String] = []

    @Option(help: "Days the certificates are valid.")
    var days: Int = 825

    func validate() throws {
        guard (1...1000).contains(count) else { throw ValidationError("COUNT must be between 1 and 1000") }
        guard (1...36_500).contains(days) else { throw ValidationError("--days must be between 1 and 36500") }
    }

    func run() throws {
        do {
            let validity = Duration.seconds(86_400 * days)
            let authority = try ClusterAuthority(validity: validity)
            let written = try authority.write(
                to: directory, nodes: (1...count).map { NodeID(UInt32($0)) },
                dnsNames: ["localhost"] + hosts, ipAddresses: ["127.0.0.1", "::1"] + ips, validity: validity)
            for path in written { print(path) }
        } catch {
            throw CommandFailure("certs: \(error)")
        }
    }
}
