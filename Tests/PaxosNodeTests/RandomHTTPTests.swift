import Foundation
import Hummingbird
import Paxos
import PaxosCore
import PaxosKV
import PaxosServer
import PaxosTesting
import Testing

/// Seeded random requests against the real router (classic and key-value routes on one server,
/// as `paxos-node` wires them), sent over a raw socket so that nothing on the client side tidies
/// a request or a response. For every request: the server answers with a well-formed HTTP/1.1
/// response, no 500, a 5xx only with a documented code, and every error with a JSON error body.
/// A failing request is reproduced by its seed and index (printed with the failure).
@Suite("Randomized HTTP requests", .serialized)
struct RandomHTTPTests {
    /// Each seed is one reproducible sequence of requests.
    static let seeds: [UInt64] = [1, 2, 3, 4]
    static let requestsPerSeed = 200
    /// The documented 5xx answers (README "Outcomes" and the client API section): anything
    /// else, a 500 above all, is a bug.
    static let documented5xx: [Int: Set<String>] = [
        503: ["no_leader", "not_serving", "storage_failed"],
        504: ["outcome_unknown"],
    ]

    @Test("random methods, paths, headers and bodies: well-formed answers, only documented 5xx, JSON errors")
    func randomRequests() async throws {
        let lab = try await LabCluster(3, seed: 71)
        let kv = try await KVCluster(3, seed: 73)
        _ = try await kv.waitForLeader()
        let info = NodeInfo(
            clusterID: "random-test", dataDirectory: "/nowhere", version: "test",
            peerAddresses: [0: "127.0.0.1:1", 1: "127.0.0.1:2", 2: "127.0.0.1:3"],
            isReachable: { _ in true })
        let router = PaxosHTTPAPI.router(peer: lab[0]!, info: info, maxValueBytes: 1024)
        KVHTTPAPI.add(to: router, service: try #require(kv.service(0)), maxValueBytes: 1024)
        do {
            try await withServer(router) { base in
                let port = try #require(URLComponents(string: base)?.port)
                for seed in Self.seeds {
                    var generator = RequestGenerator(seed: seed)
                    for index in 0..<Self.requestsPerSeed {
                        let request = generator.next()
                        let raw = await exchange(port: port, request.bytes)
                        check(raw, request, "seed \(seed) #\(index)")
                    }
                }
                // Requests the HTTP parser itself refuses: the router never sees them, so only
                // "no crash, a well-formed answer or a closed connection" applies.
                var generator = RequestGenerator(seed: 99)
                for _ in 0..<20 {
                    let raw = await exchange(port: port, generator.unparseable(), timeout: 3)
                    if !raw.isEmpty { #expect(HTTPResponse(raw) != nil, "a malformed answer to garbage") }
                }
                let health = HTTPResponse(
                    await exchange(
                        port: port, Array("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
                    ))
                #expect(health?.status == 200, "the server still serves after the random requests")
            }
        } catch {
            await kv.shutdown()
            await lab.cleanup()
            throw error
        }
        await kv.shutdown()
        await lab.cleanup()
    }

    func check(_ raw: [UInt8], _ request: RandomRequest, _ label: String) {
        let what = "\(label): \(request.summary)"
        var parsed = HTTPResponse(raw, head: request.method == "HEAD")
        if parsed == nil, request.method == "HEAD", let answer = HTTPResponse(raw, head: false),
            answer.status == 400 || answer.status == 431
        {
            // The HTTP parser refused the request before its method was known (a head too large
            // to parse): the JSON error then has a body, HEAD or not, and the connection closes.
            parsed = answer
        }
        guard let response = parsed else {
            Issue.record("not a well-formed HTTP response (\(raw.count) bytes): \(what)")
            return
        }
        #expect((100..<600).contains(response.status), "status \(response.status): \(what)")
        guard response.status >= 400 else { return }
        let code = request.method == "HEAD" ? nil : response.errorCode
        if request.method != "HEAD" {
            #expect(
                code != nil,
                "\(response.status) without a JSON error body (\(response.body.count) bytes): \(what)")
        }
        if response.status >= 500 {
            let allowed = Self.documented5xx[response.status] ?? []
            #expect(
                code.map(allowed.contains) ?? false,
                "undocumented \(response.status) \(code ?? "-"): \(what)")
        }
    }
}

/// One generated request: its bytes on the wire and a readable summary for failure messages.
struct RandomRequest {
    var method: String
    var target: String
    var bytes: [UInt8]
    var bodyCount: Int
    var headerNames: [String]

