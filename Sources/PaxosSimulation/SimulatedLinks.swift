import Paxos
import PaxosCore
import PaxosWire
import Synchronization

/// The network of a simulated run: every message is a timer on the ``Scheduler`` (latency), and
/// may be lost, duplicated or cut off by a partition. Calls that get no reply time out, as they
/// do over TCP.
final class SimulatedLinks: Sendable {
    struct Faults: Sendable {
        var loss = 0.0
        var duplication = 0.0
        var minLatency = Duration.microseconds(50)
        var maxLatency = Duration.milliseconds(3)
    }

    private struct Handler {
        var generation: UInt64
        var serve: PeerHandler
    }

    private struct State {
        var handlers: [NodeID: [PeerChannel: Handler]] = [:]
        /// The incarnation of each node that is running (a crashed node has none).
        var alive: [NodeID: UInt64] = [:]
        /// Links cut by a partition, both ways: `cut[a]` holds the nodes `a` cannot reach.
        var cut: [NodeID: Set<NodeID>] = [:]
        var faults = Faults()
    }

    private let scheduler: Scheduler
    private let observer: Observer
    private let callTimeout: Duration
    private let state = Mutex(State())

    init(scheduler: Scheduler, observer: Observer, callTimeout: Duration) {
        self.scheduler = scheduler
        self.observer = observer
        self.callTimeout = callTimeout
    }

    var faults: Faults {
        get { state.withLock { $0.faults } }
        set { state.withLock { $0.faults = newValue } }
    }

    /// Incarnation `generation` of `node` is up: its transport.
    func attach(_ node: NodeID, generation: UInt64) -> some PeerTransport {
        state.withLock { $0.alive[node] = generation }
        return Endpoint(links: self, me: node, generation: generation)
    }

    /// `node` crashed: nothing it still runs is heard, and nothing reaches it until it restarts.
    func detach(_ node: NodeID) {
        state.withLock { state in
            state.alive[node] = nil
            state.handlers[node] = nil
        }
    }

    /// Cuts every link between `side` and the other nodes of `all`.
    func partition(_ side: Set<NodeID>, from all: [NodeID]) {
        state.withLock { state in
            for a in all {
                state.cut[a] = Set(all.filter { b in side.contains(a) != side.contains(b) })
            }
        }
    }

    func heal() { state.withLock { $0.cut = [:] } }

    private func isAlive(_ node: NodeID, _ generation: UInt64) -> Bool {
        state.withLock { $0.alive[node] == generation }
    }

    /// Whether a message from `from` to `to` gets through now (a cut link, or a loss, drops it).
    private func passes(_ from: NodeID, _ to: NodeID) -> Bool {
        let (cut, loss) = state.withLock { ($0.cut[from]?.contains(to) ?? false, $0.faults.loss) }
        return !cut && !scheduler.chance(loss)
    }

    private func latency() -> Duration {
        let faults = faults
        let low = faults.minLatency.nanoseconds
        let high = Swift.max(low, faults.maxLatency.nanoseconds)
        return .nanoseconds(Int64(scheduler.random(in: low...high)))
    }

    fileprivate func send(
        _ payload: [UInt8], on channel: PeerChannel, from: NodeID, generation: UInt64, to: NodeID,
        done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
    ) {
        // A dead incarnation sends nothing, and hears nothing but failure back (its inbox is
        // closed; `done` is still called exactly once, as the transport promises).
        guard isAlive(from, generation) else { return done(.failure(TransportError("the sender crashed"))) }
        observer.sent(from: from, to: to, channel: channel.rawValue, payload: payload)
        let call = Call(done)
        let hear: @Sendable (Result<[UInt8], TransportError>) -> Void = { [self] result in
            call.finish(isAlive(from, generation) ? result : .failure(TransportError("the sender crashed")))
        }
        scheduler.after(callTimeout) { hear(.failure(TransportError("timed out"))) }
        guard passes(from, to) else { return }
        let copies = scheduler.chance(faults.duplication) ? 2 : 1
        for copy in 0..<copies {
            scheduler.after(latency()) { [self] in
                deliver(payload, on: channel, from: from, to: to, answer: copy == 0 ? hear : nil)
            }
        }
    }

    private func deliver(
        _ payload: [UInt8], on channel: PeerChannel, from: NodeID, to: NodeID,
        answer: (@Sendable (Result<[UInt8], TransportError>) -> Void)?
    ) {
        guard let handler = state.withLock({ $0.handlers[to]?[channel] }) else {
            // Nobody serves there: the connection is refused, which the caller hears promptly.
            if let answer { scheduler.after(latency()) { answer(.failure(TransportError("unreachable"))) } }
            return
        }
        let responded = Atomic(false)
        handler.serve(from, payload) { [self] response in
            guard responded.exchange(true, ordering: .relaxed) == false else {
                return observer.violation("n\(to.rawValue) answered one request twice")
            }
            guard let answer, isAlive(to, handler.generation), passes(to, from) else { return }
            let result: Result<[UInt8], TransportError> =
                switch response {
                case .reply(let payload): .success(payload)
                case .none: .failure(TransportError("declined"))
                case .refuse(let reason):
                    .failure(TransportError("refused: \(reason)"))
                }
            if case .refuse(let reason) = response {
                observer.violation("n\(to.rawValue) refused a request of n\(from.rawValue): \(reason)")
            }
            scheduler.after(latency()) { answer(result) }
        }
    }

    fileprivate func serve(
        _ channel: PeerChannel, node: NodeID, generation: UInt64, with handler: PeerHandler?
    ) {
        state.withLock { state in
            guard state.alive[node] == generation else { return }
            state.handlers[node, default: [:]][channel] = handler.map {
                Handler(generation: generation, serve: $0)
            }
        }
    }

    /// One call's completion, reported once: by its reply or by its timeout, whichever comes
    /// first.
    private final class Call: Sendable {
        private let done: Mutex<(@Sendable (Result<[UInt8], TransportError>) -> Void)?>
        init(_ done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void) {
            self.done = Mutex(done)
        }
        func finish(_ result: Result<[UInt8], TransportError>) {
            let done = done.withLock { done in
                defer { done = nil }
                return done
            }
            done?(result)
        }
    }

    private struct Endpoint: PeerTransport {
        let links: SimulatedLinks
        let me: NodeID
        let generation: UInt64

        func send(
            _ payload: [UInt8], on channel: PeerChannel, to peer: NodeID,
            done: @escaping @Sendable (Result<[UInt8], TransportError>) -> Void
        ) {
            links.send(payload, on: channel, from: me, generation: generation, to: peer, done: done)
        }

        func serve(_ channel: PeerChannel, with handler: PeerHandler?) {
            links.serve(channel, node: me, generation: generation, with: handler)
        }

        func shutdown() async {
            for channel in PeerChannel.allCases { serve(channel, with: nil) }
        }
    }
}
