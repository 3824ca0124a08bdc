"""The size-sweep section: the step time below which a layer that should be free (Dropout(p=0))
costs more than 1% (and 0.1%) of a training step, per backend and mode.

Reads the per-call records of `harness sweep` (their models are sized presets, "mlp@1024":
harness/timing/size_sweep.py) and arranges: the thresholds in words (Threshold.sentence, as the
command prints them), a log-log plot of the layer's share of a step against step time with the 1%
and 0.1% lines, and the per-size table (folded). Records of unsized models are left to the
per-call section. Nothing here measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.report.plots import MARKERS, backend_color, group_by
from harness.report.render import Block, Fold, Table, VerdictGroup, VerdictLine, ms, save_plot, us
from harness.results.records import PerCallRecord
from harness.timing.size_sweep import SHARES, size_of, thresholds

QUESTION = "Below what step time does one {layer} call cost more than 1% (0.1%) of a training step?"


def sized_records(records: Sequence[PerCallRecord]) -> list[PerCallRecord]:
    return [r for r in records if size_of(r.model) is not None and not r.net_of]


def size_sweep_blocks(records: Sequence[PerCallRecord], out: Path) -> list[Block]:
    """The section's blocks; none unless some backend and mode has records at two sizes or more."""
    sized = sized_records(records)
    found = thresholds(sized)
    if not found:
        return []
    blocks: list[Block] = []
    for layer, rows in group_by(found, lambda t: t.layer).items():
        blocks.append(VerdictGroup(QUESTION.format(layer=layer),
                                   tuple(VerdictLine("", t.sentence, "finding" if t.per_call_low_s > 0 else "")
                                         for t in rows)))
    blocks.append(save_plot("size_sweep", "Share of a training step that one call of the layer costs, against the "
                            "step time, per backend and mode (a point per model size; bars: 95% CI; hollow: the CI "
                            "holds 0, no measurable cost; a cost at or below 0 is not drawn). Below a line, the layer "
                            "costs less than that share.", lambda: share_figure(sized), out))
    blocks.append(Fold("Per-size measurements", (_table(sized),), level=3))
    return blocks


def share_figure(records: Sequence[PerCallRecord]) -> Figure:
    """Per-call share of the step (%, log) against step time (ms, log), a series per backend and mode."""
    figure = Figure(figsize=(9.0, 5.0), layout="constrained")
    ax = figure.add_subplot()
    groups = group_by(sorted(records, key=lambda r: r.step_s), lambda r: (r.backend, r.mode))
    for index, ((backend, mode), rows) in enumerate(groups.items()):
        shown = [r for r in rows if r.per_call_s > 0]  # a cost at or below 0 has no place on a log axis
        if not shown:
            continue
        x = [r.step_s * 1e3 for r in shown]
        y = [100 * r.per_call_s / r.step_s for r in shown]
        low = [max(100 * r.ci_low_s / r.step_s, y_i * 1e-2) for r, y_i in zip(shown, y)]
        high = [100 * r.ci_high_s / r.step_s for r in shown]
        ax.errorbar(x, y, yerr=[[y_i - lo for y_i, lo in zip(y, low)], [hi - y_i for y_i, hi in zip(y, high)]],
                    marker=MARKERS[index % len(MARKERS)], color=backend_color(backend),
                    linestyle="-" if mode == "eager" else "--", capsize=3, label=f"{backend} {mode}")
        for r, x_i, y_i in zip(shown, x, y):
            ax.annotate(str(size_of(r.model)), (x_i, y_i), textcoords="offset points", xytext=(4, 4), fontsize=7)
            if r.ci_low_s <= 0:  # no measurable cost: hollow, its bar cut at the axis (a log axis has no 0)
                ax.plot([x_i], [y_i], marker=MARKERS[index % len(MARKERS)], color=backend_color(backend),
                        markerfacecolor="white", linestyle="none", zorder=3)
    for share in SHARES:
        ax.axhline(100 * share, color="#7f8c8d", linewidth=0.8, linestyle=":")
        ax.annotate(f"{100 * share:g}% of the step", (1.0, 100 * share), xycoords=("axes fraction", "data"),
                    xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=8, color="#7f8c8d")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers: mathtext is off (render.save_plot)
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
        axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:.3g}" if f"{value:.0e}"[0] in "25" else ""))
    ax.set_xlabel("training step time (ms, log)")
    ax.set_ylabel("one call's share of the step (%, log)")
    ax.set_title("When does a free layer stop mattering? (labels: model size)")
    ax.legend(fontsize=8)
    return figure


def _table(records: Sequence[PerCallRecord]) -> Table:
    rows = tuple((r.backend, r.mode, r.model, r.layer, ms(r.step_s), us(r.per_call_s),
                  f"{us(r.ci_low_s)} – {us(r.ci_high_s)}", f"{100 * r.fraction_of_step:.2f}%", str(r.processes))
                 for r in sorted(records, key=lambda r: (r.backend, r.mode, size_of(r.model))))
    return Table(("backend", "mode", "model", "layer", "step ms", "per call µs", "95% CI µs", "share", "processes"),
                 rows)
