import NIOCore
import NIOSSL
import Paxos
import PaxosCertificates
import PaxosCore

/// Mutual TLS between peers: this node's certificate and key, and the cluster's CA.
///
/// Every peer connection is TLS 1.3 and both sides present a certificate issued by the CA. A
/// peer's node id is the one its certificate names (``NodeIdentity``): the listening side takes
/// it from the dialer's certificate, and the dialer checks that the certificate of the node it
/// dialed names that node. What a peer *claims* in its hello or its messages must agree with it.
public struct PeerTLS: Sendable {
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey
    public let trustRoots: [NIOSSLCertificate]
    /// The node this node's certificate names.
    public let node: NodeID
    let serverContext: NIOSSLContext
    let clientContext: NIOSSLContext

    /// Loads PEM files: this node's certificate (optionally followed by intermediates), its
    /// private key, and the CA certificates that peers' certificates must chain to.
    public init(certificateFile: String, privateKeyFile: String, caFile: String) throws(TLSSetupError) {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let roots: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificateFile) } catch {
            throw TLSSetupError("cannot read the certificate in \(certificateFile): \(error)")
        }
        do { key = try NIOSSLPrivateKey(file: privateKeyFile, format: .pem) } catch {
            throw TLSSetupError("cannot read the private key in \(privateKeyFile): \(error)")
        }
        do { roots = try NIOSSLCertificate.fromPEMFile(caFile) } catch {
            throw TLSSetupError("cannot read the CA certificate in \(caFile): \(error)")
        }
        try self.init(certificateChain: chain, privateKey: key, trustRoots: roots)
    }

    /// From PEM text (tests, and certificates that do not live in files).
    public init(certificatePEM: String, privateKeyPEM: String, caPEM: String) throws(TLSSetupError) {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let roots: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
            key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
            roots = try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8))
        } catch {
            throw TLSSetupError("cannot read the certificates: \(error)")
        }
        try self.init(certificateChain: chain, privateKey: key, trustRoots: roots)
    }

    public init(
        certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey, trustRoots: [NIOSSLCertificate]
    ) throws(TLSSetupError) {
        guard let leaf = certificateChain.first else {
            throw TLSSetupError("the certificate file holds none")
        }
        let node: NodeID
        do {
            node = try NodeIdentity.node(inDER: leaf.toDERBytes())
        } catch {
            throw TLSSetupError("this node's certificate cannot be used: \(error)")
        }
        try self.init(
            certificateChain: certificateChain, privateKey: privateKey, trustRoots: trustRoots, node: node)
    }

    /// Without checking what the certificate names: tests use it to play a peer with a bad one.
    init(
        certificateChain: [NIOSSLCertificate], privateKey: NIOSSLPrivateKey, trustRoots: [NIOSSLCertificate],
        node: NodeID
    ) throws(TLSSetupError) {
        guard !trustRoots.isEmpty else { throw TLSSetupError("the CA file holds no certificate") }
        self.node = node
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.trustRoots = trustRoots

        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        server.minimumTLSVersion = .tlsv13
        // The dialer has no host name to check; its chain must verify and it must present one.
        server.certificateVerification = .noHostnameVerification
        server.trustRoots = .certificates(trustRoots)

        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = certificateChain.map { .certificate($0) }
        client.privateKey = .privateKey(privateKey)
        client.minimumTLSVersion = .tlsv13
        // The "host name" checked is the dialed node's name, paxos-node-N, not its address.
        client.certificateVerification = .fullVerification
        client.trustRoots = .certificates(trustRoots)
        do {
            serverContext = try NIOSSLContext(configuration: server)
            clientContext = try NIOSSLContext(configuration: client)
        } catch {
            throw TLSSetupError("the certificate and key do not make a TLS context: \(error)")
        }
    }

    /// The node a verified peer certificate names.
    static func node(in certificate: NIOSSLCertificate?) throws -> NodeID {
        guard let certificate else { throw TransportError("the peer presented no certificate") }
        do {
            return try NodeIdentity.node(inDER: certificate.toDERBytes())
        } catch {
            throw TransportError("the peer's certificate cannot be used: \(error)")
        }
    }
}

/// Why the peer TLS settings cannot be used: reported at start, before anything listens.
public struct TLSSetupError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
