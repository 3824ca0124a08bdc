"""Faults around `run`: killed runners leave no case behind, SIGTERM acts like Ctrl-C, and a
results write that fails keeps every earlier record.

The kill tests start a real `python -m harness run` on the smallest torch case and find its case
process by the run folder in its command line (/proc), so they need Linux and torch.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results.reading import read_results
from harness.results.records import RESULTS_FILE, SCHEMA_VERSION
from harness.running import runner as case_runner
from harness.running.runner import CASES_DIR, Case, ResultsNotWritten, run_cases

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")

WRITE_ONE = (f"import json, sys; json.dump([{{'schema': {SCHEMA_VERSION}, 'kind': 'timing', 'value': 1}}], "
             "open(sys.argv[1], 'w'))")


def processes_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until(condition, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def start_run(out: Path) -> subprocess.Popen:
    """`run` on one case that runs for about half a minute (torch mlp timing, default suite's 60
    rounds, eager only), with its case started. The case outlasts the checks below, so a case
    process that survived its runner would be seen."""
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "default", "--backends", "torch",
                            "--models", "mlp", "--variants", "baseline", "--modes", "eager", "--out", str(out)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    case_folder = str(out / CASES_DIR)
    if not wait_until(lambda: processes_mentioning(case_folder), within_s=120):
        run.kill()
        pytest.fail(f"no case process started: {run.communicate()}")
    return run


def test_sigkill_of_the_runner_leaves_no_case_process(tmp_path, backend_factory):
    backend_factory("torch")  # skips where torch is missing
    out = tmp_path / "run"
    run = start_run(out)
    case_folder = str(out / CASES_DIR)
    assert processes_mentioning(case_folder)

    run.send_signal(signal.SIGKILL)
    run.wait()

    assert wait_until(lambda: not processes_mentioning(case_folder), within_s=10), processes_mentioning(case_folder)


def test_sigterm_is_like_ctrl_c(tmp_path, backend_factory):
    backend_factory("torch")
    out = tmp_path / "run"
    run = start_run(out)

    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)

    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "resume with:" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    assert not processes_mentioning(str(out / CASES_DIR))
    cases = [r for r in read_results(out / RESULTS_FILE).records if r["kind"] == "case"]
    assert [(r["status"], r["error"]) for r in cases][-1] == ("failed", "interrupted")


def test_a_failed_results_write_keeps_every_earlier_case(tmp_path, monkeypatch):
    cases = [Case(name, (sys.executable, "-c", WRITE_ONE, "{json}"), 30.0, name, 1.0) for name in ("a", "b")]
    real_fsync, calls = os.fsync, []

    def fsync_then_disk_full(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second case's block: written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(case_runner.os, "fsync", fsync_then_disk_full)

    with pytest.raises(ResultsNotWritten) as raised:
        run_cases(cases, tmp_path, resume=False)

    assert raised.value.case_id == "b" and raised.value.tally.ok == 1
    assert "No space left on device" in str(raised.value)
    results = tmp_path / RESULTS_FILE
    lines = results.read_text().splitlines()
    written = [json.loads(line) for line in lines]
    assert [(record["case_id"], record["kind"]) for record in written] == [("a", "timing"), ("a", "case")]
    assert results.read_bytes().endswith(b"\n")  # no partial block left behind


def test_leftover_case_folders_of_a_killed_run_are_removed_on_the_next_start(tmp_path):
    leftover = tmp_path / CASES_DIR / "case-from-a-killed-run"
    leftover.mkdir(parents=True)
    (leftover / "records.json").write_text("[]")

    run_cases([Case("a", (sys.executable, "-c", WRITE_ONE, "{json}"), 30.0, "a", 1.0)], tmp_path, resume=False)

    assert list((tmp_path / CASES_DIR).iterdir()) == []
