"""Issue #24's hostile inputs, kept fixed: each is refused in one line naming the bad value (or,
for an unusable environment.json or an impossible record, skipped with a warning that names it),
with bounded memory and without running anything the input carries.

Most rows call the library in-process (fast) and bound its Python and numpy allocations with
tracemalloc; the few rows that would block or run away if the fix regressed (a FIFO, /dev/zero,
a 2 GB file) run `python -m harness` in a fresh process, as tests/test_bad_input.py does, with
its peak RSS and a hang guard. No row asserts a time: the machine is shared.
"""

from __future__ import annotations

import json
import os
import pickle
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from test_bad_input import EXIT_BAD_INPUT, FIFO, assert_sane, error_line, fill, harness, tree

from harness import stats
from harness.errors import HarnessInputError
from harness.model.spec import load_spec
from harness.report import build_report
from harness.report.benchmark_view import load_benchmark_json
from harness.report.reading import read_run_folder
from harness.results.records import CaseRecord, ComparisonRecord, TimingRecord
from harness.study.datasets import CIFAR_FILES, read_cifar10

TRACED_LIMIT_BYTES = 150 * 1024 * 1024  # every in-process row; the hostile files are larger
SPARSE_BYTES = 256 * 1024 * 1024  # in-process: over every limit, and over TRACED_LIMIT_BYTES if read
MARKER = "PAYLOAD_RAN"  # a pickle payload's trace: it must never appear


# -- inputs ----------------------------------------------------------------------------------------

