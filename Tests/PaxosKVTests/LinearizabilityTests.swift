import PaxosHistory
import Testing

@Suite("Linearizability checker")
struct LinearizabilityCheckerTests {
    typealias Op = HistoryOperation

    func op(
        _ client: Int, _ kind: Op.Kind, _ key: String = "x", value: String = "", output: String = "",
        expected: String? = nil, _ call: Int64, _ ret: Int64, _ status: Op.Status = .ok
    ) -> Op {
        Op(
            client: client, op: kind, key: key, value: value, output: output, expected: expected,
            callNs: call,
            returnNs: ret, status: status)
    }

    @Test("sequential put then get of the written value is linearizable")
    func sequential() {
        let history = [op(0, .put, value: "a", 0, 10), op(1, .get, output: "a", 20, 30)]
        #expect(LinearizabilityChecker.check(history) == .linearizable)
    }

    @Test("a read of an old value after a completed write is not linearizable")
    func staleRead() {
        let history = [
            op(0, .put, value: "a", 0, 10), op(0, .put, value: "b", 20, 30), op(1, .get, output: "a", 40, 50),
        ]
        #expect(LinearizabilityChecker.check(history) == .notLinearizable(key: "x"))
    }

    @Test("concurrent writes may be read in either order, but not both orders by sequential reads")
    func concurrentWrites() {
        let writes = [op(0, .put, value: "a", 0, 100), op(1, .put, value: "b", 0, 100)]
        #expect(LinearizabilityChecker.check(writes + [op(2, .get, output: "a", 200, 210)]) == .linearizable)
        #expect(LinearizabilityChecker.check(writes + [op(2, .get, output: "b", 200, 210)]) == .linearizable)
        let flipFlop = writes + [op(2, .get, output: "a", 200, 210), op(2, .get, output: "b", 220, 230)]
        #expect(LinearizabilityChecker.check(flipFlop) == .notLinearizable(key: "x"))
    }

    @Test("an append applied twice is caught")
    func doubleAppend() {
        let history = [
            op(0, .append, value: "x", 0, 10), op(1, .append, value: "y", 20, 30),
            op(2, .get, output: "xyy", 40, 50),
        ]
        #expect(LinearizabilityChecker.check(history) == .notLinearizable(key: "x"))
    }

    @Test("an info write may or may not have happened, at any time after its call")
    func infoOperations() {
        let pending = op(0, .put, value: "a", 0, 0, .info)
        #expect(LinearizabilityChecker.check([pending, op(1, .get, output: "", 10, 20)]) == .linearizable)
        #expect(LinearizabilityChecker.check([pending, op(1, .get, output: "a", 10, 20)]) == .linearizable)
        // But not before its call.
        let early = [op(1, .get, output: "a", 0, 5), op(0, .put, value: "a", 10, 10, .info)]
        #expect(LinearizabilityChecker.check(early) == .notLinearizable(key: "x"))
        // A failed write certainly did not happen.
        let failed = [op(0, .put, value: "a", 0, 5, .fail), op(1, .get, output: "a", 10, 20)]
        #expect(LinearizabilityChecker.check(failed) == .notLinearizable(key: "x"))
    }

    @Test("compare-and-set outputs must match the register")
    func compareAndSet() {
        let good = [
            op(0, .put, value: "a", 0, 10), op(1, .cas, value: "b", output: "true", expected: "a", 20, 30),
            op(2, .cas, value: "c", output: "false", expected: "a", 40, 50), op(0, .get, output: "b", 60, 70),
        ]
        #expect(LinearizabilityChecker.check(good) == .linearizable)
        let bad = [
            op(0, .put, value: "a", 0, 10), op(1, .cas, value: "b", output: "true", expected: "a", 20, 30),
            op(2, .cas, value: "c", output: "true", expected: "a", 40, 50),
        ]
        #expect(LinearizabilityChecker.check(bad) == .notLinearizable(key: "x"))
    }

    @Test("keys are checked separately; delete empties a key")
    func perKey() {
        let history = [
            op(0, .put, "k1", value: "a", 0, 10), op(1, .put, "k2", value: "b", 0, 10),
            op(0, .delete, "k1", 20, 30), op(1, .get, "k1", output: "", 40, 50),
            op(1, .get, "k2", output: "b", 40, 50),
        ]
        #expect(LinearizabilityChecker.check(history) == .linearizable)
        #expect(
            LinearizabilityChecker.check(history + [op(2, .get, "k2", output: "a", 60, 70)])
                == .notLinearizable(key: "k2"))
    }

    @Test("the JSON-lines format reads back")
    func jsonLines() throws {
        let text = """
            {"client": 1, "op": "put", "key": "k", "value": "v", "output": "", "call_ns": 1, "return_ns": 2, "status": "ok"}

            {"client": 2, "op": "cas", "key": "k", "value": "w", "expected": "v", "output": "true", "call_ns": 3, "return_ns": 4, "status": "ok"}
            """
        let history = try HistoryOperation.read(jsonLines: text)
        #expect(history.count == 2)
        #expect(history[1].expected == "v")
        #expect(LinearizabilityChecker.check(history) == .linearizable)
        #expect(throws: HistoryError.self) { try HistoryOperation.read(jsonLines: "{\"client\": 1}") }
    }
}
