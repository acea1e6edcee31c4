import Crypto
import Foundation
import PaxosCore
import PaxosWire

/// A backup of the replicated state machine (`paxosctl snapshot save`, `paxos-node --restore`):
/// every row of the state machine as of one applied slot, read from a running node in one
/// consistent read transaction.
///
/// The file, all integers big-endian:
///
///     "PAXOSNAP"  u32 version (1)  u64 applied  u32 n  n bytes of cluster id (UTF-8)
///     { u32 length > 0, `length` bytes of rows as LogWire.writeRows writes them }*
///     u32 0  u64 total rows  32 bytes SHA-256 of every byte before them
///
/// The membership row is not part of a backup: a restore bootstraps a new cluster, with its own
/// membership and incarnations.
public enum SnapshotFile {
    public static let magic = Array("PAXOSNAP".utf8)
    public static let version: UInt32 = 1
    /// The largest rows frame a reader accepts (a writer stays far below it).
    public static let maxFrameBytes = 64 << 20
    /// The longest cluster id in a header.
    public static let maxClusterIDBytes = 1024

    /// What a backup holds, from its header and trailer.
    public struct Summary: Codable, Equatable, Sendable {
        public var applied: Slot
        public var clusterID: String
        public var rows: UInt64
        public var sha256: String
    }

    /// Writes a backup, frame by frame, hashing as it goes.
    public struct Writer {
        private var hash = SHA256()
        private var rows: UInt64 = 0
        private var last: MachineKey?

        /// The header's bytes.
        public init(applied: Slot, clusterID: String, emit: ([UInt8]) throws -> Void) rethrows {
            var writer = ByteWriter()
            writer.bytes += SnapshotFile.magic
            writer.write(SnapshotFile.version)
            writer.write(UInt64(applied))
            writer.writeBytes(Array(clusterID.utf8.prefix(SnapshotFile.maxClusterIDBytes)))
            hash.update(data: writer.bytes)
            try emit(writer.bytes)
        }

        /// One frame of rows (the membership row left out); keys must rise across frames.
        public mutating func write(_ rows: [MachineRow], emit: ([UInt8]) throws -> Void) rethrows {
            let kept = rows.filter { $0.key != Membership.rowKey }
            guard !kept.isEmpty else { return }
            precondition(last.map { $0 < kept[0].key } ?? true, "snapshot rows out of order")
            last = kept.last!.key
            var body = ByteWriter()
            LogWire.writeRows(kept, &body)
            var frame = ByteWriter(capacity: body.bytes.count + 4)
            frame.write(UInt32(body.bytes.count))
            frame.bytes += body.bytes
            self.rows += UInt64(kept.count)
            hash.update(data: frame.bytes)
            try emit(frame.bytes)
        }

        /// The trailer: the end mark, the row count and the checksum.
        public mutating func finish(emit: ([UInt8]) throws -> Void) rethrows {
            var trailer = ByteWriter()
            trailer.write(UInt32(0))
            trailer.write(rows)
            hash.update(data: trailer.bytes)
            try emit(trailer.bytes + Array(hash.finalize()))
        }
    }

    /// Reads a backup from a file, checking everything: a damaged or hostile file is refused with
    /// the reason, never half-read as if it were whole. Rows come frame by frame to `body`; the
    /// summary returns only once the trailer's count and checksum match.
    public static func read(
        path: String, maxValueBytes: Int = 64 << 20, rows body: ([MachineRow]) async throws -> Void
    ) async throws -> Summary {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SnapshotFileError("cannot open \(path)")
        }
        defer { try? handle.close() }
        var hash = SHA256()
        func next(_ count: Int, _ what: String) throws -> [UInt8] {
            guard count > 0 else { return [] }
            let data = try handle.read(upToCount: count) ?? Data()
            guard data.count == count else {
                throw SnapshotFileError("\(path) is cut off (in the \(what)): not a whole backup")
            }
            return Array(data)
        }
        func number<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
            let bytes = try next(MemoryLayout<T>.size, what)
            hash.update(data: bytes)
            return bytes.reduce(T(0)) { $0 << 8 | T($1) }
        }
        let magic = try next(8, "header")
        guard magic == SnapshotFile.magic else {
            throw SnapshotFileError("\(path) is not a swift-paxos backup (no PAXOSNAP header)")
        }
        hash.update(data: magic)
        let version = try number(UInt32.self, "header")
        guard version == SnapshotFile.version else {
            throw SnapshotFileError(
                "\(path) is a backup of format version \(version); this build reads version \(SnapshotFile.version)"
            )
        }
        let applied = try number(UInt64.self, "header")
        guard applied < 1 << 62 else {
            throw SnapshotFileError("\(path): applied slot \(applied) is out of range")
        }
        let idLength = Int(try number(UInt32.self, "header"))
        guard idLength <= maxClusterIDBytes else {
            throw SnapshotFileError("\(path): the cluster id is too long")
        }
        let idBytes = try next(idLength, "header")
        hash.update(data: idBytes)
        guard let clusterID = String(validating: idBytes, as: UTF8.self) else {
            throw SnapshotFileError("\(path): the cluster id is not UTF-8")
        }
        var count: UInt64 = 0
        var last: MachineKey?
        while true {
            let length = Int(try number(UInt32.self, "rows"))
            if length == 0 { break }
            // No writer puts rows in a backup of nothing: they would be staged and never installed.
            guard applied > 0 else { throw SnapshotFileError("\(path): rows in a backup of applied slot 0") }
            guard length <= maxFrameBytes else {
                throw SnapshotFileError(
                    "\(path): a frame of \(length) bytes is larger than any backup writes")
            }
            let frame = try next(length, "rows")
            hash.update(data: frame)
            var reader = ByteReader(frame)
            let rows: [MachineRow]
            do {
                rows = try LogWire.readRows(&reader, maxValueBytes)
            } catch {
                throw SnapshotFileError("\(path): damaged rows: \(error)")
            }
            guard reader.remaining == 0, !rows.isEmpty else {
                throw SnapshotFileError("\(path): damaged rows frame")
            }
            guard last.map({ $0 < rows[0].key }) ?? true else {
                throw SnapshotFileError("\(path): rows are not in rising key order")
            }
            guard !rows.contains(where: { $0.key == Membership.rowKey }) else {
                throw SnapshotFileError("\(path): a backup never holds the membership row")
            }
            last = rows.last!.key
            count += UInt64(rows.count)
            try await body(rows)
        }
        let total = try number(UInt64.self, "trailer")
        let digest = try next(32, "trailer")
        guard digest == Array(hash.finalize()) else {
            throw SnapshotFileError("\(path): the checksum does not match: the file is damaged")
        }
        guard total == count else {
            throw SnapshotFileError("\(path): the trailer counts \(total) rows, the file holds \(count)")
        }
        guard try handle.read(upToCount: 1)?.isEmpty ?? true else {
            throw SnapshotFileError("\(path): bytes after the end of the backup")
        }
        return Summary(
            applied: Slot(applied), clusterID: clusterID, rows: count,
            sha256: digest.map { String(format: "%02x", $0) }.joined())
    }
}

/// A backup file that cannot be used, with the reason.
public struct SnapshotFileError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
