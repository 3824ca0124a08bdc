"""Report: a synthetic run folder (and pytest-benchmark JSON) in, report.md + index.html + PNGs out.

The run folder is built from the record dataclasses with known effects: dropout=0 is 10% slower
than dropout=absent, the injected arm 5% slower, the A/A copy identical in distribution, PyTorch's
baseline about two thirds of TensorFlow's, one parity check fails and one case failed. Replicated
sessions (several worker processes), hand-made controls with known CIs and per-call records test
the calibration and per-call sections and the plots; their expected numbers are worked out here.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from backends import backend_class
from harness.errors import HarnessInputError
from harness.report import ReportPaths, build_report, plots
from harness.report.calibration import half_width_curves
from harness.report.reading import read_run_folder
from harness.results.records import (
    CaseRecord,
    ComparisonRecord,
    InspectRecord,
    ParityRecord,
    PerCallRecord,
    TimingRecord,
)
from harness.stats import paired_ratio
from harness.suite.questions import GRAPH_QUESTIONS, TIMING_QUESTIONS
from harness.timing.controls import AA_CONTROL, INJECTED_CONTROL

ROUNDS = 15
QUESTION = {q.key: q for q in TIMING_QUESTIONS}


def _timing(backend, variant, arm, times, session, role="arm", mode="eager", inject=0.05, **replication):
    return TimingRecord(
        backend=backend, model="mlp", variant=variant, arm=arm, device="cpu", mode=mode, threads=4,
        median_s=float(np.median(times)), iqr_s=float(np.subtract(*np.percentile(times, [75, 25]))),
        rounds=len(times), steps_per_round=20, setup_s=0.8, warmup_s=0.1, params=26_506,
        flops_per_step=3_000_000, session=session, role=role,
        injected_slowdown=inject if role == "injected" else 0.0, times_s=tuple(float(t) for t in times),
        **replication)


def _comparison(a: TimingRecord, b: TimingRecord, question: str, noise_floor: float | None) -> ComparisonRecord:
    """As harness.timing.session.compare does it: replicated arms carry their processes and spread."""
    pr = paired_ratio(a.times_s, b.times_s, a.process_of_round or None)
    replicated = {"processes": pr.processes, "process_ratios": pr.process_ratios} if a.process_of_round else {}
    return ComparisonRecord(
        backend=a.backend, model=a.model, device=a.device, mode=a.mode, threads=a.threads, a=a.arm, b=b.arm,
        ratio=pr.ratio, ci_low=pr.ci_low, ci_high=pr.ci_high, noise_floor=noise_floor,
        session=a.session, question=question, n_pairs=pr.n_pairs,
        expected_ratio={"aa": 1.0, "injected": 1.0 + b.injected_slowdown}.get(b.role), **replicated)


def _session(backend: str, base_s: float, seed: int) -> list:
    """One interleaved session: drift shared by all arms in a round, 0.5% independent noise per arm."""
    rng = np.random.default_rng(seed)
    drift = base_s * (1 + 0.03 * np.sin(np.arange(ROUNDS)))
    noisy = lambda factor: drift * factor * (1 + 0.005 * rng.standard_normal(ROUNDS))  # noqa: E731
    session = f"{backend}-mlp-cpu-eager"
    base = _timing(backend, "baseline", "baseline", noisy(1.0), session)
    aa = _timing(backend, "baseline", "baseline (A/A)", noisy(1.0), session, role="aa")
    injected = _timing(backend, "baseline", "baseline +5%", noisy(1.05), session, role="injected")
    absent = _timing(backend, "dropout=absent", "dropout=absent", noisy(1.0), session)
    zero = _timing(backend, "dropout=0", "dropout=0", noisy(1.10), session)
    aa_cmp = _comparison(base, aa, AA_CONTROL, None)
    floor = max(abs(aa_cmp.ci_low - 1), abs(aa_cmp.ci_high - 1))
    return [base, aa, injected, absent, zero, aa_cmp,
            _comparison(base, injected, INJECTED_CONTROL, floor),
            _comparison(absent, zero, "dropout_p0_cost", floor)]


def _parity(passed_all: bool) -> list[ParityRecord]:
    checks = [("forward_eval", 2e-7), ("loss", 1e-7), ("grad[0.weight]", 4e-7), ("sgd_momentum_10_steps", 3e-6)]
    records = [ParityRecord("mlp", "baseline", check, ("torch", "tensorflow"), err / 10, err, 1e-5, True)
               for check, err in checks]
    if not passed_all:
        records.append(ParityRecord("mlp", "bn=before", "bn_running_stats", ("torch", "tensorflow"),
                                    3e-3, 2.5e-2, 1e-5, False, "running_var differs"))
    return records


def _write_run(folder: Path, cases: list[tuple[str, list, CaseRecord]], environment: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for case_id, records, end in cases:
        lines += [json.dumps({**r.as_dict(), "case_id": case_id}) for r in (*records, end)]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if environment:
        (folder / "environment.json").write_text(json.dumps({
            "schema": 1, "date": "2026-11-22T17:40:00+00:00", "python": "3.11.7", "platform": "Linux-6.1-x86_64",
            "cpu_model": "AMD EPYC 9654", "logical_cores": 32, "available_cores": 16, "torch": "2.5.1",
            "tensorflow": "2.18.0", "keras": "3.6.0",
            "gpu": [{"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15"}],
            "env": {"OMP_NUM_THREADS": "4"}, "threads": 4, "git": {"commit": "1f1302e", "dirty": False},
        }), encoding="utf-8")
    return folder


def _ok(case_id: str) -> CaseRecord:
    return CaseRecord(case_id, "ok", ("xfw-harness", "case", case_id), 12.5)


def _standard_cases(parity_ok: bool = False) -> list:
    inspect = [InspectRecord("torch", "mlp", "dropout=absent", "autograd", 12, {"AddmmBackward0": 3}),
               InspectRecord("torch", "mlp", "dropout=0", "autograd", 14, {"AddmmBackward0": 3})]
    failed = CaseRecord("time/tensorflow/cnn/cpu/eager", "failed", ("xfw-harness", "time", "cnn"), 3.0,
                        "Traceback (most recent call last):\n  File x\nRuntimeError: <b>OOM</b> in conv2d", 1)
    partial = _timing("tensorflow", "baseline", "cnn-partial-arm", [0.5] * ROUNDS, "tf-cnn")
    return [
        ("time/torch/mlp/cpu/eager", _session("torch", 0.002, 1), _ok("time/torch/mlp/cpu/eager")),
        ("time/tensorflow/mlp/cpu/eager", _session("tensorflow", 0.003, 2), _ok("time/tensorflow/mlp/cpu/eager")),
        ("inspect/torch/mlp", inspect, _ok("inspect/torch/mlp")),
        ("parity/mlp", _parity(parity_ok), _ok("parity/mlp")),
        ("time/tensorflow/cnn/cpu/eager", [partial], failed),
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[ReportPaths, str, str]:
    folder = _write_run(tmp_path_factory.mktemp("run"), _standard_cases())
    paths = build_report([folder])
    return paths, paths.markdown.read_text(encoding="utf-8"), paths.html.read_text(encoding="utf-8")


def _section(markdown: str, heading: str) -> str:
    """A level-2 or level-3 section, up to the next heading of its level or above."""
    found = re.search(rf"^(#{{2,3}}) {re.escape(heading)}\n", markdown, re.MULTILINE)
    assert found, f"no section {heading!r}"
    end = re.search(rf"^#{{2,{len(found.group(1))}}} ", markdown[found.end():], re.MULTILINE)
    return markdown[found.start(): found.end() + end.start() if end else None]


def test_writes_markdown_html_and_plots_into_the_run_folder(report):
    paths, markdown, _ = report
    assert paths.markdown.name == "report.md" and paths.html.name == "index.html"
    assert paths.markdown.parent == paths.html.parent
    assert len(paths.plots) >= 3
    for plot in paths.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot.relative_to(paths.markdown.parent).as_posix()})" in markdown


def test_html_is_self_contained(report):
    paths, _, page = report
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(data) for data in embedded] == [plot.read_bytes() for plot in paths.plots]
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?(data:|#))""", page)  # in-page links only
    assert not re.search(r"url\(|@import|<script|<link", page, re.IGNORECASE)


