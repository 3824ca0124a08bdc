"""Turn a run folder, or pytest-benchmark JSON files, into report.md and a self-contained index.html.

A run folder holds results.jsonl (harness.records, one record per line) and environment.json.
The report leads with one plain sentence per question (harness.questions), each with its number
and CI; a question without data says "not measured in this run" rather than disappearing. Then
come the plots (harness.plots), one table per record kind, the cases that are missing, and the
environment.

Constraints: this module reads records and never measures. index.html embeds its PNGs as data
URIs and its CSS inline, so it opens offline; every text put into it goes through html.escape.
Bad input raises HarnessInputError naming the path. A run killed mid-write leaves a truncated last
line: that line is skipped with a warning in the report, while a corrupt line elsewhere is fatal.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import plots
from harness.errors import HarnessInputError
from harness.questions import GRAPH_QUESTIONS, INJECTED_SLOWDOWN, TIMING_QUESTIONS, Question
from harness.records import (
    RECORD_TYPES,
    SCHEMA_VERSION,
    CaseRecord,
    ComparisonRecord,
    InspectRecord,
    ParityRecord,
    Record,
    TimingRecord,
    from_dict,
    read_jsonl,
)
from harness.stats import FASTER, SLOWER, PairedRatio, unpaired_ratio, verdict

RESULTS = "results.jsonl"
ENVIRONMENT = "environment.json"
MARKDOWN = "report.md"
HTML = "index.html"
PLOT_DIR = "plots"
AA_CONTROL = "aa_control"
INJECTED_CONTROL = "injected_control"
NOT_MEASURED = "Not measured in this run."
MAX_LISTED_FAILURES = 10
MAX_CELL_CHARS = 300
LONG_CELL_CHARS = 40  # longer cells may wrap in HTML; shorter ones (numbers, CIs) do not
_COMPARISON_ORDER = [q.key for q in TIMING_QUESTIONS] + [AA_CONTROL, INJECTED_CONTROL, ""]


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]


# ---- the document: blocks that render to both Markdown and HTML --------------------------------
# A tone colours a line or table row in HTML: "good", "bad", "finding" (an effect), "missing".


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str
    tone: str = ""


@dataclass(frozen=True)
class VerdictLine:
    where: str
    sentence: str
    tone: str = ""


@dataclass(frozen=True)
class VerdictGroup:
    question: str
    lines: tuple[VerdictLine, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    tones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str


Block = Heading | Text | VerdictGroup | Table | Image


# ---- reading a run folder -----------------------------------------------------------------------


@dataclass(frozen=True)
class MissingCase:
    case_id: str
    status: str
    error: str
    command: str
    records_left_out: int


@dataclass(frozen=True)
class Run:
    folder: Path
    timings: tuple[TimingRecord, ...]
    comparisons: tuple[ComparisonRecord, ...]
    inspections: tuple[InspectRecord, ...]
    parity: tuple[ParityRecord, ...]
    cases_ok: int
    missing: tuple[MissingCase, ...]
    has_case_records: bool
    environment: dict[str, Any] | None
    warnings: tuple[str, ...]

    @property
    def several_thread_counts(self) -> bool:
        return len({r.threads for r in (*self.timings, *self.comparisons)}) > 1


def build_report(inputs: Sequence[Path], out_dir: Path | None = None) -> ReportPaths:
    """Write report.md, index.html and the plot PNGs for one run folder or pytest-benchmark files.

    out_dir defaults to the run folder, or to the folder of the first benchmark file.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise HarnessInputError("report: no input given (a run folder or pytest-benchmark JSON files)")
    for path in paths:
        if not path.exists():
            raise HarnessInputError(f"{path}: no such file or folder")
    if paths[0].is_dir():
        if len(paths) > 1:
            raise HarnessInputError(f"{paths[1]}: give one run folder, or only pytest-benchmark JSON files")
        run = load_run(paths[0])
        out = Path(out_dir) if out_dir else run.folder
        title, blocks = f"Cross-framework run report: {run.folder.name}", _run_blocks(run, out)
    else:
        benchmarks = [(path, load_benchmark_json(path)) for path in paths]
        out = Path(out_dir) if out_dir else paths[0].parent
        title, blocks = "pytest-benchmark report", _benchmark_blocks(benchmarks, out)
    markdown, page = out / MARKDOWN, out / HTML
    markdown.write_text(_markdown(blocks, out), encoding="utf-8")
    page.write_text(_html(title, blocks), encoding="utf-8")
    return ReportPaths(markdown, page, tuple(b.path for b in blocks if isinstance(b, Image)))


