import Crypto
import Foundation
import PaxosCore
import SwiftASN1
import X509

/// A certificate authority for one cluster: it issues each node a certificate that names it
/// (``NodeIdentity``), usable both to accept peers (server) and to dial them (client).
///
/// Meant for test clusters and for operators without a CA of their own (`paxosctl certs`); a
/// production CA only has to issue certificates with the same DNS names.
public struct ClusterAuthority: Sendable {
    /// A certificate and its private key, PEM-encoded.
    public struct Issued: Sendable {
        public var certificatePEM: String
        public var privateKeyPEM: String
    }

    public let certificate: Certificate
    private let privateKey: Certificate.PrivateKey

    /// The authority's certificate, PEM-encoded: what every node trusts (`--peer-ca`).
    public var certificatePEM: String {
        // Serializing a certificate this type built cannot fail.
        try! certificate.serializeAsPEM().pemString
    }

    /// Makes a new authority with a fresh P-256 key.
    /// - Parameters:
    ///   - name: the authority's common name.
    ///   - validity: how long its certificate (and what it issues) is valid, from now.
    public init(name: String = "swift-paxos cluster CA", validity: Duration = .seconds(86_400 * 825)) throws {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName { CommonName(name) }
        let now = Date()
        certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(Double(validity.components.seconds)),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: key)
        privateKey = key
    }

    /// Issues a certificate for `node`.
    /// - Parameters:
    ///   - dnsNames: further DNS names (e.g. the host's), for serving the HTTP API with it too.
    ///   - ipAddresses: IP addresses (IPv4 or IPv6 text) to name, for the same reason.
    ///   - extraNodeNames: more `paxos-node-N` names: only for tests of what a node refuses.
    public func issue(
        node: NodeID, dnsNames: [String] = [], ipAddresses: [String] = [], extraNodeNames: [NodeID] = [],
        validity: Duration = .seconds(86_400 * 825)
    ) throws -> Issued {
        var names: [GeneralName] = [.dnsName(NodeIdentity.dnsName(for: node))]
        names += extraNodeNames.map { .dnsName(NodeIdentity.dnsName(for: $0)) }
        names += dnsNames.map { .dnsName($0) }
        for text in ipAddresses {
            guard let bytes = Self.ipAddressBytes(text) else {
                throw CertificateError("'\(text)' is not an IP address")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        return try issue(
            commonName: NodeIdentity.dnsName(for: node), names: names, validity: validity)
    }

    /// Issues a certificate with exactly the given subject alternative names (tests use it for
    /// certificates that name no node).
    public func issue(commonName: String, names: [GeneralName], validity: Duration) throws -> Issued {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let now = Date()
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(Double(validity.components.seconds)),
            issuer: certificate.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(
                    keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: privateKey)
        return Issued(
            certificatePEM: try leaf.serializeAsPEM().pemString,
            privateKeyPEM: try key.serializeAsPEM().pemString)
    }

    /// Writes `ca.pem` and, for every node, `node-N.pem` and `node-N-key.pem` (mode 0600) into
    /// `directory`, creating it. Existing files are never overwritten.
    /// - Returns: the paths written.
    @discardableResult
    public func write(
        to directory: String, nodes: [NodeID], dnsNames: [String] = ["localhost"],
        ipAddresses: [String] = ["127.0.0.1", "::1"], validity: Duration = .seconds(86_400 * 825)
    ) throws -> [String] {
        let manager = FileManager.default
        try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var files: [(String, String, Int)] = [("ca.pem", certificatePEM, 0o644)]
        for node in nodes {
            let issued = try issue(
                node: node, dnsNames: dnsNames, ipAddresses: ipAddresses, validity: validity)
            files.append(("node-\(node.rawValue).pem", issued.certificatePEM, 0o644))
            files.append(("node-\(node.rawValue)-key.pem", issued.privateKeyPEM, 0o600))
        }
        for (name, _, _) in files where manager.fileExists(atPath: "\(directory)/\(name)") {
            throw CertificateError("\(directory)/\(name) exists already; not overwriting it")
        }
        var written: [String] = []
        for (name, text, mode) in files {
            let path = "\(directory)/\(name)"
            try Self.createNew(path, contents: Array(text.utf8), mode: mode_t(mode))
            written.append(path)
        }
        return written
    }

    /// Writes a file that must not exist yet, created with `mode` from the start: a private key is
    /// never readable by others, not even for a moment, and an existing file is never replaced.
    static func createNew(_ path: String, contents: [UInt8], mode: mode_t) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw CertificateError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(descriptor) }
        // The umask may have taken bits away from a certificate's mode; a key's 0600 stays.
        _ = fchmod(descriptor, mode)
        var offset = 0
        while offset < contents.count {
            let count = contents[offset...].withUnsafeBytes { bytes in
                Glibc.write(descriptor, bytes.baseAddress, bytes.count)
            }
            guard count > 0 else {
                throw CertificateError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += count
        }
        guard fsync(descriptor) == 0 else {
            throw CertificateError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The 4 or 16 bytes of an IPv4 or IPv6 address in text, or nil.
    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
