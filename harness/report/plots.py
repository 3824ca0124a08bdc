"""Plots for the report: each one a small function from records to a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, so no GUI backend and no
global figure registry); saving a PNG renders with Agg. This module only draws: it groups records
for display and computes error bars with harness.stats, but decides no verdicts and writes no
files. Times are shown in milliseconds; every figure's title says what is shown. Step times and
framework ratios span decades (a 1 ms torch step beside a 20 ms Keras one), so their axes are log. Backend colours
are the backend classes' COLOR (backends.registry); no framework is named here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from backends import registry
from harness.report.ordering import backend_order
from harness.results.records import ComparisonRecord, TimingRecord
from harness.stats import FASTER, SLOWER, PairedRatio, median_ci

T = TypeVar("T")

WIDTH_IN = 11.0
ROW_IN = 0.3  # height of one labelled row
PANEL_EXTRA_IN = 1.3  # title, axis label and ticks of one panel
VERDICT_COLORS = {SLOWER: "#c0392b", FASTER: "#1e8449"}
NEUTRAL_COLOR = "#34495e"
NOISE_COLOR = "#d5d8dc"
TITLE_CHARS = 130  # a wrapped panel title's line length at WIDTH_IN
TITLE_LINE_IN = 0.2  # each further line of a wrapped title
ZOOM_MARGIN = 0.08  # of the shown range, on each side of a zoomed axis
MIN_SPAN_PERCENT = 0.5  # a zoomed axis spans at least this many percentage points
CURVE_PANEL_IN = 4.0
QUESTION_COLUMNS = 2  # question panels side by side
QUESTION_ROW_IN = 0.2  # a row of a question panel (8-point labels)
HALF_WIDTH_LABEL_CHARS = 45  # a longer row label needs the whole width
MARKERS = "os^Dv<>pP*"


def group_by(items: Iterable[T], key: Callable[[T], Hashable]) -> dict[Hashable, list[T]]:
    """Group items by key, keeping the order in which keys first appear."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def step_times(records: Iterable[TimingRecord]) -> list[float]:
    """Per-step times of records measured alike, pooled (median_s where no rounds were kept)."""
    return [t for r in records for t in (r.times_s or (r.median_s,))]