def load_run(folder: Path) -> Run:
    """Read a run folder; keep each case's records only when its latest attempt ended ok."""
    results = folder / RESULTS
    if not results.is_file():
        raise HarnessInputError(f"{folder}: no {RESULTS} here (is it a run folder?)")
    raws, warnings = _read_results(results)
    if not raws:
        raise HarnessInputError(f"{results}: no complete records in this file")
    entries = []
    for index, raw in enumerate(raws, start=1):
        if raw.get("kind") not in RECORD_TYPES:
            warnings.append(f"{results}: record {index} has unknown kind {raw.get('kind')!r} and was skipped.")
        else:
            entries.append((str(raw.get("case_id", "")), _typed(raw, results, index)))
    if any(isinstance(raw.get("schema"), int) and raw["schema"] > SCHEMA_VERSION for raw in raws):
        warnings.append(f"{results}: written with a newer record schema than {SCHEMA_VERSION}; fields may be misread.")
    kept, cases_ok, missing, attempt_warnings = _latest_attempts(entries)
    environment, environment_warning = _read_environment(folder / ENVIRONMENT)
    return Run(
        folder=folder,
        timings=tuple(r for r in kept if isinstance(r, TimingRecord)),
        comparisons=tuple(r for r in kept if isinstance(r, ComparisonRecord)),
        inspections=tuple(r for r in kept if isinstance(r, InspectRecord)),
        parity=tuple(r for r in kept if isinstance(r, ParityRecord)),
        cases_ok=cases_ok,
        missing=tuple(missing),
        has_case_records=any(isinstance(r, CaseRecord) for _, r in entries),
        environment=environment,
        warnings=tuple(warnings + attempt_warnings + environment_warning),
    )


def _read_results(path: Path) -> tuple[list[dict], list[str]]:
    """read_jsonl, except that an unreadable last line (a run killed mid-write) is skipped."""
    try:
        return read_jsonl(path), []
    except ValueError as exc:
        message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        first_error = HarnessInputError(message)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or _is_object(lines[-1]):
        raise first_error
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / path.name
        head.write_text("".join(line + "\n" for line in lines[:-1]), encoding="utf-8")
        try:
            records = read_jsonl(head)
        except ValueError:
            raise first_error from None
    return records, [f"{path}: line {len(lines)} is incomplete (the run stopped while writing it) and was skipped."]


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _typed(raw: dict, path: Path, index: int) -> Record:
    try:
        return from_dict(raw)
    except TypeError as exc:
        raise HarnessInputError(f"{path}: record {index} ({raw['kind']}): {exc}") from None


