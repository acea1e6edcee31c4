import FuzzSupport
import PaxosWire

// Every input either fails with a WireError (a typed throw: nothing else can come out) or decodes
// to a frame that survives its own encoding unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPeerFrame(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = fuzzInput(start, count)
    guard let frame = try? PeerFrame.decodeBody(bytes) else { return 0 }
    let encoded = frame.encodeBody()
    let again = Result { () throws(WireError) in try PeerFrame.decodeBody(encoded) }
    require(
        (try? again.get()) == frame,
        "peer frame round trip: \(frame) came back as \(again) from \(encoded)")
    return 0
}
