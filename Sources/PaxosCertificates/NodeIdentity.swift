import PaxosCore
import SwiftASN1
import X509

/// How a certificate names a node: the DNS subject alternative name `paxos-node-N` names node N.
///
/// A peer's node id is taken from the certificate it proved it holds, never from what it claims
/// in a message; a certificate that names no node, or more than one, names none.
public enum NodeIdentity {
    /// The prefix of the DNS name that carries a node id.
    public static let namePrefix = "paxos-node-"

    /// The DNS name a certificate for `node` carries (and a dialing peer verifies).
    public static func dnsName(for node: NodeID) -> String { "\(namePrefix)\(node.rawValue)" }

    /// The node a DNS name names, or nil when it names none. Only the canonical spelling counts
    /// (decimal, no sign, no leading zeros), so that two names can never mean one node.
    public static func node(named name: String) -> NodeID? {
        let lower = name.lowercased()
        guard lower.hasPrefix(namePrefix) else { return nil }
        let digits = lower.dropFirst(namePrefix.count)
        guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }),
            digits == "0" || !digits.hasPrefix("0"), let value = UInt32(digits)
        else { return nil }
        return NodeID(value)
    }

    /// The one node a certificate names.
    /// - Throws: ``CertificateError`` when the certificate does not parse, or names no node or
    ///   several.
    public static func node(in certificate: Certificate) throws(CertificateError) -> NodeID {
        let names: SubjectAlternativeNames?
        do {
            names = try certificate.extensions.subjectAlternativeNames
        } catch {
            throw CertificateError("its subject alternative names do not parse: \(error)")
        }
        var nodes: Set<NodeID> = []
        for name in names ?? SubjectAlternativeNames() {
            if case .dnsName(let dns) = name, let node = node(named: dns) { nodes.insert(node) }
        }
        guard let node = nodes.first else {
            throw CertificateError("it names no node (no DNS name \(namePrefix)N)")
        }
        guard nodes.count == 1 else {
            throw CertificateError("it names several nodes (\(nodes.sorted().map(\.description)))")
        }
        return node
    }

    /// The one node a DER-encoded certificate names.
    public static func node(inDER der: [UInt8]) throws(CertificateError) -> NodeID {
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: der)
        } catch {
            throw CertificateError("it does not parse: \(error)")
        }
        return try node(in: certificate)
    }
}

/// Why a certificate cannot be used.
public struct CertificateError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
