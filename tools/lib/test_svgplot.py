"""Tests of the SVG writer and the tools' pictures (standard library only):

    python3 -m unittest discover -s tools/lib -p 'test_*.py'
"""
import json
import math
import os
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pictures  # noqa: E402
import svgplot  # noqa: E402

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(fig):
    """The figure's SVG as an element tree (raises on anything that is not well-formed XML)."""
    return ET.fromstring(fig.svg())


def series(root, label):
    found = [g for g in root.iter("{http://www.w3.org/2000/svg}g")
             if g.get("class") == "series" and g.get("data-label") == label]
    return found


def points(group):
    """The (x, y) pixel points of every polyline of a series group, one list per polyline."""
    lines = []
    for pl in group.findall("svg:polyline", NS):
        lines.append([tuple(float(v) for v in p.split(",")) for p in pl.get("points").split()])
    return lines


def bands(root, label=None):
    return [r for r in root.iter("{http://www.w3.org/2000/svg}rect")
            if r.get("class") == "band" and (label is None or r.get("data-label") == label)]


def ticks(root, axis):
    return [float(g.get("data-value")) for g in root.iter("{http://www.w3.org/2000/svg}g")
            if g.get("class") == "tick" and g.get("data-axis") == axis]


class TickTests(unittest.TestCase):
    def test_linear_ticks_cover_the_range_at_a_nice_step(self):
        self.assertEqual(svgplot.linear_ticks(0, 97, 5), [0, 20, 40, 60, 80, 100])
        self.assertEqual(svgplot.linear_ticks(0, 30, 8), [0, 5, 10, 15, 20, 25, 30])
        self.assertEqual(svgplot.linear_ticks(0.1, 0.75, 4), [0.0, 0.2, 0.4, 0.6, 0.8])

    def test_log_ticks_use_1_2_5_within_a_few_decades_and_powers_of_ten_beyond(self):
        self.assertEqual(svgplot.log_ticks(2.4, 52), [2, 5, 10, 20, 50, 100])
        self.assertEqual(svgplot.log_ticks(0.5, 3000), [0.1, 1, 10, 100, 1000, 10000])

    def test_tick_labels_are_short(self):
        self.assertEqual([svgplot.format_tick(v) for v in (0, 0.5, 20, 1500, 12000, 2e6)],
                         ["0", "0.5", "20", "1.5k", "12k", "2M"])

    def test_percentile_is_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(svgplot.percentile(values, 50), 50)
        self.assertEqual(svgplot.percentile(values, 99), 99)
        self.assertEqual(svgplot.percentile([7], 99), 7)
        self.assertIsNone(svgplot.percentile([], 50))


class ScaleTests(unittest.TestCase):
    def test_linear_and_log_scales_map_known_values(self):
        x = svgplot.Scale(0, 10, 100, 700)
        self.assertAlmostEqual(x(0), 100)
        self.assertAlmostEqual(x(5), 400)
        self.assertAlmostEqual(x(10), 700)
        y = svgplot.Scale(1, 1000, 300, 0, log=True)   # a y axis: up is smaller pixels
        self.assertAlmostEqual(y(1), 300)
        self.assertAlmostEqual(y(10), 200)
        self.assertAlmostEqual(y(1000), 0)

    def test_log_scale_refuses_non_positive_bounds(self):
        with self.assertRaises(ValueError):
            svgplot.Scale(0, 10, 0, 100, log=True)


