"""Report: a synthetic run folder (and pytest-benchmark JSON) in, report.md + index.html + PNGs out.

The run folder is built from the record dataclasses with known effects: dropout=0 is 10% slower
than dropout=absent, the injected arm 5% slower, the A/A copy identical in distribution, PyTorch's
baseline about two thirds of TensorFlow's, one parity check fails and one case failed.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.questions import AA_CONTROL, GRAPH_QUESTIONS, INJECTED_CONTROL, TIMING_QUESTIONS
from harness.records import CaseRecord, ComparisonRecord, InspectRecord, ParityRecord, TimingRecord
from harness.report import ReportPaths, build_report
from harness.stats import paired_ratio

ROUNDS = 15
QUESTION = {q.key: q for q in TIMING_QUESTIONS}


def _timing(backend, variant, arm, times, session, role="arm", mode="eager"):
    return TimingRecord(
        backend=backend, model="mlp", variant=variant, arm=arm, device="cpu", mode=mode, threads=4,
        median_s=float(np.median(times)), iqr_s=float(np.subtract(*np.percentile(times, [75, 25]))),
        rounds=len(times), steps_per_round=20, setup_s=0.8, warmup_s=0.1, params=26_506,
        flops_per_step=3_000_000, session=session, role=role,
        injected_slowdown=0.05 if role == "injected" else 0.0, times_s=tuple(float(t) for t in times))


def _comparison(a: TimingRecord, b: TimingRecord, question: str, noise_floor: float | None) -> ComparisonRecord:
    pr = paired_ratio(a.times_s, b.times_s)
    return ComparisonRecord(
        backend=a.backend, model=a.model, device=a.device, mode=a.mode, threads=a.threads, a=a.arm, b=b.arm,
        ratio=pr.ratio, ci_low=pr.ci_low, ci_high=pr.ci_high, noise_floor=noise_floor,
        session=a.session, question=question, n_pairs=pr.n_pairs)


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
    start = markdown.index(f"## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start: end if end != -1 else None]


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
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?data:)""", page)
    assert not re.search(r"url\(|@import|<script|<link", page, re.IGNORECASE)


def test_verdicts_come_first_with_the_records_sentences(report):
    _, markdown, page = report
    assert markdown.index("## Verdicts") < markdown.index("## Plots") < markdown.index("## Timings")
    verdicts = _section(markdown, "Verdicts")
    dropout = QUESTION["dropout_p0_cost"].text
    assert dropout in verdicts
    for backend in ("torch", "tensorflow"):
        where = f"- **{backend} / mlp / cpu / eager**: "
        line = next(ln for ln in verdicts.splitlines() if ln.startswith(where + "dropout=0"))
        assert re.search(rf"dropout=0 is (9|10|11)\.\d% slower than {backend} mlp dropout=absent \(ratio 1\.\d{{3}}, "
                         r"95% CI", line)
    assert "dropout=0 is" in page and "slower than torch mlp dropout=absent" in page


@pytest.mark.parametrize("question", [q for q in TIMING_QUESTIONS if q.key != "dropout_p0_cost"], ids=lambda q: q.key)
def test_a_question_without_data_says_not_measured(report, question):
    verdicts = _section(report[1], "Verdicts")
    after = verdicts[verdicts.index(question.text):].split("\n\n")[1]
    assert after.strip() == "- Not measured in this run."


def test_graph_verdicts_count_nodes(report):
    verdicts = _section(report[1], "Verdicts")
    assert "**torch autograd graph, mlp**: dropout=0 has 14 nodes, dropout=absent 12: +2 nodes." in verdicts
    l2 = next(q for q in GRAPH_QUESTIONS if q.key == "l2_zero_nodes")
    assert verdicts[verdicts.index(l2.text):].split("\n\n")[1].strip() == "- Not measured in this run."


def test_failing_parity_check_answers_no_and_is_marked(report):
    _, markdown, page = report
    verdicts = _section(markdown, "Verdicts")
    assert "- No: 1 of 5 checks failed on 2 model/variant pairs: mlp/bn=before bn_running_stats" in verdicts
    assert "✗ FAIL" in _section(markdown, "Parity")
    assert '<tr class="bad"><td>mlp</td><td>bn=before</td><td>bn_running_stats</td>' in page


