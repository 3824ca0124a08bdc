"""The cross-machine section of a merged report: which machines, and the same question answered on each.

A merged report reads each run folder, and each machine of a Ray run, as its own RunFolder
(harness/report/reading.py: read_run_folders); every comparison in it was made within one
machine's session. This section never compares timings across machines: it lays each machine's
own answer side by side (a ratio with its CI, a per-call cost with its CI). Controls with a known
answer (calibration's A/A and injected comparisons, the busy-wait layer) are left to each
machine's own calibration section.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.report.reading import RunFolder
from harness.report.render import Block, Heading, Table, Text
from harness.results.records import ComparisonRecord, PerCallRecord
from harness.suite.questions import TIMING_QUESTIONS

QUESTION_TEXT = {q.key: q.text for q in TIMING_QUESTIONS}


def machine_names(runs: Sequence[RunFolder]) -> list[str]:
    """One distinct name per RunFolder: its machine (host, and Ray node where there is one; for a
    run folder from before hosts were recorded, the folder's name), with the run folder's name
    added where two share a machine name; runs all made on one machine: their folders' names."""
    if one_machine(runs):
        return [run.folder.name for run in runs]
    names = [run.machine or str((run.environment or {}).get("host") or run.folder.name) for run in runs]
    return [f"{name} ({run.folder.name})" if names.count(name) > 1 else name for name, run in zip(names, runs)]


def one_machine(runs: Sequence[RunFolder]) -> bool:
    """Whether every run folder says it ran on the same machine (host, CPU model, cores, GPU): say,
    a timing run, a study and a sweep that together make one machine's reference."""
    def identity(run: RunFolder):
        env = run.environment or {}
        return (run.machine or env.get("host"), env.get("cpu_model"), env.get("available_cores"),
                _gpu_text(env.get("gpu")))

    identities = {identity(run) for run in runs}
    return len(runs) > 1 and len(identities) == 1 and None not in next(iter(identities))[:2]


def machines_blocks(runs: Sequence[RunFolder], names: Sequence[str]) -> list[Block]:
    same = one_machine(runs)
    if same:
        blocks: list[Block] = [Heading("Runs"), Text(
            "This report merges the runs below, all made on one machine. Each comparison was made within one "
            "run's session; the table after this one puts the runs' answers side by side: where two runs asked "
            "the same question, a check that the answer reproduces."), _machine_table(runs, names, "run")]
    else:
        blocks = [Heading("Machines"), Text(
            "This report merges the runs below. Each comparison was made within one machine's session; the table "
            "after this one only puts each machine's own answers side by side."), _machine_table(runs, names)]
    answers = _answers(runs)
    blocks.append(Heading("Same question, per run" if same else "Same question, per machine"))
    if not answers:
        blocks.append(Text(f"No timing comparison or per-call cost was measured in these "
                           f"{'runs' if same else 'machines'}.", "missing"))
        return blocks
    rows = tuple((question, *(answers[question].get(i, "not measured") for i in range(len(runs))))
                 for question in sorted(answers))
    blocks.append(Table(("question (backend, model, device, mode)", *names), rows))
    return blocks


def _machine_table(runs: Sequence[RunFolder], names: Sequence[str], first: str = "machine") -> Table:
    rows = []
    for name, run in zip(names, runs):
        env = run.environment or {}
        frameworks = ", ".join(f"{k} {v}" for k, v in sorted((env.get("frameworks") or {}).items()))
        rows.append((name, str(run.folder), str(env.get("cpu_model") or "?"),
                     str(env.get("available_cores") or env.get("logical_cores") or "?"),
                     _gpu_text(env.get("gpu")), frameworks or "?", str(run.cases_ok)))
    return Table((first, "run folder", "CPU", "cores", "GPU", "frameworks", "cases ok"), tuple(rows))


def _gpu_text(gpu) -> str:
    if isinstance(gpu, list):
        return ", ".join(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpu) or "none"
    return str(gpu or "none")


def _answers(runs: Sequence[RunFolder]) -> dict[str, dict[int, str]]:
    """{question row: {run index: that machine's answer}}; several answers of one machine (more
    than one session asked it) are all shown, in file order."""
    found: dict[str, dict[int, list[str]]] = {}
    for index, run in enumerate(runs):
        for c in run.of(ComparisonRecord):
            if c.question and c.expected_ratio is None:  # the timing questions' answers, controls aside
                text = QUESTION_TEXT.get(c.question, c.question)
                key = f"{text} ratio ({c.backend}, {c.model}, {c.device}, {c.mode})"
                found.setdefault(key, {}).setdefault(index, []).append(
                    f"{c.ratio:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]")
        for p in run.of(PerCallRecord):
            if p.expected_per_call_s is None:
                net = f" net of {p.net_of}" if p.net_of else ""
                key = f"per-call cost of {p.layer}{net} ({p.backend}, {p.model}, {p.device}, {p.mode})"
                found.setdefault(key, {}).setdefault(index, []).append(
                    f"{p.per_call_s * 1e6:.2f} µs [{p.ci_low_s * 1e6:.2f}, {p.ci_high_s * 1e6:.2f}]")
    return {key: {i: "; ".join(texts) for i, texts in per_run.items()} for key, per_run in found.items()}
