import ArgumentParser
import Foundation
import PaxosKVClient

/// paxosctl's exit statuses: one per outcome a script handles differently (README, "paxosctl").
enum ExitStatus: Int32, CaseIterable {
    case ok = 0
    /// Any other error: an error answer (e.g. 401), a bad answer, a file that cannot be read.
    case failure = 1
    /// `get`/`delete` of a key that has no value.
    case notFound = 3
    /// `cas` found another value; nothing changed.
    case casMismatch = 4
    /// No endpoint could be reached.
    case unreachable = 5
    /// The cluster has no leader: certainly not executed.
    case noLeader = 6
    /// The request may or may not have been executed.
    case outcomeUnknown = 7
    /// `status --wait` ran out with the instance still pending.
    case timedOut = 8
    /// A bad command line (ArgumentParser's EX_USAGE).
    case usage = 64

    static let help = """
        Exit status: 0 ok; 1 error; 3 not found; 4 cas mismatch; 5 unreachable (no endpoint \
        answered); 6 no leader (not executed); 7 outcome unknown (may have been executed); 8 \
        status --wait timed out; 64 usage.
        """
}

/// Prints `Error: message` to standard error and returns the exit code to throw.
func cliExit(_ status: ExitStatus, _ message: String) -> ExitCode {
    FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
    return ExitCode(status.rawValue)
}

extension PaxosKVError {
    var exitStatus: ExitStatus {
        switch self {
        case .notFound: .notFound
        case .casMismatch: .casMismatch
        case .unreachable: .unreachable
        case .noLeader: .noLeader
        case .outcomeUnknown: .outcomeUnknown
        case .invalidRequest: .usage
        case .sessionExpired, .http, .badAnswer: .failure
        }
    }
}

/// The nodes to talk to, and how: `--endpoints`, the credentials, the timeouts. Flags win over
/// the environment (`PAXOSCTL_ENDPOINTS`, `PAXOSCTL_TOKEN`, `PAXOSCTL_TOKEN_FILE`, `PAXOSCTL_CACERT`).
struct Endpoint: ParsableArguments {
    @Option(
        name: .customLong("endpoints"),
        help: ArgumentHelp(
            "The nodes' HTTP APIs, comma-separated; on a connection failure the next is tried (default: "
                + "$PAXOSCTL_ENDPOINTS, else http://127.0.0.1:7001).",
            valueName: "url,url,..."))
    var endpointsOption: String?

    @Option(
        name: .customLong("endpoint"),
        help: ArgumentHelp("The same as --endpoints.", valueName: "url,url,..."))
    var endpointOption: String?

    @Option(
        help: ArgumentHelp(
            "The bearer token of the node's --client-token-file (default: $PAXOSCTL_TOKEN).",
            valueName: "token"))
    var token: String?

    @Option(
        help: ArgumentHelp(
            "A file holding the bearer token, e.g. the node's --client-token-file (default: "
                + "$PAXOSCTL_TOKEN_FILE).",
            valueName: "file"))
    var tokenFile: String?

    @Option(
        help: ArgumentHelp(
            "PEM file of the CA (or the certificate itself) to trust for https endpoints, instead of "
                + "the system's roots (default: $PAXOSCTL_CACERT).",
            valueName: "file"))
    var cacert: String?

    @Option(help: ArgumentHelp("Seconds a command may take, its retries included.", valueName: "seconds"))
    var commandTimeout: Double = 30

    @Option(help: ArgumentHelp("Seconds one connection attempt may take.", valueName: "seconds"))
    var dialTimeout: Double = 2

    func validate() throws {
        if endpointsOption != nil, endpointOption != nil {
            throw ValidationError("give --endpoints or --endpoint, not both")
        }
        for (name, value) in [("--command-timeout", commandTimeout), ("--dial-timeout", dialTimeout)] {
            guard value.isFinite, value > 0, value <= 86_400 else {
                throw ValidationError("\(name) must be a number of seconds in (0, 86400]")
            }
        }
    }

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    private func setting(_ name: String) -> String? {
        environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `--endpoints` (or `--endpoint`), else `PAXOSCTL_ENDPOINTS`, else node 1 of a local cluster.
    var endpoints: [String] {
        (endpointsOption ?? endpointOption ?? setting("PAXOSCTL_ENDPOINTS") ?? "http://127.0.0.1:7001")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// `--token`, `--token-file`, `PAXOSCTL_TOKEN`, `PAXOSCTL_TOKEN_FILE`, in that order: an
    /// environment variable or a file keeps the secret out of `ps`.
    func bearerToken() throws -> String? {
        if let token { return token }
        if let tokenFile { return try Self.readToken(tokenFile, from: "--token-file") }
        if let token = setting("PAXOSCTL_TOKEN") { return token }
        if let file = setting("PAXOSCTL_TOKEN_FILE") {
            return try Self.readToken(file, from: "PAXOSCTL_TOKEN_FILE")
        }
        return nil
    }

    static func readToken(_ path: String, from source: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw cliExit(.usage, "\(source): cannot read \(path)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw cliExit(.usage, "\(source): \(path) is empty") }
        return token
    }

    /// Makes the client, runs `body` with it, and turns its typed errors into exit statuses.
    @discardableResult
    func withClient<T>(_ body: (PaxosKVClient) async throws -> T) async throws -> T {
        var configuration = PaxosKVClient.Configuration(
            endpoints: endpoints, bearerToken: try bearerToken(), caFile: cacert ?? setting("PAXOSCTL_CACERT")
        )
        configuration.deadline = .milliseconds(Int64(commandTimeout * 1000))
        configuration.connectTimeout = .milliseconds(Int64(dialTimeout * 1000))
        configuration.requestTimeout = min(configuration.requestTimeout, configuration.deadline)
        let client: PaxosKVClient
        do throws(PaxosKVError) {
            client = try PaxosKVClient(configuration)
        } catch {
            throw cliExit(error.exitStatus, error.description)
        }
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch let error as PaxosKVError {
            await client.shutdown()
            throw cliExit(error.exitStatus, error.description)
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
