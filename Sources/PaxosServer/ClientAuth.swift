import Foundation
import HTTPTypes
import Hummingbird

/// Requires `Authorization: Bearer TOKEN` on every route but `GET` of the open paths (by
/// default `/health` and `/ready`: a load balancer's probe learns nothing from them): 401
/// `unauthorized` with a `WWW-Authenticate` challenge otherwise. Install it after
/// ``JSONErrorMiddleware`` and before the routes.
public struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    private let token: [UInt8]
    private let openPaths: Set<String>

    /// The paths a `GET` of needs no token: the health and readiness probes.
    public static var defaultOpenPaths: Set<String> { ["/health", "/ready"] }

    /// `token`: the secret clients send; must not be empty. `openPaths`: exact paths whose
    /// `GET` is let through without it.
    public init(token: String, openPaths: Set<String> = defaultOpenPaths) {
        precondition(!token.isEmpty, "an empty token would admit everyone")
        self.token = Array(token.utf8)
        self.openPaths = openPaths
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.method == .get, openPaths.contains(request.uri.path) {
            return try await next(request, context)
        }
        let prefix = Array("Bearer ".utf8)
        guard let header = request.headers[.authorization].map({ Array($0.utf8) }),
            header.count > prefix.count,
            header[..<prefix.count].lazy.map({ $0 | 0x20 }).elementsEqual(prefix.lazy.map { $0 | 0x20 }),
            Self.constantTimeEquals(Array(header[prefix.count...]), token)
        else {
            var response = JSONErrorMiddleware<Context>.response(
                APIError(
                    .unauthorized, "unauthorized",
                    "this node wants Authorization: Bearer TOKEN (the token of --client-token-file)"))
            response.headers[.wwwAuthenticate] = #"Bearer realm="paxos-node""#
            return response
        }
        return try await next(request, context)
    }

    /// Compares without stopping at the first difference, so the time taken does not tell an
    /// attacker how much of a guess was right (only whether its length was).
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    /// The token in `path`: the file's text without surrounding whitespace; nil when it is empty.
    public static func token(fromFile path: String) throws -> String? {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return token.isEmpty ? nil : token
    }
}
