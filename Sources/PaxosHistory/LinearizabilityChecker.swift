/// Checks a key-value history for linearizability: the Wing & Gong search with Lowe's cache of
/// (linearized set, state), as Porcupine implements it, run on each key separately (operations
/// on different keys commute, so a history is linearizable iff every key's sub-history is).
///
/// The model is a register per key holding a string, "" meaning absent: get returns it; put sets
/// it; append extends it; delete empties it; cas sets it to `value` iff it equals `expected` and
/// outputs "true", else outputs "false". Failed operations are dropped; an `info` operation may
/// take effect at any point after its call (its return time is infinite), and an `info` get is
/// dropped because it constrains nothing.
public enum LinearizabilityChecker {
    public enum Verdict: Hashable, Sendable, CustomStringConvertible {
        case linearizable
        /// The first key (in sorted order) whose history admits no linearization.
        case notLinearizable(key: String)
        /// The search for `key` exceeded its step budget.
        case unknown(key: String)

        public var description: String {
            switch self {
            case .linearizable: "linearizable"
            case .notLinearizable(let key): "NOT linearizable (key \(key))"
            case .unknown(let key): "unknown (the search for key \(key) exceeded its budget)"
            }
        }
    }

    /// Checks `history`; `budget` bounds the search steps per key.
    public static func check(_ history: [HistoryOperation], budget: Int = 50_000_000) -> Verdict {
        var byKey: [String: [HistoryOperation]] = [:]
        for operation in history where operation.status != .fail {
            if operation.status == .info && operation.op == .get { continue }
            byKey[operation.key, default: []].append(operation)
        }
        for key in byKey.keys.sorted() {
            switch checkKey(byKey[key]!, budget: budget) {
            case .some(true): continue
            case .some(false): return .notLinearizable(key: key)
            case .none: return .unknown(key: key)
            }
        }
        return .linearizable
    }

    /// The model's step: whether `operation` may take effect in `state`, and the state after.
    static func step(_ state: String, _ operation: HistoryOperation) -> String? {
        let known = operation.status == .ok
        switch operation.op {
        case .get:
            return !known || operation.output == state ? state : nil
        case .put:
            return operation.value
        case .append:
            return state + operation.value
        case .delete:
            return ""
        case .cas:
            let matches = state == (operation.expected ?? "")
            if !known { return matches ? operation.value : state }
            if operation.output == "true" { return matches ? operation.value : nil }
            return matches ? nil : state
        }
    }

    /// One entry of the doubly linked list of call and return events.
    final class Event {
        let operation: Int
        let isCall: Bool
        let time: Int64
        var match: Event?
        var previous: Event?
        var next: Event?

        init(operation: Int, isCall: Bool, time: Int64) {
            self.operation = operation
            self.isCall = isCall
            self.time = time
        }
    }

    struct CacheKey: Hashable {
        var linearized: [UInt64]
        var state: String
    }

    /// true: linearizable; false: not; nil: budget exceeded.
    static func checkKey(_ operations: [HistoryOperation], budget: Int) -> Bool? {
        var events: [Event] = []
        for (index, operation) in operations.enumerated() {
            let call = Event(operation: index, isCall: true, time: operation.callNs)
            let returnTime = operation.status == .info ? Int64.max : operation.returnNs
            let ret = Event(operation: index, isCall: false, time: returnTime)
            call.match = ret
            events.append(call)
            events.append(ret)
        }
        // Calls before returns at the same instant: such operations count as concurrent.
        events.sort { ($0.time, $0.isCall ? 0 : 1) < ($1.time, $1.isCall ? 0 : 1) }
        let head = Event(operation: -1, isCall: false, time: .min)
        var last = head
        for event in events {
            last.next = event
            event.previous = last
            last = event
        }

        func lift(_ call: Event) {
            call.previous?.next = call.next
            call.next?.previous = call.previous
            let ret = call.match!
            ret.previous?.next = ret.next
            ret.next?.previous = ret.previous
        }

        func unlift(_ call: Event) {
            let ret = call.match!
            ret.previous?.next = ret
            ret.next?.previous = ret
            call.previous?.next = call
            call.next?.previous = call
        }

        var linearized = [UInt64](repeating: 0, count: (operations.count + 63) / 64)
        var cache: Set<CacheKey> = []
        var stack: [(Event, String)] = []
        var state = ""
        var entry = head.next
        var steps = 0
        while head.next != nil {
            steps += 1
            if steps > budget { return nil }
            if let current = entry, current.isCall {
                if let newState = step(state, operations[current.operation]) {
                    var candidate = linearized
                    candidate[current.operation / 64] |= 1 << UInt64(current.operation % 64)
                    let key = CacheKey(linearized: candidate, state: newState)
                    if cache.insert(key).inserted {
                        stack.append((current, state))
                        state = newState
                        linearized = candidate
                        lift(current)
                        entry = head.next
                        continue
                    }
                }
                entry = current.next
            } else {
                // A return whose call is not linearized yet (or the end): undo the last choice.
                guard let (call, previousState) = stack.popLast() else { return false }
                state = previousState
                linearized[call.operation / 64] &= ~(1 << UInt64(call.operation % 64))
                unlift(call)
                entry = call.next
            }
        }
        return true
    }
}
