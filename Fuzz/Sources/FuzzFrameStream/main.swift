import FuzzSupport
import NIOCore
import NIOEmbedded
import PaxosFrames
import PaxosWire

/// Small, so the refusal of an oversized frame is reached by short inputs.
let maxFrameBytes = 64

/// What the stream holds, frame by frame, read without NIO: the frames that decode, in order, up
/// to the first that does not (too long, undecodable or cut off), and whether the stream ended
/// cleanly after the last one.
func referenceFrames(_ stream: ArraySlice<UInt8>) -> (frames: [PeerFrame], clean: Bool) {
    var rest = stream
    var frames: [PeerFrame] = []
    while !rest.isEmpty {
        guard rest.count >= 4 else { return (frames, false) }
        let length = rest.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        guard length <= maxFrameBytes, rest.count >= 4 + length else { return (frames, false) }
        let body = Array(rest.dropFirst(4).prefix(length))
        guard let frame = try? PeerFrame.decodeBody(body) else { return (frames, false) }
        frames.append(frame)
        rest = rest.dropFirst(4 + length)
    }
    return (frames, true)
}

// The first byte chooses how the rest is cut into reads (1 to 16 bytes at a time, or all at
// once), so frames split across reads are covered. Whatever the cut, the channel's decoder
// passes on exactly the frames the reference reads, and refuses the stream (an error, which
// closes the connection) exactly when the reference finds it broken.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameStream(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let input = fuzzInput(start, count)
    guard let cut = input.first else { return 0 }
    let stream = input.dropFirst()
    let chunk = cut == 0 ? max(stream.count, 1) : Int(cut % 16) + 1
    let channel = EmbeddedChannel(
        handler: ByteToMessageHandler(PeerFrameDecoder(limit: FrameLimit(maxFrameBytes))))
    var frames: [PeerFrame] = []
    var failed = false
    var offset = stream.startIndex
    while offset < stream.endIndex, !failed {
        let end = min(offset + chunk, stream.endIndex)
        do {
            try channel.writeInbound(ByteBuffer(bytes: stream[offset..<end]))
        } catch {
            failed = true
        }
        while let frame = try? channel.readInbound(as: PeerFrame.self) { frames.append(frame) }
        offset = end
    }
    if !failed {
        do { _ = try channel.finish() } catch { failed = true }
        while let frame = try? channel.readInbound(as: PeerFrame.self) { frames.append(frame) }
    } else {
        _ = try? channel.finish()
    }
    let reference = referenceFrames(stream)
    require(frames == reference.frames, "the channel read \(frames), the reference \(reference.frames)")
    require(
        failed == !reference.clean,
        "the channel \(failed ? "refused" : "accepted") a stream the reference did not")
    return 0
}
