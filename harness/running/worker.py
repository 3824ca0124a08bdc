"""The one protocol between a parent and a worker process: a run's case, a timing worker, a study seed.

Launch: `launch` starts the command in its own process group (so the whole group can be killed)
through harness/running/parent_death.py (so it dies with its parent, even by SIGKILL), waits at
most `timeout_s` (or until a `cancel` event is set, for a launch made in a thread of its own),
then kills whatever of the group is left, also after a normal exit: nothing a worker started runs
on into the next one.

Job: a worker module is run as `python -m MODULE JOB OUT`. JOB is the job as a JSON object,
inline (so a case's recorded command says everything), or `@PATH` of a file holding it when it
is too long for a command line (`job_argument`, `read_job`). The worker writes its records to
OUT as a JSON array of record dicts (`serve`), which the parent reads with `read_records`.

Exit codes, as the CLI's (harness/errors.py): 0 records written; 2 bad input and 3 skipped (the
framework or device is not available here), each with its one line last on stderr. A parent
keeps the last STDERR_TAIL_LINES lines of a worker's stderr to say why it failed (`stderr_tail`)
and turns an exit code into the CLI's exception (`raise_for_exit`).

This module imports no framework: it runs in the parent, beside the work being measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from harness.errors import EXIT_BAD_INPUT, EXIT_SKIPPED, BackendUnavailable, HarnessInputError, report_expected_error
from harness.results.records import Record

STDERR_TAIL_LINES = 20
KILL_GRACE_S = 3.0
CANCEL_POLL_S = 0.1  # how often a launch in a thread checks its cancel event
MAX_INLINE_JOB = 32_000  # characters; a longer job goes in a file (Linux caps one argument at 128 KiB)


def launch(argv: Sequence[str], stdout: IO, stderr: IO, env: Mapping[str, str] | None = None,
           timeout_s: float | None = None, cancel: threading.Event | None = None) -> tuple[int, bool]:
    """Run `argv` guarded by parent_death, in a session of its own; (exit code, timed out).
    `cancel`: set by another thread to kill it early (Ctrl-C reaches only the main thread).
    OSError if it cannot be started.

    Linux's parent-death signal follows the *thread* that started the process: a launch in a
    worker thread must keep that thread until the process is gone, as this wait does."""
    guarded = [sys.executable, "-m", "harness.running.parent_death", str(os.getpid()), *argv]
    process = subprocess.Popen(guarded, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                               env=None if env is None else dict(env), start_new_session=True)
    timed_out = False
    try:
        timed_out = not _wait(process, timeout_s, cancel)
    finally:  # also on Ctrl-C, a cancel, and after a normal exit: nothing it started may outlive it
        _kill_group(process)
    return process.returncode, timed_out


def _wait(process: subprocess.Popen, timeout_s: float | None, cancel: threading.Event | None) -> bool:
    """Wait for the process to exit or for `cancel`; False if `timeout_s` ran out first."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        step = left if cancel is None else min(CANCEL_POLL_S, left if left is not None else CANCEL_POLL_S)
        try:
            process.wait(timeout=step)
            return True
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                return True


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it after a grace period."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)  # also after the leader exited: its children may hold the group
    process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def job_argument(job: Mapping[str, Any], folder: Path) -> str:
    """JOB for a worker's command line: the job inline, or `@file` in `folder` when it is long."""
    text = json.dumps(job)
    if len(text) <= MAX_INLINE_JOB:
        return text
    path = folder / f"job-{os.getpid()}-{id(job):x}.json"
    path.write_text(text, encoding="utf-8")
    return "@" + str(path)


def read_job(argument: str) -> dict[str, Any]:
    """The job a worker was given (inline JSON, or `@file`)."""
    text = Path(argument[1:]).read_text(encoding="utf-8") if argument.startswith("@") else argument
    return json.loads(text)


def serve(produce: Callable[[], Sequence[Record]], out_path: str) -> int:
    """The worker's side: produce the records, write them to OUT, return the exit code (bad
    input and skipped exit as the CLI does, with its one line)."""
    try:
        records = produce()
    except HarnessInputError as exc:  # BackendUnavailable too
        return report_expected_error(exc)
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump([record.as_dict() for record in records], out)
    return 0


def stderr_tail(err_path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last `lines` lines a worker wrote to stderr (what a parent says of a failure); "" if none."""
    text = err_path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines() if err_path.exists() else []
    return "\n".join(text[-lines:])


def raise_for_exit(returncode: int, tail: str, what: str) -> None:
    """A worker's exit code as the CLI's exception: 3 BackendUnavailable, 2 HarnessInputError
    with its one line; any other non-zero code is a failure of `what`, with its stderr's tail."""
    last = tail.splitlines()[-1] if tail else ""
    if returncode == EXIT_SKIPPED:
        raise BackendUnavailable(last.removeprefix("skipped: ") or "the worker gave no reason")
    if returncode == EXIT_BAD_INPUT:
        raise HarnessInputError(last.removeprefix("error: ") or "bad input")
    if returncode != 0:
        raise HarnessInputError(f"{what} failed (exit {returncode}):\n  " + tail.replace("\n", "\n  "))


def read_records(out_path: Path) -> list[dict[str, Any]]:
    """A worker's records; ValueError says what is wrong with them."""
    if not out_path.exists():
        raise ValueError("did not write its records")
    try:
        records = json.loads(out_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"its records are not valid JSON ({exc.msg})") from None
    if not isinstance(records, list):
        raise ValueError("its records are not a JSON array")
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "schema" not in record or "kind" not in record:
            raise ValueError(f"its record [{index}] is not an object with schema and kind")
    return records
