import Logging

/// `paxos-node --log-format text`: swift-log's ``StreamLogHandler`` lines, with the logger's
/// metadata kept here and rendered only when a line is written.
///
/// StreamLogHandler renders its metadata into a string each time a key is set. Hummingbird sets
/// a request id on every request's logger, so with it as the handler every request paid for
/// sorting and formatting metadata for lines that almost no request writes (a few percent of the
/// HTTP loop's CPU under a put load). Lines are the same: StreamLogHandler formats them, given the
/// metadata as the event's, merged in its own order (the logger's, the provider's, the line's).
public struct TextLogHandler: LogHandler {
    private var stream: StreamLogHandler
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    /// A handler for `label` writing to standard error.
    public static func standardError(label: String) -> TextLogHandler {
        TextLogHandler(
            stream: StreamLogHandler.standardError(label: label, metadataProvider: nil),
            metadataProvider: LoggingSystem.metadataProvider)
    }

    /// A handler that writes through `stream`, which must carry no metadata or provider of its
    /// own (this handler hands it everything with each line).
    public init(stream: StreamLogHandler, metadataProvider: Logger.MetadataProvider? = nil) {
        self.stream = stream
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var event = event
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let explicit = event.metadata { merged.merge(explicit) { $1 } }
        event.metadata = merged
        stream.log(event: event)
    }
}
