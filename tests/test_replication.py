"""Replication: merging the records of worker processes, when run_replicated stops, and how a
worker's exit code becomes an error. Workers and subprocess.run are faked: no process starts."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from backends import backend_class
from harness.errors import BackendUnavailable, HarnessInputError
from harness.model.spec import PRESETS
from harness.model.variants import parse_variants, variant_arms
from harness.results.records import TimingRecord
from harness.running.worker import read_job
from harness.timing import replication
from harness.timing.replication import ReplicationPlan, merge_processes, run_replicated
from harness.timing.request import TimingRequest
from harness.timing.session import TimingPlan

ARMS = ("baseline/eager", "dropout=0/eager")


def _record(arm: str, times, process: int, setup_s: float = 1.0, warmup_s: float = 0.1) -> TimingRecord:
    """What one worker process reports for one arm."""
    return TimingRecord(
        backend="torch", model="mlp", variant=arm.split("/")[0], arm=arm, device="cpu", mode="eager", threads=2,
        median_s=float(np.median(times)), iqr_s=0.0, rounds=len(times), steps_per_round=10, setup_s=setup_s,
        warmup_s=warmup_s, params=1, flops_per_step=1, session="s", times_s=tuple(times), processes=1,
        process_of_round=(process,) * len(times), instances=4)


def _process(index: int, rounds: int = 4) -> list[TimingRecord]:
    rng = np.random.default_rng(index)
    a = 1e-3 * (1 + 0.01 * rng.standard_normal(rounds))
    return [_record(ARMS[0], a, index, setup_s=index + 1.0, warmup_s=0.1 * (index + 1)),
            _record(ARMS[1], 1.1 * a, index, setup_s=2 * (index + 1.0))]


def test_merge_concatenates_rounds_in_process_order():
    per_process = [_process(0, rounds=3), _process(1, rounds=4), _process(2, rounds=5)]
    merged = merge_processes(per_process, [5.0, 9.0, 14.0], stop_reason=replication.PRECISION_REACHED)
    assert [r.arm for r in merged] == list(ARMS)
    for arm, record in enumerate(merged):
        times = [t for process in per_process for t in process[arm].times_s]
        assert record.times_s == tuple(times)
        assert record.process_of_round == (0,) * 3 + (1,) * 4 + (2,) * 5
        assert (record.processes, record.rounds) == (3, 12)
        assert record.median_s == np.median(times)
        assert record.iqr_s == pytest.approx(np.subtract(*np.percentile(times, [75, 25])))
        assert record.process_end_s == (5.0, 9.0, 14.0)
        assert record.stop_reason == replication.PRECISION_REACHED
    assert merged[0].setup_s == pytest.approx(2.0) and merged[1].setup_s == pytest.approx(4.0)
    assert merged[0].warmup_s == pytest.approx(0.2)


def test_merge_refuses_processes_that_timed_different_arms():
    renamed = [_record("other/eager", r.times_s, 1) if r.arm == ARMS[1] else r for r in _process(1)]
    with pytest.raises(ValueError, match="different arms"):
        merge_processes([_process(0), renamed, _process(2)], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        merge_processes([_process(0), _process(1)[:1]], [1.0, 2.0])  # an arm missing


@pytest.fixture
def workers(monkeypatch):
    """Fake workers: each returns _process(index) and advances a fake clock by its duration
    (`durations`, the last one repeated, for TimingPlan's default process_s; a job with longer
    rounds takes that much longer); `jobs` records what each was asked to do, `taken` how long."""
    state = SimpleNamespace(jobs=[], durations=[0.001], now=100.0, taken=[])

    def run_worker(folder, index, job):
        state.jobs.append(job)
        state.taken.append(state.durations[min(index, len(state.durations) - 1)]
                           + job["plan"]["process_s"] - TimingPlan.process_s)
        state.now += state.taken[-1]
        return _process(index)

    monkeypatch.setattr(replication, "_run_worker", run_worker)
    monkeypatch.setattr(replication, "time", SimpleNamespace(perf_counter=lambda: state.now))
    return state


def _run(plan: ReplicationPlan, precision_of, progress=lambda message: None):
    spec = PRESETS["mlp"]
    arms = variant_arms(spec, parse_variants(["baseline", "dropout=0"]))
    request = TimingRequest(backend=backend_class("torch"), device="cpu", threads=2, spec=spec,
                            plan=TimingPlan(arms), replication=plan)
    return run_replicated(request, precision_of, progress)


def _processes_so_far(records) -> int:
    return records[0].processes


@pytest.mark.parametrize("min_processes, expected", [(3, 3), (5, 5), (2, 2)])
def test_stops_once_precise_with_at_least_min_processes(workers, min_processes, expected):
    seen, messages = [], []

    def precision_of(records):
        seen.append(_processes_so_far(records))
        return 0.001  # precise from the second process on

    found = _run(ReplicationPlan(precision=0.01, min_processes=min_processes), precision_of, messages.append)
    assert found.stop_reason == replication.PRECISION_REACHED
    assert found.reached == 0.001
    assert seen == list(range(1, expected + 1))  # the first process's CI over rounds plans the rest
    assert len(messages) == expected
    assert [r.processes for r in found.records] == [expected] * 2
    assert found.records[0].stop_reason == replication.PRECISION_REACHED
    assert [job["process"] for job in workers.jobs] == list(range(expected))
    assert len({job["seed"] for job in workers.jobs}) == expected
    assert len({job["session"] for job in workers.jobs}) == 1


def test_stops_when_the_ci_narrows_to_the_precision(workers):
    found = _run(ReplicationPlan(precision=0.021), lambda records: 0.1 / _processes_so_far(records))
    assert found.stop_reason == replication.PRECISION_REACHED
    assert found.records[0].processes == 5 and found.reached == pytest.approx(0.02)


def test_stops_at_max_processes(workers):
    found = _run(ReplicationPlan(precision=0.01, max_processes=4, budget_s=1e9), lambda records: 0.5)
    assert found.stop_reason == replication.MAX_PROCESSES
    assert found.records[0].processes == 4 and found.reached == 0.5


@pytest.mark.parametrize("durations, budget_s, min_processes, expected", [
    ([10.0], 35.0, 3, 3),  # after 3: 30 s spent, another 10 s would pass 35 s
    ([10.0], 40.0, 3, 4),  # another process that ends exactly on the budget still runs
    ([30.0, 5.0], 50.0, 3, 5),  # judged by the last process's time (the next one would take 5 s)
    ([30.0], 50.0, 3, 3),  # min_processes run even past the budget: fewer would give no verdict
    ([30.0], 50.0, None, 4),  # the default min_processes: 4
    # 30 s, then 5 s (1 s start, 4 s rounds); the three still planned of 5 share the 25 s left:
    # 1 + 7.33 s each, ending on the budget
    ([30.0, 5.0], 60.0, 3, 5),
])
def test_stops_when_another_process_would_not_fit_the_budget(workers, durations, budget_s, min_processes, expected):
    workers.durations = durations
    plan = ReplicationPlan(precision=0.01, budget_s=budget_s)
    plan = replace(plan, min_processes=min_processes) if min_processes else plan
    found = _run(plan, lambda records: 0.5)
    assert found.stop_reason == replication.BUDGET_SPENT
    assert found.records[0].processes == expected
    ends = np.cumsum(workers.taken)
    assert found.records[0].process_end_s == pytest.approx(tuple(ends))
    assert found.elapsed_s == pytest.approx(ends[-1])
    if expected == 5 and budget_s == 60.0:
        assert [job["plan"]["process_s"] for job in workers.jobs] == pytest.approx([4.0, 4.0, 22 / 3, 22 / 3, 22 / 3])
        assert ends[-1] == pytest.approx(60.0)


def _predicted_half_width(first_s, first_half_width, process_s, processes):
    """The t-interval half-width of `processes` processes of `process_s` seconds of rounds each,
    when rounds are all that vary: the first process's round SE scaled by its rounds' share."""
    from harness.stats import t_quantile
    per_process_se = first_half_width / 1.96 * math.sqrt(first_s / process_s)
    return t_quantile(processes) * per_process_se / math.sqrt(processes)


@pytest.mark.parametrize("first_half_width, budget_left_s, expected", [
    (0.004, 50.0, "first"),  # already precise: later processes as short as the first
    (0.03, 500.0, "needed"),  # noisy, with budget to spare: exactly what the precision needs
    (0.03, 50.0, "share"),  # noisy, short budget: the share of what is left
])
def test_later_processes_get_the_rounds_the_precision_needs_within_the_budget(first_half_width, budget_left_s,
                                                                              expected):
    plan = ReplicationPlan(precision=0.01, budget_s=1000.0)
    got = replication.next_process_s(4.0, first_half_width, plan, budget_left_s, done=1, start_cost_s=6.0)
    share = budget_left_s / (plan.planned_processes - 1) - 6.0
    if expected == "first":
        assert got == 4.0 and _predicted_half_width(4.0, first_half_width, 4.0, 5) < 0.01
    elif expected == "needed":
        assert 4.0 < got < share
        assert _predicted_half_width(4.0, first_half_width, got, plan.planned_processes) == pytest.approx(0.01)
    else:
        assert got == pytest.approx(share) and _predicted_half_width(4.0, first_half_width, got, 5) > 0.01


def test_processes_after_the_first_fill_the_budget_only_as_far_as_the_precision_needs(workers):
    workers.durations = [10.0]  # 6 s start, 4 s rounds

    def precision_of(records):  # the first process's CI over its rounds: ±2%; any later CI: precise
        return 0.02 if records[0].processes == 1 else 0.009

    found = _run(ReplicationPlan(precision=0.01, budget_s=600.0), precision_of)
    lengths = [job["plan"]["process_s"] for job in workers.jobs]
    assert lengths[0] == TimingPlan.process_s and found.records[0].processes == 4
    assert all(length == pytest.approx(lengths[1]) for length in lengths[1:]) and 4.0 < lengths[1] < 600 / 4
    assert _predicted_half_width(4.0, 0.02, lengths[1], 5) == pytest.approx(0.01)


@pytest.fixture
def worker_exits(monkeypatch):
    """The worker launcher in harness.timing.replication replaced: the fake worker writes `output`
    to the stdout/stderr file it was given, writes `records` to its OUT path, and exits with `code`."""
    state = SimpleNamespace(code=0, output="", records=None, argv=None)

    def launch(argv, stdout, stderr, env=None, timeout_s=None):
        assert stdout is stderr  # both go to the err file
        state.argv = argv
        stdout.write(state.output.encode())
        stdout.flush()
        if state.records is not None:
            with open(argv[-1], "w", encoding="utf-8") as out:
                json.dump([record.as_dict() for record in state.records], out)
        return state.code, False

    monkeypatch.setattr(replication, "launch", launch)
    return state


@pytest.mark.parametrize("code, output, error, message", [
    (3, "building torch\nskipped: torch is not installed\n", BackendUnavailable, "torch is not installed"),
    (3, "", BackendUnavailable, "the worker gave no reason"),
    (2, "error: spec.json: layers[2].rate: 1.5 is not in [0, 1)\n", HarnessInputError,
     "spec.json: layers[2].rate: 1.5 is not in [0, 1)"),
    (1, "Traceback (most recent call last):\nZeroDivisionError: division by zero\n", HarnessInputError,
     "timing worker 2 failed (exit 1):\n  Traceback (most recent call last):\n  ZeroDivisionError: division by zero"),
])
def test_a_worker_exit_code_becomes_an_error(worker_exits, tmp_path, code, output, error, message):
    worker_exits.code, worker_exits.output = code, output
    with pytest.raises(HarnessInputError) as raised:
        replication._run_worker(tmp_path, 1, {"process": 1})
    assert type(raised.value) is error
    assert str(raised.value) == message


def test_a_worker_that_succeeds_returns_its_records(worker_exits, tmp_path):
    worker_exits.records = _process(0)
    job = {"backend": "torch", "process": 0}
    assert replication._run_worker(tmp_path, 0, job) == _process(0)
    argv = worker_exits.argv
    assert argv[1:3] == ["-m", "harness.timing.worker"]
    assert read_job(argv[-2]) == job
