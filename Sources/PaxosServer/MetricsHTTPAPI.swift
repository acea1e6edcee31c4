import CoreMetrics
import Hummingbird
import Paxos
import PaxosCore
import Prometheus
import Synchronization

/// One node's metrics: its own Prometheus registry and the swift-metrics factory that records
/// into it. Each node has its own (not the process-wide `MetricsSystem`): tests run several
/// nodes in one process, and each must report only itself.
public final class NodeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Hand this to ``LogMetrics/init(factory:)`` and ``PaxosHTTPAPI/router(peer:info:maxValueBytes:clientToken:metrics:)``.
    public let factory: PrometheusMetricsFactory

    public static let httpDurationName = "paxos_http_request_duration_seconds"

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Doubling buckets, as etcd's: fsyncs from 0.5 ms (an SSD) to 8 s (a disk in trouble),
        // round trips from 0.1 ms (loopback) to 0.8 s.
        let commit = (0..<15).map { Duration.microseconds(500 << $0) }
        let roundTrip = (0..<14).map { Duration.microseconds(100 << $0) }
        let http = (0..<15).map { Duration.microseconds(500 << $0) }
        factory.durationHistogramBuckets = [
            LogMetrics.commitDurationName: commit, LogMetrics.peerRoundTripName: roundTrip,
            Self.httpDurationName: http,
        ]
        factory.valueHistogramBuckets = [LogMetrics.mutationsPerCommitName: (0..<12).map { Double(1 << $0) }]
        self.registry = registry
        self.factory = factory
    }

    /// The Prometheus text exposition of every metric (format 0.0.4).
    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

/// Counts every HTTP request by route pattern, method and status code, and times it by route.
///
/// The route label is the pattern the router matched (`/v1/kv/:key`), `unmatched` for none,
/// and the method one of the API's or `other`: a client cannot create label values (and
/// unbounded memory) by making up paths or methods. Install it first, before
/// ``JSONErrorMiddleware``, so that it sees the status the client gets.
public struct HTTPMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    private struct Key: Hashable {
        var route: String
        var method: String
        var code: Int
    }

    private final class Cache: Sendable {
        let counters = Mutex<[Key: CoreMetrics.Counter]>([:])
        let timers = Mutex<[String: CoreMetrics.Timer]>([:])
    }

    private let factory: any MetricsFactory
    private let cache = Cache()

    public init(factory: any MetricsFactory) { self.factory = factory }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context, response.status.code, since: started)
            return response
        } catch {
            record(request, context, (error as? any HTTPResponseError)?.status.code ?? 500, since: started)
            throw error
        }
    }

    static func routeLabel(_ endpointPath: String?) -> String {
        guard let endpointPath, endpointPath.hasPrefix("/") else { return "unmatched" }
        return endpointPath
    }

    static func methodLabel(_ method: HTTPRequest.Method) -> String {
        switch method {
        case .get, .put, .post, .delete, .head, .patch, .options: method.rawValue
        default: "other"
        }
    }

    private func record(
        _ request: Request, _ context: Context, _ code: Int, since started: ContinuousClock.Instant
    ) {
        let elapsed = ContinuousClock.now - started
        let route = Self.routeLabel(context.endpointPath)
        let key = Key(route: route, method: Self.methodLabel(request.method), code: code)
        let factory = self.factory
        let counter = cache.counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: "paxos_http_requests_total",
                dimensions: [("route", key.route), ("method", key.method), ("code", "\(key.code)")],
                factory: factory)
            counters[key] = counter
            return counter
        }
        let timer = cache.timers.withLock { timers in
            if let timer = timers[route] { return timer }
            let timer = CoreMetrics.Timer(
                label: NodeMetrics.httpDurationName, dimensions: [("route", route)], factory: factory)
            timers[route] = timer
            return timer
        }
        counter.increment()
        let (seconds, attoseconds) = elapsed.components
        timer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// `GET /metrics`: the node's metrics in the Prometheus text format.
///
/// Gauges that mirror the replica's state (leader, applied index, first unchosen slot, pending
/// proposals, peer reachability) are read from it at each scrape, so they are never stale.
public enum MetricsHTTPAPI {
    /// The content type of the Prometheus text exposition format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Adds `GET /metrics` for `metrics`, reading the gauges from `log` and, for peers,
    /// `isReachable` (whether this node holds a connection to the peer). `sessions` counts the
    /// key-value sessions the state machine holds (nil: unknown, the gauge keeps its value).
    public static func add<Machine: StateMachine>(
        to router: Router<BasicRequestContext>, metrics: NodeMetrics, log: LogPeer<Machine>,
        isReachable: @escaping @Sendable (NodeID) async -> Bool,
        sessions: @escaping @Sendable () async -> Int? = { nil }
    ) {
        let factory = metrics.factory
        let hasLeader = CoreMetrics.Gauge(label: "paxos_server_has_leader", factory: factory)
        let isLeader = CoreMetrics.Gauge(label: "paxos_server_is_leader", factory: factory)
        let applied = CoreMetrics.Gauge(label: "paxos_log_applied_index", factory: factory)
        let firstUnchosen = CoreMetrics.Gauge(label: "paxos_log_first_unchosen_slot", factory: factory)
        let pending = CoreMetrics.Gauge(label: "paxos_server_proposals_pending", factory: factory)
        let serving = CoreMetrics.Gauge(label: "paxos_server_serving", factory: factory)
        let sessionsHeld = CoreMetrics.Gauge(label: "paxos_kv_sessions", factory: factory)
        let reachable = GaugesByPeer()
        router.get("/metrics") { _, _ -> Response in
            let state = await log.inspect { core in
                (
                    leader: core.leader, heard: core.heardLeaderRecently, isLeader: core.isLeader,
                    applied: core.applied, firstUnchosen: core.firstUnchosen,
                    peers: core.membership.ids.filter { $0 != core.me }
                )
            }
            hasLeader.record(state.leader != nil && state.heard ? 1 : 0)
            isLeader.record(state.isLeader ? 1 : 0)
            applied.record(state.applied)
            firstUnchosen.record(state.firstUnchosen)
            pending.record(await log.pendingProposals)
            serving.record(await log.isServing ? 1 : 0)
            if let held = await sessions() { sessionsHeld.record(held) }
            for peer in state.peers {
                let gauge = reachable.gauges.withLock { gauges in
                    if let gauge = gauges[peer] { return gauge }
                    let gauge = CoreMetrics.Gauge(
                        label: "paxos_network_peer_reachable", dimensions: [("peer", "\(peer.rawValue)")],
                        factory: factory)
                    gauges[peer] = gauge
                    return gauge
                }
                gauge.record(await isReachable(peer) ? 1 : 0)
            }
            return Response(
                status: .ok, headers: [.contentType: contentType],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
        }
    }
}

/// One gauge per peer, made once (a lock in a class: a closure cannot hold a `Mutex` itself).
private final class GaugesByPeer: Sendable {
    let gauges = Mutex<[NodeID: CoreMetrics.Gauge]>([:])
}
