"""The tools' two pictures, drawn with svgplot: kv-bench's throughput and latency percentiles
against clients, and kill-test's timeline of throughput and latency with the faults as bands."""
import math

from svgplot import Figure, percentile

PERCENTILES = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9")]
PERCENTILE_COLOURS = {"p50": "#0072B2", "p90": "#009E73", "p99": "#D55E00", "p99.9": "#CC79A7"}
MODE_NAMES = {"plain": "plaintext", "tls": "mutual TLS"}
MODE_DASH = {"plain": None, "tls": "6,4"}

# Bands: one colour per kind of fault, light enough that the lines on top stay readable.
FAULTS = {
    "kill": ("kill -9 (until restarted)", "#E41A1C"),
    "pause": ("SIGSTOP pause", "#FF7F00"),
    "partition": ("partition", "#377EB8"),
    "replace": ("node replaced (remove .. promoted)", "#4DAF4A"),
    "leader": ("new leader seen", "#555555"),
}


def read_bench_rows(path):
    """kv-bench's results: a tab-separated file with a header line naming the columns
    mode, clients, puts_per_s, p50_ms, p90_ms, p99_ms, p999_ms, errors."""
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(header):
                raise ValueError(f"{path}:{number}: {len(fields)} fields, the header names {len(header)}")
            row = dict(zip(header, fields))
            parsed = {"mode": row["mode"], "clients": int(row["clients"]), "puts_per_s": float(row["puts_per_s"]),
                      "errors": int(row.get("errors", "0"))}
            for key, _ in PERCENTILES:
                value = row.get(f"{key}_ms", "")
                parsed[key] = float(value) if value not in ("", "-") else None
            if parsed["clients"] <= 0:
                raise ValueError(f"{path}:{number}: clients must be positive")
            rows.append(parsed)
    if not rows:
        raise ValueError(f"{path}: no results")
    return rows


def bench_figure(rows, title="kv-bench: puts on a 3-node cluster", note=None, width=800, height=400):
    """Throughput (left) and latency percentiles (right) against concurrent clients, a log2 x
    axis with a tick at every client count measured; one series per peer mode (TLS dashed)."""
    fig = Figure(width, height, title)
    if note:
        fig.note(note)
    clients = sorted({r["clients"] for r in rows})
    modes = [m for m in dict.fromkeys(r["mode"] for r in rows)]
    several = len(modes) > 1
    top = 66 if note else 54
    plot_h = height - top - 84
    panel_w = (width - 70 - 70 - 40) // 2
    common = dict(xlabel="concurrent clients (wrk connections)", xlog=True, xticks=clients)
    tput = fig.axes(70, top, panel_w, plot_h, title="throughput", ylabel="puts/s", **common)
    lat = fig.axes(70 + panel_w + 110, top, panel_w - 40, plot_h, title="latency", ylabel="ms (log scale)",
                   ylog=True, **common)
    for mode in modes:
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["clients"])
        suffix = f" ({MODE_NAMES.get(mode, mode)})" if several else ""
        xs = [r["clients"] for r in mine]
        tput.line(xs, [r["puts_per_s"] for r in mine], "puts/s" + suffix,
                  colour="#222222" if mode != "tls" else "#777777", dash=MODE_DASH.get(mode))
        for key, name in PERCENTILES:
            ys = [r[key] for r in mine]
            if all(y is None for y in ys):
                continue
            lat.line(xs, ys, name + suffix, colour=PERCENTILE_COLOURS[name], dash=MODE_DASH.get(mode))
    return fig


