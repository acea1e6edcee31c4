import PaxosCore
import Synchronization

/// What a run saw: the faults it injected and what else it reports (the transcript), every
/// violation it caught, and a digest of every message sent, so two runs of one seed can be
/// compared byte for byte.
final class Observer: Sendable {
    private struct State {
        var lines: [String] = []
        var violations: [String] = []
        var inconclusive: [String] = []
        /// Every entry some replica made durable as chosen, by slot: two different ones in a slot
        /// break agreement.
        var chosen: [Slot: (node: NodeID, entry: LogEntry)] = [:]
        /// A digest of the state machine's rows as of each applied slot, by the first node that
        /// made it durable: a replica that applied the same log must hold the same rows, however
        /// it got them (applying entries, or installing a snapshot).
        var rows: [Slot: (node: NodeID, digest: UInt64)] = [:]
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
    var inconclusive: [String] { state.withLock { $0.inconclusive } }
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

    /// A check that could not decide (its search ran out of budget): the run neither passes nor
    /// fails it.
    func inconclusive(_ text: String) {
        state.withLock { $0.inconclusive.append(text) }
        event("INCONCLUSIVE: \(text)")
    }

    /// `node` made `mutations` durable (or, with a planted bug, acknowledged them), leaving its
    /// disk at `durable`.
    func committed(node: NodeID, _ mutations: [LogMutation], state durable: LogDurableState) {
        var conflict: String?
        let digest = durable.applied == 0 ? nil : Self.digest(durable.machine)
        state.withLock { state in
            if let digest {
                if let earlier = state.rows[durable.applied] {
                    if earlier.digest != digest {
                        conflict =
                            "divergence: n\(earlier.node.rawValue) and n\(node.rawValue) hold different rows as of applied slot \(durable.applied)"
                    }
                } else {
                    state.rows[durable.applied] = (node, digest)
                }
            }
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

    /// FNV-1a over the rows in key order.
    static func digest(_ rows: [MachineKey: [UInt8]]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: [UInt8]) {
            for byte in bytes + [
                UInt8(truncatingIfNeeded: bytes.count), UInt8(truncatingIfNeeded: bytes.count >> 8),
            ] {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
        }
        for (key, value) in rows.sorted(by: { $0.key < $1.key }) {
            mix([key.space])
            mix(key.key)
            mix(value)
        }
        return hash
    }

    /// `12.345678s`: virtual seconds, to the microsecond.
    static func stamp(_ nanoseconds: UInt64) -> String {
        let micros = nanoseconds / 1_000
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)s"
    }
}
