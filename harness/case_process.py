"""Run one case in its own process and say how it ended: the part of a run every executor shares.

The local executor (harness/case_runner.py) calls `execute_case` in the driver; the Ray executor
(harness/ray_executor.py) calls it inside a Ray task on the node the case landed on and ships the
CaseOutcome back. A case is a command that writes its records, as a JSON array, to the path
substituted for JSON_TOKEN in its argv; THREADS_TOKEN becomes the thread count the executor
chose (the driver's --threads, or on Ray the cores of the node a timing case owns).

The case runs in its own process group, guarded by harness/parent_death.py so that it dies with
the process that started it, even by SIGKILL; the group is killed after the case exits too, so
nothing it started runs on into the next case. Its stdout and stderr go to `log_path`. This
module must not import a framework: it runs in the driver, beside the case being measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EXIT_SKIPPED
from harness.records import CaseRecord

JSON_TOKEN = "{json}"
THREADS_TOKEN = "{threads}"
STDERR_TAIL_LINES = 20
KILL_GRACE_S = 3.0


@dataclass(frozen=True)
class CaseOutcome:
    """How one attempt at a case ended. `started_at`/`ended_at` are wall-clock (time.time())
    seconds, so cases on different machines can be put on one time line; `machine` is where it
    ran (harness.environment.machine_identity)."""

    status: str
    returncode: int | None
    elapsed_s: float
    error: str
    records: list[dict[str, Any]]
    started_at: float | None = None
    ended_at: float | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    log: str = ""  # the case's log text, filled in when it ran elsewhere and the driver must write it


def execute_case(case, cases_dir: Path, log_path: Path, env: Mapping[str, str], threads: int,
                 machine: Mapping[str, Any] | None = None, python: str | None = None) -> CaseOutcome:
    """Run `case` (harness.case_runner.Case) in a temporary folder under `cases_dir`; kill its
    process group on timeout or interruption. `python` replaces argv[0], the interpreter of the
    machine that planned the case, when it runs on another."""
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
                returncode, timed_out = _wait(case, argv, out, err, env)
        except OSError as exc:
            return ended(CaseRecord.FAILED, None, f"could not start: {exc}")
        finally:
            write_log(log_path, argv, out_path, err_path)
        if timed_out:
            return ended(CaseRecord.TIMEOUT, returncode, f"timed out after {case.timeout_s:g} s")
        if returncode == EXIT_SKIPPED:
            return ended(CaseRecord.SKIPPED, returncode, _stderr_tail(err_path, returncode, lines=1))
        if returncode not in case.ok_returncodes:
            return ended(CaseRecord.FAILED, returncode, _stderr_tail(err_path, returncode))
        try:
            records = _load_records(json_path)
        except ValueError as exc:
            return ended(CaseRecord.FAILED, returncode, f"exited {returncode} but {exc}")
        return ended(CaseRecord.OK, returncode, records=records)


def machine_label(machine: Mapping[str, Any]) -> str:
    """A short name for where a case ran: the host, and the Ray node where there is one (two
    nodes of a test cluster share a host)."""
    host = str(machine.get("host") or "unknown host")
    node = str(machine.get("ray_node_id") or "")
    return f"{host}/{node[:8]}" if node else host


def _wait(case, argv: list[str], out, err, env: Mapping[str, str]) -> tuple[int, bool]:
    guarded = [sys.executable, "-m", "harness.parent_death", str(os.getpid()), *argv]
    process = subprocess.Popen(guarded, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               env=env, start_new_session=True)
    timed_out = False
    try:
        process.wait(timeout=case.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Also after a normal exit: nothing the case started may run on into the next case.
        _kill_group(process)
    return process.returncode, timed_out


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it after a grace period."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    # Also after the leader has exited: its children may still hold the group.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


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


def _stderr_tail(err_path: Path, returncode: int, lines: int = STDERR_TAIL_LINES) -> str:
    text = err_path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    if not text:
        return f"exited with code {returncode} and no message on stderr"
    return "\n".join(text[-lines:])


def _load_records(json_path: Path) -> list[dict[str, Any]]:
    """The case's records; ValueError says what is wrong with them."""
    if not json_path.exists():
        raise ValueError("did not write its records")
    try:
        records = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"its records are not valid JSON ({exc.msg})") from None
    if not isinstance(records, list):
        raise ValueError("its records are not a JSON array")
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "schema" not in record or "kind" not in record:
            raise ValueError(f"its record [{index}] is not an object with schema and kind")
    return records
