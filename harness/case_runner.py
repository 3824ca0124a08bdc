"""Durable execution of a run's cases, one after another, each in its own process.

(`python -m harness run` plans the cases in harness/run_suite.py; this module only executes them.)

A case is a command that writes its result records, as a JSON array, to the path the runner
substitutes for the `{json}` token in its argv. The runner appends each finished case to
`results.jsonl` as one block: the case's records (each with `case_id` added), the records derived
from them by `postprocess`, then its CaseRecord, flushed and fsynced, so a killed run loses only
the case in flight. A block without its CaseRecord at the end of the file is the trace of such a
kill and is dropped. The case's stdout and stderr go to `logs/<case_id>.log`. A case that exits
with EXIT_SKIPPED (its backend or device is not available here) is recorded as "skipped" with
the reason it printed.

Cases run strictly one at a time: they are timing measurements, and a second case would be noise
in the first. A case dies with this process, even by SIGKILL (harness/parent_death.py), so it
never runs on beside the next run's cases; its temporary folder is inside the run folder's
CASES_DIR, and leftovers of a killed run are removed when the next run starts there. A results
write that fails (disk full, read-only) is rolled back to the last complete case and raised as
ResultsNotWritten. This process must not import a framework (that starts thread pools that
compete with the case being measured).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import EXIT_SKIPPED, HarnessInputError
from harness.progress import case_progress
from harness.records import RESULTS_FILE, CaseRecord, read_results

JSON_TOKEN = "{json}"
LOGS_DIR = "logs"
LOCK_FILE = ".lock"
CASES_DIR = ".cases"  # each case's temporary folder (its records, stdout, stderr) while it runs

OK, FAILED, TIMEOUT, SKIPPED, INTERRUPTED = (CaseRecord.OK, CaseRecord.FAILED, CaseRecord.TIMEOUT,
                                              CaseRecord.SKIPPED, CaseRecord.INTERRUPTED)

STDERR_TAIL_LINES = 20
KILL_GRACE_S = 3.0

Postprocess = Callable[["Case", list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    case_id: str
    argv: tuple[str, ...]
    timeout_s: float
    label: str
    expected_s: float
    skip_reason: str = ""  # known before it runs (its framework is not available): recorded as skipped
    # Exit codes whose records are kept as a finished case: a calibration that misses a target
    # exits 1 with its records written (the report shows the miss); a crash writes none.
    ok_returncodes: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class CaseTally:
    """How the cases of one run_cases call ended; `already_ok` were finished by an earlier run."""

    ok: int
    failed: int
    timeout: int
    skipped: int
    already_ok: int
    total_s: float
    run_dir: Path


class CasesInterrupted(KeyboardInterrupt):
    """Ctrl-C during run_cases, after the case in flight was killed and recorded as interrupted."""

    def __init__(self, tally: CaseTally):
        super().__init__(tally)
        self.tally = tally


class ResultsNotWritten(Exception):
    """Appending a finished case to the results file failed; the file was cut back to the last
    complete case, so every earlier case is intact and only `case_id` is lost."""

    def __init__(self, tally: CaseTally, case_id: str, reason: str):
        super().__init__(f"could not append case {case_id} to {RESULTS_FILE} ({reason})")
        self.tally, self.case_id, self.reason = tally, case_id, reason


@dataclass(frozen=True)
class _Outcome:
    status: str
    returncode: int | None
    elapsed_s: float
    error: str
    records: list[dict[str, Any]]


def latest_case_status(records: Iterable[Mapping[str, Any]], source: str = RESULTS_FILE) -> dict[str, str]:
    """Map each case_id to the status of its last CaseRecord (HarnessInputError naming `source` for
    a case record without a case_id or status: the file was not written by a run)."""
    latest = {}
    for index, record in enumerate(records, start=1):
        if record.get("kind") == CaseRecord.kind:
            if not isinstance(record.get("case_id"), str) or not isinstance(record.get("status"), str):
                raise HarnessInputError(f"{source}: record {index} is a case record without a case_id "
                                        "or status; this file was not written by `run`")
            latest[record["case_id"]] = record["status"]
    return latest


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder: two runs appending to one results.jsonl would
    interleave their records. Raises HarnessInputError if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise HarnessInputError(f"{run_dir}: another run is writing to this folder "
                                    f"(pid {handle.read().strip() or 'unknown'})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cases(
    cases: Sequence[Case],
    run_dir: Path,
    *,
    resume: bool,
    postprocess: Postprocess | None = None,
    stop_on_failure: bool = False,
    env: Mapping[str, str] | None = None,
) -> CaseTally:
    """Run the cases in order, appending each finished one to run_dir/results.jsonl.

    The caller holds lock_run_dir(run_dir) (harness/run_suite.py holds it for the whole run).
    `env` holds variables set for every case on top of this process's environment. With
    `resume`, cases whose latest status is "ok" are skipped. Ctrl-C kills the case in flight,
    records it as failed "interrupted" and raises CasesInterrupted.
    """
    _check_unique_ids(cases)
    run_dir = Path(run_dir)
    results = run_dir / RESULTS_FILE
    done = _prepare_results(results, resume)
    todo = [case for case in cases if done.get(case.case_id) != OK]
    (run_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / CASES_DIR, ignore_errors=True)  # left by a run that was killed
    (run_dir / CASES_DIR).mkdir()
    child_env = {**os.environ, **(env or {})}
    counts: Counter[str] = Counter()
    already_ok = len(cases) - len(todo)
    started = time.monotonic()

    def tally() -> CaseTally:
        return CaseTally(counts[OK], counts[FAILED], counts[TIMEOUT], counts[SKIPPED], already_ok,
                         time.monotonic() - started, run_dir)

    with case_progress(todo, already_ok) as progress:
        for case in todo:
            progress.start(case)
            case_started = time.monotonic()
            try:
                outcome = (_Outcome(SKIPPED, None, 0.0, f"skipped: {case.skip_reason}", []) if case.skip_reason
                           else _execute(case, run_dir, child_env))
                block = _block(case, outcome, postprocess)
            except KeyboardInterrupt:
                record = CaseRecord(case.case_id, FAILED, case.argv,
                                    time.monotonic() - case_started, INTERRUPTED)
                with contextlib.suppress(OSError):  # the interruption is what the user must hear of
                    _append(results, [record.as_dict()])
                counts[FAILED] += 1
                progress.finish(case, FAILED, record.elapsed_s)
                raise CasesInterrupted(tally()) from None
            try:
                _append(results, block)
            except OSError as exc:
                raise ResultsNotWritten(tally(), case.case_id, exc.strerror or str(exc)) from None
            counts[outcome.status] += 1
            progress.finish(case, outcome.status, outcome.elapsed_s)
            if stop_on_failure and outcome.status in (FAILED, TIMEOUT):
                break
    return tally()


def _check_unique_ids(cases: Sequence[Case]) -> None:
    repeated = sorted(cid for cid, n in Counter(c.case_id for c in cases).items() if n > 1)
    if repeated:
        raise ValueError(f"case ids must be unique; repeated: {', '.join(repeated)}")


def _prepare_results(results: Path, resume: bool) -> dict[str, str]:
    """Check the results file against `resume`; return the latest status of each case in it."""
    if not results.exists() or results.stat().st_size == 0:
        return {}
    if not resume:
        raise HarnessInputError(
            f"{results.parent}: this folder already has results; "
            "use --resume to continue that run, or another --out")
    found = read_results(results)
    if found.warnings or len(found.records) > found.finished:
        print(f"warning: {results}: ignoring an unfinished case at the end of the file "
              "(the run was killed while writing it)", file=sys.stderr)
    with open(results, "r+b") as handle:
        handle.truncate(found.finished_end)
    return latest_case_status(found.records[:found.finished], str(results))


def _log_name(case: Case) -> str:
    return case.case_id.replace("/", "__") + ".log"


def _execute(case: Case, run_dir: Path, env: Mapping[str, str]) -> _Outcome:
    """Run one case in its own process group; kill the group on timeout or interruption."""
    with tempfile.TemporaryDirectory(prefix="case-", dir=run_dir / CASES_DIR) as tmp:
        json_path = Path(tmp) / "records.json"
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        argv = [arg.replace(JSON_TOKEN, str(json_path)) for arg in case.argv]
        started = time.monotonic()
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                returncode, timed_out = _wait(case, argv, out, err, env)
        except OSError as exc:
            return _Outcome(FAILED, None, time.monotonic() - started, f"could not start: {exc}", [])
        finally:
            _write_log(run_dir / LOGS_DIR / _log_name(case), argv, out_path, err_path)
        elapsed = time.monotonic() - started
        if timed_out:
            return _Outcome(TIMEOUT, returncode, elapsed, f"timed out after {case.timeout_s:g} s", [])
        if returncode == EXIT_SKIPPED:
            return _Outcome(SKIPPED, returncode, elapsed, _stderr_tail(err_path, returncode, lines=1), [])
        if returncode not in case.ok_returncodes:
            return _Outcome(FAILED, returncode, elapsed, _stderr_tail(err_path, returncode), [])
        try:
            records = _load_records(json_path)
        except ValueError as exc:
            return _Outcome(FAILED, returncode, elapsed, f"exited {returncode} but {exc}", [])
        return _Outcome(OK, returncode, elapsed, "", records)


def _wait(case: Case, argv: list[str], out, err, env: Mapping[str, str]) -> tuple[int, bool]:
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


def _write_log(log_path: Path, argv: list[str], out_path: Path, err_path: Path) -> None:
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


def _block(case: Case, outcome: _Outcome, postprocess: Postprocess | None) -> list[dict[str, Any]]:
    """What results.jsonl gets for a finished case: records, derived records, CaseRecord."""
    derived = postprocess(case, outcome.records) if postprocess and outcome.status == OK else []
    tagged = [{**record, "case_id": case.case_id} for record in [*outcome.records, *derived]]
    end = CaseRecord(case.case_id, outcome.status, case.argv, outcome.elapsed_s,
                     outcome.error, outcome.returncode)
    return [*tagged, end.as_dict()]


def _append(results: Path, records: list[dict[str, Any]]) -> None:
    """Append one block and fsync it; on failure cut the file back to where the block began."""
    text = "".join(json.dumps(record) + "\n" for record in records)
    size = results.stat().st_size if results.exists() else 0
    try:
        with open(results, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            os.truncate(results, size)
        raise