def buckets(ops, duration, width=1.0):
    """Per `width`-second bucket of completion time: (mid time, ok ops/s, not-ok ops/s, p50 ms,
    p99 ms), from ops = [(call s, return s, ok)] relative to the run's start. A bucket without
    an ok operation has no latency (None), which breaks the latency lines there."""
    count = max(1, math.ceil(duration / width))
    if count > 1 and duration - (count - 1) * width < width / 2:
        # A last sliver of a bucket (the clients stopping) gives a rate from a handful of
        # operations: leave it out rather than draw a fall that did not happen.
        count -= 1
    done = [[] for _ in range(count)]
    bad = [0] * count
    for call, ret, ok in ops:
        if ret < 0 or ret > count * width:
            continue
        i = min(count - 1, int(ret // width))
        if ok:
            done[i].append((ret - call) * 1000.0)
        else:
            bad[i] += 1
    out = []
    for i in range(count):
        lat = done[i]
        # The last bucket may be cut short by the end of the run: a rate over the time it covers,
        # else the line would fall at the end for no reason.
        span = min(width, duration - i * width) if duration > i * width else width
        span = max(span, width / 2)
        out.append((i * width + span / 2, len(lat) / span, bad[i] / span, percentile(lat, 50), percentile(lat, 99)))
    return out


def timeline_figure(ops, events, duration, title="kill-test timeline", note=None, width=800, height=440):
    """Throughput (top) and p50/p99 latency (bottom, log scale) per second against time, with a
    shaded band for every fault: events = [{"kind": kill|pause|partition|replace, "t0", "t1",
    "nodes"}] in seconds relative to the run's start (t1 None: still going at the end)."""
    fig = Figure(width, height, title)
    if note:
        fig.note(note)
    rows = buckets(ops, duration)
    top = 66 if note else 54
    gap = 34
    panel_h = (height - top - 100 - gap) // 2
    xlim = (0, max(duration, 1))
    tput = fig.axes(80, top, width - 110, panel_h, title="throughput per second", ylabel="ops/s",
                    xlim=xlim, xticklabels=False)
    lat = fig.axes(80, top + panel_h + gap, width - 110, panel_h, title="latency of the operations that completed",
                   ylabel="ms (log)", xlabel="seconds since the load began", xlim=xlim, ylog=True)
    order = list(FAULTS)
    events = sorted(events, key=lambda e: (order.index(e["kind"]) if e["kind"] in order else len(order), e["t0"]))
    for axes in (tput, lat):
        for e in events:
            label, colour = FAULTS.get(e["kind"], (e["kind"], "#999999"))
            t1 = e.get("t1")
            nodes = e.get("nodes") or []
            text = ("n" + ",".join(str(n) for n in nodes)) if nodes else None
            # The kill nemesis runs one kill, pause or partition at a time; a replacement may
            # overlap any of them, so its text goes in a row of its own.
            axes.band(max(0.0, e["t0"]), min(xlim[1], t1 if t1 is not None else xlim[1]), label, colour, text,
                      row=1 if e["kind"] == "replace" else 0)
    xs = [r[0] for r in rows]
    markers = len(rows) <= 60
    tput.line(xs, [r[1] for r in rows], "ok ops/s", colour="#222222", markers=markers)
    if any(r[2] for r in rows):
        tput.line(xs, [r[2] for r in rows], "failed or unknown ops/s", colour="#999999", dash="3,3", markers=markers)
    lat.line(xs, [r[3] for r in rows], "p50 latency", colour="#0072B2", markers=markers)
    lat.line(xs, [r[4] for r in rows], "p99 latency", colour="#7B3294", markers=markers)
    return fig


def ops_from_history(path, origin_ns):
    """kv-load's history (JSON lines with call_ns, return_ns and status on one monotonic clock)
    as [(call s, return s, ok)] relative to `origin_ns`; lines that do not parse are skipped
    (a history cut off by a killed load generator ends in a partial line)."""
    import json

    ops = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
                call, ret = int(record["call_ns"]), int(record["return_ns"])
            except (ValueError, KeyError, TypeError):
                continue
            ops.append(((call - origin_ns) / 1e9, (ret - origin_ns) / 1e9, record.get("status") == "ok"))
    return ops