class FigureTests(unittest.TestCase):
    def figure(self):
        fig = svgplot.Figure(800, 400, "a <title> & more")
        axes = fig.axes(100, 50, 600, 200, xlabel="time", ylabel="ops", xlim=(0, 10), ylim=(0, 100))
        axes.line([0, 5, 10], [0, 50, 100], "ops/s")
        axes.line([0, 2, 4, 6], [10, None, 30, 40], "with a gap")
        axes.band(2, 4, "kill -9", "#ff0000", text="n2")
        axes.band(7, 7, "leader", "#555555")
        return fig

    def test_the_svg_is_well_formed_and_self_contained(self):
        text = self.figure().svg()
        root = ET.fromstring(text)
        self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
        self.assertEqual((root.get("width"), root.get("height")), ("800", "400"))
        self.assertNotIn("<script", text)
        self.assertNotIn("@import", text)
        self.assertNotIn("href", text)   # no external images, fonts or links
        self.assertEqual(root.find("svg:title", NS).text, "a <title> & more")

    def test_points_land_where_the_scales_say(self):
        root = parse(self.figure())
        [line] = points(series(root, "ops/s")[0])
        # x: 0..10 over 100..700 px; y: 0..100 over 250..50 px (up is smaller).
        self.assertEqual(line, [(100.0, 250.0), (400.0, 150.0), (700.0, 50.0)])

    def test_a_missing_value_breaks_the_line(self):
        root = parse(self.figure())
        lines = points(series(root, "with a gap")[0])
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0], [(100.0, 230.0)])
        self.assertEqual(lines[1], [(340.0, 190.0), (460.0, 170.0)])

    def test_bands_cover_their_interval_and_an_instant_stays_visible(self):
        root = parse(self.figure())
        [kill] = bands(root, "kill -9")
        self.assertEqual((float(kill.get("x")), float(kill.get("width"))), (220.0, 120.0))
        self.assertEqual((kill.get("y"), kill.get("height")), ("50", "200"))
        [instant] = bands(root, "leader")
        self.assertEqual(float(instant.get("x")), 520.0)
        self.assertGreaterEqual(float(instant.get("width")), 1.5)
        self.assertIn("n2", [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")])

    def test_ticks_and_axis_labels(self):
        root = parse(self.figure())
        self.assertEqual(ticks(root, "x"), list(range(11)))   # about 8 ticks asked: a step of 1
        self.assertEqual(ticks(root, "y"), [0, 20, 40, 60, 80, 100])
        texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
        self.assertIn("time", texts)
        self.assertIn("ops", texts)

    def test_the_legend_names_every_series_and_band_once(self):
        root = parse(self.figure())
        entries = [(g.get("data-label"), g.get("data-kind")) for g in root.iter("{http://www.w3.org/2000/svg}g")
                   if g.get("class") == "legend-entry"]
        self.assertEqual(entries, [("ops/s", "series"), ("with a gap", "series"), ("kill -9", "band"),
                                   ("leader", "band")])

    def test_without_limits_the_y_axis_starts_at_zero_and_ends_on_a_tick(self):
        fig = svgplot.Figure()
        axes = fig.axes(100, 50, 600, 200, xlim=(0, 1))
        axes.line([0, 1], [30, 97], "s")
        root = parse(fig)
        self.assertEqual(ticks(root, "y"), [0, 20, 40, 60, 80, 100])
        [line] = points(series(root, "s")[0])
        self.assertAlmostEqual(line[1][1], 250 - 200 * 0.97)

    def test_a_series_must_have_as_many_y_values_as_x_values(self):
        axes = svgplot.Figure().axes(0, 0, 10, 10)
        with self.assertRaises(ValueError):
            axes.line([1, 2], [1], "s")


class BenchPictureTests(unittest.TestCase):
    ROWS = ("mode\tclients\tputs_per_s\tp50_ms\tp90_ms\tp99_ms\tp999_ms\terrors\n"
            "plain\t1\t400\t2.4\t3.0\t4.8\t9.0\t0\n"
            "plain\t8\t2500\t3.1\t4.0\t6.2\t12.0\t0\n"
            "plain\t32\t6000\t5.2\t7.0\t11.0\t25.0\t0\n"
            "tls\t1\t300\t3.0\t4.0\t6.0\t11.0\t0\n"
            "tls\t8\t2000\t4.0\t5.0\t8.0\t15.0\t0\n"
            "tls\t32\t4800\t6.5\t9.0\t14.0\t30.0\t2\n")

    def rows(self, text=None):
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write(text or self.ROWS)
        self.addCleanup(os.unlink, f.name)
        return pictures.read_bench_rows(f.name)

    def test_results_are_read_from_the_tsv(self):
        rows = self.rows()
        self.assertEqual(len(rows), 6)
        self.assertEqual(rows[2], {"mode": "plain", "clients": 32, "puts_per_s": 6000.0, "errors": 0,
                                   "p50": 5.2, "p90": 7.0, "p99": 11.0, "p999": 25.0})

    def test_a_malformed_results_file_is_refused(self):
        with self.assertRaises(ValueError):
            self.rows("mode\tclients\tputs_per_s\nplain\t1\n")
        with self.assertRaises(ValueError):
            self.rows("mode\tclients\tputs_per_s\n")
        with self.assertRaises(ValueError):
            self.rows("mode\tclients\tputs_per_s\nplain\tmany\t3\n")

    def test_throughput_and_every_percentile_per_mode(self):
        root = parse(pictures.bench_figure(self.rows()))
        labels = {g.get("data-label") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "series"}
        self.assertEqual(labels, {f"{name} ({mode})" for mode in ("plaintext", "mutual TLS")
                                  for name in ("puts/s", "p50", "p90", "p99", "p99.9")})
        self.assertEqual(sorted(set(ticks(root, "x"))), [1, 8, 32])

    def test_clients_on_a_log_axis_and_latency_on_a_log_axis(self):
        fig = pictures.bench_figure(self.rows())
        tput, lat = fig.axes_list
        [line] = points(series(parse(fig), "puts/s (plaintext)")[0])
        xs = [p[0] for p in line]
        # 8 clients sit at log(8)/log(32) = 0.6 of the way from 1 to 32.
        self.assertAlmostEqual((xs[1] - xs[0]) / (xs[2] - xs[0]), 0.6, places=2)
        x, y, _, yticks = lat.scales()
        self.assertTrue(y.log)
        self.assertEqual(yticks, [2, 5, 10, 20, 50])
        _, ty, _, tticks = tput.scales()
        self.assertEqual(tticks[0], 0)
        self.assertGreaterEqual(tticks[-1], 6000)
        # 6000 puts/s is drawn at 6000 on the scale, not at some other height.
        self.assertAlmostEqual(line[2][1], ty(6000), places=0)

    def test_one_mode_needs_no_suffix(self):
        rows = [r for r in self.rows() if r["mode"] == "plain"]
        root = parse(pictures.bench_figure(rows))
        self.assertTrue(series(root, "puts/s"))
        self.assertTrue(series(root, "p99.9"))


class TimelinePictureTests(unittest.TestCase):
    def test_buckets_count_throughput_and_latency_per_second(self):
        ops = [(0.0, 0.001, True), (0.2, 0.202, True), (0.5, 0.503, True), (0.6, 0.9, False),
               (1.0, 2.5, True)]
        rows = pictures.buckets(ops, 3)
        self.assertEqual(len(rows), 3)
        mid, ok, bad, p50, p99 = rows[0]
        self.assertEqual((mid, ok, bad), (0.5, 3, 1))
        self.assertAlmostEqual(p50, 2.0)
        self.assertAlmostEqual(p99, 3.0)
        self.assertEqual(rows[1][1:], (0, 0, None, None))   # nothing completed in second 1
        self.assertEqual(rows[2][1], 1)
        self.assertAlmostEqual(rows[2][3], 1500.0)

    def test_a_last_bucket_cut_short_by_the_end_is_a_rate_over_the_time_it_covers(self):
        ops = [(t / 10, t / 10 + 0.001, True) for t in range(25)]   # 10 ops/s for 2.5 s
        rows = pictures.buckets(ops, 2.5)
        self.assertEqual([r[1] for r in rows], [10, 10, 10])
        self.assertAlmostEqual(rows[2][0], 2.25)
        # A sliver shorter than half a bucket is left out (its operations are not counted).
        self.assertEqual([r[1] for r in pictures.buckets(ops, 2.2)], [10, 10])

    def test_the_timeline_has_both_panels_every_fault_band_and_a_legend(self):
        ops = [(t / 10, t / 10 + 0.004, True) for t in range(300)]
        events = [{"kind": "leader", "t0": 0.5, "t1": 0.5, "nodes": [1]},   # first seen: before any fault
                  {"kind": "kill", "t0": 3.0, "t1": 4.5, "nodes": [2]},
                  {"kind": "pause", "t0": 10.0, "t1": 11.0, "nodes": [1]},
                  {"kind": "partition", "t0": 15.0, "t1": 18.0, "nodes": [3]},
                  {"kind": "replace", "t0": 20.0, "t1": None, "nodes": [1]},
                  {"kind": "leader", "t0": 4.0, "t1": 4.0, "nodes": []}]
        fig = pictures.timeline_figure(ops, events, 30, note="seed 1")
        root = parse(fig)
        for name in ("ok ops/s", "p50 latency", "p99 latency"):
            self.assertEqual(len(series(root, name)), 1, name)
        for kind in ("kill", "pause", "partition", "replace", "leader"):
            label = pictures.FAULTS[kind][0]
            self.assertEqual(len(bands(root, label)), 4 if kind == "leader" else 2, label)   # in both panels
        legend = {g.get("data-label") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "legend-entry"}
        self.assertTrue({pictures.FAULTS[k][0] for k in pictures.FAULTS} <= legend)
        # The bands' legend in a fixed order (kills first), whatever order the faults came in.
        kinds = [g.get("data-label") for g in root.iter("{http://www.w3.org/2000/svg}g")
                 if g.get("class") == "legend-entry" and g.get("data-kind") == "band"]
        self.assertEqual(kinds, [pictures.FAULTS[k][0] for k in pictures.FAULTS])
        # A replacement's text goes in the second row: it may overlap a kill, pause or partition.
        top = fig.axes_list[0].top
        rows = sorted({float(t.get("y")) - top for t in root.iter("{http://www.w3.org/2000/svg}text")
                       if t.text in ("n1", "n2", "n3") and float(t.get("y")) < top + 40})
        self.assertEqual(rows, [11, 23])   # the kill, pause and partition in row 0; the replacement in row 1
        # A replacement still under way at the end is drawn up to the end of the run.
        replace = bands(root, pictures.FAULTS["replace"][0])[0]
        self.assertEqual(replace.get("data-x1"), "30")
        # The kill band spans 3..4.5 s on an axis of 0..30 s.
        tput = fig.axes_list[0]
        x, _, _, _ = tput.scales()
        kill = bands(root, pictures.FAULTS["kill"][0])[0]
        self.assertAlmostEqual(float(kill.get("x")), x(3.0), places=0)
        self.assertAlmostEqual(float(kill.get("width")), x(4.5) - x(3.0), places=0)
        # 10 operations a second, each 4 ms.
        [line] = points(series(root, "ok ops/s")[0])
        _, y, _, _ = tput.scales()
        self.assertTrue(all(abs(p[1] - y(10)) < 0.1 for p in line))
        _, ly, _, _ = fig.axes_list[1].scales()
        [p50] = points(series(root, "p50 latency")[0])
        self.assertTrue(all(abs(p[1] - ly(4.0)) < 0.1 for p in p50))

    def test_history_lines_become_operations_relative_to_the_origin(self):
        lines = [{"client": 0, "op": "put", "call_ns": 2_000_000_000, "return_ns": 2_004_000_000, "status": "ok"},
                 {"client": 1, "op": "get", "call_ns": 3_000_000_000, "return_ns": 3_500_000_000, "status": "info"}]
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
            f.write('{"client": 2, "call_ns": 4')   # cut off by a killed generator
        self.addCleanup(os.unlink, f.name)
        ops = pictures.ops_from_history(f.name, 1_000_000_000)
        self.assertEqual(len(ops), 2)
        self.assertTrue(math.isclose(ops[0][0], 1.0) and math.isclose(ops[0][1], 1.004) and ops[0][2])
        self.assertFalse(ops[1][2])


if __name__ == "__main__":
    unittest.main()
