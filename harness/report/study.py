"""The study section: what regularization did to training, from a study run's records.

The claims ledger comes first (harness.study.ledger: one row per claim and (data, model), a
column pair per backend: the paired-by-seed effect with its 95% CI, and the verdict), then each
claim in words, the cross-framework agreement of the final validation accuracy, and three plots:
accuracy curves per variant, per-layer weight constancy (no regularization against L2, one panel
per tolerance) and BatchNorm's variance shift against the dropout rate before it, with 1/(1-p).
Only the ledger and the variance-shift plot are open; the rest are folds. A ledger verdict whose
words would mislead gets a caveat in its cell (see `caveat`). A run folder without study records
gets no section (study_blocks returns no block); a part without data is left out.

Constraints: numbers and verdicts are harness.study.ledger's (a caveat adds words, never a number);
this module arranges blocks and draws the figures (matplotlib Figure, no pyplot), saved under the report folder by
render.save_plot. It measures nothing, and no backend name is written into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

import harness.report.plots as plots
from harness.report.ordering import backend_order
from harness.report.plots import backend_color
from harness.report.reading import RunFolder
from harness.report.render import Block, Fold, Heading, Table, Text, VerdictGroup, VerdictLine, save_plot
from harness.results.records import BNVarianceShiftRecord, StudyEpochRecord, StudyRunRecord
from harness.study.ledger import (
    CLAIMS,
    CONTRADICTED,
    DIFFER,
    IDENTICAL,
    L2,
    NONE,
    PP,
    STUDY_VARIANTS,
    SUPPORTED,
    TOO_FEW_SEEDS,
    Agreement,
    ClaimResult,
    agreement,
    kernel_layers,
    ledger,
    numbers,
)

CURVE_ROW_IN = 2.1
CONSTANCY_ROW_IN = 3.0
SHIFT_IN = 4.5
CURVE_LW, CURVE_LW_STEP = 3.2, 2.0  # the first backend's curves widest, so another's on top leave it visible
CURVE_MARKS = 6  # about this many markers per curve: a marker shape per backend (filled, then hollow)
_MEASURE = {claim.text: claim.measure for claim in CLAIMS}
_NAMES = {NONE: "none", L2: "L2"}


def study_blocks(run: RunFolder, out: Path) -> list[Block]:
    """The study section of a run report (no block without study records); plots are saved under `out`."""
    epochs, runs, shifts = run.of(StudyEpochRecord), run.of(StudyRunRecord), run.of(BNVarianceShiftRecord)
    records = (*epochs, *runs, *shifts)
    if not records:
        return []
    rows, agreements = ledger(records), agreement(records)
    constancy = [r for r in epochs if r.variant in (NONE, L2) and r.constancy]
    wanted = [
        ("study_curves", ("Accuracy per epoch, train (solid) and validation (dashed): mean over seeds, band from "
                          "the lowest to the highest seed; one panel per variant and data set / model, a colour per "
                          "backend, a marker per backend (the first wide, faint and filled, the next narrow and "
                          "hollow on top: where they coincide, both show)"),
         epochs, lambda: curves_figure(epochs)),
        ("study_constancy", ("Percentage of each kernel layer's weights constant between epochs (|Δw| ≤ t·|w|), "
                             f"mean over epochs and seeds: {NONE} (solid) against {L2} (dashed), a colour per "
                             "backend, a panel per tolerance t"),
         constancy, lambda: constancy_figure(constancy)),
        ("study_bn_shift", ("BatchNorm's variance shift (running variance ÷ evaluation-mode input variance, median "
                            "over channels) against the rate of the dropout right before it: a point per seed and BN "
                            "layer, a colour per backend; black: 1/(1-p)"), shifts, lambda: bn_shift_figure(shifts)),
    ]
    trained = _variants([*epochs, *runs])
    blocks: list[Block] = [Heading("Study: what regularization does to training"), Text(_how_to_read(rows, trained))]
    if rows:
        blocks += [Heading("Claims ledger", 3), _ledger_table(rows, records),
                   Fold("Each claim in words", tuple(_claim_groups(rows, records)), level=3)]
    if agreements:
        blocks.append(Fold("Cross-framework agreement (final validation accuracy)",
                           (_agreement_table(agreements),), level=3))
    plotted = [(name, caption, make) for name, caption, data, make in wanted if data]
    for name, caption, make in plotted:
        image = save_plot(name, caption, make, out)
        blocks.append(image if name == "study_bn_shift" else Fold(f"Study plot: {caption.split(':')[0]}", (image,), 3))
    return blocks


def _how_to_read(rows: Sequence[ClaimResult], variants: Sequence[str]) -> str:
    """How the ledger is computed; `variants`: those this run trained (not every variant a study may hold)."""
    tested = [r for r in rows if r.label != TOO_FEW_SEEDS]
    return (
        "A seed fixes the initial weights and the batch order, the same in every variant and backend (dropout masks "
        "differ), so each effect is the mean over seeds of a per-seed difference between two variants of one "
        "backend, measured on the weights training ended with (after an early stop, the restored ones), with a 95% "
        "Student-t CI over seeds (the variance shift is a ratio itself: its mean over seeds, against 1). "
        f"\"{SUPPORTED}\" needs a CI that excludes no effect in the claimed direction, "
        f"\"{CONTRADICTED}\" one that excludes it the other way; otherwise the claim is not detectable, with the "
        f"largest effect the data still allow. {PP}: percentage points. Variants: "
        f"{'; '.join(variants)}. This ledger tests {len(tested)} claim rows at 95% confidence, so about "
        f"{0.05 * len(tested):.0f} of them may be supported or contradicted by chance."
    )


def _row_tone(results: Sequence[ClaimResult]) -> str:
    labels = {r.label for r in results}
    return "bad" if CONTRADICTED in labels else "good" if labels == {SUPPORTED} else ""


def _ledger_table(rows: Sequence[ClaimResult], records: Sequence) -> Table:
    backends = backend_order({r.backend for r in rows})
    cells = plots.group_by(rows, lambda r: (r.data, r.model, r.claim))
    table, tones = [], []
    for (data, model, claim), results in cells.items():
        by_backend = {r.backend: r for r in results}
        caveats = {b: caveat(r, records) for b, r in by_backend.items()}
        table.append((f"{data} / {model}", claim, _MEASURE[claim],
                      *(cell for b in backends for cell in _effect_cells(by_backend.get(b), caveats.get(b)))))
        tones.append("" if any(caveats.values()) else _row_tone(results))
    headers = ("data / model", "claim", "effect measured", *(f"{b} {part}" for b in backends
                                                            for part in ("effect (95% CI)", "verdict")))
    return Table(headers, tuple(table), tuple(tones))


def _effect_cells(result: ClaimResult | None, said: Caveat | None = None) -> tuple[str, str]:
    if result is None:
        return "—", "not run"
    if said is None:
        verdict = result.verdict
    else:
        verdict = said.text if said.replaces_verdict else f"{result.verdict}: {said.text}"
    return numbers(result.effect, result.ci_low, result.ci_high, result.seeds, result.unit), verdict


@dataclass(frozen=True)
class Caveat:
    """Words a ledger verdict needs beside it, or instead of it (replaces_verdict)."""

    text: str
    replaces_verdict: bool = False


def caveat(result: ClaimResult, records: Sequence) -> Caveat | None:
    """What a ledger verdict does not say, where its words would mislead (None where they do not):
    - a variance shift "supported" (a CI above 1) for a claim that names 1/(1-p), whose CI excludes
      1/(1-p): the words become "a shift, yes; by 1/(1-p), no" (instead of the verdict's);
    - an early stopping claim where early stopping never stopped a run: not tested;
    - Dropout(p=0)'s "identical in every seed" beside a variance shift that is not 1: the shift is
      BN's own, the same without the layer (training was identical), not a change."""
    mine = [r for r in records if (getattr(r, "backend", None), getattr(r, "data", None), getattr(r, "model", None))
            == (result.backend, result.data, result.model)]
    if "1/(1-p)" in result.claim and result.ci_low is not None and result.ci_high is not None:
        rates = sorted({r.dropout_rate for r in mine if isinstance(r, BNVarianceShiftRecord) and r.dropout_rate > 0})
        outside = [p for p in rates if not result.ci_low <= 1 / (1 - p) <= result.ci_high]
        if outside:
            predicted = ", ".join(f"{1 / (1 - p):.3g}" for p in outside)
            return Caveat(f"a shift, yes (CI above 1); by 1/(1-p) = {predicted}, no: the CI excludes {predicted} "
                          "(BN's input follows a ReLU, not zero-mean)", replaces_verdict=True)
    if "Early stopping" in result.claim:
        stopping = [r for r in mine if isinstance(r, StudyRunRecord) and r.early_stopping]
        if stopping and all(r.stopped_epoch is None for r in stopping):
            return Caveat(f"not tested: early stopping never stopped any of the {len(stopping)} runs, so the two "
                          "variants trained alike (\"identical\" says nothing about early stopping)",
                          replaces_verdict=True)
    if "Dropout(p=0)" in result.claim and result.label == IDENTICAL:
        shifts = [r.shift for r in mine if isinstance(r, BNVarianceShiftRecord) and r.dropout_rate == 0]
        if shifts:
            return Caveat(f"the layer drops nothing, so training was the same with or without it; BN's variance "
                          f"shift at p = 0 is {np.mean(shifts):.3f}, BN's own (its running average against its "
                          "evaluation input), not a change the layer makes")
    return None


def _claim_groups(rows: Sequence[ClaimResult], records: Sequence) -> list[VerdictGroup]:
    groups = plots.group_by(rows, lambda r: (r.claim, r.data, r.model))
    return [VerdictGroup(f"Claim: {claim} ({data} / {model})",
                         tuple(_claim_line(r, caveat(r, records)) for r in results))
            for (claim, data, model), results in groups.items()]


def _claim_line(result: ClaimResult, said: Caveat | None) -> VerdictLine:
    """A ledger row in words; with its caveat (then not coloured as supported)."""
    if said is None:
        return VerdictLine(result.backend, result.sentence, _row_tone([result]))
    return VerdictLine(result.backend, f"{result.sentence} But: {said.text}.", "")


def _agreement_table(found: Sequence[Agreement]) -> Table:
    return Table(
        ("data / model", "variant", "final val accuracy, difference", "verdict"),
        tuple((f"{a.data} / {a.model}", a.variant,
               f"{a.reference} − {a.other}: {numbers(a.effect, a.ci_low, a.ci_high, a.seeds, PP)}", a.verdict)
              for a in found),
        tuple("finding" if a.label == DIFFER else "missing" if a.label == TOO_FEW_SEEDS else "good" for a in found),
    )


def _variants(records: Sequence[StudyEpochRecord]) -> list[str]:
    present = dict.fromkeys(r.variant for r in records)
    return [v for v in STUDY_VARIANTS if v in present] + [v for v in present if v not in STUDY_VARIANTS]


def _marker(index: int) -> str:
    return plots.MARKERS[index % len(plots.MARKERS)]


def _line_width(index: int) -> float:
    """The index-th backend's line width: the first widest, so that another's on top leaves it visible."""
    return max(CURVE_LW - CURVE_LW_STEP * index, 1.0)


def _backend_lines(backends: Sequence[str], marked: bool = False) -> list[Line2D]:
    """Legend entries: a backend's colour and line width; `marked` (where markers stand for
    backends, not for a variant or a data set): its marker too, filled for the first, then hollow."""
    return [Line2D([], [], color=backend_color(b), lw=_line_width(i), alpha=0.55 if i == 0 else 1.0, label=b,
                   **({"marker": _marker(i), "markerfacecolor": backend_color(b) if i == 0 else "white"}
                      if marked else {}))
            for i, b in enumerate(backends)]


def curves_figure(epochs: Sequence[StudyEpochRecord]) -> Figure:
    """Train and validation accuracy against epochs trained: a row per variant, a column per (data,
    model); per backend and split the mean over seeds, with a band from the lowest to the highest."""
    settings = list(dict.fromkeys((r.data, r.model) for r in epochs))
    variants, backends = _variants(epochs), backend_order({r.backend for r in epochs})
    cells = plots.group_by(epochs, lambda r: (r.data, r.model, r.variant, r.backend))
    fig = Figure(figsize=(plots.WIDTH_IN, CURVE_ROW_IN * len(variants) + 0.6), layout="constrained", dpi=100)
    axes = fig.subplots(len(variants), len(settings), squeeze=False)
    for row, variant in enumerate(variants):
        for col, (data, model) in enumerate(settings):
            ax = axes[row, col]
            if not any((data, model, variant, b) in cells for b in backends):  # a variant this target did not train
                ax.axis("off")
                ax.text(0.5, 0.5, f"{data} / {model}: {variant}\nnot trained on this data set and model",
                        ha="center", va="center", fontsize=8, color=plots.NEUTRAL_COLOR, transform=ax.transAxes)
                continue
            for index, backend in enumerate(backends):
                by_epoch = plots.group_by(cells.get((data, model, variant, backend), []), lambda r: r.epoch)
                x, color = np.array(sorted(by_epoch)) + 1, backend_color(backend)
                width = _line_width(index)  # a wide line under a narrow one: both show
                every = max(len(x) // CURVE_MARKS, 1)  # each backend's markers on other epochs than the last's
                marks = {"marker": _marker(index), "markevery": (index % every, every), "markersize": 4.5,
                         "markerfacecolor": color if index == 0 else "white"}
                for split, style in (("train", "-"), ("val", "--")):
                    acc = [np.array([getattr(r, f"{split}_acc") for r in by_epoch[e]]) for e in sorted(by_epoch)]
                    ax.plot(x, [a.mean() for a in acc], style, color=color, lw=width, alpha=0.55 if index == 0 else 1.0,
                            **marks)
                    ax.fill_between(x, [a.min() for a in acc], [a.max() for a in acc], color=color, alpha=0.15, lw=0)
            ax.set_title(f"{data} / {model}: {variant}", loc="left", fontsize=9)
            ax.set_ylabel("accuracy")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epochs trained")  # (a panel turned off shows no label)
    fig.legend(handles=[*_backend_lines(backends, marked=True),
                        Line2D([], [], color=plots.NEUTRAL_COLOR, label="train"),
                        Line2D([], [], color=plots.NEUTRAL_COLOR, linestyle="--", label="validation")],
               loc="outside upper center", ncols=len(backends) + 2, fontsize=9)
    return fig


def constancy_figure(epochs: Sequence[StudyEpochRecord]) -> Figure:
    """Per kernel layer, the percentage of its weights constant between epochs (mean over every epoch
    and seed) of NONE (solid) and L2 (dashed) per backend: a row per (data, model), a column per
    tolerance; the first backend's lines wide and faint under the next's (they often coincide)."""
    settings = plots.group_by(epochs, lambda r: (r.data, r.model))
    tolerances = sorted({t for r in epochs for by_tolerance in r.constancy.values() for t in by_tolerance}, key=float)
    backends = backend_order({r.backend for r in epochs})
    fig = Figure(figsize=(plots.WIDTH_IN, CONSTANCY_ROW_IN * len(settings) + 0.6), layout="constrained", dpi=100)
    axes = fig.subplots(len(settings), len(tolerances), squeeze=False, sharey=True)
    for row, ((data, model), records) in enumerate(settings.items()):
        layers = kernel_layers(records)
        lines = plots.group_by(records, lambda r: (r.backend, r.variant))
        for col, tolerance in enumerate(tolerances):
            ax = axes[row, col]
            for (backend, variant), shown in sorted(lines.items(), key=lambda item: backends.index(item[0][0])):
                percent = [100 * np.mean([r.constancy[layer][tolerance] for r in shown]) for layer in layers]
                index = backends.index(backend)  # the first backend wide and faint, so that both show
                ax.plot(range(len(layers)), percent, "-o" if variant == NONE else "--s", color=backend_color(backend),
                        markersize=4, lw=_line_width(index), alpha=0.55 if index == 0 else 1.0)
            ax.set_xticks(range(len(layers)), layers, fontsize=8)
            ax.set_title(f"{data} / {model}: " + ("exactly unchanged" if float(tolerance) == 0 else f"t = {tolerance}"),
                         loc="left", fontsize=9)
            ax.set_xlabel("kernel layer")
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel("% of weights constant")
    fig.legend(handles=[*_backend_lines(backends),
                        Line2D([], [], color=plots.NEUTRAL_COLOR, marker="o", label=_NAMES[NONE]),
                        Line2D([], [], color=plots.NEUTRAL_COLOR, marker="s", linestyle="--", label=_NAMES[L2])],
               loc="outside upper center", ncols=len(backends) + 2, fontsize=9)
    return fig


def bn_shift_figure(shifts: Sequence[BNVarianceShiftRecord]) -> Figure:
    """Variance shift against dropout rate: a point per record (seed and layer), a colour per backend
    (side by side), a marker per (data, model), and the 1/(1-p) of zero-mean inputs."""
    backends = backend_order({r.backend for r in shifts})
    settings = list(dict.fromkeys((r.data, r.model) for r in shifts))
    fig = Figure(figsize=(plots.WIDTH_IN, SHIFT_IN), layout="constrained", dpi=100)
    ax = fig.subplots()
    for (backend, data, model), shown in plots.group_by(shifts, lambda r: (r.backend, r.data, r.model)).items():
        offset = (backends.index(backend) - (len(backends) - 1) / 2) * 0.01
        ax.plot([r.dropout_rate + offset for r in shown], [r.shift for r in shown], linestyle="", alpha=0.75,
                marker=_marker(settings.index((data, model))), color=backend_color(backend))
    p = np.linspace(0.0, min(max(r.dropout_rate for r in shifts) + 0.1, 0.9), 200)
    ax.plot(p, 1 / (1 - p), color="black", lw=1)
    ax.axhline(1.0, color=plots.NOISE_COLOR, lw=1)
    ax.set_xlabel("rate p of the dropout right before BatchNorm (backends side by side)")
    ax.set_ylabel("running var ÷ eval input var")
    ax.set_title("BatchNorm's variance shift after training (median over channels)", loc="left", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles=[*_backend_lines(backends), Line2D([], [], color="black", label="1/(1-p)"),
                       *(Line2D([], [], color=plots.NEUTRAL_COLOR, linestyle="", marker=_marker(i),
                                label=f"{data} / {model}")
                         for i, (data, model) in enumerate(settings))],
              loc="upper left", fontsize=9)
    return fig