def _latest_attempts(entries: list[tuple[str, Record]]) -> tuple[list[Record], int, list[MissingCase], list[str]]:
    """Split records by the latest CaseRecord of their case: ok cases are kept, others are missing.

    A case's records precede its CaseRecord, so the records between two CaseRecords of one case
    are one attempt. Records after a case's last CaseRecord belong to an attempt that never ended.
    Without any CaseRecord (not written by `run`) every record is kept.
    """
    if not any(isinstance(record, CaseRecord) for _, record in entries):
        return [r for _, r in entries], len({case_id for case_id, _ in entries}), [], [
            "results.jsonl has no case records, so cases that did not finish cannot be listed."]
    pending: dict[str, list[Record]] = {}
    ends: dict[str, tuple[CaseRecord, list[Record]]] = {}
    for case_id, record in entries:
        if isinstance(record, CaseRecord):
            ends[case_id] = (record, pending.pop(case_id, []))
        else:
            pending.setdefault(case_id, []).append(record)
    kept: list[Record] = []
    missing, warnings = [], []
    for case_id in dict.fromkeys(case_id for case_id, _ in entries):
        end, records = ends.get(case_id, (None, []))
        unfinished = pending.get(case_id, [])
        if end is not None and end.status == "ok":
            kept.extend(records)
            if unfinished:
                warnings.append(f"case {case_id}: {len(unfinished)} records of an unfinished re-run were left out.")
        elif end is not None:
            missing.append(MissingCase(case_id, end.status, end.error, " ".join(end.command),
                                       len(records) + len(unfinished)))
        else:
            missing.append(MissingCase(case_id, "interrupted", "no case record: the run stopped during this case",
                                       "", len(unfinished)))
    order = {id(record): index for index, (_, record) in enumerate(entries)}
    kept.sort(key=lambda record: order[id(record)])
    return kept, sum(1 for end, _ in ends.values() if end.status == "ok"), missing, warnings


