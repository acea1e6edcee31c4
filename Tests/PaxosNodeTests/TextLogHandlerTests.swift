import Logging
import PaxosServer
import Synchronization
import Testing

/// Collects what a StreamLogHandler writes.
private final class Lines: TextOutputStream, Sendable {
    private let text = Mutex("")
    func write(_ string: String) { text.withLock { $0 += string } }
    /// The lines without their timestamps (which have a second's resolution, so two handlers'
    /// lines may differ there).
    var untimed: [String] {
        text.withLock { $0 }.split(separator: "\n").map { line in
            String(line.drop(while: { $0 != " " }))
        }
    }
}

@Suite("text log lines")
struct TextLogHandlerTests {
    @Test(
        "TextLogHandler writes StreamLogHandler's lines: the logger's metadata, the provider's and the line's, merged in StreamLogHandler's order"
    )
    func sameLinesAsStreamLogHandler() {
        let provider = Logger.MetadataProvider { ["provided": "p", "shadowed": "by the provider"] }
        let expected = Lines()
        let actual = Lines()
        var plain = Logger(label: "paxos-node") { label in
            var handler = StreamLogHandler(label: label, stream: expected, metadataProvider: provider)
            handler.logLevel = .debug
            return handler
        }
        var text = Logger(label: "paxos-node") { label in
            var handler = TextLogHandler(
                stream: StreamLogHandler(label: label, stream: actual, metadataProvider: nil),
                metadataProvider: provider)
            handler.logLevel = .debug
            return handler
        }
        for logger in [plain, text] {
            logger.info("no metadata of the logger's")
            logger.trace("below the level: not written")
        }
        plain[metadataKey: "node"] = "1"
        text[metadataKey: "node"] = "1"
        plain[metadataKey: "shadowed"] = "by the logger"
        text[metadataKey: "shadowed"] = "by the logger"
        for logger in [plain, text] {
            logger.debug("with metadata", metadata: ["ballot": "3.1", "node": "the line's"])
            logger.warning("once more", source: "Paxos")
        }
        #expect(actual.untimed.count == 3)
        #expect(actual.untimed == expected.untimed)
        #expect(actual.untimed.last?.contains("node=1 provided=p shadowed=by the provider") == true)
    }

    @Test("with no metadata anywhere, a line has none, as StreamLogHandler's")
    func noMetadata() {
        let expected = Lines()
        let actual = Lines()
        let plain = Logger(label: "x") {
            StreamLogHandler(label: $0, stream: expected, metadataProvider: nil)
        }
        let text = Logger(label: "x") {
            TextLogHandler(stream: StreamLogHandler(label: $0, stream: actual, metadataProvider: nil))
        }
        plain.error("bare")
        text.error("bare")
        #expect(actual.untimed == expected.untimed)
        #expect(actual.untimed == [" error x: [PaxosNodeTests] bare"])
    }
}
