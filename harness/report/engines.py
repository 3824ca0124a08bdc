"""The engine question: what Keras adds over the engine it runs on; and the backends against the reference.

Keras 3 runs on an engine (torch, JAX, TensorFlow); a backend class that is Keras names its engine
in KERAS_ENGINE (harness.report.ordering pairs them). The engine question compares each such
pair per model, device, mode and threads: Keras[engine]'s baseline step against the engine's
own, an unpaired ratio with Welch's CI over the two sides' worker processes
(harness.timing.controls.framework_comparisons, as a user's model pair is compared), the arms
measured in several sessions pooled (controls.pooled_arm). `framework_table` puts the reference
against every other backend in one table.

Constraints: reads records, decides nothing beyond what framework_comparisons and the record's
verdict say, and writes no backend name: the pairs come from the registry's KERAS_ENGINE. A run
without both sides of a pair gets no section. Tables list backends in ordering.backend_order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import harness.report.plots as plots
from harness.model.variants import BASELINE
from harness.report.ordering import backend_order, keras_engines, keras_label
from harness.report.reading import RunFolder
from harness.report.render import Block, Heading, Table, Text
from harness.report.verdicts import FrameworkRatio
from harness.results.records import ComparisonRecord, TimingRecord
from harness.suite.questions import ENGINE_QUESTION
from harness.timing.controls import framework_comparisons, pooled_arm


def engine_comparisons(run: RunFolder) -> list[ComparisonRecord]:
    """Per Keras backend and (model, device, mode, threads) where both it and its engine timed the
    baseline: Keras[engine] ÷ engine per step (b = the Keras side), question ENGINE_QUESTION.key."""
    arms = [t for t in run.of(TimingRecord) if t.role == "arm" and t.variant == BASELINE and t.times_s]
    by_setting = plots.group_by(arms, lambda t: (t.model, t.device, t.mode, t.threads))
    found = []
    for keras, engine in keras_engines().items():
        for group in by_setting.values():
            sides = plots.group_by(group, lambda t: t.backend)
            if keras not in sides or engine not in sides:
                continue
            a, b = (replace(pooled_arm(sides[name]), arm=keras_label(name)) for name in (engine, keras))
            found += [replace(c, backend=keras, question=ENGINE_QUESTION.key) for c in framework_comparisons([a, b])]
    return found


def engine_blocks(comparisons: Sequence[ComparisonRecord],
                  cell: Callable[[ComparisonRecord], tuple[str, str]]) -> list[Block]:
    """The engine question's section: a row per Keras backend, a column per model / mode (device
    and threads where they vary), each cell the change in time per step and its 95% CI (`cell`,
    the answers table's); nothing without comparisons."""
    if not comparisons:
        return []
    columns = list(dict.fromkeys((c.model, c.device, c.mode, c.threads) for c in comparisons))
    show_device = len({c[1] for c in columns}) > 1
    show_threads = len({c[3] for c in columns}) > 1
    labels = [" ".join([model, *([device] if show_device else []), mode, *([f"{threads} thr"] if show_threads
                                                                          else [])])
              for model, device, mode, threads in columns]
    cells = {(c.backend, (c.model, c.device, c.mode, c.threads)): cell(c) for c in comparisons}
    rows, tones = [], []
    for keras in backend_order({c.backend for c in comparisons}):
        said = [cells.get((keras, column), ("—", "missing")) for column in columns]
        rows.append((f"{keras_label(keras)} vs {keras_engines()[keras]}", *(text for text, _ in said)))
        tones.append(("", *(tone for _, tone in said)))
    return [Heading(ENGINE_QUESTION.text),
            Table(("Keras vs its engine (b vs a)", *labels), tuple(rows), cell_tones=tuple(tones)),
            Text("Each cell: the change in time per baseline training step when Keras on the engine replaces the "
                 "engine's own step, and its 95% CI. Each side ran in its own worker processes, so the ratio is "
                 "unpaired (Welch's t over the two sides' processes) and no A/A floor applies.")]


def framework_table(reference: str, ratios: Sequence[FrameworkRatio]) -> list[Block]:
    """The reference against every other backend (harness.report.verdicts.FrameworkRatio: the
    reference's baseline step ÷ the other's, unpaired) as one table: a row per other backend in
    backend_order, a column per setting, each cell how many times the reference's step time the
    other backend takes ("×11.2" = 11.2 times as long), with its 95% CI."""
    if not ratios:
        return []
    settings = list(dict.fromkeys(r.setting for r in ratios))
    cells = {(r.other, r.setting): r.ratio for r in ratios}
    rows = []
    for other in backend_order({r.other for r in ratios}):
        row = [f"{keras_label(other)} ÷ {reference}"]
        for setting in settings:
            pr = cells.get((other, setting))
            row.append(f"×{1 / pr.ratio:.3g} [{1 / pr.ci_high:.3g}, {1 / pr.ci_low:.3g}]" if pr else "—")
        rows.append(tuple(row))
    return [Text(f"Time per baseline training step against {reference}'s (each backend in its own processes, so "
                 "unpaired, 95% CI; ×2 = twice as long):"),
            Table(("backend", *settings), tuple(rows))]