class Payload:
    """Pickles as a call of os.mkdir({tmp}/PAYLOAD_RAN): what a plain pickle.load would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


class EvalPayload(Payload):
    def __reduce__(self):
        return eval, (f"__import__('os').mkdir({self.marker!r})",)


def cifar(changes: dict | None = None) -> Callable[[Path], None]:
    """A CIFAR-10 folder {tmp}/cifar of 2-image batches; data_batch_1's dict gets `changes` (a
    Payload class as a value: an instance aimed at {tmp}/PAYLOAD_RAN)."""
    def create(tmp: Path) -> None:
        (tmp / "cifar").mkdir()
        for index, name in enumerate(CIFAR_FILES):
            batch = {b"data": np.full((2, 3072), 7, np.uint8), b"labels": [index % 10] * 2, b"batch_label": b"b"}
            if name == "data_batch_1":
                batch.update({key: value(tmp / MARKER) if isinstance(value, type) else value
                              for key, value in (changes or {}).items()})
            (tmp / "cifar" / name).write_bytes(pickle.dumps(batch, protocol=2))  # as the real batches
    return create


def sparse(name: str, size: int) -> Callable[[Path], None]:
    """A file of `size` zero bytes that takes no disk space (and no newline)."""
    def create(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(size)
    return create


def timing(backend: str = "torch", model: str = "mlp", arm: str = "baseline", scale: float = 1.0) -> TimingRecord:
    times = tuple(scale * (0.002 + 0.0001 * i) for i in range(12))
    return TimingRecord(
        backend=backend, model=model, variant="baseline", arm=arm, device="cpu", mode="eager", threads=2,
        median_s=float(np.median(times)), iqr_s=0.0003, rounds=len(times), steps_per_round=10, setup_s=0.1,
        warmup_s=0.1, params=100, flops_per_step=1000, session="s", times_s=times)


def comparison(model: str = "mlp", **changes: object) -> dict:
    record = ComparisonRecord(
        backend="torch", model=model, device="cpu", mode="eager", threads=2, a="baseline", b="baseline (A/A)",
        ratio=1.01, ci_low=0.99, ci_high=1.03, noise_floor=None, session="s", question="aa", n_pairs=12,
        processes=3, process_ratios=(1.0, 1.01, 1.02), expected_ratio=1.0)
    return {**record.as_dict(), **changes}


def run_folder(*lines: str | dict, environment: str = '{"schema": 1, "threads": 2}', model: str = "mlp"
               ) -> Callable[[Path], None]:
    """Run folder {tmp}/X: `lines` (each a JSON text, or a record's dict), then the baseline timings
    of two backends on `model` and one ok case record; and its environment.json."""
    def create(tmp: Path) -> None:
        records = [*lines, timing(model=model).as_dict(), timing("tensorflow", model, scale=1.5).as_dict(),
                   CaseRecord("c", "ok", (), 1.0).as_dict()]
        (tmp / "X").mkdir()
        (tmp / "X" / "results.jsonl").write_text(
            "".join((r if isinstance(r, str) else json.dumps({**r, "case_id": "c"})) + "\n" for r in records),
            encoding="utf-8")
        (tmp / "X" / "environment.json").write_text(environment, encoding="utf-8")
    return create


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def create(tmp: Path) -> None:
        for setup in setups:
            setup(tmp)
    return create


def text_file(name: str, text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_text(text, encoding="utf-8")


def benchmark(**bench_changes: object) -> str:
    """A pytest-benchmark JSON text with one benchmark, changed by `bench_changes`."""
    stats_ = {"mean": 0.002, "median": 0.002, "stddev": 0.0001, "iqr": 0.0001, "rounds": 20}
    bench = {"name": "test_step[torch-mlp]", "group": "step", "stats": stats_, **bench_changes}
    return json.dumps({"machine_info": {"node": "h"}, "benchmarks": [bench]})


DEEP_JSON = "[" * 100_000 + "]" * 100_000


# -- what a row calls: each returns the one line to check ------------------------------------------

def refused(call: Callable[[Path], object]) -> Callable[[Path], str]:
    """The HarnessInputError `call` must raise, as its message."""
    def outcome(tmp: Path) -> str:
        with pytest.raises(HarnessInputError) as info:
            call(tmp)
        return str(info.value)
    return outcome


def report_warning(tmp: Path) -> str:
    """The warning of a run folder {tmp}/X that is read despite it (exactly one)."""
    warnings = read_run_folder(tmp / "X").warnings
    assert len(warnings) == 1, warnings
    return warnings[0]


def report_written(tmp: Path) -> str:
    """The first line (the title) of the report of {tmp}/X, which must be written with all its plots."""
    paths = build_report([tmp / "X"])
    assert paths.plots and all(plot.stat().st_size > 0 for plot in paths.plots)
    return paths.markdown.read_text(encoding="utf-8").splitlines()[0]


CIFAR = refused(lambda tmp: read_cifar10(tmp / "cifar"))
REPORT = refused(lambda tmp: read_run_folder(tmp / "X"))
BENCHMARK = refused(lambda tmp: load_benchmark_json(tmp / "bench.json"))
SPEC = refused(lambda tmp: load_spec(tmp / "spec.toml"))
BATCH_1 = "{tmp}/cifar/data_batch_1: "


@pytest.mark.parametrize("setup, outcome, fragments", [
    # 1. A CIFAR-10 batch is unpickled without running anything, and its values are checked.
    pytest.param(cifar({b"payload": Payload}), CIFAR, [BATCH_1 + "refused to load posix.mkdir"],
                 id="cifar-reduce-payload"),
    pytest.param(cifar({b"payload": EvalPayload}), CIFAR, [BATCH_1 + "refused to load __builtin__.eval"],
                 id="cifar-eval-payload"),
    pytest.param(both(cifar(), sparse("cifar/data_batch_1", 64 * 1024 * 1024 + 1)), CIFAR,
                 [BATCH_1 + "67108865 bytes, more than the 64 MiB limit"], id="cifar-batch-over-64MiB"),
    pytest.param(cifar({b"data": np.where(np.arange(2 * 3072).reshape(2, 3072) == 3077, 1000, 7)}), CIFAR,
                 [BATCH_1 + "data[1, 5]: 1000 is not in [0, 255]"], id="cifar-pixel-1000"),
    pytest.param(cifar({b"data": np.zeros((2, 100), np.uint8)}), CIFAR,
                 [BATCH_1 + "data: uint8 array of shape (2, 100); expected (N, 3072)"], id="cifar-data-2x100"),
    pytest.param(cifar({b"labels": [0, 2**40]}), CIFAR, [BATCH_1 + "labels[1]: 1099511627776 is not in [0, 9]"],
                 id="cifar-label-2**40"),
    pytest.param(cifar({b"labels": [-5, 0]}), CIFAR, [BATCH_1 + "labels[0]: -5 is not in [0, 9]"],
                 id="cifar-label-negative"),
    pytest.param(cifar({b"labels": [[0], [1]]}), CIFAR, [BATCH_1 + "labels[0]: [0] is not an integer"],
                 id="cifar-label-a-list"),
    pytest.param(cifar({b"labels": [0, 1, 2]}), CIFAR, [BATCH_1 + "3 labels for 2 images"],
                 id="cifar-label-count"),
    # 2. Reads are bounded: a line, a file.
    pytest.param(sparse("X/results.jsonl", SPARSE_BYTES), REPORT,
                 ["{tmp}/X/results.jsonl: line 1: longer than 16 MiB"], id="results-line-256MB"),
    pytest.param(both(run_folder(), sparse("X/environment.json", SPARSE_BYTES)), report_warning,
                 ["{tmp}/X/environment.json: 268435456 bytes, more than the 64 MiB limit; "
                  "the environment is not shown"],
                 id="environment-256MB"),
    pytest.param(sparse("bench.json", SPARSE_BYTES), BENCHMARK,
                 ["{tmp}/bench.json: 268435456 bytes, more than the 64 MiB limit"], id="benchmark-256MB"),
    # 3. Deep nesting and huge integers.
    pytest.param(run_folder(DEEP_JSON), REPORT, ["{tmp}/X/results.jsonl: line 1: JSON nested deeper than 100 levels"],
                 id="results-line-nested-100000"),
    pytest.param(run_folder(environment=DEEP_JSON), report_warning,
                 ["{tmp}/X/environment.json: JSON nested deeper than 100 levels; the environment is not shown"],
                 id="environment-nested-100000"),
    pytest.param(run_folder(environment='{"a": ' * 500 + "1" + "}" * 500), report_warning,
                 ["{tmp}/X/environment.json: JSON nested deeper than 100 levels"], id="environment-nested-500"),
    pytest.param(text_file("bench.json", DEEP_JSON), BENCHMARK, ["{tmp}/bench.json: JSON nested deeper than 100"],
                 id="benchmark-nested-100000"),
    pytest.param(text_file("spec.toml", "a = " + "[" * 10_000 + "]" * 10_000 + "\n"), SPEC,
                 ["{tmp}/spec.toml: not a usable TOML document (RecursionError)"], id="toml-nested-10000"),
    pytest.param(text_file("spec.toml", "a = " + "9" * 5000 + "\n"), SPEC,
                 ["{tmp}/spec.toml: not a usable TOML document (ValueError)"], id="toml-5000-digits"),
    # 5. Values that reached a traceback.
    pytest.param(text_file("bench.json", benchmark(group=["a"])), BENCHMARK,
                 ['{tmp}/bench.json: benchmarks[0].group: ["a"] is not a string'], id="benchmark-group-a-list"),
    pytest.param(text_file("bench.json",
                           benchmark(stats={"mean": 1, "median": "x", "stddev": 0, "iqr": 0, "rounds": 2})),
                 BENCHMARK, ['{tmp}/bench.json: benchmarks[0].stats.median: "x" is not a finite number'],
                 id="benchmark-median-a-string"),
    pytest.param(run_folder(comparison(ratio=0)), report_warning,
                 ["{tmp}/X/results.jsonl: record 1 was skipped: field 'ratio' is 0; expected a number > 0"],
                 id="comparison-ratio-0"),
    pytest.param(run_folder(comparison(ratio=-0.5)), report_warning,
                 ["record 1 was skipped: field 'ratio' is -0.5; expected a number > 0"],
                 id="comparison-ratio-negative"),
    pytest.param(run_folder(comparison(ci_low=0.0)), report_warning,
                 ["record 1 was skipped: field 'ci_low' is 0.0; expected a number > 0"], id="comparison-ci-low-0"),
    pytest.param(run_folder(comparison(process_ratios=[1.0, 0, 1.0])), report_warning,
                 ["record 1 was skipped: field 'process_ratios[1]' is 0; expected a number > 0"],
                 id="comparison-process-ratio-0"),
    pytest.param(run_folder({**timing().as_dict(), "times_s": [0.002, 0.0, 0.002]}), report_warning,
                 ["record 1 was skipped: field 'times_s[1]' is 0.0; expected a number > 0"], id="timing-time-0"),
    pytest.param(run_folder(comparison(model="$x^$"), model="$x^$"), report_written,
                 ["# Cross-framework run report: X"], id="model-name-mathtext"),
])
def test_hostile_input_is_one_line_with_bounded_memory(tmp_path, setup, outcome, fragments):
    setup(tmp_path)

    tracemalloc.start()
    try:
        line = outcome(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert "\n" not in line, line
    for fragment in fragments:
        assert fill(fragment, tmp_path) in line, line
    assert peak < TRACED_LIMIT_BYTES, f"peak {peak / 2**20:.0f} MiB"
    assert not (tmp_path / MARKER).exists(), "the pickle's payload ran"


@pytest.mark.parametrize("setup, args, fragments", [
    pytest.param(None, ["report", "/dev/zero"], ["/dev/zero: is a character device, not a regular file"],
                 id="report-dev-zero"),
    pytest.param(tree({"bench.json": FIFO}), ["report", "{tmp}/bench.json"],
                 ["{tmp}/bench.json: is a FIFO (named pipe), not a regular file"], id="report-fifo"),
    pytest.param(both(run_folder(), sparse("X/results.jsonl", 2 * 1024**3)), ["report", "{tmp}/X"],
                 ["{tmp}/X/results.jsonl: line 1: longer than 16 MiB"], id="report-results-2GB"),
    pytest.param(cifar({b"payload": Payload}), ["study", "--data", "cifar10:{tmp}/cifar"],
                 ["--data: cifar10:{tmp}/cifar/data_batch_1: refused to load posix.mkdir"], id="study-cifar-payload"),
])
def test_hostile_input_through_the_cli(tmp_path, setup, args, fragments):
    if setup is not None:
        setup(tmp_path)

    outcome = harness([fill(arg, tmp_path) for arg in args], tmp_path)

    assert_sane(outcome)
    assert outcome.returncode == EXIT_BAD_INPUT, outcome.stderr
    line = error_line(outcome.stderr)
    for fragment in fragments:
        assert fill(fragment, tmp_path) in line
    assert not (tmp_path / MARKER).exists(), "the pickle's payload ran"


# -- 4. The bootstrap of an unpaired ratio in bounded memory ---------------------------------------

def test_unpaired_ratio_bootstrap_memory_does_not_grow_with_rounds():
    rng = np.random.default_rng(5)
    a = rng.lognormal(np.log(0.002), 0.05, 5000)
    b = 2 * rng.lognormal(np.log(0.002), 0.05, 5000)

    tracemalloc.start()
    try:
        found = stats.unpaired_ratio(a, b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Unbatched, the 10,000 resamples of 5,000 rounds were 400 MB per array.
    assert peak < 150 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    assert found.ci_low < found.ratio < found.ci_high
    assert 1.98 < found.ci_low and found.ci_high < 2.02


def test_small_samples_get_the_same_bootstrap_as_before_batching():
    """Below BOOTSTRAP_BATCH_VALUES / N_RESAMPLES rounds every resample is drawn in one batch, as
    scipy draws them without `batch`: the CIs of stored reports do not move."""
    rng = np.random.default_rng(6)
    a, b = rng.lognormal(0, 0.1, 150), rng.lognormal(0.1, 0.1, 150)
    unbatched = scipy.stats.bootstrap(
        (a, b), lambda x, y, axis=-1: np.median(y, axis=axis) / np.median(x, axis=axis), paired=False,
        vectorized=True, confidence_level=stats.CONFIDENCE, n_resamples=stats.N_RESAMPLES, method="percentile",
        rng=np.random.default_rng(stats.BOOTSTRAP_SEED)).confidence_interval

    found = stats.unpaired_ratio(a, b)

    assert (found.ci_low, found.ci_high) == (unbatched.low, unbatched.high)