    var summary: String {
        "\(method) \(target.prefix(120))\(target.count > 120 ? "… (\(target.count) chars)" : "") headers \(headerNames) body \(bodyCount) bytes, \(bytes.count - bodyCount) bytes before the body"
    }
}

/// Builds random but syntactically valid HTTP/1.1 requests (the router, not the parser, must
/// see them) that lean on the edges: numbers at and past their limits, empty, huge, percent-
/// encoded and invalid-UTF-8 path segments, mismatched session headers, bodies around the limit.
struct RequestGenerator {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &rng)] }
    mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }

    mutating func number() -> String {
        pick([
            "0", "1", "-1", "7", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
            "4611686018427387903", "4611686018427387904", "18446744073709551615", "18446744073709551616",
            String(repeating: "9", count: 40), "1e3", "0x10", "+5", "%31", "", "abc", " 1",
        ])
    }

    mutating func segment() -> String {
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: return pick(["k", "key", "a%20b", "%2F", "..", ".", "%00", "%FF%FE", "%E2%82", "é", "%"])
        case 1:
            return String(repeating: "x", count: pick([255, 256, 1025, 4096, 20_000, 100_000, 1_000_000]))
        case 2: return number()
        case 3:
            return (0..<Int.random(in: 1...24, using: &rng)).map { _ in
                String(format: "%%%02X", Int.random(in: 0...255, using: &rng))
            }.joined()
        case 4: return String(repeating: "%41", count: pick([10, 500, 3000]))
        default:
            let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@")
            return String((0..<Int.random(in: 1...16, using: &rng)).map { _ in pick(alphabet) })
        }
    }

    mutating func path() -> String {
        switch Int.random(in: 0..<14, using: &rng) {
        case 0, 1, 2: return "/v1/kv/\(segment())"
        case 3:
            return
                "/v1/kv/\(segment())?op=\(pick(["append", "cas", "increment", "", "APPEND", "cas&op=append"]))"
        case 4: return "/v1/kv/"
        case 5: return "/v1/kv/\(segment())/\(segment())"
        case 6: return "/v1/instances/\(number())"
        case 7: return "/v1/done/\(number())"
        case 8:
            return pick(["/v1/status", "/health", "/v1/log", "/v1/sessions", "/v1/instances/", "/v1/done"])
        case 9: return "/v1/\(segment())"
        case 10: return "/v1/instances/\(number())?\(segment())=\(segment())"
        case 11: return "/\(segment())"
        case 12: return "/v1/kv/\(segment())?\(segment())"
        default: return "/v1/sessions?\(segment())"
        }
    }

    mutating func body() -> [UInt8] {
        switch Int.random(in: 0..<8, using: &rng) {
        case 0, 1: return []
        case 2: return Array(#"{"expected": null, "value": "v"}"#.utf8)
        case 3:
            return Array(
                pick([#"{"expected": "v", "value": 1}"#, "not json", "{", #"{"value": null}"#, "[]"]).utf8)
        case 4:
            return (0..<pick([1023, 1024, 1025, 2048])).map { _ in UInt8.random(in: 0...255, using: &rng) }
        default:
            return (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng)
            }
        }
    }

    mutating func next() -> RandomRequest {
        let method = pick([
            "GET", "GET", "PUT", "PUT", "POST", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
            "PROPFIND",
        ])
        let rawTarget = path()
        var headers: [(String, String)] = [("Host", "127.0.0.1"), ("Connection", "close")]
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: headers += [("X-Client-Id", number()), ("X-Request-Id", number())]
        case 1: headers += [("X-Client-Id", number())]
        case 2: headers += [("X-Request-Id", number())]
        case 3:
            headers += [("X-Client-Id", "1"), ("X-Request-Id", pick(["1", "2", "18446744073709551615"]))]
        default: break
        }
        if chance(20) {
            headers.append(("Content-Type", pick(["application/json", "text/plain", "x/\(segment())"])))
        }
        if chance(10) { headers.append(("X-\(pick(["Garbage", "Client-Id", "Request-Id"]))", segment())) }
        let body = body()
        headers.append(("Content-Length", String(body.count)))
        let target = Self.escaped(rawTarget)
        var text = "\(method) \(target) HTTP/1.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        return RandomRequest(
            method: method, target: target, bytes: Array(text.utf8) + body, bodyCount: body.count,
            headerNames: headers.map(\.0).filter { $0.hasPrefix("X-") || $0 == "Content-Type" })
    }

    /// Characters a request target may hold as they are; anything else (a space, non-ASCII) is
    /// percent-encoded, or the HTTP parser, not the router, would refuse the request.
    static let targetCharacters = Set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%".utf8)

    static func escaped(_ target: String) -> String {
        guard !target.utf8.allSatisfy(targetCharacters.contains) else { return target }
        return target.utf8.map {
            targetCharacters.contains($0) ? String(UnicodeScalar($0)) : String(format: "%%%02X", $0)
        }
        .joined()
    }

    /// Bytes that are not a valid HTTP request at all.
    mutating func unparseable() -> [UInt8] {
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:
            return (0..<Int.random(in: 1...200, using: &rng)).map { _ in
                UInt8.random(in: 0...255, using: &rng)
            } + Array("\r\n\r\n".utf8)
        case 4: return Array("FROB /v1/kv/k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
        case 5: return Array("GET /v1/kv/é HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
        case 6: return Array("GET /v1/kv/a b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8)
        case 1: return Array("GET /v1/kv/\u{1}\u{7F} HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        case 2: return Array("GET /health HTTP/9.9\r\n\r\n".utf8)
        default: return Array("PUT /v1/kv/k HTTP/1.1\r\nContent-Length: -5\r\nConnection: close\r\n\r\n".utf8)
        }
    }
}

/// A parsed HTTP/1.1 response; `nil` when the bytes are not one (bad status line, a header
/// without a colon, a body that does not match its Content-Length or chunked framing).
struct HTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]

    var errorCode: String? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let error = json["error"] as? [String: Any], let code = error["code"] as? String, !code.isEmpty,
            error["message"] is String
        else { return nil }
        return code
    }

    init?(_ raw: [UInt8], head: Bool = false) {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = raw.indices.first(where: { raw[$0...].starts(with: separator) }) else { return nil }
        let lines = String(decoding: raw[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = lines[0].split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0] == "HTTP/1.1", statusLine[1].count == 3,
            let status = Int(statusLine[1])
        else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        var rest = Array(raw[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var body: [UInt8] = []
            while true {
                guard let lineEnd = rest.indices.first(where: { rest[$0...].starts(with: [13, 10]) }),
                    let size = Int(String(decoding: rest[..<lineEnd], as: UTF8.self), radix: 16),
                    rest.count >= lineEnd + 2 + size + 2
                else { return nil }
                body += rest[(lineEnd + 2)..<(lineEnd + 2 + size)]
                rest = Array(rest[(lineEnd + 2 + size + 2)...])
                if size == 0 { break }
            }
            rest = body
        } else if head {
            guard rest.isEmpty else { return nil }
        } else if let length = headers["content-length"] {
            guard Int(length) == rest.count else { return nil }
        }
        self.status = status
        self.headers = headers
        self.body = rest
    }
}

/// Sends `request` on a new loopback connection and reads until the server closes it (every
/// generated request says `Connection: close`). Blocking socket calls run on their own thread,
/// not on the cooperative pool the simulated clusters need. Empty when nothing came back.
func exchange(port: Int, _ request: [UInt8], timeout: Int = 20) async -> [UInt8] {
    await withCheckedContinuation { continuation in
        Thread {
            continuation.resume(returning: blockingExchange(port: port, request, timeout: timeout))
        }.start()
    }
}

private func blockingExchange(port: Int, _ request: [UInt8], timeout seconds: Int) -> [UInt8] {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { return [] }
    var sent = 0
    while sent < request.count {
        let count = request[sent...].withUnsafeBytes {
            send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        guard count > 0 else { break }
        sent += count
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { break }
        response += buffer[..<count]
    }
    return response
}
