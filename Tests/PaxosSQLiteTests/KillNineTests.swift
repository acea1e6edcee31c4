import Foundation
import PaxosCore
import Testing

@testable import PaxosSQLite

/// A real child process commits to a real file and is killed with SIGKILL mid-stream; every
/// commit it acknowledged must be there afterwards, and the file must pass integrity_check.
@Suite("kill -9 during commits", .serialized)
struct KillNineTests {
    /// The `paxos-bench` executable built next to the test bundle.
    static var benchBinary: URL {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = bundle.deletingLastPathComponent()
        // On Linux the test runner is `<build dir>/<package>PackageTests.xctest`.
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("paxos-bench").path),
            directory.path != "/"
        {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("paxos-bench")
    }

    /// Runs `commit-stream` until it acknowledged at least `atLeast` commits, SIGKILLs it, and
    /// returns every sequence number it acknowledged. The blocking reads run on a thread of their
    /// own: holding a thread of the cooperative pool for the whole run starves the other tests.
    func runAndKill(path: String, atLeast: Int) async throws -> [Int] {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result { try Self.runAndKillBlocking(path: path, atLeast: atLeast) })
            }
        }
    }

    static func runAndKillBlocking(path: String, atLeast: Int) throws -> [Int] {
        let binary = Self.benchBinary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw SQLiteError(
                .sqlite, "paxos-bench not found next to the tests (\(binary.path)); build with `swift build`")
        }
        let process = Process()
        process.executableURL = binary
        process.arguments = ["commit-stream", "--path", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        var output = Data()
        var acked = 0
        let reader = pipe.fileHandleForReading
        while acked < atLeast {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            output.append(chunk)
            acked = output.filter { $0 == UInt8(ascii: "\n") }.count
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        output.append(reader.readDataToEndOfFile())
        #expect(process.terminationReason == .uncaughtSignal)
        return String(decoding: output, as: UTF8.self).split(separator: "\n").compactMap { line in
            line.hasPrefix("acked ") ? Int(line.dropFirst(6)) : nil
        }
    }

    @Test("every acknowledged commit survives kill -9, across several kills of the same file")
    func acknowledgedCommitsSurvive() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.path("node.db")
        var random = SplitMix64(seed: 5)
        var allAcked: [Int] = []
        for _ in 0..<4 {
            let acked = try await runAndKill(path: path, atLeast: 100 + Int(random.next() % 400))
            #expect(!acked.isEmpty)
            allAcked += acked
            #expect(try sqlite(path, "PRAGMA integrity_check") == [["ok"]])
            let state = try await SQLiteStore(path: path).load()
            for seq in allAcked {
                let ballot = Ballot(round: UInt64(seq + 1), node: 1)
                #expect(state.instances[seq]?.promised == ballot, "acknowledged seq \(seq) lost its promise")
                #expect(state.instances[seq]?.accepted?.value == Array("value \(seq)".utf8))
            }
            #expect(state.maxRound >= UInt64(allAcked.max()! + 1))
        }
    }
}
