"""Dependency-free SVG line charts for the tools (kv-bench, kill-test): Python 3 standard library.

A Figure holds one or more Axes; each Axes has an x and a y scale (linear or log), lines (a
series of points; None in a y value breaks the line) and vertical bands (shaded x intervals,
e.g. when a node was killed). The figure draws ticks, tick labels, axis labels, a title and one
legend for every labelled series and band, and returns a self-contained SVG (no fonts, no
scripts, no external references) that renders the same in a browser and on GitHub.

The elements carry their meaning as attributes, so tests (and anyone reading the file) can find
them: every series is `<g class="series" data-label=...>` holding `<polyline>`s and `<circle>`s,
every band a `<rect class="band" data-label=... data-x0=... data-x1=...>`, every tick a
`<g class="tick" data-axis="x|y" data-value=...>`.
"""
import math
from xml.sax.saxutils import escape, quoteattr

# Colour-blind safe (Okabe-Ito), in the order series are given a colour.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
FONT = "font-family=\"sans-serif\""


def nice_step(span, count):
    """A step of 1, 2 or 5 times a power of ten that cuts `span` into about `count` pieces (the
    nearest such step, so the count comes out between about count/1.5 and 1.5 count)."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    m = raw / power
    return (1 if m < 1.5 else 2 if m < 3 else 5 if m < 7 else 10) * power


def linear_ticks(lo, hi, count=5):
    """Tick values at a nice step covering [lo, hi]; the first is <= lo and the last >= hi."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        hi = lo + 1 if lo == 0 else lo + abs(lo)
    step = nice_step(hi - lo, count)
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = first
    while v < hi - 1e-9 * step:
        ticks.append(_clean(v))
        v += step
    ticks.append(_clean(v))
    return ticks


def log_ticks(lo, hi):
    """Tick values for a log axis covering [lo, hi] (lo > 0): powers of ten, with 2 and 5 between
    them when the range spans fewer than three decades. The first is <= lo, the last >= hi."""
    lo_e = math.floor(math.log10(lo) + 1e-9)
    hi_e = math.ceil(math.log10(hi) - 1e-9)
    if hi_e == lo_e:
        hi_e += 1
    multiples = (1, 2, 5) if hi_e - lo_e < 3 else (1,)
    candidates = [_clean(m * 10 ** e) for e in range(lo_e, hi_e + 1) for m in multiples]
    below = [c for c in candidates if c <= lo * (1 + 1e-9)]
    above = [c for c in candidates if c >= hi * (1 - 1e-9)]
    start, end = max(below), min(above)
    return [c for c in candidates if start <= c <= end]


def _clean(v):
    """Rounds away float noise (0.30000000000000004) so labels and tests see the intended value."""
    return float(f"{v:.12g}")


