import Foundation
import FuzzSupport

// Writes Corpus/<target>/seed-N for every target (run by `tools/fuzz --seeds`). Seeds are
// generated, not hand-written, so they stay valid when an encoding changes.
let root = URL(fileURLWithPath: CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Corpus")
for (target, seeds) in Seeds.all().sorted(by: { $0.key < $1.key }) {
    let directory = root.appendingPathComponent(target)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    for (index, seed) in seeds.enumerated() {
        try Data(seed).write(to: directory.appendingPathComponent("seed-\(index)"))
    }
    print("\(target): \(seeds.count) seeds")
}
