import PaxosCore
import Synchronization

/// What a run saw: the faults it injected and what else it reports (the transcript), every
/// violation it caught, and a digest of every message sent, so two runs of one seed can be
/// compared byte for byte.
final class Observer: Sendable {
    private struct State {
        var lines: [String] = []
        var violations: [String] = []
        /// Every entry some replica made durable as chosen, by slot: two different ones in a slot
        /// break agreement.
        var chosen: [Slot: (node: NodeID, entry: LogEntry)] = [:]
        /// FNV-1a over every message: sender, receiver, channel, payload.
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        var messages = 0
    }

    private let scheduler: Scheduler
    private let echo: (@Sendable (String) -> Void)?
    private let state = Mutex(State())

    init(scheduler: Scheduler, echo: (@Sendable (String) -> Void)?) {
        self.scheduler = scheduler
        self.echo = echo
    }

    var lines: [String] { state.withLock { $0.lines } }
    var violations: [String] { state.withLock { $0.violations } }
    var digest: UInt64 { state.withLock { $0.digest } }
    var messages: Int { state.withLock { $0.messages } }

    /// A line of the transcript, stamped with the virtual time.
    func event(_ text: String) {
        let line = "\(Self.stamp(scheduler.now)) \(text)"
        state.withLock { $0.lines.append(line) }
        echo?(line)
    }

    /// A broken invariant: the run fails.
    func violation(_ text: String) {
        state.withLock { $0.violations.append(text) }
        event("VIOLATION: \(text)")
    }

    /// `node` made `mutations` durable (or, with a planted bug, acknowledged them).
    func committed(node: NodeID, _ mutations: [LogMutation]) {
        var conflict: String?
        state.withLock { state in
            for mutation in mutations {
                let slot: Slot
                let entry: LogEntry
                switch mutation {
                case .choose(let chosenSlot, let chosenEntry): (slot, entry) = (chosenSlot, chosenEntry)
                case .apply(let appliedSlot, let appliedEntry): (slot, entry) = (appliedSlot, appliedEntry)
                default: continue
                }
                if let earlier = state.chosen[slot] {
                    if earlier.entry != entry, conflict == nil {
                        conflict =
                            "agreement: slot \(slot) chosen as \(earlier.entry) on n\(earlier.node.rawValue) and as \(entry) on n\(node.rawValue)"
                    }
                } else {
                    state.chosen[slot] = (node, entry)
                }
            }
        }
        if let conflict { violation(conflict) }
    }

    /// Every message sent goes into the run's digest.
    func sent(from: NodeID, to: NodeID, channel: UInt8, payload: [UInt8]) {
        state.withLock { state in
            state.messages += 1
            var hash = state.digest
            func mix(_ byte: UInt8) {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
            for value in [from.rawValue, to.rawValue] {
                for shift in stride(from: 0, to: 32, by: 8) { mix(UInt8(truncatingIfNeeded: value >> shift)) }
            }
            mix(channel)
            for byte in payload { mix(byte) }
            state.digest = hash
        }
    }

    /// `12.345678s`: virtual seconds, to the microsecond.
    static func stamp(_ nanoseconds: UInt64) -> String {
        let micros = nanoseconds / 1_000
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)s"
    }
}
