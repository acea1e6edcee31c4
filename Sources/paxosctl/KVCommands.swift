import ArgumentParser
import Foundation
import PaxosHistory
import PaxosKVClient

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set KEY to VALUE in the replicated key-value store.",
        discussion: "Exactly once: a retry after a lost answer resends the same session request number.")
    @OptionGroup var endpoint: Endpoint
    @Argument var key: String
    @Argument var value: String

    func run() async throws {
        try await endpoint.withClient { try await $0.put(key, value) }
        print("ok")
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print KEY's value (linearizable unless --serializable). Exits 3 when absent.")
    @OptionGroup var endpoint: Endpoint
    @Flag(help: "Read the endpoint's own committed state at once: possibly stale, works without a leader.")
    var serializable = false
    @Argument var key: String

    func run() async throws {
        let value = try await endpoint.withClient { [serializable] in
            try await $0.get(key, serializable: serializable)
        }
        print(String(decoding: value, as: UTF8.self))
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete KEY. Exits 3 when it was absent.")
    @OptionGroup var endpoint: Endpoint
    @Argument var key: String

    func run() async throws {
        try await endpoint.withClient { try await $0.delete(key) }
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
        let value = try await endpoint.withClient { try await $0.append(key, Data(suffix.utf8)) }
        print(value ?? "")
    }
}

struct CompareAndSet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cas",
        abstract:
            "Set KEY to NEW if its value is EXPECTED (--absent: if it has none). Exits 4 when it is not.")
    @OptionGroup var endpoint: Endpoint
    @Flag(help: "Swap only if KEY is absent (EXPECTED is then omitted).") var absent = false
    @Argument var key: String
    @Argument(help: "EXPECTED NEW, or just NEW with --absent.") var values: [String]

    func validate() throws {
        guard (absent && values.count == 1) || (!absent && values.count == 2) else {
            throw ValidationError("give EXPECTED and NEW, or --absent and NEW")
        }
    }

    func run() async throws {
        let (expected, new) = absent ? (nil, values[0]) : (values[0], values[1])
        try await endpoint.withClient { try await $0.compareAndSwap(key, expected: expected, new: new) }
        print("swapped")
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
