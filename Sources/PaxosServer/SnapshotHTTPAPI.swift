import HTTPTypes
import Hummingbird
import NIOCore
import Paxos
import PaxosCore

/// `GET /v1/snapshot`: a backup of the replicated state machine (``SnapshotFile``), streamed from
/// one consistent read of this node's store while it goes on serving. The rows are this node's
/// applied state: a follower's may trail the leader's by what it has not applied yet. The answer
/// is `application/octet-stream` with the applied slot in `Paxos-Snapshot-Applied`; a reader that
/// is cut off gets a file without its trailer, which ``SnapshotFile/read(path:maxValueBytes:rows:)``
/// refuses.
public enum SnapshotHTTPAPI {
    /// The rows read per frame.
    public static let frameBytes = 1 << 20

    public static func add<Machine: StateMachine>(
        to router: Router<BasicRequestContext>, peer: LogPeer<Machine>, clusterID: String
    ) {
        router.get("/v1/snapshot") { _, _ -> Response in
            guard await peer.isServing else {
                throw APIError(.serviceUnavailable, "not_serving", "the replicated log is stopped")
            }
            let source: any LogSnapshotSource
            do {
                source = try await peer.openSnapshot()
            } catch {
                throw APIError(.serviceUnavailable, "snapshot_failed", "cannot read the store: \(error)")
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            headers[HTTPField.Name("Paxos-Snapshot-Applied")!] = "\(source.applied)"
            let body = ResponseBody { writer in
                do {
                    var bytes: [[UInt8]] = []
                    var file = SnapshotFile.Writer(applied: source.applied, clusterID: clusterID) {
                        bytes.append($0)
                    }
                    var after: MachineKey?
                    while true {
                        let (rows, done) = try await source.chunk(after: after, maxBytes: frameBytes)
                        file.write(rows) { bytes.append($0) }
                        after = rows.last?.key ?? after
                        if done || rows.isEmpty { break }
                        try await writer.write(ByteBuffer(bytes: bytes.joined()))
                        bytes = []
                    }
                    file.finish { bytes.append($0) }
                    try await writer.write(ByteBuffer(bytes: bytes.joined()))
                    await source.close()
                    try await writer.finish(nil)
                } catch {
                    // The trailer never goes out: the client's file is refused as cut off.
                    await source.close()
                    throw error
                }
            }
            return Response(status: .ok, headers: headers, body: body)
        }
    }
}
