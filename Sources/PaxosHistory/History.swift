import Foundation

/// One client operation of a recorded history, in the JSON-lines format the load tool writes:
/// `{"client", "op", "key", "value", "output", "call_ns", "return_ns", "status"}` (plus
/// `"expected"` for compare-and-set). `status` is `ok`, `fail` (certainly did not happen) or
/// `info` (unknown: it may have happened at any time after its call).
public struct HistoryOperation: Codable, Hashable, Sendable {
    public enum Kind: String, Codable, Sendable { case get, put, append, delete, cas }
    public enum Status: String, Codable, Sendable { case ok, fail, info }

    public var client: Int
    public var op: Kind
    public var key: String
    public var value: String
    public var output: String
    public var expected: String?
    public var callNs: Int64
    public var returnNs: Int64
    public var status: Status

    enum CodingKeys: String, CodingKey {
        case client, op, key, value, output, expected, status
        case callNs = "call_ns"
        case returnNs = "return_ns"
    }

    public init(
        client: Int, op: Kind, key: String, value: String = "", output: String = "", expected: String? = nil,
        callNs: Int64, returnNs: Int64, status: Status = .ok
    ) {
        self.client = client
        self.op = op
        self.key = key
        self.value = value
        self.output = output
        self.expected = expected
        self.callNs = callNs
        self.returnNs = returnNs
        self.status = status
    }

    /// Reads a JSON-lines history. Blank lines are skipped; a bad line is an error naming it.
    public static func read(jsonLines text: String) throws -> [HistoryOperation] {
        let decoder = JSONDecoder()
        var operations: [HistoryOperation] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            do {
                operations.append(try decoder.decode(HistoryOperation.self, from: Data(trimmed.utf8)))
            } catch {
                throw HistoryError("line \(index + 1) is not a history operation: \(error)")
            }
        }
        return operations
    }
}

public struct HistoryError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