def step_time_figure(timings: Sequence[TimingRecord]) -> Figure:
    """Median per-step time with its 95% CI for each backend, variant and mode, on a log axis.

    One panel per (model, device, threads), two side by side (a model's 40 arms stay about 1,000
    px tall); arms measured alike in several sessions are pooled. Only role "arm" is drawn (the
    A/A and injected copies are controls, shown in question_figure).
    """
    arms = [t for t in timings if t.role == "arm"]
    panels = group_by(arms, lambda t: (t.model, t.device, t.threads))
    backends = backend_order({t.backend for t in arms})
    rows_per_panel = [list(dict.fromkeys((t.mode, t.variant) for t in panel)) for panel in panels.values()]
    columns = min(QUESTION_COLUMNS, len(panels))
    grid = [rows_per_panel[start:start + columns] for start in range(0, len(panels), columns)]
    heights = [max(_panel_height(len(rows), row_in=QUESTION_ROW_IN) for rows in row) for row in grid]
    fig = Figure(figsize=(WIDTH_IN, max(sum(heights) + 0.4, 3.0)), layout="constrained", dpi=100)
    axes = fig.subplots(len(grid), columns, squeeze=False, height_ratios=heights).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, ((model, device, threads), panel), rows in zip(axes, panels.items(), rows_per_panel):
        cells = group_by(panel, lambda t: (t.backend, t.mode, t.variant))
        for index, backend in enumerate(backends):
            offset = (index - (len(backends) - 1) / 2) * 0.22
            for y, (mode, variant) in enumerate(rows):
                if (backend, mode, variant) in cells:
                    _point(ax, step_times(cells[backend, mode, variant]), y + offset, backend_color(backend))
        ax.set_yticks(range(len(rows)), [f"{variant} · {mode}" for mode, variant in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(f"{model} on {device}, {threads} thread{'' if threads == 1 else 's'}", fontsize=10)
        ax.set_xlabel("ms per training step (log scale)", fontsize=8)
        _log_axis(ax)
        ax.tick_params(axis="x", which="both", labelsize=8)
        ax.grid(axis="x", which="both", alpha=0.35)
    fig.legend(handles=[_marker(backend_color(b), b) for b in backends], loc="outside upper center",
               ncols=len(backends), fontsize=9)
    return fig


@dataclass(frozen=True)
class QuestionPanel:
    """One panel of question_figure: its title and its rows, (label, comparison), top to bottom."""

    title: str
    rows: tuple[tuple[str, ComparisonRecord], ...]


def question_figure(panels: Sequence[QuestionPanel]) -> Figure:
    """Change in time per step, (b / a - 1) x 100 %, with its 95% CI: one panel per question, two
    panels side by side (QUESTION_COLUMNS), so that ten questions of eight sessions stay about
    1,500 px tall; one panel a row where a row label is too long for half the width.

    Each panel is zoomed to its own CIs and noise bands, so a 0.5% effect is as legible as a 50%
    one. A vertical line marks 0 (no effect); the grey band around each row is ±noise_floor, its
    session's A/A noise; a black tick marks the known change of a control (expected_ratio).
    """
    longest = max((len(label) for panel in panels for label, _ in panel.rows), default=0)
    columns = min(QUESTION_COLUMNS if longest <= HALF_WIDTH_LABEL_CHARS else 1, len(panels))
    titles = [textwrap.fill(panel.title, TITLE_CHARS // columns) for panel in panels]
    grid = [list(range(start, min(start + columns, len(panels)))) for start in range(0, len(panels), columns)]
    heights = [max(_panel_height(len(panels[i].rows), titles[i].count("\n") + 1, QUESTION_ROW_IN) for i in row)
               for row in grid]
    fig = Figure(figsize=(WIDTH_IN, max(sum(heights) + 0.3, 3.0)), layout="constrained", dpi=100)
    subfigures = fig.subfigures(len(grid), columns, squeeze=False, height_ratios=heights)
    for r, row in enumerate(grid):
        for c, index in enumerate(row):
            _question_panel(subfigures[r, c], titles[index], panels[index])
    known = any(c.expected_ratio is not None for panel in panels for _, c in panel.rows)
    fig.legend(handles=[_marker(VERDICT_COLORS[SLOWER], "slower"), _marker(VERDICT_COLORS[FASTER], "faster"),
                        _marker(NEUTRAL_COLOR, "no detectable difference"),
                        Patch(color=NOISE_COLOR, label="A/A noise floor"),
                        *([Line2D([], [], marker="|", markersize=12, mew=2, linestyle="", color="black",
                                  label="known change (controls)")] if known else [])],
               loc="outside upper center", ncols=5, fontsize=9)
    return fig


def _question_panel(subfigure, title: str, panel: QuestionPanel) -> None:
    ax = subfigure.subplots()
    seen = [0.0]
    for y, (_, c) in enumerate(panel.rows):
        if c.noise_floor:
            floor = c.noise_floor * 100
            ax.fill_betweenx([y - 0.42, y + 0.42], -floor, floor, color=NOISE_COLOR, lw=0)
            seen += [-floor, floor]
        if c.expected_ratio is not None:
            ax.plot((c.expected_ratio - 1) * 100, y, marker="|", markersize=14, mew=2, color="black")
            seen.append((c.expected_ratio - 1) * 100)
        change, low, high = ((value - 1) * 100 for value in (c.ratio, c.ci_low, c.ci_high))
        ax.errorbar(change, y, xerr=[[max(change - low, 0)], [max(high - change, 0)]], fmt="o", capsize=3,
                    markersize=4, color=VERDICT_COLORS.get(c.verdict, NEUTRAL_COLOR))
        seen += [low, high]
    ax.axvline(0.0, color="black", lw=1)
    ax.set_xlim(*_zoomed(seen))
    ax.xaxis.set_major_formatter(FuncFormatter(_signed_percent))
    ax.set_yticks(range(len(panel.rows)), [label for label, _ in panel.rows], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylim(len(panel.rows) - 0.5, -0.5)
    subfigure.suptitle(title, x=0.01, ha="left", fontsize=9)  # the panel's full width: wrapped to it
    ax.set_xlabel("change in time per step (b / a - 1; > 0: b slower)", fontsize=8)
    ax.grid(axis="x", alpha=0.35)


@dataclass(frozen=True)
class HalfWidthCurve:
    """The A/A CI half-width (a fraction, PairedRatio.ci_half_width) one session had reached after
    each of its first k processes, k = 2..n, and the wall time (s) at which process k ended."""

    backend: str
    model: str
    mode: str
    seconds: tuple[float, ...]
    half_widths: tuple[float, ...]


def half_width_figure(curves: Sequence[HalfWidthCurve]) -> Figure:
    """CI half-width reached against wall-clock seconds, one line per session: a panel per mode,
    a colour per backend, a marker per model; log y axis in percent."""
    modes = list(dict.fromkeys(c.mode for c in curves))
    models = list(dict.fromkeys(c.model for c in curves))
    fig = Figure(figsize=(WIDTH_IN, CURVE_PANEL_IN * len(modes)), layout="constrained", dpi=100)
    for ax, mode in zip(fig.subplots(len(modes), 1, squeeze=False)[:, 0], modes):
        shown = [c for c in curves if c.mode == mode]
        for c in shown:
            ax.plot(c.seconds, np.asarray(c.half_widths) * 100, color=backend_color(c.backend), alpha=0.8, lw=1.2,
                    marker=MARKERS[models.index(c.model) % len(MARKERS)], markersize=4)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}%"))
        ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five_percent))
        ax.set_title(f"{mode}: A/A CI half-width after each worker process (one line per session)", loc="left",
                     fontsize=10)
        ax.set_xlabel("seconds since the comparison began (process starts, building and compiling included)")
        ax.set_ylabel("CI half-width (log scale)")
        ax.grid(which="both", alpha=0.3)
        backends = list(dict.fromkeys(c.backend for c in shown))
        handles = [Line2D([], [], color=backend_color(b), label=b) for b in backends]
        if len(models) > 1:
            handles += [Line2D([], [], color=NEUTRAL_COLOR, linestyle="", label=model,
                               marker=MARKERS[models.index(model) % len(MARKERS)]) for model in models]
        ax.legend(handles=handles, loc="upper right", fontsize=9)
    return fig


def ratio_name(reference: str, others: Sequence[str]) -> str:
    """What a framework ratio divides: "torch ÷ tensorflow" (each other backend named once)."""
    named = ", ".join(f"{reference} ÷ {other}" for other in dict.fromkeys(others))
    return named or f"{reference} ÷ each other backend"


def framework_ratio_figure(reference: str, ratios: Sequence[tuple[str, str, PairedRatio]]) -> Figure:
    """Per-step time of `reference` ÷ another backend's with its 95% CI; one row per
    (other backend, labelled setting, ratio), in the order given."""
    others = list(dict.fromkeys(other for other, _, _ in ratios))
    fig = _figure([len(ratios)])
    ax = fig.subplots()
    for y, (_, _, r) in enumerate(ratios):
        ax.errorbar(r.ratio, y, xerr=[[max(r.ratio - r.ci_low, 0)], [max(r.ci_high - r.ratio, 0)]],
                    fmt="o", color=NEUTRAL_COLOR, capsize=3)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(range(len(ratios)), [setting if len(others) == 1 else f"{setting}: {ratio_name(reference, [other])}"
                                       for other, setting, _ in ratios])
    ax.set_ylim(len(ratios) - 0.5, -0.5)
    ax.set_title(f"{ratio_name(reference, others)} time per training step, baseline model (median ratio, 95% CI)")
    other = others[0] if len(others) == 1 else "the other backend"
    ax.set_xlabel(f"ratio, log scale  (< 1: {reference} is faster; > 1: {other} is faster)")
    _log_axis(ax, "×")
    ax.grid(axis="x", which="both", alpha=0.35)
    return fig


def benchmark_figure(benchmarks: Sequence[dict]) -> Figure:
    """Median time of each pytest-benchmark entry with its interquartile range, one panel per group."""
    panels = group_by(benchmarks, lambda b: b.get("group") or "(no group)")
    fig = _figure([len(p) for p in panels.values()])
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[len(p) for p in panels.values()])
    for ax, (group, panel) in zip(axes[:, 0], panels.items()):
        steps = np.array([steps_per_call(b) for b in panel])
        medians = np.array([b["stats"]["median"] for b in panel]) * 1e3 / steps
        q1 = np.array([b["stats"].get("q1", b["stats"]["median"]) for b in panel]) * 1e3 / steps
        q3 = np.array([b["stats"].get("q3", b["stats"]["median"]) for b in panel]) * 1e3 / steps
        backends = [str((b.get("extra_info") or {}).get("backend", "")) for b in panel]
        ax.barh(range(len(panel)), medians, xerr=[np.maximum(medians - q1, 0), np.maximum(q3 - medians, 0)],
                color=[backend_color(backend) for backend in backends], capsize=3)
        legend = [Patch(color=backend_color(backend), label=backend or "(no backend)")
                  for backend in dict.fromkeys(backends)]
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
        ax.set_yticks(range(len(panel)), [b["name"] + (f"  (÷{n} steps per call)" if n > 1 else "")
                                          for b, n in zip(panel, steps)])
        ax.set_ylim(len(panel) - 0.5, -0.5)
        ax.set_title(f"group {group}", loc="left", fontsize=10)  # what bars and whiskers are: the caption
        ax.set_xlabel("ms per training step: median (bar), interquartile range (whisker)")
        ax.grid(axis="x", alpha=0.35)
    return fig


def steps_per_call(bench: dict) -> int:
    """extra_info.steps_per_call of a pytest-benchmark entry (1 without it): a call of Keras's fit runs several."""
    steps = (bench.get("extra_info") or {}).get("steps_per_call", 1)
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else 1


def _log_axis(ax, unit: str = "") -> None:
    """A log x axis with plain-number tick labels (1, 2, 5 times a power of ten): for times or
    ratios that span decades, where a linear axis crowds the small ones near 0."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}{unit}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:.3g}{unit}"
                                               if f"{value:.0e}"[0] in "25" else ""))


def _figure(rows_per_panel: Sequence[int]) -> Figure:
    height = sum(_panel_height(n) for n in rows_per_panel)
    return Figure(figsize=(WIDTH_IN, max(height, 3.0)), layout="constrained", dpi=100)


def _panel_height(rows: int, title_lines: int = 1, row_in: float = ROW_IN) -> float:
    return PANEL_EXTRA_IN + TITLE_LINE_IN * (title_lines - 1) + row_in * max(rows, 1)


def _signed_percent(value: float, _position=None) -> str:
    return "0%" if abs(value) < 1e-9 else f"{value:+.3g}%"


def _two_and_five_percent(value: float, _position=None) -> str:
    """Minor tick labels of a log axis in percent: only 2 and 5 times a power of ten."""
    return f"{value:.3g}%" if f"{value:.0e}"[0] in "25" else ""


def _zoomed(values: Sequence[float]) -> tuple[float, float]:
    """x limits that show every value with a margin, at least MIN_SPAN_PERCENT wide."""
    low, high = min(values), max(values)
    widen = max(MIN_SPAN_PERCENT - (high - low), 0.0) / 2
    low, high = low - widen, high + widen
    margin = ZOOM_MARGIN * (high - low)
    return low - margin, high + margin


def _point(ax, times: Sequence[float], y: float, color: str) -> None:
    median = float(np.median(times))
    low, high = median_ci(times)
    ax.errorbar(median * 1e3, y, xerr=[[max(median - low, 0) * 1e3], [max(high - median, 0) * 1e3]],
                fmt="o", color=color, capsize=3, markersize=5)


def _marker(color: str, label: str) -> Line2D:
    return Line2D([], [], marker="o", linestyle="", color=color, label=label)


def backend_color(backend: str) -> str:
    """The backend class's COLOR; a name the registry does not know (older records) is neutral."""
    cls = registry().get(backend)
    return cls.COLOR if cls is not None else NEUTRAL_COLOR
