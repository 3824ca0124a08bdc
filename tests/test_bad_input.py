"""Issue #13's bad inputs, kept fixed: each is refused in one line (exit 2) without a traceback,
without growing past 2 GB and without touching a file; two duplicates are merged, not refused.

Each row runs `python -m harness` in a fresh process, through a small launcher that reports the
harness's peak memory (ru_maxrss of RUSAGE_CHILDREN is a maximum over every child a process ever
waited for, so it is read in a process whose only child is the harness). The timeout is only a
hang guard: on this shared machine no row asserts a time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.results.records import TimingRecord

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 120
MEMORY_LIMIT_KB = 2 * 1024 * 1024
EXIT_BAD_INPUT = 2

# Runs argv[2:] with stdin closed, then writes its children's peak RSS (kB) to argv[1].
MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL)\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    peak_kb: int


def harness(args: list[str], tmp: Path) -> Outcome:
    """`python -m harness ARGS` from the repository root, with its peak memory."""
    peak = tmp.parent / f"{tmp.name}.peak_kb"  # outside tmp, which some rows require unchanged
    command = [sys.executable, "-c", MEASURED, str(peak), sys.executable, "-m", "harness", *args]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"hung for {HANG_GUARD_S} s: {args}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}")
    return Outcome(process.returncode, stdout, stderr, int(peak.read_text()))


def assert_sane(outcome: Outcome) -> None:
    """What every row must show, whatever its exit code."""
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr
    assert outcome.peak_kb < MEMORY_LIMIT_KB, f"peak RSS {outcome.peak_kb} kB"


def error_line(stderr: str) -> str:
    """The one error line: all of stderr, or argparse's usage followed by `python -m harness CMD: error: ...`."""
    lines = stderr.rstrip("\n").splitlines()
    assert lines, "nothing on stderr"
    if lines[0].startswith("usage: python -m harness "):
        assert re.match(r"python -m harness \w+: error: ", lines[-1]), stderr
        assert sum("error:" in line for line in lines) == 1, stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[-1]


# Files a row needs, created under tmp_path before it runs. "{tmp}" in an argument or a fragment
# is tmp_path.

FOLDER = object()  # a tree entry that is an empty folder
FIFO = object()  # a tree entry that is a named pipe (reading it blocks until someone writes)


def tree(entries: dict[str, object]) -> Callable[[Path], None]:
    """A setup writing each path: a str as text, FOLDER as a folder, FIFO as a named pipe."""
    def create(tmp: Path) -> None:
        for name, content in entries.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if content is FOLDER:
                path.mkdir()
            elif content is FIFO:
                os.mkfifo(path)
            else:
                path.write_text(content, encoding="utf-8")

    return create


def snapshot(tmp: Path) -> dict[str, object]:
    """Every path under tmp: a file's bytes, or what it is (reading a FIFO would block)."""
    found: dict[str, object] = {}
    for path in sorted(tmp.rglob("*")):
        name = str(path.relative_to(tmp))
        found[name] = path.read_bytes() if path.is_file() else "folder" if path.is_dir() else "other"
    return found


def fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def spec(input_shape: list[int], layers: list[dict], **fields) -> str:
    """A spec file's JSON: the layers, then a dense layer of 10 units (the classes)."""
    return json.dumps({"input_shape": input_shape, "num_classes": 10,
                       "layers": [*layers, {"type": "dense", "units": 10}],
                       "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9}, **fields})


def dense(units: int) -> dict:
    return {"type": "dense", "units": units, "activation": "relu"}


def big(input_shape: list[int], layers: list[dict], **fields) -> Callable[[Path], None]:
    return tree({"big.json": spec(input_shape, layers, **fields)})


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def ok_case(case_id: str = "x") -> dict:
    """A complete ok case block without records (the smallest a run writes)."""
    return {"schema": 2, "kind": "case", "case_id": case_id, "status": "ok", "command": [], "elapsed_s": 1.0}


def run_folder(results: str, **others: object) -> Callable[[Path], None]:
    """Run folder X: its results.jsonl, environment.json, plan.json, a log, then `others` (a name: its content)."""
    return tree({"X/results.jsonl": results, "X/environment.json": json.dumps({"schema": 1, "threads": 2}),
                 "X/plan.json": json.dumps({"command": "run", "threads": 2, "cases": []}),
                 "X/logs/x.log": "hello\n", **others})


BIG = ["parity", "--spec", "{tmp}/big.json"]
TORCH = ["time", "--backend", "torch"]
TIME = [*TORCH, "--variant", "baseline"]
PERCALL = ["percall", "--backend", "torch"]
CALIBRATE = ["calibrate", "--backend", "torch"]
INSPECT = ["inspect", "--backend", "torch", "--variant", "baseline"]
RUN = ["run", "--suite", "quick", "--backends", "torch", "--models", "mlp", "--out", "{tmp}/X"]
RESUME = ["run", "--resume", "--out", "{tmp}/X"]
NO_CASE_ID = {"schema": 2, "kind": "case", "status": "ok", "command": [], "elapsed_s": 1.0}


def out_of_range(option: str, value: str):
    """A `time` row whose number argparse refuses."""
    return pytest.param(None, [*TIME, option, value], [f"argument {option}: {value} is not in"],
                        id=f"{option[2:]}={value}")


@pytest.mark.parametrize("setup, args, fragments", [
    # Specs too big for memory: refused from their shapes, before anything is allocated.
    pytest.param(big([100_000_000], []), BIG, ["needs about", "{tmp}/big.json"], id="spec-input-1e8"),
    pytest.param(big([50_000], [dense(50_000)]), BIG, ["needs about", "{tmp}/big.json"], id="spec-dense-50000"),
    pytest.param(big([50_000], [dense(50_000)]), [*TORCH, "--spec", "{tmp}/big.json", "--variant", "dropout=0"],
                 ["needs about", "{tmp}/big.json [dropout=0]"], id="time-spec-dense-50000"),
    pytest.param(big([1_000_000], [dense(1_000_000)]), BIG, ["needs about", "{tmp}/big.json"], id="spec-dense-1e6"),
    pytest.param(big([784], [dense(512), dense(256)], batch_size=1_000_000_000), BIG,
                 ["needs about", "{tmp}/big.json"], id="spec-batch-1e9"),
    pytest.param(big([20_000, 20_000, 3], [{"type": "conv2d", "filters": 4, "kernel_size": 3}, {"type": "flatten"}]),
                 BIG, ["needs about", "{tmp}/big.json"], id="spec-image-20000x20000"),
    # Spec paths that are not a small regular file.
    pytest.param(None, ["parity", "--spec", "/dev/zero"], ["/dev/zero"], id="spec-dev-zero"),
    pytest.param(tree({"fifo.json": FIFO}), ["parity", "--spec", "{tmp}/fifo.json"], ["{tmp}/fifo.json"],
                 id="spec-fifo"),
    pytest.param(tree({"d.json": FOLDER}), ["parity", "--spec", "{tmp}/d.json"], ["{tmp}/d.json", "directory"],
                 id="spec-directory"),
    pytest.param(tree({"huge.json": spec([4], []) + " " * 2 * 1024 * 1024}),
                 ["parity", "--spec", "{tmp}/huge.json"], ["{tmp}/huge.json", "MiB"], id="spec-2MiB"),
    # time's numbers: finite and in range.
    out_of_range("--round-seconds", "inf"),
    out_of_range("--round-seconds", "nan"),
    out_of_range("--round-seconds", "0"),
    out_of_range("--rounds", "1000000000000"),
    out_of_range("--rounds", "0"),
    out_of_range("--inject-slowdown", "nan"),
    out_of_range("--inject-slowdown", "-1"),
    out_of_range("--inject-slowdown", "inf"),
    out_of_range("--warmup", "-5"),
    pytest.param(None, [*TIME, "--threads", "100000"], ["--threads 100000"], id="threads-100000"),
    out_of_range("--threads", "0"),
    out_of_range("--steps", "0"),
    out_of_range("--precision", "0"),
    out_of_range("--budget", "-1"),
    # Variants: parsed, not empty, not given twice under any spelling.
    pytest.param(None, [*TORCH, "--variant", ""], ["--variant ''", "empty"], id="variant-empty"),
    pytest.param(None, [*TIME, "--variant", "baseline"], ["'baseline'", "twice"], id="variant-twice"),
    pytest.param(None, [*TORCH, "--variant", "no-dropout", "--variant", "dropout=absent"],
                 ["'no-dropout' and 'dropout=absent'", "twice"], id="variant-twice-two-spellings"),
    pytest.param(None, [*TORCH, "--variant", "dropout=7"], ["dropout=7"], id="variant-rate-7"),
    pytest.param(None, [*TORCH, "--variant", "wobble=1"], ["wobble=1"], id="variant-unknown"),
    # percall: a layer that keeps its input's shape, at least two counts of copies, a busy-wait only in eager.
    pytest.param(None, [*PERCALL, "--layer", "dense=3"], ["--layer: 'dense=3'"], id="percall-layer-dense"),
    pytest.param(None, [*PERCALL, "--layer", "dropout=1.5"], ["--layer.rate: 1.5 is not in [0, 1)"],
                 id="percall-layer-rate-1.5"),
    pytest.param(None, [*PERCALL, "--layer", "dropout=0", "--copies", "5"],
                 ["argument --copies: '5'", "at least two different counts"], id="percall-copies-one-count"),
    pytest.param(None, [*PERCALL, "--layer", "dropout=0", "--copies", "a,b"],
                 ["argument --copies: 'a,b'", "whole numbers"], id="percall-copies-not-numbers"),
    pytest.param(None, [*PERCALL, "--layer", "busywait=20", "--mode", "compiled"],
                 ["--layer busywait=20", "--mode eager (not compiled)"], id="percall-busywait-compiled"),
    pytest.param(None, [*PERCALL, "--layer", "dropout=0", "--net-of", "dense=3"], ["--net-of: 'dense=3'"],
                 id="percall-net-of-dense"),
    pytest.param(None, [*PERCALL, "--layer", "dropout=0", "--net-of", "busywait=0", "--mode", "compiled"],
                 ["--net-of busywait=0", "--mode eager (not compiled)"], id="percall-net-of-busywait-compiled"),
    # study: a data set that exists here, never a download.
    pytest.param(None, ["study", "--data", "cifar10:/nonexistent/cifar"],
                 ["--data: cifar10:/nonexistent/cifar: no such folder"], id="study-cifar-missing"),
    pytest.param(None, ["study", "--data", "wobble"], ["--data: 'wobble' is not a data set"], id="study-data-unknown"),
    pytest.param(None, ["study", "--seeds", "0"], ["argument --seeds: 0 is not in [1, "], id="study-seeds-0"),
    pytest.param(None, ["study", "--jobs", "1024", "--threads", "1"], ["--jobs 1024 with --threads 1: 1024 threads on "
                                                                       "the"], id="study-jobs-above-cores"),
    # calibrate: at least one session, a slowdown to detect.
    pytest.param(None, [*CALIBRATE, "--comparisons", "0"], ["argument --comparisons: 0 is not in [1, "],
                 id="calibrate-comparisons-0"),
    pytest.param(None, [*CALIBRATE, "--inject-slowdown", "0"], ["argument --inject-slowdown: 0 is not in (0, 1]"],
                 id="calibrate-inject-slowdown-0"),
    # Output paths, checked before any work.
    pytest.param(None, [*INSPECT, "--json", "{tmp}/MISSING_DIR/x.json"],
                 ["--json {tmp}/MISSING_DIR/x.json", "does not exist"], id="inspect-json-missing-folder"),
    pytest.param(tree({"out": FOLDER}), [*INSPECT, "--json", "{tmp}/out"], ["--json {tmp}/out", "folder"],
                 id="inspect-json-folder"),
    pytest.param(tree({"out": FOLDER}), [*TIME, "--json", "{tmp}/out"], ["--json {tmp}/out", "folder"],
                 id="time-json-folder"),
    pytest.param(run_folder(jsonl(ok_case()), **{"a-file": "text\n"}), ["report", "{tmp}/X", "--out", "{tmp}/a-file"],
                 ["--out {tmp}/a-file: is a file"], id="report-out-file"),
    # Run folders a run cannot use: refused before anything in them is written.
    pytest.param(tree({"X": "a file\n"}), RUN, ["--out {tmp}/X", "file"], id="run-out-file"),
    pytest.param(tree({"X/results.jsonl": FOLDER}), RUN, ["--out {tmp}/X", "results.jsonl"], id="run-results-folder"),
    pytest.param(tree({"X/.lock": FOLDER}), RUN, ["--out {tmp}/X", ".lock"], id="run-lock-folder"),
    pytest.param(tree({"X/logs": "a file\n"}), RUN, ["--out {tmp}/X", "logs"], id="run-logs-file"),
    pytest.param(None, ["run", "--backends", "torch", "--modes", "xla", "--out", "{tmp}/X"],
                 ["--modes xla", "torch has none"], id="run-torch-xla"),
    pytest.param(None, ["run", "--variants", "dropout=7", "--out", "{tmp}/X"], ["dropout=7"], id="run-variant-rate-7"),
    pytest.param(run_folder(jsonl(ok_case())), ["run", "--suite", "quick", "--out", "{tmp}/X"], ["already has results"],
                 id="run-existing-folder-without-resume"),
    # --resume on a results file a run did not write.
    pytest.param(run_folder(jsonl(NO_CASE_ID)), RESUME, ["{tmp}/X/results.jsonl: record 1", "case_id"],
                 id="resume-case-without-case-id"),
    pytest.param(run_folder("not json\n" + jsonl(ok_case())), RESUME, ["{tmp}/X/results.jsonl: line 1"],
                 id="resume-first-line-not-json"),
    # A resume must continue the same plan (plan.json), or be refused naming the difference.
    pytest.param(run_folder(jsonl(ok_case()), **{"X/plan.json": json.dumps({"command": "study", "threads": 2,
                                                                            "cases": []})}),
                 RESUME, ["--resume: {tmp}/X holds another plan", "holds a `study` run, this is `run`"],
                 id="resume-run-on-a-study-folder"),
    pytest.param(run_folder(jsonl(ok_case())), [*RUN, "--resume"], ["--resume: {tmp}/X holds another plan",
                                                                    "cases only in this plan"],
                 id="resume-with-another-plan"),
    pytest.param(run_folder(jsonl(ok_case()), **{"X/plan.json": "{"}), RESUME, ["{tmp}/X/plan.json", "not valid JSON"],
                 id="resume-plan-not-json"),
    pytest.param(tree({"X/results.jsonl": jsonl(ok_case())}), RESUME, ["--resume: {tmp}/X has no plan.json"],
                 id="resume-folder-without-plan"),
    # Paths and budgets that would write elsewhere, or run far past what was asked.
    pytest.param(None, ["run", "--suite", "quick", "--out", ""], ["--out '': an empty path"], id="run-out-empty"),
    pytest.param(None, ["run", "--suite", "quick", "--out", "{tmp}/" + "n" * 300 + "/X"], ["File name too long"],
                 id="run-out-name-too-long"),
    pytest.param(None, [*TIME, "--min-processes", "10", "--max-processes", "2"],
                 ["--min-processes 10 is more than --max-processes 2"], id="time-min-over-max-processes"),
    pytest.param(None, [*PERCALL, "--layer", "busywait=999999", "--budget", "10"],
                 ["busy-wait layers", "more than --budget 10 s"], id="percall-spin-over-budget"),
    pytest.param(big([8], [dense(4)] * 5000), BIG, ["{tmp}/big.json.layers: 5001 layers, at most 1000"],
                 id="spec-5000-layers"),
    pytest.param(run_folder(jsonl(ok_case())), ["report", "{tmp}/X", "{tmp}/X/"], ["{tmp}/X: given twice"],
                 id="report-one-folder-twice"),
    # Two runs' results joined into one file.
    pytest.param(run_folder(jsonl(ok_case()) * 2), ["report", "{tmp}/X"],
                 ["{tmp}/X/results.jsonl", "more than one run"], id="report-two-runs-joined"),
])
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, setup, args, fragments):
    if setup is not None:
        setup(tmp_path)
    before = snapshot(tmp_path)

    outcome = harness([fill(arg, tmp_path) for arg in args], tmp_path)

    assert_sane(outcome)
    assert outcome.returncode == EXIT_BAD_INPUT, outcome.stderr
    line = error_line(outcome.stderr)
    for fragment in fragments:
        assert fill(fragment, tmp_path) in line
    assert snapshot(tmp_path) == before


def bad_timing(**changes) -> dict:
    """A timing record of arm "bogus-arm", with `changes` that make it invalid."""
    record = TimingRecord(
        backend="torch", model="mlp", variant="dropout=0", arm="bogus-arm", device="cpu", mode="eager", threads=2,
        median_s=0.002, iqr_s=0.0001, rounds=3, steps_per_round=10, setup_s=0.1, warmup_s=0.1, params=100,
        flops_per_step=1000, session="s", times_s=(0.002, 0.002, 0.002))
    return {**record.as_dict(), "case_id": "time/torch/mlp/cpu/eager", **changes}


@pytest.mark.parametrize("changes, warning", [
    pytest.param({"median_s": "fast"}, "field 'median_s'", id="median-a-string"),
    pytest.param({"kind": ["timing"]}, "unknown kind", id="kind-a-list"),
    pytest.param({"median_s": float("nan")}, "field 'median_s'", id="median-nan"),
])
def test_report_skips_a_bad_record_with_a_warning(tmp_path, changes, warning):
    run_folder(jsonl(bad_timing(**changes), ok_case("time/torch/mlp/cpu/eager")))(tmp_path)

    outcome = harness(["report", str(tmp_path / "X")], tmp_path)

    assert_sane(outcome)
    assert outcome.returncode == 0, outcome.stderr
    report = (tmp_path / "X" / "report.md").read_text(encoding="utf-8")
    assert f"{tmp_path}/X/results.jsonl: record 1 was skipped: {warning}" in report, report
    assert "bogus-arm" not in report


def one_eager_arm(tmp: Path, outcome: Outcome) -> None:
    arms = [line.split()[0] for line in outcome.stdout.splitlines() if line.startswith("baseline/")]
    assert arms == ["baseline/eager"], outcome.stdout


def each_case_once(tmp: Path, outcome: Outcome) -> None:
    lines = (tmp / "X" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [json.loads(line)["case_id"] for line in lines if json.loads(line)["kind"] == "case"]
    assert sorted(cases) == ["inspect/torch/mlp", "time/torch/mlp/cpu/eager"], cases


@pytest.mark.parametrize("args, check", [
    pytest.param([*TIME, "--mode", "eager", "--mode", "eager", "--rounds", "3", "--steps", "1", "--warmup", "0"],
                 one_eager_arm, id="time-mode-eager-twice"),
    pytest.param(["run", "--backends", "torch", "torch", "--models", "mlp", "--suite", "quick", "--out", "{tmp}/X",
                  "--variants", "baseline"], each_case_once, id="run-backends-torch-twice", marks=pytest.mark.slow),
])
def test_a_repeated_choice_is_merged(tmp_path, args, check):
    outcome = harness([fill(arg, tmp_path) for arg in args], tmp_path)

    assert_sane(outcome)
    assert outcome.returncode == 0, outcome.stderr
    check(tmp_path, outcome)