def format_tick(v):
    """A short label: 0, 0.5, 20, 1.5k, 12k, 2M."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    if v == int(v):
        return str(int(v))
    return f"{v:g}"


class Scale:
    """Maps data values in [lo, hi] to pixels in [p0, p1] (p1 < p0 for a y axis), linear or log."""

    def __init__(self, lo, hi, p0, p1, log=False):
        if log and (lo <= 0 or hi <= 0):
            raise ValueError("a log scale needs positive bounds")
        self.lo, self.hi, self.p0, self.p1, self.log = lo, hi, p0, p1, log

    def _t(self, v):
        return math.log10(v) if self.log else v

    def __call__(self, v):
        a, b = self._t(self.lo), self._t(self.hi)
        if b == a:
            return (self.p0 + self.p1) / 2
        if self.log and v <= 0:
            v = self.lo
        return self.p0 + (self._t(v) - a) / (b - a) * (self.p1 - self.p0)


class Axes:
    """One plot area of a figure, at (left, top) with the given size in pixels (the plot area
    only: tick labels and axis labels go outside it)."""

    def __init__(self, figure, left, top, width, height, title=None, xlabel="", ylabel="",
                 xlog=False, ylog=False, xlim=None, ylim=None, xticks=None, yticks=None,
                 xtick_count=8, ytick_count=4, xticklabels=True):
        self.figure = figure
        self.left, self.top, self.width, self.height = left, top, width, height
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xlog, self.ylog = xlog, ylog
        self.xlim, self.ylim = xlim, ylim
        self.xticks, self.yticks = xticks, yticks
        self.xtick_count, self.ytick_count = xtick_count, ytick_count
        self.xticklabels = xticklabels  # False: a panel above another that shares its x axis
        self.lines = []   # (xs, ys, label, colour, dash, markers)
        self.bands = []   # (x0, x1, label, colour, text, row)

    def line(self, xs, ys, label, colour=None, dash=None, markers=True):
        """A series: points (x, y) in order; a y of None breaks the line there."""
        if len(xs) != len(ys):
            raise ValueError(f"series {label!r}: {len(xs)} x values but {len(ys)} y values")
        colour = colour or self.figure.colour_for(label)
        self.lines.append((list(xs), list(ys), label, colour, dash, markers))

    def band(self, x0, x1, label, colour, text=None, row=0):
        """A shaded vertical band from x0 to x1 (both in data units), e.g. a fault's duration;
        `text` is written at its top when the band is wide enough, in text row `row` (0 the
        top one), so the texts of bands that overlap can be kept apart."""
        self.bands.append((min(x0, x1), max(x0, x1), label, colour, text, row))

    def _bounds(self):
        xs = [x for xs, _, _, _, _, _ in self.lines for x in xs]
        xs += [x for b in self.bands for x in b[:2]]
        ys = [y for _, ys, _, _, _, _ in self.lines for y in ys if y is not None]
        if self.ylog:
            ys = [y for y in ys if y > 0]
        if self.xlog:
            xs = [x for x in xs if x > 0]
        return xs, ys

    def scales(self):
        """The x and y scales and their ticks: from xlim/ylim when given, else the data's range
        widened to nice tick values (a linear y axis always includes 0)."""
        xs, ys = self._bounds()
        xticks = self._ticks(self.xlim, xs, self.xlog, self.xticks, self.xtick_count, zero=False)
        yticks = self._ticks(self.ylim, ys, self.ylog, self.yticks, self.ytick_count, zero=True)
        xlo, xhi = self.xlim or (xticks[0], xticks[-1])
        ylo, yhi = self.ylim or (yticks[0], yticks[-1])
        if self.xticks is not None and self.xlim is None:
            xlo, xhi = min(xticks + xs), max(xticks + xs)
        if self.yticks is not None and self.ylim is None:
            ylo, yhi = min(yticks + ys), max(yticks + ys)
        x = Scale(xlo, xhi, self.left, self.left + self.width, self.xlog)
        y = Scale(ylo, yhi, self.top + self.height, self.top, self.ylog)
        xticks = [t for t in xticks if xlo - 1e-9 <= t <= xhi + 1e-9]
        yticks = [t for t in yticks if ylo - 1e-9 <= t <= yhi + 1e-9]
        return x, y, xticks, yticks

    @staticmethod
    def _ticks(lim, values, log, given, count, zero):
        if given is not None:
            return sorted(given)
        if lim:
            lo, hi = lim
        elif values:
            lo, hi = min(values), max(values)
        else:
            lo, hi = (1, 10) if log else (0, 1)
        if log:
            return log_ticks(lo, max(hi, lo))
        if zero and lim is None:
            lo = min(lo, 0)
        ticks = linear_ticks(lo, hi, count)
        if lim:
            ticks = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
        return ticks

    def render(self):
        x, y, xticks, yticks = self.scales()
        left, top, right, bottom = self.left, self.top, self.left + self.width, self.top + self.height
        out = [f'<g class="axes" data-title={quoteattr(self.title or "")}>']
        clip = f"clip-{id(self)}"
        out.append(f'<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{self.width}" height="{self.height}"/></clipPath>')
        out.append(f'<rect x="{left}" y="{top}" width="{self.width}" height="{self.height}" fill="#ffffff" stroke="none"/>')
        texts = []
        for x0, x1, label, colour, text, row in self.bands:
            px0, px1 = max(left, x(x0)), min(right, x(x1))
            if px1 < px0:
                continue
            # A very short band (an instant, or a kill shorter than a pixel) stays visible: at
            # least 1.5 px wide, and darker.
            w = max(px1 - px0, 1.5)
            opacity = 0.22 if px1 - px0 >= 1.5 else 0.8
            out.append(f'<rect class="band" data-label={quoteattr(label)} data-x0="{x0:g}" data-x1="{x1:g}" '
                       f'x="{px0:.1f}" y="{top}" width="{w:.1f}" height="{self.height}" fill="{colour}" '
                       f'fill-opacity="{opacity}" stroke="none"/>')
            if text and w >= 7 * len(text):
                texts.append(f'<text x="{px0 + w / 2:.1f}" y="{top + 11 + 12 * row}" {FONT} font-size="10" '
                             f'fill="#333333" text-anchor="middle">{escape(text)}</text>')
        out += texts  # over every band, so a narrow band drawn later does not cut a label
        for t in yticks:
            py = y(t)
            out.append(f'<g class="tick" data-axis="y" data-value="{t:g}">'
                       f'<line x1="{left}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" stroke="#dddddd" stroke-width="1"/>'
                       f'<line x1="{left - 4}" y1="{py:.1f}" x2="{left}" y2="{py:.1f}" stroke="#333333"/>'
                       f'<text x="{left - 6}" y="{py + 4:.1f}" {FONT} font-size="11" fill="#333333" '
                       f'text-anchor="end">{escape(format_tick(t))}</text></g>')
        for t in xticks:
            px = x(t)
            out.append(f'<g class="tick" data-axis="x" data-value="{t:g}">'
                       f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" stroke="#eeeeee" stroke-width="1"/>'
                       f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom + 4}" stroke="#333333"/>'
                       + (f'<text x="{px:.1f}" y="{bottom + 16}" {FONT} font-size="11" fill="#333333" '
                          f'text-anchor="middle">{escape(format_tick(t))}</text>' if self.xticklabels else "")
                       + '</g>')
        for xs, ys, label, colour, dash, markers in self.lines:
            # The lines are clipped to the plot area; the markers are not, so a point on the
            # edge (the last client count) shows whole.
            out.append(f'<g class="series" data-label={quoteattr(label)}>')
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            for segment in _segments(xs, ys, self.ylog):
                points = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in segment)
                out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"'
                           f'{dash_attr} stroke-linejoin="round" clip-path="url(#{clip})"/>')
                if markers:
                    for px, py in segment:
                        out.append(f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3" fill="{colour}"/>')
            out.append("</g>")
        out.append(f'<rect x="{left}" y="{top}" width="{self.width}" height="{self.height}" fill="none" '
                   f'stroke="#333333" stroke-width="1"/>')
        if self.title:
            out.append(f'<text x="{left}" y="{top - 6}" {FONT} font-size="12" font-weight="bold" '
                       f'fill="#222222">{escape(self.title)}</text>')
        if self.xlabel:
            out.append(f'<text class="xlabel" x="{left + self.width / 2:.1f}" y="{bottom + 32}" {FONT} '
                       f'font-size="12" fill="#222222" text-anchor="middle">{escape(self.xlabel)}</text>')
        if self.ylabel:
            cx, cy = left - 44, top + self.height / 2
            out.append(f'<text class="ylabel" x="{cx}" y="{cy:.1f}" {FONT} font-size="12" fill="#222222" '
                       f'text-anchor="middle" transform="rotate(-90 {cx} {cy:.1f})">{escape(self.ylabel)}</text>')
        out.append("</g>")
        return out


def _segments(xs, ys, ylog):
    """The runs of points with a y value (and a positive one on a log axis)."""
    segment = []
    for px, py in zip(xs, ys):
        if py is None or (ylog and py <= 0):
            if segment:
                yield segment
            segment = []
        else:
            segment.append((px, py))
    if segment:
        yield segment


class Figure:
    """A picture of width x height pixels with a title, axes and one legend at the bottom."""

    def __init__(self, width=800, height=400, title=""):
        self.width, self.height, self.title = width, height, title
        self.axes_list = []
        self.colours = {}
        self.notes = []

    def colour_for(self, label):
        """One colour per label across the figure (p99 is the same colour in every panel)."""
        if label not in self.colours:
            self.colours[label] = PALETTE[len(self.colours) % len(PALETTE)]
        return self.colours[label]

    def axes(self, left, top, width, height, **kwargs):
        a = Axes(self, left, top, width, height, **kwargs)
        self.axes_list.append(a)
        return a

    def note(self, text):
        """A line of small text under the title (e.g. the run's parameters)."""
        self.notes.append(text)

    def legend_entries(self):
        """(label, colour, kind, dash) once per label, series first, in the order first given."""
        seen, entries = set(), []
        for a in self.axes_list:
            for _, _, label, colour, dash, _ in a.lines:
                if label not in seen:
                    seen.add(label)
                    entries.append((label, colour, "series", dash))
        for a in self.axes_list:
            for _, _, label, colour, _, _ in a.bands:
                if label not in seen:
                    seen.add(label)
                    entries.append((label, colour, "band", None))
        return entries

    def svg(self):
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
               f'viewBox="0 0 {self.width} {self.height}">',
               f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>']
        if self.title:
            out.append(f'<title>{escape(self.title)}</title>')
            out.append(f'<text x="{self.width / 2:.0f}" y="20" {FONT} font-size="15" font-weight="bold" '
                       f'fill="#111111" text-anchor="middle">{escape(self.title)}</text>')
        for i, note in enumerate(self.notes):
            out.append(f'<text x="{self.width / 2:.0f}" y="{36 + 13 * i}" {FONT} font-size="11" fill="#555555" '
                       f'text-anchor="middle">{escape(note)}</text>')
        for a in self.axes_list:
            out += a.render()
        out += self._legend()
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _legend(self):
        entries = self.legend_entries()
        if not entries:
            return []
        out = ['<g class="legend">']
        # One row (or more) at the bottom, each entry a swatch and its label; wrapped to the width.
        widths = [34 + 6.5 * len(label) for label, _, _, _ in entries]
        rows, row, used = [], [], 0
        for entry, w in zip(entries, widths):
            if row and used + w > self.width - 20:
                rows.append(row)
                row, used = [], 0
            row.append((entry, w))
            used += w
        rows.append(row)
        y = self.height - 10 - 16 * (len(rows) - 1)
        for row in rows:
            x = (self.width - sum(w for _, w in row)) / 2
            for (label, colour, kind, dash), w in row:
                out.append(f'<g class="legend-entry" data-label={quoteattr(label)} data-kind="{kind}">')
                if kind == "band":
                    out.append(f'<rect x="{x:.1f}" y="{y - 9}" width="20" height="11" fill="{colour}" fill-opacity="0.35"/>')
                else:
                    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
                    out.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x + 20:.1f}" y2="{y - 4}" stroke="{colour}" '
                               f'stroke-width="2"{dash_attr}/>')
                out.append(f'<text x="{x + 26:.1f}" y="{y}" {FONT} font-size="11" fill="#222222">{escape(label)}</text>')
                out.append("</g>")
                x += w
            y += 16
        out.append("</g>")
        return out

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg())
        return path


def percentile(values, p):
    """The p-th percentile (0-100) of `values` by the nearest-rank method; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