def _read_environment(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    if not path.is_file():
        return None, []
    try:
        environment = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return None, [f"{path}: not valid JSON ({exc}); the environment is not shown."]
    if not isinstance(environment, dict):
        return None, [f"{path}: expected a JSON object; the environment is not shown."]
    return environment, []


# ---- the run report -----------------------------------------------------------------------------


def _how_to_read(run: Run) -> str:
    """How much to trust one timing verdict, with the count that matters for false alarms."""
    answered = [c for c in run.comparisons if c.question and c.question not in (AA_CONTROL, INJECTED_CONTROL)]
    return (
        "Timing verdicts compare interleaved rounds of two arms of one session: the ratio is the median of "
        "per-round time ratios with a 95% bootstrap CI. \"Slower\"/\"faster\" needs a CI that excludes 1 and an "
        "effect larger than the session's A/A noise floor (two identical arms, same mode); otherwise the verdict "
        "is \"no detectable difference\" with the largest effect the data still allow. "
        f"This run answers {len(answered)} timing comparisons at 95% confidence, so about "
        f"{0.05 * len(answered):.0f} of them may be called slower or faster by chance: an effect just above its "
        "noise floor deserves a second run before it is believed."
    )


def _run_blocks(run: Run, out: Path) -> list[Block]:
    ratios = _framework_ratios(run)
    blocks: list[Block] = [Heading(f"Cross-framework run report: {run.folder.name}", 1), Text(_summary(run))]
    if run.warnings:
        blocks += [Heading("Warnings"), *(Text(w, "bad") for w in run.warnings)]
    blocks += [
        Heading("Verdicts"),
        Text(_how_to_read(run)),
        *_timing_verdicts(run),
        *_graph_verdicts(run),
        _parity_verdict(run),
        _control_verdict(run),
        _framework_verdict(ratios),
        Heading("Plots"),
        *_run_plots(run, ratios, out),
        Heading("Timings"),
        _timing_table(run) if run.timings else Text("No timing records in this run.", "missing"),
        Heading("Comparisons"),
        _comparison_table(run) if run.comparisons else Text("No comparison records in this run.", "missing"),
        Heading("Graph inspection"),
        _inspect_table(run) if run.inspections else Text("No graph-inspection records in this run.", "missing"),
        Heading("Parity"),
        _parity_table(run) if run.parity else Text("No parity records in this run.", "missing"),
        Heading("Missing cases"),
        _missing_block(run),
        Heading("Environment"),
        _environment_table(run.environment) if run.environment is not None
        else Text(f"No usable {ENVIRONMENT} in {run.folder}: the machine is not recorded.", "missing"),
    ]
    return blocks


def _summary(run: Run) -> str:
    env = run.environment or {}
    cores = env.get("available_cores") or env.get("logical_cores") or env.get("cores")
    gpus = env.get("gpu")
    gpu_names = [g.get("name", "?") if isinstance(g, dict) else str(g) for g in gpus] \
        if isinstance(gpus, list) else [str(gpus)] if gpus else []
    machine = ", ".join(str(part) for part in (
        env.get("cpu_model"),
        f"{cores} cores" if cores else None,
        f"GPU {', '.join(gpu_names)}" if gpu_names else None,
    ) if part) or "an unrecorded machine"
    measured = (*run.timings, *run.comparisons, *run.inspections)
    backends = sorted({r.backend for r in measured} | {b for p in run.parity for b in p.backends})
    models = sorted({r.model for r in (*measured, *run.parity)})
    settings = sorted({f"{r.device}/{r.mode}" for r in (*run.timings, *run.comparisons)})
    cases = (f"{run.cases_ok} cases ok, {len(run.missing)} missing" if run.has_case_records
             else f"{run.cases_ok} cases (no case records)")
    return (
        f"Run of {env.get('date', 'an unrecorded date')} on {machine}. "
        f"Backends {', '.join(backends) or 'none'}; models {', '.join(models) or 'none'}; "
        f"device/mode {', '.join(settings) or 'none'}: {len(run.timings)} timing arms, "
        f"{len(run.comparisons)} comparisons, {len(run.parity)} parity checks, "
        f"{len(run.inspections)} graph inspections. {cases}."
    )


def _where(record: TimingRecord | ComparisonRecord, run: Run) -> str:
    threads = f" / {_threads(record.threads)}" if run.several_thread_counts else ""
    return f"{record.backend} / {record.model} / {record.device} / {record.mode}{threads}"


def _threads(count: int) -> str:
    return f"{count} thread{'' if count == 1 else 's'}"


def _verdict_tone(label: str) -> str:
    return "finding" if label in (SLOWER, FASTER) else ""


def _group_or_not_measured(question: str, lines: Sequence[VerdictLine]) -> VerdictGroup:
    return VerdictGroup(question, tuple(lines) or (VerdictLine("", NOT_MEASURED, "missing"),))


def _timing_verdicts(run: Run) -> list[VerdictGroup]:
    by_question = plots.group_by(run.comparisons, lambda c: c.question)
    return [
        _group_or_not_measured(q.text, [VerdictLine(_where(c, run), c.sentence, _verdict_tone(c.verdict))
                                        for c in by_question.get(q.key, [])])
        for q in TIMING_QUESTIONS
    ]


def _graph_verdicts(run: Run) -> list[VerdictGroup]:
    counts = {(i.backend, i.graph, i.model, i.variant): i.node_count for i in run.inspections}
    groups = []
    for q in GRAPH_QUESTIONS:
        settings = dict.fromkeys(key[:3] for key in counts if key[3] in (q.a_variant, q.b_variant))
        groups.append(_group_or_not_measured(q.text, [_graph_line(q, s, counts) for s in settings]))
    return groups


def _graph_line(q: Question, setting: tuple[str, str, str], counts: dict) -> VerdictLine:
    backend, graph, model = setting
    where = f"{backend} {graph} graph, {model}"
    a, b = counts.get((*setting, q.a_variant)), counts.get((*setting, q.b_variant))
    if a is None or b is None:
        present, absent, n = (q.a_variant, q.b_variant, a) if b is None else (q.b_variant, q.a_variant, b)
        return VerdictLine(where, f"{present} has {n} nodes; {absent} was not inspected.", "missing")
    extra = b - a
    said = "no extra node" if extra == 0 else f"{extra:+d} node{'' if abs(extra) == 1 else 's'}"
    return VerdictLine(where, f"{q.b_variant} has {b} nodes, {q.a_variant} {a}: {said}.", "finding" if extra else "")


def _parity_verdict(run: Run) -> VerdictGroup:
    question = "Are the two frameworks numerically identical on these models?"
    checks = run.parity
    if not checks:
        return _group_or_not_measured(question, [])
    pairs = len({(p.model, p.variant) for p in checks})
    failed = [p for p in checks if not p.passed]
    if failed:
        listed = "; ".join(f"{p.model}/{p.variant} {p.check} (relative error {p.max_rel_err:.2e} > tol {p.tol:g})"
                           for p in failed[:MAX_LISTED_FAILURES])
        more = f"; and {len(failed) - MAX_LISTED_FAILURES} more (see the parity table)" \
            if len(failed) > MAX_LISTED_FAILURES else ""
        sentence = f"No: {len(failed)} of {len(checks)} checks failed on {pairs} model/variant pairs: {listed}{more}."
        return VerdictGroup(question, (VerdictLine("", sentence, "bad"),))
    worst = max(checks, key=lambda p: p.max_rel_err)
    sentence = (f"Yes: all {len(checks)} checks passed on {pairs} model/variant pairs (largest relative error "
                f"{worst.max_rel_err:.2e}, at {worst.model}/{worst.variant} {worst.check}, tolerance {worst.tol:g}).")
    return VerdictGroup(question, (VerdictLine("", sentence, "good"),))


def _control_verdict(run: Run) -> VerdictGroup:
    controls = [c for c in run.comparisons if c.question in (AA_CONTROL, INJECTED_CONTROL)]
    sessions = plots.group_by(controls, lambda c: (c.session, c.backend, c.model, c.device, c.mode, c.threads))
    return _group_or_not_measured(
        "How far can the timing verdicts be trusted? (A/A noise floor; is an injected slowdown detected?)",
        [_control_line(session, run) for session in sessions.values()],
    )


def _control_line(session: list[ComparisonRecord], run: Run) -> VerdictLine:
    aa = next((c for c in session if c.question == AA_CONTROL), None)
    injected = next((c for c in session if c.question == INJECTED_CONTROL), None)
    parts = ["no A/A control"] if aa is None else [
        f"A/A noise floor ±{PairedRatio(aa.ratio, aa.ci_low, aa.ci_high, 0).half_width * 100:.1f}% "
        f"(A/A ratio {aa.ratio:.3f}, 95% CI {aa.ci_low:.3f}-{aa.ci_high:.3f})"]
    detected = injected is not None and injected.verdict == SLOWER
    if injected is None:
        parts.append("no injected-slowdown check, so the sensitivity is unknown")
    else:
        slowdown = next((t.injected_slowdown for t in run.timings
                         if t.session == injected.session and t.role == "injected"), INJECTED_SLOWDOWN)
        parts.append(f"injected {slowdown * 100:.0f}% slowdown {'detected' if detected else 'NOT detected'} "
                     f"(ratio {injected.ratio:.3f}, 95% CI {injected.ci_low:.3f}-{injected.ci_high:.3f})")
    caveat = "" if detected else " Verdicts from this session may miss effects of that size."
    sentence = "; ".join(parts) + "." + caveat
    return VerdictLine(_where(aa or injected, run), sentence, "good" if detected else "bad")


def _framework_ratios(run: Run) -> list[tuple[str, PairedRatio]]:
    """PyTorch ÷ TensorFlow per-step time of the baseline, per model, device, mode and threads.

    The two frameworks run in separate processes, so their rounds are not paired: unpaired_ratio.
    """
    baselines = [t for t in run.timings if t.role == "arm" and t.variant == "baseline"]
    ratios = []
    for (model, device, mode, threads), group in plots.group_by(
            baselines, lambda t: (t.model, t.device, t.mode, t.threads)).items():
        by_backend = plots.group_by(group, lambda t: t.backend)
        if "torch" in by_backend and "tensorflow" in by_backend:
            label = f"{model} / {device} / {mode}" + (f" / {_threads(threads)}" if run.several_thread_counts else "")
            ratios.append((label, unpaired_ratio(plots.step_times(by_backend["tensorflow"]),
                                                 plots.step_times(by_backend["torch"]))))
    return ratios


def _framework_verdict(ratios: list[tuple[str, PairedRatio]]) -> VerdictGroup:
    lines = []
    for label, ratio in ratios:
        said = verdict("TensorFlow", "PyTorch", ratio, None)
        lines.append(VerdictLine(label, said.sentence, _verdict_tone(said.label)))
    return _group_or_not_measured(
        "How does PyTorch's time per training step compare with TensorFlow's? (baseline model; the two ran in "
        "separate processes, so the ratio is unpaired and has no A/A control)", lines)


def _run_plots(run: Run, ratios: list[tuple[str, PairedRatio]], out: Path) -> list[Block]:
    comparisons = _sorted_comparisons(run.comparisons)
    arms = [t for t in run.timings if t.role == "arm"]
    wanted = [
        ("step_times", "Time per training step per backend, variant and mode (median, 95% CI)",
         arms, lambda: plots.step_time_figure(arms)),
        ("comparisons", "Paired comparison ratios with 95% CI; grey band: the session's A/A noise floor",
         comparisons, lambda: plots.forest_figure(comparisons)),
        ("pytorch_vs_tensorflow", "PyTorch ÷ TensorFlow time per training step (baseline, 95% CI)",
         ratios, lambda: plots.framework_ratio_figure(ratios)),
    ]
    return [_save_plot(name, caption, make, out) if data else Text(f"{caption}: no data in this run.", "missing")
            for name, caption, data, make in wanted]


def _save_plot(name: str, caption: str, make, out: Path) -> Image:
    path = out / PLOT_DIR / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    make().savefig(path)
    return Image(path, caption)


def _sorted_comparisons(comparisons: Sequence[ComparisonRecord]) -> list[ComparisonRecord]:
    def key(c: ComparisonRecord):
        rank = _COMPARISON_ORDER.index(c.question) if c.question in _COMPARISON_ORDER else len(_COMPARISON_ORDER)
        return rank, c.question, c.backend, c.model, c.device, c.mode, c.threads
    return sorted(comparisons, key=key)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g}"


