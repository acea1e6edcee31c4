import ArgumentParser
import Foundation
import PaxosKVClient
import PaxosServer

struct Snapshot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Back up the replicated state machine of a running node, or check a backup.",
        discussion: """
            A backup holds every row of the key-value store (and its client sessions) as one node \
            applied it, read in one consistent transaction while the node serves. Restore it into a \
            new cluster: start every node of the new cluster once with `paxos-node --restore FILE`, \
            a new --data-dir and a new --cluster-id.
            """,
        subcommands: [SnapshotSave.self, SnapshotStatus.self])
}

struct SnapshotSave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Stream a backup from the node to FILE (written whole, checked, then renamed into place).")
    @OptionGroup var endpoint: Endpoint
    @Argument(help: "Where to write the backup; an existing file is replaced only by a whole backup.")
    var file: String

    func run() async throws {
        let partial = file + ".partial"
        guard FileManager.default.createFile(atPath: partial, contents: nil),
            let output = FileHandle(forWritingAtPath: partial)
        else {
            throw CommandFailure("cannot write \(partial)")
        }
        let written: Int
        do {
            written = try await endpoint.withClient { client in try await client.saveSnapshot(to: output) }
            try output.synchronize()
            try output.close()
        } catch {
            try? output.close()
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        let summary: SnapshotFile.Summary
        do {
            summary = try await SnapshotFile.read(path: partial) { _ in }
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw CommandFailure("the node's answer is not a whole backup (\(error)); nothing was saved")
        }
        if rename(partial, file) != 0 {
            throw CommandFailure("cannot rename \(partial) to \(file): \(String(cString: strerror(errno)))")
        }
        // The rename is durable once the directory is.
        let directory = (file as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        print(
            "saved \(file): \(summary.rows) rows of cluster '\(summary.clusterID)' applied through slot \(summary.applied), \(written) bytes, sha256 \(summary.sha256)"
        )
    }
}

struct SnapshotStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Check a backup file whole and print what it holds.")
    @Argument var file: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let summary: SnapshotFile.Summary
        do {
            summary = try await SnapshotFile.read(path: file) { _ in }
        } catch {
            throw CommandFailure("\(error)")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print(
                "\(file): a whole backup of cluster '\(summary.clusterID)', \(summary.rows) rows applied through slot \(summary.applied), sha256 \(summary.sha256)"
            )
        }
    }
}
