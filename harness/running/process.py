"""Run one case in its own process and say how it ended: the part of a run every executor shares.

The local executor (harness/running/runner.py) calls `execute_case` in the driver; the Ray
executor (harness/running/ray_executor.py) calls it inside a Ray task on the node the case
landed on and ships the CaseOutcome back. The case is launched, killed and read as every worker
is (harness/running/worker.py); its stdout and stderr go to `log_path`. This module must not
import a framework: it runs in the driver, beside the case being measured.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import EXIT_SKIPPED
from harness.results.records import CaseRecord
from harness.running.case import JSON_TOKEN, THREADS_TOKEN, Case, CaseOutcome
from harness.running.worker import STDERR_TAIL_LINES, launch, read_records, stderr_tail


def execute_case(case: Case, cases_dir: Path, log_path: Path, env: Mapping[str, str], threads: int,
                 machine: Mapping[str, Any] | None = None, python: str | None = None,
                 cancel: threading.Event | None = None) -> CaseOutcome:
    """Run `case` in a temporary folder under `cases_dir`; kill its process group on timeout or
    interruption (Ctrl-C, or `cancel` set where it runs in a thread of its own). `python` replaces
    argv[0], the interpreter of the machine that planned the case, when it runs on another."""
    started_at, started = time.time(), time.monotonic()
    machine = dict(machine or {})

    def ended(status, returncode, error="", records=()):
        return CaseOutcome(status, returncode, time.monotonic() - started, error, list(records), started_at,
                           time.time(), machine)

    with tempfile.TemporaryDirectory(prefix="case-", dir=cases_dir) as tmp:
        json_path = Path(tmp) / "records.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        argv = [arg.replace(JSON_TOKEN, str(json_path)).replace(THREADS_TOKEN, str(threads)) for arg in case.argv]
        if python is not None:
            argv[0] = python
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                returncode, timed_out = launch(argv, out, err, env, case.timeout_s, cancel)
        except OSError as exc:
            return ended(CaseRecord.FAILED, None, f"could not start: {exc}")
        finally:
            write_log(log_path, argv, out_path, err_path)
        if timed_out:
            return ended(CaseRecord.TIMEOUT, returncode, f"timed out after {case.timeout_s:g} s")
        if returncode == EXIT_SKIPPED:
            return ended(CaseRecord.SKIPPED, returncode, _why(err_path, returncode, lines=1))
        if returncode not in case.ok_returncodes:
            return ended(CaseRecord.FAILED, returncode, _why(err_path, returncode))
        try:
            records = read_records(json_path)
        except ValueError as exc:
            return ended(CaseRecord.FAILED, returncode, f"exited {returncode} but {exc}")
        return ended(CaseRecord.OK, returncode, records=records)


def _why(err_path: Path, returncode: int, lines: int = STDERR_TAIL_LINES) -> str:
    return stderr_tail(err_path, lines) or f"exited with code {returncode} and no message on stderr"


def write_log(log_path: Path, argv: list[str], out_path: Path, err_path: Path) -> None:
    """The case's command, stdout and stderr; best effort (a log that cannot be written must not
    cost the case its records)."""
    parts = [f"$ {subprocess.list2cmdline(argv)}\n"]
    for name, path in (("stdout", out_path), ("stderr", err_path)):
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        parts.append(f"--- {name} ---\n{text}")
    try:
        log_path.write_text("".join(parts), encoding="utf-8")
    except OSError as exc:
        print(f"warning: {log_path}: the case log could not be written ({exc.strerror})", file=sys.stderr)