def test_answers_come_first_then_verdicts_with_the_records_sentences(report):
    _, markdown, page = report
    assert markdown.index("## Answers") < markdown.index("## Verdicts in words") < markdown.index("## Plots") \
        < markdown.index("## Raw table: Timings")
    verdicts = _section(markdown, "Verdicts in words")
    dropout = QUESTION["dropout_p0_cost"].text
    assert dropout in verdicts
    for backend in ("torch", "tensorflow"):
        where = f"- **{backend} / mlp / cpu / eager**: "
        line = next(ln for ln in verdicts.splitlines() if ln.startswith(where + "dropout=0"))
        assert re.search(rf"dropout=0 is (9|10|11)\.\d% slower than {backend} mlp dropout=absent \(ratio 1\.\d{{3}}, "
                         r"95% CI", line)
    assert "dropout=0 is" in page and "slower than torch mlp dropout=absent" in page


@pytest.mark.parametrize("question", [q for q in TIMING_QUESTIONS if q.key != "dropout_p0_cost"], ids=lambda q: q.key)
def test_a_question_without_data_is_named_once_as_not_measured(report, question):
    line = next(ln for ln in report[1].splitlines() if ln.startswith("_Not measured in this run ("))
    assert question.text in line
    assert question.text not in _section(report[1], "Verdicts in words")  # no empty group of its own


def test_graph_verdicts_count_nodes(report):
    verdicts = _section(report[1], "Verdicts in words")
    assert "**torch autograd graph, mlp**: dropout=0 has 14 nodes, dropout=absent 12: +2 nodes." in verdicts
    l2 = next(q for q in GRAPH_QUESTIONS if q.key == "l2_zero_nodes")
    assert l2.text not in verdicts
    assert l2.text in next(ln for ln in report[1].splitlines() if ln.startswith("_Not measured in this run ("))


