import HTTPTypes
import Hummingbird
import NIOCore
import Paxos
import PaxosCore
import Synchronization

/// `GET /v1/snapshot`: a backup of the replicated state machine (``SnapshotFile``), streamed from
/// one consistent read of this node's store while it goes on serving. The rows are this node's
/// applied state: a follower's may trail the leader's by what it has not applied yet. The answer
/// is `application/octet-stream` with the applied slot in `Paxos-Snapshot-Applied`; a reader that
/// is cut off gets a file without its trailer, which ``SnapshotFile/read(path:maxValueBytes:rows:)``
/// refuses.
public enum SnapshotHTTPAPI {
    /// The rows read per frame.
    public static let frameBytes = 1 << 20
    /// Backups one node streams at once (each holds a read transaction, which keeps the WAL from
    /// being checkpointed past it).
    public static let maxOpen = 2
    /// A backup whose client has taken nothing for this long loses its read transaction.
    public static let stallTimeout = Duration.seconds(60)

    public static func add<Machine: StateMachine>(
        to router: Router<BasicRequestContext>, peer: LogPeer<Machine>, clusterID: String
    ) {
        let open = Mutex(0)
        router.get("/v1/snapshot") { _, _ -> Response in
            guard await peer.isServing else {
                throw APIError(.serviceUnavailable, "not_serving", "the replicated log is stopped")
            }
            let admitted = open.withLock { count in
                guard count < maxOpen else { return false }
                count += 1
                return true
            }
            guard admitted else {
                throw APIError(
                    .serviceUnavailable, "too_many_backups",
                    "\(maxOpen) backups are being read from this node")
            }
            let source: any LogSnapshotSource
            do {
                source = try await peer.openSnapshot()
            } catch {
                open.withLock { $0 -= 1 }
                throw APIError(.serviceUnavailable, "snapshot_failed", "cannot read the store: \(error)")
            }
            let backup = OpenBackup(source) { open.withLock { $0 -= 1 } }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            headers[HTTPField.Name("Paxos-Snapshot-Applied")!] = "\(source.applied)"
            let body = ResponseBody { writer in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // A client that stops reading must not pin the read transaction for good.
                    group.addTask { await backup.watch(stallTimeout) }
                    defer { group.cancelAll() }
                    do {
                        var bytes: [[UInt8]] = []
                        var file = SnapshotFile.Writer(applied: source.applied, clusterID: clusterID) {
                            bytes.append($0)
                        }
                        var after: MachineKey?
                        while true {
                            let (rows, done) = try await backup.chunk(after: after, maxBytes: frameBytes)
                            file.write(rows) { bytes.append($0) }
                            after = rows.last?.key ?? after
                            if done || rows.isEmpty { break }
                            try await writer.write(ByteBuffer(bytes: bytes.joined()))
                            await backup.progressed()
                            bytes = []
                        }
                        file.finish { bytes.append($0) }
                        await backup.close()
                        try await writer.write(ByteBuffer(bytes: bytes.joined()))
                        try await writer.finish(nil)
                    } catch {
                        // The trailer never goes out: the client's file is refused as cut off.
                        await backup.close()
                        throw error
                    }
                }
            }
            return Response(status: .ok, headers: headers, body: body)
        }
    }
}

/// One backup being streamed: its read transaction, closed once (when the backup ends, or when
/// its client has taken nothing for a while).
actor OpenBackup {
    private let source: any LogSnapshotSource
    private let onClose: @Sendable () -> Void
    private var closed = false
    private var lastProgress = ContinuousClock.now

    init(_ source: any LogSnapshotSource, onClose: @escaping @Sendable () -> Void) {
        self.source = source
        self.onClose = onClose
    }

    deinit {
        // A response whose body never ran (its client went away first) still frees its place;
        // the source's own deinit ends its read transaction.
        if !closed { onClose() }
    }

    func chunk(after: MachineKey?, maxBytes: Int) async throws -> (rows: [MachineRow], done: Bool) {
        guard !closed else {
            throw APIError(.serviceUnavailable, "backup_stalled", "the backup's reader stalled")
        }
        return try await source.chunk(after: after, maxBytes: maxBytes)
    }

    func progressed() { lastProgress = .now }

    func close() async {
        guard !closed else { return }
        closed = true
        await source.close()
        onClose()
    }

    /// Closes the backup once nothing has been taken for `timeout`; returns when it is closed or
    /// when the watching task is cancelled.
    func watch(_ timeout: Duration) async {
        while !closed, !Task.isCancelled {
            if ContinuousClock.now - lastProgress >= timeout {
                await close()
                return
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
