/// A transcript script in the datadriven style (etcd/raft's `testdata/*.txt`): `#` comment lines,
/// one command line, `----`, the expected output up to a blank line; a blank line between cases.
struct TranscriptScript: Equatable {
    struct Case: Equatable {
        /// The `#` lines before the command, kept as written.
        var comments: [String]
        var command: String
        /// 1-based line numbers of the command and of the first output line.
        var commandLine: Int
        var outputLine: Int
        var expected: [String]
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var message: String
        var description: String { "line \(line): \(message)" }
    }

    var cases: [Case]

    init(cases: [Case]) { self.cases = cases }

    init(parsing text: String) throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var cases: [Case] = []
        var comments: [String] = []
        var index = 0
        while index < lines.count {
            let line = lines[index]
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) {
                index += 1
                continue
            }
            if line.hasPrefix("#") {
                comments.append(line)
                index += 1
                continue
            }
            guard line != "----" else {
                throw ParseError(line: index + 1, message: "`----` without a command")
            }
            let commandLine = index + 1
            index += 1
            guard index < lines.count, lines[index] == "----" else {
                throw ParseError(
                    line: commandLine, message: "the command `\(line)` is not followed by `----`")
            }
            index += 1
            let outputLine = index + 1
            var expected: [String] = []
            while index < lines.count, !lines[index].isEmpty {
                expected.append(lines[index])
                index += 1
            }
            cases.append(
                Case(
                    comments: comments, command: line, commandLine: commandLine, outputLine: outputLine,
                    expected: expected))
            comments = []
        }
        guard comments.isEmpty else {
            throw ParseError(line: lines.count, message: "comment lines after the last command")
        }
        self.cases = cases
    }

    /// The script with `outputs` (one per case) as its expected outputs, in the same layout.
    func rendered(with outputs: [[String]]) -> String {
        precondition(outputs.count == cases.count)
        var blocks: [String] = []
        for (item, output) in zip(cases, outputs) {
            blocks.append((item.comments + [item.command, "----"] + output).joined(separator: "\n"))
        }
        return blocks.joined(separator: "\n\n") + "\n"
    }

    /// A readable account of how `got` differs from the expected outputs, or `nil` when it does
    /// not: for each differing case its command and script line, the first differing line (by
    /// its line number in the file), and the case's expected and actual output side by side.
    func mismatches(_ got: [[String]], file: String) -> String? {
        var reports: [String] = []
        for (item, output) in zip(cases, got) where item.expected != output {
            let common = Swift.min(item.expected.count, output.count)
            let first = (0..<common).first { item.expected[$0] != output[$0] } ?? common
            var lines = [
                "\(file):\(item.commandLine): `\(item.command)`: output differs at line \(item.outputLine + first)",
                "  expected: \(first < item.expected.count ? item.expected[first] : "(end of output)")",
                "  got:      \(first < output.count ? output[first] : "(end of output)")",
                "  whole output, expected (-) vs got (+):",
            ]
            lines += Self.diff(item.expected, output).map { "  " + $0 }
            reports.append(lines.joined(separator: "\n"))
        }
        return reports.isEmpty ? nil : reports.joined(separator: "\n\n")
    }

    /// A line diff (longest common subsequence): common lines with "  ", removed "- ", added "+ ".
    static func diff(_ old: [String], _ new: [String]) -> [String] {
        let n = old.count
        let m = new.count
        var table = Array(repeating: Array(repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                table[i][j] =
                    old[i] == new[j] ? table[i + 1][j + 1] + 1 : Swift.max(table[i + 1][j], table[i][j + 1])
            }
        }
        var result: [String] = []
        var i = 0
        var j = 0
        while i < n || j < m {
            if i < n, j < m, old[i] == new[j] {
                result.append("  " + old[i])
                i += 1
                j += 1
            } else if i < n, j == m || table[i + 1][j] >= table[i][j + 1] {
                result.append("- " + old[i])
                i += 1
            } else {
                result.append("+ " + new[j])
                j += 1
            }
        }
        return result
    }
}