def test_failing_parity_check_answers_no_and_is_marked(report):
    _, markdown, page = report
    verdicts = _section(markdown, "Verdicts in words")
    assert "- No: 1 of 5 checks failed on 2 model/variant pairs: mlp/bn=before bn_running_stats" in verdicts
    assert "✗ FAIL" in _section(markdown, "Raw table: Parity")
    assert re.search(r'<tr class="bad">(<td>mlp</td>)?<td>bn=before</td><td>bn_running_stats</td>', page)


def test_all_parity_checks_passing_answers_yes(tmp_path):
    folder = _write_run(tmp_path / "run", [("parity/mlp", _parity(True), _ok("parity/mlp"))])
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert ("- Yes: all 4 checks passed on 1 model/variant pairs (largest relative error 3.00e-06, "
            "at mlp/baseline sgd_momentum_10_steps") in markdown


def test_controls_report_noise_floor_and_injected_detection(report):
    verdicts = _section(report[1], "Verdicts in words")
    for backend in ("torch", "tensorflow"):
        line = next(ln for ln in verdicts.splitlines()
                    if ln.startswith(f"- **{backend} / mlp / cpu / eager**: A/A noise floor ±"))
        assert "injected 5% slowdown detected (ratio 1.0" in line


def test_reference_vs_other_backend_uses_the_baselines(report):
    verdicts = _section(report[1], "Verdicts in words")
    match = re.search(r"- \*\*mlp / cpu / eager\*\*: torch is faster than tensorflow: "
                      r"it takes (\d+\.\d)% less time per step", verdicts)
    assert match and 28 < float(match.group(1)) < 38  # 2 ms vs 3 ms
    assert "torch ÷ tensorflow time per training step" in _section(report[1], "Plots")


def test_framework_ratio_names_the_reference_and_each_other_backend(tmp_path):
    cases = [(f"time/{backend}/mlp/cpu/eager", _session(backend, base_s, seed), _ok(f"time/{backend}/mlp/cpu/eager"))
             for backend, base_s, seed in (("torch", 0.002, 1), ("tensorflow", 0.003, 2), ("torch2", 0.004, 3))]
    markdown = build_report([_write_run(tmp_path / "run", cases)]).markdown.read_text(encoding="utf-8")
    verdicts = _section(markdown, "Verdicts in words")
    question = verdicts[verdicts.index("How does the reference backend's (torch) time per training step"):]
    lines = question.split("\n\n")[1].splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("- **mlp / cpu / eager**: torch is faster than tensorflow: it takes ")
    assert lines[1].startswith("- **mlp / cpu / eager**: torch is faster than torch2: it takes ")
    assert "PyTorch" not in markdown and "TensorFlow" not in markdown
    assert "torch ÷ tensorflow, torch ÷ torch2 time per training step" in _section(markdown, "Plots")


def test_framework_ratio_without_the_reference_backend_is_not_measured(tmp_path):
    folder = _write_run(tmp_path / "run", [("time/tensorflow/mlp/cpu/eager", _session("tensorflow", 0.003, 2),
                                            _ok("time/tensorflow/mlp/cpu/eager"))])
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert "How does the reference backend's (torch)" not in _section(markdown, "Verdicts in words")
    assert "How does the reference backend's (torch)" in next(
        ln for ln in markdown.splitlines() if ln.startswith("_Not measured in this run ("))
    assert "no data in this run" not in markdown and "framework_ratios" not in markdown  # no empty plot


@pytest.mark.parametrize("bad, error", [
    ({"median_s": "fast"}, "field 'median_s' is \"fast\""),
    ({"kind": ["timing"]}, "unknown kind ['timing']"),
    ({"iqr_s": float("nan")}, "field 'iqr_s' is NaN"),
    ({"threads": None}, "field 'threads' is null"),
], ids=["string-number", "list-kind", "nan", "null-int"])
def test_invalid_record_is_skipped_with_a_warning_in_the_report(tmp_path, bad, error):
    folder = _write_run(tmp_path / "run", _standard_cases())
    results = folder / "results.jsonl"
    lines = results.read_text(encoding="utf-8").splitlines()
    broken = _timing("torch", "baseline", "broken-arm", [0.002] * ROUNDS, "torch-mlp-cpu-eager")
    lines.insert(1, json.dumps({**broken.as_dict(), **bad, "case_id": "time/torch/mlp/cpu/eager"}))
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    warning = next(line for line in _section(markdown, "Warnings").splitlines() if "record 2 " in line)
    assert warning.startswith(f"{results}: record 2 was skipped: ") and error in warning
    assert "broken-arm" not in markdown
    assert "dropout=0 is" in _section(markdown, "Verdicts in words") and "4 cases ok, 1 missing" in markdown