def _timing_table(run: Run) -> Table:
    return Table(
        ("backend", "model", "device", "mode", "threads", "variant", "arm", "median ms", "IQR ms",
         "rounds × steps", "setup s"),
        tuple((t.backend, t.model, t.device, t.mode, str(t.threads), t.variant, t.arm, _ms(t.median_s), _ms(t.iqr_s),
               f"{t.rounds} × {t.steps_per_round}", f"{t.setup_s:.2f}") for t in run.timings),
    )


def _comparison_table(run: Run) -> Table:
    rows = _sorted_comparisons(run.comparisons)
    return Table(
        ("backend", "model", "device", "mode", "threads", "question", "b vs a", "ratio", "95% CI", "noise floor",
         "verdict"),
        tuple((c.backend, c.model, c.device, c.mode, str(c.threads), c.question or "(ad hoc)", f"{c.b} vs {c.a}",
               f"{c.ratio:.3f}", f"{c.ci_low:.3f}-{c.ci_high:.3f}",
               "—" if c.noise_floor is None else f"±{c.noise_floor * 100:.1f}%", c.verdict) for c in rows),
        tuple(_verdict_tone(c.verdict) for c in rows),
    )


def _inspect_table(run: Run) -> Table:
    return Table(("backend", "model", "variant", "graph", "nodes"),
                 tuple((i.backend, i.model, i.variant, i.graph, str(i.node_count)) for i in run.inspections))


