import FuzzSupport
import PaxosCore
import PaxosWire

/// A small value limit, so the refusal of large values is reached by short inputs too.
let smallLimit = 16

// Both decoders see every input: a request must not decode as a reply or the other way round,
// what decodes survives its encoding, and a tighter value limit never accepts more.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPaxosWire(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = fuzzInput(start, count)
    let request = try? PaxosWire.decodeRequest(bytes)
    let reply = try? PaxosWire.decodeReply(bytes)
    require(request == nil || reply == nil, "\(bytes) decodes as both a request and a reply")
    require(
        !LogWire.isLogMessage(bytes) || (request == nil && reply == nil), "a log message decoded as classic")
    if let request {
        let again = try? PaxosWire.decodeRequest(PaxosWire.encode(request))
        require(again == request, "request round trip: \(request) came back as \(String(describing: again))")
    }
    if let reply {
        let again = try? PaxosWire.decodeReply(PaxosWire.encode(reply))
        require(again == reply, "reply round trip: \(reply) came back as \(String(describing: again))")
    }
    if let small = try? PaxosWire.decodeRequest(bytes, maxValueBytes: smallLimit) {
        require(
            small == request,
            "the small value limit decoded \(small), the default \(String(describing: request))")
    }
    if let small = try? PaxosWire.decodeReply(bytes, maxValueBytes: smallLimit) {
        require(
            small == reply, "the small value limit decoded \(small), the default \(String(describing: reply))"
        )
    }
    return 0
}
