import Foundation
import Testing

/// The transcript tests: every script in `testdata/` runs on a fresh ``TranscriptCluster`` and
/// must print exactly its golden output. `TRANSCRIPT_REWRITE=1 swift test --filter Transcript`
/// writes what the scripts print now into the files instead, to be reviewed as a diff.
@Suite("Transcript tests (testdata/*.txt)")
struct TranscriptTests {
    /// Found beside this source file, so the scripts need no package resources.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("testdata")

    static var scripts: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".txt") }.sorted()
    }

    static var rewriting: Bool { ProcessInfo.processInfo.environment["TRANSCRIPT_REWRITE"] == "1" }

    @Test("the scripts are found (a missing directory would run no transcript at all)")
    func scriptsAreFound() {
        #expect(Self.scripts.count >= 7, "\(Self.directory.path)")
    }

    @Test("a script prints exactly its golden output, and no step breaks agreement", arguments: scripts)
    func transcript(_ name: String) throws {
        let url = Self.directory.appendingPathComponent(name)
        let script = try TranscriptScript(parsing: String(contentsOf: url, encoding: .utf8))
        #expect(!script.cases.isEmpty, "\(name) has no commands")
        var cluster = TranscriptCluster()
        let outputs = script.cases.map { cluster.run($0.command) }
        #expect(cluster.violations.isEmpty, "\(name): \(cluster.violations)")
        for (item, output) in zip(script.cases, outputs) {
            #expect(
                !output.contains { $0.hasPrefix("error: ") },
                "\(name):\(item.commandLine): `\(item.command)` failed: \(output.filter { $0.hasPrefix("error: ") })"
            )
        }
        if Self.rewriting {
            try script.rendered(with: outputs).write(to: url, atomically: true, encoding: .utf8)
        } else if let report = script.mismatches(outputs, file: "testdata/\(name)") {
            Issue.record(
                "\(report)\n(TRANSCRIPT_REWRITE=1 swift test --filter Transcript rewrites the golden files)")
        }
    }

    @Test("a mismatch names the command, its script line and the first differing line, with a diff")
    func mismatchReport() throws {
        let script = try TranscriptScript(
            parsing: "# a comment\nstatus 1\n----\nline a\nline b\n\nheal\n----\n")
        #expect(script.cases.map(\.commandLine) == [2, 7])
        #expect(script.mismatches([["line a", "line b"], []], file: "x.txt") == nil)
        let report = try #require(script.mismatches([["line a", "line c"], []], file: "x.txt"))
        #expect(report.contains("x.txt:2: `status 1`: output differs at line 5"))
        #expect(report.contains("  expected: line b"))
        #expect(report.contains("  got:      line c"))
        #expect(report.contains("- line b") && report.contains("+ line c") && report.contains("    line a"))
        // Rendering keeps the comments and the layout, so a rewrite of an unchanged script is a no-op.
        #expect(
            script.rendered(with: [["line a", "line b"], []])
                == "# a comment\nstatus 1\n----\nline a\nline b\n\nheal\n----\n")
    }

    @Test("a bad command prints an error and changes nothing; it never crashes the interpreter")
    func badCommands() {
        var cluster = TranscriptCluster()
        #expect(cluster.run("tick 1").first?.hasPrefix("error: no nodes yet") == true)
        #expect(cluster.run("add-nodes 0").first?.hasPrefix("error: ") == true)
        #expect(cluster.run("add-nodes 3 electionTicks=99999999999").first?.hasPrefix("error: ") == true)
        #expect(cluster.run("add-nodes 3 colour=3").first?.hasPrefix("error: unknown setting") == true)
        #expect(cluster.run("add-nodes 3").count == 3)
        for line in [
            "add-nodes 3", "frobnicate", "tick 4", "tick 1 -1", "tick 1 x", "deliver 1->", "deliver 1-2",
            "drop", "restart 1", "submit 1", "inject 1->2 bogus 3", "inject 1->2 accept 1", "status 0",
            "persist 12", "crash 1 2", "log",
        ] {
            let output = cluster.run(line)
            #expect(output.count == 1 && output[0].hasPrefix("error: "), "\(line): \(output)")
        }
        // Still the same healthy cluster of three followers.
        #expect(
            cluster.run("status").allSatisfy {
                $0.contains(" follower, leader -, firstUnchosen 1, applied 0")
            })
        #expect(cluster.violations.isEmpty)
    }

    @Test("a malformed script is refused with its line number")
    func malformedScript() {
        #expect(throws: TranscriptScript.ParseError.self) {
            try TranscriptScript(parsing: "status 1\nheal\n")
        }
        #expect(throws: TranscriptScript.ParseError.self) { try TranscriptScript(parsing: "----\n") }
        #expect(throws: TranscriptScript.ParseError.self) {
            try TranscriptScript(parsing: "heal\n----\n\n# trailing\n")
        }
    }
}
