"""The local executor with jobs > 1 (the study's seeds trained at once): cases that are not
exclusive overlap, an exclusive case runs alone, and closing the run kills what is in flight.
`study --jobs`/`--threads` are resolved and refused as its --help says."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pytest

from harness.cli.run import study_jobs
from harness.errors import HarnessInputError
from harness.running.runner import CASES_DIR, LOGS_DIR, Case, LocalExecutor, run_cases
from tests.test_case_runner import WRITE_ONE, case_records, pid_alive, wait_dead


def case(case_id: str, code: str, exclusive: bool = False, timeout_s: float = 60.0) -> Case:
    return Case(case_id, (sys.executable, "-c", code, "{json}"), timeout_s, case_id, 1.0, exclusive=exclusive)


def rendezvous(me: Path, other: Path) -> str:
    """Code that marks `me`, then waits (at most 30 s) for `other`: both finish only if both ran at once."""
    return (f"import pathlib, sys, time\npathlib.Path({str(me)!r}).touch()\n"
            f"deadline = time.monotonic() + 30\n"
            f"while not pathlib.Path({str(other)!r}).exists():\n"
            f"    if time.monotonic() > deadline: sys.exit('never met')\n"
            f"    time.sleep(0.02)\n" + WRITE_ONE)


def logging(log: Path, name: str, sleep_s: float = 0.3) -> str:
    """Code that appends `start NAME`, sleeps, appends `end NAME` to `log`."""
    return (f"import time\nopen({str(log)!r}, 'a').write('start {name}\\n')\ntime.sleep({sleep_s})\n"
            f"open({str(log)!r}, 'a').write('end {name}\\n')\n" + WRITE_ONE)


def test_two_jobs_run_non_exclusive_cases_at_once(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_cases([case("study/a", rendezvous(a, b)), case("study/b", rendezvous(b, a))], tmp_path / "run",
              resume=False, executor=LocalExecutor(threads=1, jobs=2))

    assert {k: r["status"] for k, r in case_records(tmp_path / "run").items()} == {"study/a": "ok", "study/b": "ok"}


def test_an_exclusive_case_runs_alone(tmp_path):
    log = tmp_path / "order.log"
    cases = [case("n1", logging(log, "n1")), case("x", logging(log, "x"), exclusive=True),
             case("n2", logging(log, "n2")), case("n3", logging(log, "n3"))]
    run_cases(cases, tmp_path / "run", resume=False, executor=LocalExecutor(threads=1, jobs=2))

    lines = log.read_text().split("\n")[:-1]
    # x starts after n1 ends and ends before n2 starts; n2 and n3 overlap (both start before either ends)
    assert lines.index("start x") > lines.index("end n1")
    assert lines.index("end x") < lines.index("start n2")
    assert max(lines.index("start n2"), lines.index("start n3")) < min(lines.index("end n2"), lines.index("end n3"))


def test_closing_the_outcomes_kills_the_cases_in_flight(tmp_path):
    pid_file = tmp_path / "pid"
    slow = case("slow", f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)")
    (tmp_path / CASES_DIR).mkdir()
    (tmp_path / LOGS_DIR).mkdir()
    outcomes = LocalExecutor(threads=1, jobs=2).outcomes([slow, case("quick", WRITE_ONE)], tmp_path, {},
                                                         lambda c: None)
    finished, outcome = next(outcomes)
    assert (finished.case_id, outcome.status) == ("quick", "ok")
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the slow case never started"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    assert pid_alive(pid)

    outcomes.close()

    assert wait_dead(pid)


def study_args(jobs=None, threads=None, oversubscribe=False, executor="local") -> argparse.Namespace:
    return argparse.Namespace(jobs=jobs, threads=threads, oversubscribe=oversubscribe, executor=executor)


@pytest.mark.parametrize(("jobs", "threads", "expected"), [
    (None, None, ("cores", "one")), (1, None, (1, "cores")), (None, 1, ("cores", 1))])
def test_study_jobs_and_threads_fill_the_cores(monkeypatch, jobs, threads, expected):
    monkeypatch.setattr("harness.cli.run.AVAILABLE_CORES", 4)
    want = {"cores": 4, "one": 1}
    got_threads, got_jobs = study_jobs(study_args(jobs, threads))
    assert (got_jobs, got_threads) == tuple(want.get(v, v) for v in expected)


def test_study_jobs_times_threads_above_the_cores_is_refused(monkeypatch):
    monkeypatch.setattr("harness.cli.run.AVAILABLE_CORES", 2)
    with pytest.raises(HarnessInputError, match="--jobs 2 with --threads 2: 4 threads"):
        study_jobs(study_args(jobs=2, threads=2))
    assert study_jobs(study_args(jobs=2, threads=2, oversubscribe=True)) == (2, 2)


def test_study_jobs_with_ray_is_refused():
    with pytest.raises(HarnessInputError, match="--jobs 2: only for --executor local"):
        study_jobs(study_args(jobs=2, executor="ray"))
    assert study_jobs(study_args(threads=3, executor="ray")) == (3, 1)