def test_all_parity_checks_passing_answers_yes(tmp_path):
    folder = _write_run(tmp_path / "run", [("parity/mlp", _parity(True), _ok("parity/mlp"))])
    markdown = build_report([folder]).markdown.read_text(encoding="utf-8")
    assert ("- Yes: all 4 checks passed on 1 model/variant pairs (largest relative error 3.00e-06, "
            "at mlp/baseline sgd_momentum_10_steps") in markdown


def test_controls_report_noise_floor_and_injected_detection(report):
    verdicts = _section(report[1], "Verdicts")
    for backend in ("torch", "tensorflow"):
        line = next(ln for ln in verdicts.splitlines()
                    if ln.startswith(f"- **{backend} / mlp / cpu / eager**: A/A noise floor ±"))
        assert "injected 5% slowdown detected (ratio 1.0" in line


def test_reference_vs_other_backend_uses_the_baselines(report):
    verdicts = _section(report[1], "Verdicts")
    match = re.search(r"- \*\*mlp / cpu / eager\*\*: torch is faster than tensorflow: "
                      r"it takes (\d+\.\d)% less time per step", verdicts)
    assert match and 28 < float(match.group(1)) < 38  # 2 ms vs 3 ms
    assert "torch ÷ tensorflow time per training step" in _section(report[1], "Plots")


def test_framework_ratio_names_the_reference_and_each_other_backend(tmp_path):
    cases = [(f"time/{backend}/mlp/cpu/eager", _session(backend, base_s, seed), _ok(f"time/{backend}/mlp/cpu/eager"))
             for backend, base_s, seed in (("torch", 0.002, 1), ("tensorflow", 0.003, 2), ("torch2", 0.004, 3))]
    markdown = build_report([_write_run(tmp_path / "run", cases)]).markdown.read_text(encoding="utf-8")
    verdicts = _section(markdown, "Verdicts")
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
    verdicts = _section(markdown, "Verdicts")
    after = verdicts[verdicts.index("How does the reference backend's (torch)"):].split("\n\n")[1]
    assert after.strip() == "- Not measured in this run."
    assert "_torch ÷ each other backend time per training step (baseline, 95% CI): no data in this run._" in markdown


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
    assert "dropout=0 is" in _section(markdown, "Verdicts") and "4 cases ok, 1 missing" in markdown


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
    assert "stale" not in markdown and "| faster |" not in _section(markdown, "Comparisons")
    assert "dropout=0 is" in _section(markdown, "Verdicts") and "| slower |" in _section(markdown, "Comparisons")


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
    assert "None: every case finished ok." in markdown
    assert _section(markdown, "Timings").count("| baseline (A/A) |") == 1
    assert "unfinished-rerun-arm" not in _section(markdown, "Timings")
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
    assert "dropout=0 is" in _section(markdown, "Verdicts")
    assert "| time/torch/cnn/cpu/eager | interrupted | no case record" in _section(markdown, "Missing cases")
    assert "cnn-arm-before-kill" not in _section(markdown, "Timings")


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
    row = ("| test_step[torch-mlp] | step | 2.142 | 2.1 | 0.105 | 0.084 | 20 "
           "| torch | mlp | baseline | cpu | eager | 4 |")
    assert row in markdown
    assert "| machine_info.cpu.brand_raw | AMD EPYC 9654 |" in markdown
    assert "| machine_info.cpu.flags | avx2, fma |" in markdown
    assert page.count('src="data:image/png;base64,') == 1


def test_several_benchmark_files_get_a_file_column(tmp_path):
    first, second = _benchmark_json(tmp_path / "a.json"), _benchmark_json(tmp_path / "b.json")
    markdown = build_report([first, second], out_dir=tmp_path / "out").markdown.read_text(encoding="utf-8")
    assert "| b.json | test_build[torch-mlp] | build |" in markdown
    assert "Machine and commit: a.json" in markdown and "Machine and commit: b.json" in markdown


def test_verdicts_say_how_many_may_be_chance(report):
    verdicts = _section(report[1], "Verdicts")
    match = re.search(r"This run answers (\d+) timing comparisons at 95% confidence, so about (\d+)", verdicts)
    assert match
    answered = sum(1 for line in verdicts.splitlines() if line.startswith("- **") and "A/A" in line
                   and "noise floor" in line and "A/A noise floor ±" in line and "A/A ratio" not in line)
    assert answered > 0 and int(match.group(1)) == answered
    assert int(match.group(2)) == round(0.05 * answered)