def _parity_table(run: Run) -> Table:
    return Table(
        ("model", "variant", "check", "backends", "max abs err", "max rel err", "tol", "verdict"),
        tuple((p.model, p.variant, p.check, ", ".join(p.backends), f"{p.max_abs_err:.2e}", f"{p.max_rel_err:.2e}",
               f"{p.tol:g}", "✓ pass" if p.passed else "✗ FAIL") for p in run.parity),
        tuple("good" if p.passed else "bad" for p in run.parity),
    )


def _missing_block(run: Run) -> Block:
    if not run.has_case_records:
        return Text("Unknown: results.jsonl has no case records.", "missing")
    if not run.missing:
        return Text("None: every case finished ok.", "good")
    return Table(
        ("case", "status", "error", "command", "records left out"),
        tuple((m.case_id, m.status, _last_line(m.error), m.command, str(m.records_left_out)) for m in run.missing),
        tuple("bad" for _ in run.missing),
    )


def _last_line(text: str) -> str:
    """The last non-empty line of an error: the exception itself, when the error is a traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _environment_table(environment: dict[str, Any]) -> Table:
    return Table(("key", "value"), tuple(_flatten(environment)))


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", _describe(value)))
    return rows


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(map(_describe, value)) if any(isinstance(v, dict) for v in value) \
            else ", ".join(map(_describe, value))
    if isinstance(value, dict):
        return ", ".join(f"{key}={_describe(item)}" for key, item in value.items())
    return str(value)


# ---- the pytest-benchmark report ----------------------------------------------------------------

BENCHMARK_STATS = ("mean", "median", "stddev", "iqr", "rounds")
EXTRA_INFO = ("backend", "model", "variant", "device", "mode", "threads")


def load_benchmark_json(path: Path) -> dict[str, Any]:
    """Read one `pytest --benchmark-json` file and check that it has what the report shows."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessInputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        raise HarnessInputError(
            f"{path}: not pytest-benchmark output (expected 'machine_info' and a 'benchmarks' list, "
            "as written by pytest --benchmark-json)")
    if not data["benchmarks"]:
        raise HarnessInputError(f"{path}: no benchmarks in this file")
    for index, bench in enumerate(data["benchmarks"]):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        lacking = [f"stats.{k}" for k in BENCHMARK_STATS if not isinstance(stats, dict) or k not in stats]
        if not isinstance(bench, dict) or "name" not in bench or lacking:
            raise HarnessInputError(f"{path}: benchmarks[{index}]: missing {', '.join(['name', *lacking])}")
    return data