def test_invalid_comparison_gives_no_verdict(tmp_path):
    folder = _write_run(tmp_path / "run", _standard_cases())
    session = _session("torch", 0.002, 1)
    bad = {**session[-1].as_dict(), "backend": "bad-backend", "ratio": "1.5", "case_id": "time/torch/mlp/cpu/eager"}
    lines = (folder / "results.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "results.jsonl").write_text("\n".join([json.dumps(bad), *lines]) + "\n", encoding="utf-8")
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert "record 1 was skipped: field 'ratio' is \"1.5\"" in _section(markdown, "Warnings")
    assert "bad-backend" not in markdown


def test_old_comparisons_have_their_stored_verdict_and_sentence_ignored(tmp_path):
    folder = _write_run(tmp_path / "run", _standard_cases())
    results = folder / "results.jsonl"
    stale = []
    for line in results.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["kind"] == "comparison":
            record.update(schema=1, verdict="faster", sentence="A stale sentence.")
            del record["n_pairs"]
        stale.append(json.dumps(record))
    results.write_text("\n".join(stale) + "\n", encoding="utf-8")
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert "stale" not in markdown and "| faster |" not in _section(markdown, "Raw table: Comparisons")
    assert "dropout=0 is" in _section(markdown, "Verdicts in words")
    assert "| slower |" in _section(markdown, "Raw table: Comparisons")


def test_failed_case_is_listed_with_its_error_and_its_records_left_out(report):
    _, markdown, page = report
    summary = markdown.split("\n\n")[1]
    assert "on AMD EPYC 9654, 16 cores, GPU NVIDIA H100 80GB HBM3." in summary and "4 cases ok, 1 missing" in summary
    missing = _section(markdown, "Missing cases")
    assert "time/tensorflow/cnn/cpu/eager | failed | RuntimeError: <b>OOM</b> in conv2d" in missing
    assert "cnn-partial-arm" not in markdown
    assert "RuntimeError: &lt;b&gt;OOM&lt;/b&gt; in conv2d" in page and "<b>OOM" not in page


def test_latest_case_record_wins_on_resume(tmp_path):
    first = _session("torch", 0.002, 1)
    failed = CaseRecord("time/torch/mlp/cpu/eager", "timeout", ("xfw-harness",), 600.0, "killed after 600 s")
    retried = [r for r in first if not isinstance(r, ComparisonRecord)] + [
        _comparison(first[3], first[4], "dropout_p0_cost", 0.01)]
    folder = _write_run(tmp_path / "run", [("time/torch/mlp/cpu/eager", first[:2], failed),
                                           ("time/torch/mlp/cpu/eager", retried, _ok("time/torch/mlp/cpu/eager"))])
    rerun = _timing("torch", "baseline", "unfinished-rerun-arm", [0.002] * ROUNDS, "torch-mlp-cpu-eager")
    with open(folder / "results.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({**rerun.as_dict(), "case_id": "time/torch/mlp/cpu/eager"}) + "\n")
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert "1 cases ok, 0 missing" in markdown
    assert "## Missing cases" not in markdown  # nothing missing: no section
    assert _section(markdown, "Raw table: Timings").count("| baseline (A/A) |") == 1
    assert "unfinished-rerun-arm" not in _section(markdown, "Raw table: Timings")
    assert "1 records of an unfinished re-run were left out" in _section(markdown, "Warnings")


def test_run_killed_mid_write_skips_the_truncated_line_and_lists_the_case_as_interrupted(tmp_path):
    folder = _write_run(tmp_path / "run", _standard_cases())
    started = _timing("torch", "baseline", "cnn-arm-before-kill", [0.01] * ROUNDS, "torch-cnn")
    with open(folder / "results.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({**started.as_dict(), "case_id": "time/torch/cnn/cpu/eager"}) + "\n")
        handle.write('{"schema": 1, "kind": "timing", "case_id": "time/torch/cnn/cpu/eager", "backend": "tor')
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    warnings = _section(markdown, "Warnings")
    assert re.search(r"results\.jsonl: line \d+ is incomplete", warnings)
    assert "dropout=0 is" in _section(markdown, "Verdicts in words")
    assert "| time/torch/cnn/cpu/eager | interrupted | no case record" in _section(markdown, "Missing cases")
    assert "cnn-arm-before-kill" not in _section(markdown, "Raw table: Timings")


def test_environment_is_listed_last(report):
    environment = _section(report[1], "Environment")
    assert "| gpu | name=NVIDIA H100 80GB HBM3, driver_version=550.54.15 |" in environment
    assert "| git.commit | 1f1302e |" in environment and "| env.OMP_NUM_THREADS | 4 |" in environment


def test_missing_environment_is_said_not_fatal(tmp_path):
    folder = _write_run(tmp_path / "run", _standard_cases(), environment=False)
    markdown = build_report([folder], out_dir=tmp_path / "out").markdown.read_text(encoding="utf-8")
    assert "No usable environment.json" in _section(markdown, "Environment")
    assert "| gpu |" not in markdown
    assert "an unrecorded machine" in markdown
    assert not (folder / "report.md").exists() and (tmp_path / "out" / "plots").is_dir()


def _corrupt_middle(folder: Path) -> Path:
    _write_run(folder, _standard_cases())
    lines = (folder / "results.jsonl").read_text().splitlines()
    lines[3] = lines[3][:40]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _file(name: str, text: str, give_folder: bool = False):
    def make(folder: Path) -> Path:
        (folder / name).write_text(text, encoding="utf-8")
        return folder if give_folder else folder / name
    return make


@pytest.mark.parametrize("make, names", [
    (lambda folder: folder / "does-not-exist", "does-not-exist"),
    (lambda folder: folder, "no results.jsonl"),
    (_file("results.jsonl", "", give_folder=True), "results.jsonl"),
    (_file("results.jsonl", "\n\n", give_folder=True), "results.jsonl"),
    (_corrupt_middle, "results.jsonl: line 4"),
    (_file("other.json", '{"benchmarks": "no"}'), "other.json"),
    (_file("list.json", "[1, 2]"), "list.json"),
    (_file("broken.json", "{"), "broken.json"),
], ids=["missing", "no-results", "empty", "blank-lines", "corrupt-line", "not-benchmark", "json-list", "bad-json"])
def test_bad_inputs_raise_harness_input_error_naming_the_path(tmp_path, make, names):
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(HarnessInputError, match=re.escape(names)) as info:
        build_report([make(folder)])
    assert str(tmp_path) in str(info.value)


def _benchmark_json(path: Path) -> Path:
    def bench(name, group, median, backend):
        return {"group": group, "name": name, "fullname": f"benchmarks/bench_step.py::{name}",
                "params": None, "param": None, "options": {"timer": "perf_counter"},
                "extra_info": {"backend": backend, "model": "mlp", "variant": "baseline", "device": "cpu",
                               "mode": "eager", "threads": 4},
                "stats": {"min": median * 0.9, "max": median * 1.3, "mean": median * 1.02, "stddev": median * 0.05,
                          "rounds": 20, "median": median, "iqr": median * 0.04, "q1": median * 0.98,
                          "q3": median * 1.02, "iqr_outliers": 0, "stddev_outliers": 1, "outliers": "1;0",
                          "ld15iqr": median * 0.9, "hd15iqr": median * 1.1, "ops": 1 / median,
                          "total": median * 20, "iterations": 1}}
    path.write_text(json.dumps({
        "machine_info": {"node": "bench-host", "python_version": "3.11.7", "system": "Linux",
                         "cpu": {"brand_raw": "AMD EPYC 9654", "count": 16, "flags": ["avx2", "fma"]}},
        "commit_info": {"id": "1f1302e", "dirty": False, "branch": "main"},
        "benchmarks": [bench("test_step[torch-mlp]", "step", 0.0021, "torch"),
                       bench("test_step[tensorflow-mlp]", "step", 0.0032, "tensorflow"),
                       bench("test_build[torch-mlp]", "build", 0.15, "torch")],
        "datetime": "2026-11-22T18:00:00", "version": "5.1.0"}), encoding="utf-8")
    return path


def test_pytest_benchmark_json_renders(tmp_path):
    paths = build_report([_benchmark_json(tmp_path / "bench.json")])
    markdown, page = paths.markdown.read_text(encoding="utf-8"), paths.html.read_text(encoding="utf-8")
    assert paths.markdown.parent == tmp_path and len(paths.plots) == 1
    assert "| test_step[torch-mlp] | step | 2.1 | ×1.00 | 2.142 | 0.105 | 0.084 | torch |" in markdown
    assert "In every row: steps per call 1, rounds 20, model mlp, variant baseline, device cpu, mode eager, " \
           "threads 4." in markdown  # columns of one value are named once, so the table fits the page
    assert "| test_step[tensorflow-mlp] | step | 3.2 | ×1.52 |" in markdown  # against the group's fastest
    assert "| machine_info.cpu.brand_raw | AMD EPYC 9654 |" in markdown
    assert "| machine_info.cpu.flags | avx2, fma |" in markdown
    assert page.count('src="data:image/png;base64,') == 1


def test_several_benchmark_files_get_a_file_column(tmp_path):
    first, second = _benchmark_json(tmp_path / "a.json"), _benchmark_json(tmp_path / "b.json")
    markdown = build_report([first, second], out_dir=tmp_path / "out").markdown.read_text(encoding="utf-8")
    assert "| b.json | test_build[torch-mlp] | build |" in markdown
    assert "Machine and commit: a.json" in markdown and "Machine and commit: b.json" in markdown


def test_verdicts_say_how_many_may_be_chance(report):
    verdicts = _section(report[1], "Verdicts in words")
    match = re.search(r"This run answers (\d+) timing comparisons at 95% confidence, so about (\d+)", verdicts)
    assert match
    answered = sum(1 for line in verdicts.splitlines() if line.startswith("- **") and "A/A" in line
                   and "noise floor" in line and "A/A noise floor ±" in line and "A/A ratio" not in line)
    assert answered > 0 and int(match.group(1)) == answered
    assert int(match.group(2)) == round(0.05 * answered)


# ---- replicated timing, calibration, per-call costs and the plots drawn from them ---------------

PROCESSES = 5
PROCESS_ENDS = (6.0, 10.5, 15.0, 19.5, 24.0)


def _replicated_session(backend: str, mode: str, base_s: float, seed: int) -> list:
    """PROCESSES worker processes of ROUNDS rounds: each process shifts each arm by its own 0.3%
    layout bias (so the processes disagree), on top of 0.3% noise per round."""
    rng = np.random.default_rng(seed)
    process = np.repeat(np.arange(PROCESSES), ROUNDS)
    drift = base_s * (1 + 0.03 * np.sin(np.arange(process.size)))
    replication = {"processes": PROCESSES, "process_of_round": tuple(int(p) for p in process),
                   "process_end_s": PROCESS_ENDS, "stop_reason": "budget spent"}
    session = f"{backend}-mlp-cpu-{mode}-replicated"

    def arm(variant: str, label: str, factor: float, role: str = "arm") -> TimingRecord:
        bias = 1 + 0.003 * rng.standard_normal(PROCESSES)
        times = drift * factor * bias[process] * (1 + 0.003 * rng.standard_normal(process.size))
        return _timing(backend, variant, f"{label}/{mode}", times, session, role, mode, inject=0.02, **replication)

    base, aa = arm("baseline", "baseline", 1.0), arm("baseline", "baseline (A/A copy)", 1.0, "aa")
    injected = arm("baseline", "baseline (+2% injected)", 1.02, "injected")
    absent, zero = arm("dropout=absent", "dropout=absent", 1.0), arm("dropout=0", "dropout=0", 1.01)
    aa_cmp = _comparison(base, aa, AA_CONTROL, None)
    return [base, aa, injected, absent, zero, aa_cmp,
            _comparison(base, injected, INJECTED_CONTROL, aa_cmp.paired.half_width),
            _comparison(absent, zero, "dropout_p0_cost", aa_cmp.paired.half_width)]


def _replicated_cases() -> list:
    return [(f"time/{backend}/mlp/cpu/{mode}", _replicated_session(backend, mode, base_s, seed),
             _ok(f"time/{backend}/mlp/cpu/{mode}"))
            for seed, (backend, mode, base_s) in enumerate([("torch", "eager", 0.002), ("tensorflow", "eager", 0.003),
                                                            ("torch", "compiled", 0.0015),
                                                            ("tensorflow", "compiled", 0.0025)])]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory) -> tuple[ReportPaths, str]:
    paths = build_report([_write_run(tmp_path_factory.mktemp("replicated"), _replicated_cases())])
    return paths, paths.markdown.read_text(encoding="utf-8")


def test_replicated_run_draws_question_and_half_width_plots(replicated):
    paths, markdown = replicated
    assert {p.name for p in paths.plots} == {"step_times.png", "questions.png", "half_width.png",
                                             "framework_ratios.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths.plots)
    assert "no data in this run" not in _section(markdown, "Plots")


def _control(backend: str, index: int, expected: float, ratio: float, half: float, spread=(0.993, 1.004, 0.998)):
    """A control comparison with a hand-set CI of ratio ± half (5 processes, 60 pairs)."""
    return ComparisonRecord(
        backend=backend, model="mlp", device="cpu", mode="eager", threads=4, a="baseline/eager",
        b="copy/eager", ratio=ratio, ci_low=ratio - half, ci_high=ratio + half,
        noise_floor=None if expected == 1.0 else 0.005, session=f"{backend}-{expected}-{index}",
        question=AA_CONTROL if expected == 1.0 else INJECTED_CONTROL, n_pairs=60, processes=PROCESSES,
        process_ratios=spread, expected_ratio=expected)


def _controls(backend: str, aa_missed: int, injected_missed: int) -> list[ComparisonRecord]:
    """10 A/A controls with half-widths 0.1%..1.0%, of which the first `aa_missed` exclude 1; 10
    injected +2% controls, of which the first `injected_missed` have a CI too wide to exclude 1."""
    aa = [_control(backend, i, 1.0, 1.003 if i <= aa_missed else 1.0, i / 1000) for i in range(1, 11)]
    injected = [_control(backend, i, 1.02, 1.02, 0.03 if i <= injected_missed else 0.008) for i in range(1, 11)]
    return aa + injected


def _per_call(backend, mode, layer, per_call_us, low_us, high_us, step_ms, expected_us=None) -> PerCallRecord:
    return PerCallRecord(
        backend=backend, model="mlp", mode=mode, layer=layer, per_call_s=per_call_us * 1e-6,
        ci_low_s=low_us * 1e-6, ci_high_s=high_us * 1e-6, step_s=step_ms * 1e-3,
        fraction_of_step=per_call_us * 1e-6 / (step_ms * 1e-3), copies=(0, 8, 32, 64), processes=PROCESSES,
        session=f"{backend}-{mode}-{layer}", threads=4,
        expected_per_call_s=None if expected_us is None else expected_us * 1e-6)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> str:
    records = [*_controls("torch", aa_missed=1, injected_missed=1), *_controls("tensorflow", 2, 3),
               _per_call("torch", "eager", "dropout=0", 3.1, 2.6, 3.6, 6.0),
               _per_call("tensorflow", "compiled", "dropout=0", 0.1, -0.3, 0.5, 4.0),
               _per_call("torch", "eager", "busywait=20", 22.5, 21.0, 24.0, 6.0, expected_us=20),
               _per_call("tensorflow", "eager", "busywait=20", 26.0, 24.0, 28.0, 8.0, expected_us=20)]
    folder = _write_run(tmp_path_factory.mktemp("calibrated"), [("calibrate", records, _ok("calibrate"))])
    return build_report([folder]).markdown.read_text(encoding="utf-8")


def _row(section: str, *cells: str) -> str:
    start = "| " + " | ".join(cells) + " |"
    return next(line for line in section.splitlines() if line.startswith(start))


def test_calibration_coverage_and_half_widths_per_group(calibrated):
    section = _section(calibrated, "Calibration")
    # torch A/A: 9 of 10 CIs contain 1; half-widths 0.1%..1.0%: median 0.55%, 90th percentile 0.91%
    assert _row(section, "torch", "mlp", "eager", "A/A", "10", "9 of 10 (90%)", "pass (≥ 90%)", "±0.55%", "±0.91%")
    assert _row(section, "tensorflow", "mlp", "eager", "A/A", "10", "8 of 10 (80%)", "FAIL (≥ 90%)")


def test_calibration_detection_rate_of_the_injected_slowdown(calibrated):
    section = _section(calibrated, "Calibration")
    torch = _row(section, "torch", "mlp", "eager", "injected +2.0%", "10", "10 of 10 (100%)", "—")
    assert torch.endswith("| 9 of 10 (90%) | pass (≥ 90%) |")
    tensorflow = _row(section, "tensorflow", "mlp", "eager", "injected +2.0%", "10", "10 of 10 (100%)")
    assert tensorflow.endswith("| 7 of 10 (70%) | FAIL (≥ 90%) |")


def test_calibration_says_it_per_backend(calibrated):
    lines = _section(calibrated, "Calibration").splitlines()
    torch = next(line for line in lines if line.startswith("- **torch**: "))
    assert "10 A/A controls contained the true ratio 1 in 9 of 10 (90%): pass" in torch
    assert "injected +2.0% slowdown was called slower in 9 of 10 (90%): pass" in torch
    tensorflow = next(line for line in lines if line.startswith("- **tensorflow**: "))
    assert "in 8 of 10 (80%): FAIL" in tensorflow and "slower in 7 of 10 (70%): FAIL" in tensorflow


def test_busy_wait_layer_is_checked_against_its_known_cost(calibrated):
    section = _section(calibrated, "Calibration")
    # 22.5 µs against 20: +12.5%, inside ±20%; 26 µs: +30.0%, outside
    assert _row(section, "torch", "mlp", "eager", "busywait=20", "22.5", "21.0–24.0", "20.0", "+12.5%", "pass (±20%)")
    assert _row(section, "tensorflow", "mlp", "eager", "busywait=20", "26.0", "24.0–28.0", "20.0", "+30.0%",
                "FAIL (±20%)")
    assert "busywait" not in _section(calibrated, "Per-call cost")


def test_per_call_section_answers_the_dropout_claim_first(calibrated):
    section = _section(calibrated, "Per-call cost")
    answer = section[section.index("Claim: a Dropout layer with p=0 costs time"):].split("\n\n")[1]
    # 3.1 µs in a 6 ms step is 0.052% of it; tensorflow's CI -0.3..0.5 µs contains 0
    assert answer.startswith("- **Answer**: A measurable cost in 1 of 2 settings: torch mlp eager (dropout=0): 3.10 µs")
    assert "0.052% of a 6 ms step" in answer and "no measurable cost in the other 1" in answer
    torch = next(line for line in section.splitlines() if line.startswith("- torch mlp eager:"))
    assert re.search(r"3\.10? µs per call", torch) and "2.6" in torch and "3.6" in torch and "0.052%" in torch
    tensorflow = next(line for line in section.splitlines() if line.startswith("- tensorflow mlp compiled:"))
    assert "no measurable cost" in tensorflow and re.search(r"at most 0\.50? µs", tensorflow)
    assert _row(section, "torch", "mlp", "cpu", "eager", "dropout=0", "3.10", "2.60–3.60", "0.052%", "6",
                "0, 8, 32, 64", str(PROCESSES))


def test_comparison_table_shows_processes_and_the_between_process_spread(calibrated):
    section = _section(calibrated, "Raw table: Comparisons")
    constant = next(line for line in section.splitlines() if line.startswith("In every row: "))
    assert "device cpu" in constant and "threads 4" in constant  # constant columns named once, not repeated
    assert "| device |" not in section and f"processes {PROCESSES}" in constant
    assert "between-process spread 0.993–1.004" in constant


def test_half_width_curve_follows_the_processes(tmp_path):
    """Each process has one constant log ratio d_p, so after k processes the CI is the t interval
    of d_1..d_k: worked out here from scipy's t quantile."""
    from scipy import stats as scipy_stats

    d = np.array([0.004, -0.002, 0.001, 0.003, -0.001])
    process = np.repeat(np.arange(PROCESSES), ROUNDS)
    a = 0.002 * (1 + 0.01 * np.sin(np.arange(process.size)))
    replication = {"processes": PROCESSES, "process_of_round": tuple(int(p) for p in process),
                   "process_end_s": PROCESS_ENDS}
    base = _timing("torch", "baseline", "baseline/eager", a, "s1", **replication)
    copy = _timing("torch", "baseline", "baseline (A/A copy)/eager", a * np.exp(d[process]), "s1", "aa", **replication)
    folder = _write_run(tmp_path / "run", [("time", [base, copy, _comparison(base, copy, AA_CONTROL, None)],
                                            _ok("time"))])
    (curve,) = half_width_curves(read_run_folder(folder))
    expected = []
    for k in range(2, PROCESSES + 1):
        mean, half = d[:k].mean(), scipy_stats.t.ppf(0.975, k - 1) * d[:k].std(ddof=1) / np.sqrt(k)
        ratio = np.exp(mean)  # the CI's half-width about its estimate, as a fraction of it
        expected.append(max(ratio - np.exp(mean - half), np.exp(mean + half) - ratio) / ratio)
    assert (curve.backend, curve.mode) == ("torch", "eager")
    assert curve.seconds == PROCESS_ENDS[1:]
    assert np.allclose(curve.half_widths, expected, rtol=1e-9)


def _extents(fig) -> list:
    """Each panel's full extent (title, tick labels, axis label) in display pixels, after drawing."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return [ax.get_tightbbox(canvas.get_renderer()) for ax in fig.axes]


def _assert_laid_out(fig) -> None:
    """No panel, title or legend outside the figure (clipped) or overlapping another one."""
    boxes = _extents(fig)
    page = fig.bbox
    titles = [text.get_window_extent() for part in (fig, *fig.subfigs) for text in part.texts]  # suptitles
    assert len(titles) == len(fig.subfigs)
    boxes += titles + [legend.get_window_extent() for legend in fig.legends]
    for box in boxes:
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1
    for i, first in enumerate(boxes):
        for second in boxes[i + 1:]:
            assert first.y1 <= second.y0 + 1 or second.y1 <= first.y0 + 1


def test_question_figure_zooms_each_panel_and_grows_with_rows():
    small = _control("torch", 1, 1.0, 1.002, 0.004)  # -0.2% to +0.6%
    large = _control("torch", 2, 1.02, 1.25, 0.05)  # +20% to +30%
    long_title = " ".join(q.text for q in TIMING_QUESTIONS[:3])  # real question texts, too long for one line
    label = "tensorflow / mlp / cpu / compiled: baseline (A/A copy)/compiled vs baseline/compiled"
    panels = [plots.QuestionPanel("A/A", ((label, small),)),
              plots.QuestionPanel(long_title, tuple((f"{label} {i}", large) for i in range(12)))]
    fig = plots.question_figure(panels)
    _assert_laid_out(fig)
    first, second = fig.axes[:2]
    low, high = first.get_xlim()
    assert -1.5 < low < -0.2 and 0.6 < high < 1.5  # its own CI and the ±0.5% noise band, not 0 to 150%
    low, high = second.get_xlim()
    assert -5 < low <= -0.5 and 30 < high < 35  # 0, the noise band and +20%..+30%
    assert "\n" in fig.subfigs[1].get_suptitle()
    one_row = plots.question_figure(panels[:1]).get_size_inches()[1]
    assert fig.get_size_inches()[1] > one_row + 12 * plots.QUESTION_ROW_IN


def test_half_width_figure_has_a_log_percent_axis_per_mode():
    curves = [plots.HalfWidthCurve("torch", "mlp", "eager", (10.0, 15.0, 20.0), (0.05, 0.01, 0.004)),
              plots.HalfWidthCurve("tensorflow", "mlp", "eager", (12.0, 18.0), (0.03, 0.02)),
              plots.HalfWidthCurve("torch", "cnn", "compiled", (30.0, 45.0), (0.02, 0.006))]
    fig = plots.half_width_figure(curves)
    _assert_laid_out(fig)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
    eager = fig.axes[0]
    assert [tuple(line.get_ydata()) for line in eager.lines] == [(5.0, 1.0, 0.4), (3.0, 2.0)]
    assert [line.get_color() for line in eager.lines] == [backend_class("torch").COLOR,
                                                          backend_class("tensorflow").COLOR]
