import Foundation
import Logging
import Synchronization

/// A swift-log handler that writes one JSON object per line (`paxos-node --log-format json`), for
/// log shippers that parse lines: `time` (RFC 3339, UTC, milliseconds), `level`, `label`,
/// `message`, `source`, and the metadata as string fields (a metadata key that collides with one
/// of those gets a `meta.` prefix).
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (Data) -> Void

    /// A handler for `label` writing to standard error.
    public static func standardError(label: String) -> JSONLogHandler {
        JSONLogHandler(label: label) { FileHandle.standardError.write($0) }
    }

    /// A handler for `label` that hands every encoded line (newline included) to `write`.
    public init(label: String, write: @escaping @Sendable (Data) -> Void) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private static let reserved: Set<String> = ["time", "level", "label", "message", "source"]

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var object: [String: String] = [
            "time": Self.timestamp(Date()),
            "level": event.level.rawValue,
            "label": label,
            "message": "\(event.message)",
            "source": event.source,
        ]
        for (key, value) in merged {
            object[Self.reserved.contains(key) ? "meta.\(key)" : key] = Self.flatten(value)
        }
        // Sorted keys: lines are stable to read and to compare. Strings only, so encoding
        // cannot fail; a line is written in one call, so concurrent lines never interleave.
        guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            return
        }
        line.append(UInt8(ascii: "\n"))
        write(line)
    }

    static func flatten(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): "[" + values.map(flatten).joined(separator: ", ") + "]"
        case .dictionary(let values):
            "{"
                + values.sorted { $0.key < $1.key }.map { "\($0.key): \(flatten($0.value))" }.joined(
                    separator: ", ")
                + "}"
        }
    }

    private static let formatter = Mutex(
        {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            formatter.timeZone = TimeZone(identifier: "UTC")
            return formatter
        }())

    static func timestamp(_ date: Date) -> String {
        formatter.withLock { $0.string(from: date) }
    }
}