def _benchmark_blocks(files: list[tuple[Path, dict]], out: Path) -> list[Block]:
    benchmarks = [bench for _, data in files for bench in data["benchmarks"]]
    groups = {bench.get("group") for bench in benchmarks}
    machine = files[0][1]["machine_info"]
    summary = (f"{len(benchmarks)} benchmarks in {len(groups)} group(s) from {', '.join(p.name for p, _ in files)}; "
               f"first file recorded {files[0][1].get('datetime', 'at an unrecorded time')} on "
               f"{machine.get('node', '?')} ({machine.get('cpu', {}).get('brand_raw', 'unrecorded CPU')}), "
               f"Python {machine.get('python_version', '?')}.")
    blocks: list[Block] = [
        Heading("pytest-benchmark report", 1),
        Text(summary),
        Heading("Plots"),
        _save_plot("benchmarks", "Median time per benchmark by group (whiskers: interquartile range)",
                   lambda: plots.benchmark_figure(benchmarks), out),
        Heading("Benchmarks"),
        _benchmark_table(files),
    ]
    for path, data in files:
        facts = {"machine_info": data["machine_info"], "commit_info": data.get("commit_info", {})}
        blocks += [Heading(f"Machine and commit: {path.name}"), _environment_table(facts)]
    return blocks


