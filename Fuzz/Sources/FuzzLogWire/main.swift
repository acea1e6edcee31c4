import FuzzSupport
import PaxosCore
import PaxosWire

/// A small value limit, so the refusal of large commands is reached by short inputs too.
let smallLimit = 16

// The log protocol's decoders and the at-rest entry decoder: no trap on any input, round trips,
// and the type byte tells the two protocols apart as `isLogMessage` promises.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLogWire(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = fuzzInput(start, count)
    let request = try? LogWire.decodeRequest(bytes)
    let reply = try? LogWire.decodeReply(bytes)
    require(request == nil || reply == nil, "\(bytes) decodes as both a log request and a log reply")
    if request != nil || reply != nil {
        require(LogWire.isLogMessage(bytes), "a decodable log message is not recognized as one")
        require(
            (try? PaxosWire.decodeRequest(bytes)) == nil && (try? PaxosWire.decodeReply(bytes)) == nil,
            "a log message also decodes as a classic message")
    }
    if let request {
        let again = try? LogWire.decodeRequest(LogWire.encode(request))
        require(
            again == request, "log request round trip: \(request) came back as \(String(describing: again))")
        if let small = try? LogWire.decodeRequest(bytes, maxValueBytes: smallLimit) {
            require(small == request, "the small limit decoded another request: \(small)")
        }
    }
    if let reply {
        let again = try? LogWire.decodeReply(LogWire.encode(reply))
        require(again == reply, "log reply round trip: \(reply) came back as \(String(describing: again))")
        if let small = try? LogWire.decodeReply(bytes, maxValueBytes: smallLimit) {
            require(small == reply, "the small limit decoded another reply: \(small)")
        }
    }
    if let entry = try? LogWire.decodeEntry(bytes) {
        let encoded = LogWire.encodeEntry(entry)
        require(encoded == bytes, "an entry at rest has a second encoding: \(bytes) is also \(encoded)")
        require((try? LogWire.decodeEntry(encoded)) == entry, "entry round trip failed for \(entry)")
    }
    return 0
}
