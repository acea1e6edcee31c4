import ArgumentParser
import Foundation
import PaxosHistory

extension Endpoint {
    /// Sends a key-value request; returns the HTTP status and body without judging them.
    func raw(_ method: String, _ path: String, body: Data? = nil) async throws -> (Int, Data) {
        try await perform(method, path, body: body)
    }

    static func failure(_ method: String, _ path: String, _ status: Int, _ data: Data) -> CommandFailure {
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let detail = (object?["error"] as? [String: Any]).map {
            "\($0["code"] ?? "error"): \($0["message"] ?? "")"
        }
        return CommandFailure(
            "\(method) \(path) failed with HTTP \(status): \(detail ?? String(decoding: data, as: UTF8.self))"
        )
    }
}

func kvPath(_ key: String) throws -> String {
    guard !key.isEmpty,
        let encoded = key.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"]))
    else { throw ValidationError("the key must not be empty") }
    return "/v1/kv/\(encoded)"
}

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set KEY to VALUE in the replicated key-value store.")
    @OptionGroup var endpoint: Endpoint
    @Argument var key: String
    @Argument var value: String

    func run() async throws {
        let path = try kvPath(key)
        let (status, data) = try await endpoint.raw("PUT", path, body: Data(value.utf8))
        guard status == 200 else { throw Endpoint.failure("PUT", path, status, data) }
        print("ok")
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print KEY's value (linearizable: read through the log). Exits 1 when absent.")
    @OptionGroup var endpoint: Endpoint
    @Argument var key: String

    func run() async throws {
        let path = try kvPath(key)
        let (status, data) = try await endpoint.raw("GET", path)
        if status == 404 { throw CommandFailure("no key '\(key)'") }
        guard status == 200 else { throw Endpoint.failure("GET", path, status, data) }
        print(String(decoding: data, as: UTF8.self))
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete KEY. Exits 1 when it was absent.")
    @OptionGroup var endpoint: Endpoint
    @Argument var key: String

    func run() async throws {
        let path = try kvPath(key)
        let (status, data) = try await endpoint.raw("DELETE", path)
        if status == 404 { throw CommandFailure("no key '\(key)'") }
        guard status == 200 else { throw Endpoint.failure("DELETE", path, status, data) }
        print("deleted")
    }
}

struct Append: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append SUFFIX to KEY's value; prints the new value.")
    @OptionGroup var endpoint: Endpoint
    @Argument var key: String
    @Argument var suffix: String

    func run() async throws {
        let path = try kvPath(key) + "?op=append"
        let (status, data) = try await endpoint.raw("POST", path, body: Data(suffix.utf8))
        guard status == 200 else { throw Endpoint.failure("POST", path, status, data) }
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        print(object?["value"] as? String ?? "")
    }
}

struct CompareAndSet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cas",
        abstract:
            "Set KEY to NEW if its value is EXPECTED (--absent: if it has none). Exits 1 when it is not.")
    @OptionGroup var endpoint: Endpoint
    @Flag(help: "Swap only if KEY is absent (EXPECTED is then omitted).") var absent = false
    @Argument var key: String
    @Argument(help: "EXPECTED NEW, or just NEW with --absent.") var values: [String]

    func run() async throws {
        let expected: String?
        let new: String
        switch (absent, values.count) {
        case (true, 1): (expected, new) = (nil, values[0])
        case (false, 2): (expected, new) = (values[0], values[1])
        default: throw ValidationError("give EXPECTED and NEW, or --absent and NEW")
        }
        let path = try kvPath(key) + "?op=cas"
        var body: [String: Any] = ["value": new]
        body["expected"] = expected ?? NSNull()
        let (status, data) = try await endpoint.raw(
            "POST", path, body: try JSONSerialization.data(withJSONObject: body))
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        switch status {
        case 200: print("swapped")
        case 409 where object?["swapped"] != nil:
            throw CommandFailure("not swapped: the value is \(object?["current"] as? String ?? "absent")")
        default: throw Endpoint.failure("POST", path, status, data)
        }
    }
}

struct CheckHistory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Check a recorded key-value history (JSON lines) for linearizability. Exits 1 when it is not.")
    @Argument(help: "The history file.") var file: String
    @Option(help: "Search steps allowed per key before the verdict is 'unknown'.") var budget = 50_000_000

    func run() async throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CommandFailure("cannot read \(file)")
        }
        let history = try HistoryOperation.read(jsonLines: text)
        let counts = Dictionary(grouping: history, by: \.status).mapValues(\.count)
        let keys = Set(history.map(\.key)).count
        let verdict = LinearizabilityChecker.check(history, budget: budget)
        print(
            "\(history.count) operations (ok \(counts[.ok] ?? 0), info \(counts[.info] ?? 0), fail \(counts[.fail] ?? 0)) on \(keys) keys: \(verdict)"
        )
        guard verdict == .linearizable else { throw ExitCode(1) }
    }
}