def _benchmark_table(files: list[tuple[Path, dict]]) -> Table:
    several = len(files) > 1
    rows = []
    for path, data in files:
        for bench in data["benchmarks"]:
            stats, extra = bench["stats"], bench.get("extra_info") or {}
            rows.append(((path.name,) if several else ()) + (
                bench["name"], str(bench.get("group") or ""), _ms(stats["mean"]), _ms(stats["median"]),
                _ms(stats["stddev"]), _ms(stats["iqr"]), str(stats["rounds"]),
                *(str(extra.get(key, "")) for key in EXTRA_INFO)))
    headers = (("file",) if several else ()) + (
        "name", "group", "mean ms", "median ms", "stddev ms", "IQR ms", "rounds", *EXTRA_INFO)
    return Table(headers, tuple(rows))


# ---- rendering ----------------------------------------------------------------------------------


def _markdown(blocks: Sequence[Block], out: Path) -> str:
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {text}")
            case Text(text, tone):
                parts.append(f"_{text}_" if tone == "missing" else text)
            case VerdictGroup(question, lines):
                parts.append(f"**{question}**\n\n" + "\n".join(
                    f"- {f'**{line.where}**: ' if line.where else ''}{line.sentence}" for line in lines))
            case Table(headers, rows):
                parts.append("\n".join(["| " + " | ".join(map(_md_cell, headers)) + " |",
                                        "|" + "---|" * len(headers),
                                        *("| " + " | ".join(map(_md_cell, row)) + " |" for row in rows)]))
            case Image(path, caption):
                parts.append(f"![{caption}]({path.relative_to(out).as_posix()})")
    return "\n\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CELL_CHARS else flat[: MAX_CELL_CHARS - 1] + "…"


def _html(title: str, blocks: Sequence[Block]) -> str:
    body = "\n".join(_html_block(block) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def _html_block(block: Block) -> str:
    e = html.escape
    match block:
        case Heading(text, level):
            return f"<h{level}>{e(text)}</h{level}>"
        case Text(text, tone):
            return f'<p class="{tone}">{e(text)}</p>'
        case VerdictGroup(question, lines):
            items = "\n".join(
                f'<li class="{line.tone}">' + (f'<span class="where">{e(line.where)}</span> ' if line.where else "")
                + f"{e(line.sentence)}</li>" for line in lines)
            return f'<div class="question"><h3>{e(question)}</h3>\n<ul>\n{items}\n</ul></div>'
        case Table(headers, rows, tones):
            head = "".join(f"<th>{e(h)}</th>" for h in headers)
            body = "\n".join(
                f'<tr class="{tones[i] if tones else ""}">' + "".join(_html_cell(c) for c in row)
                + "</tr>" for i, row in enumerate(rows))
            return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n'
                    f"<tbody>\n{body}\n</tbody></table></div>")
        case Image(path, caption):
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>")
    raise TypeError(f"unknown report block {block!r}")


def _html_cell(text: str) -> str:
    flat = _one_line(text)
    wrap = ' class="long"' if len(flat) > LONG_CELL_CHARS else ""
    return f"<td{wrap}>{html.escape(flat)}</td>"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fafafa;
       margin: 0; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.02rem; margin: 1rem 0 .3rem; }
.question { border-left: 4px solid #c9d3dd; padding: .1rem 0 .4rem .9rem; margin: .9rem 0; }
.question ul { margin: 0; padding-left: 1.3rem; }
.question li { margin: .25rem 0; font-size: 1.02rem; }
.where { font-weight: 600; color: #444; }
.where::after { content: ":"; }
li.good, p.good { color: #1e6b34; }
li.bad, p.bad { color: #a61e2d; font-weight: 600; }
li.finding { font-weight: 600; }
li.missing, p.missing { color: #777; font-style: italic; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .88rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td { white-space: nowrap; }
td.long { white-space: normal; min-width: 18rem; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr.good td { background: #edf7ef; }
tr.bad td { background: #fbe7e9; color: #7a1420; }
tr.finding td { background: #fff5dc; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { color: #555; font-size: .9rem; }
"""
