"""Durable execution of a run's cases, each in its own process: the one result stream of a run.

(`python -m harness run` plans the cases in harness/suite/planning.py; this module only executes them.)

An executor runs the cases and hands back each CaseOutcome as it finishes: LocalExecutor here
(one after another on this machine, the default) or harness/running/ray_executor.py (Ray tasks on a
cluster). Whichever ran it, this module appends each finished case to `results.jsonl` as one
block: the case's records (each with `case_id` and `machine` added), the records derived from
them by `postprocess`, then its CaseRecord (status, start and end times, the machine), flushed
and fsynced, so a killed run loses only the cases in flight. A block without its CaseRecord at
the end of the file is the trace of such a kill and is dropped. The case's stdout and stderr go
to `logs/<case_id>.log`. A case that exits with EXIT_SKIPPED (its backend or device is not
available here) is recorded as "skipped" with the reason it printed.

Locally, cases run one at a time by default: they are timing measurements, and a second case would
be noise in the first. With `jobs` above 1 (the study's training runs, whose results do not
depend on time), up to `jobs` cases that are not `exclusive` run at once, each in a thread that
waits on its process; an exclusive case still runs alone. A case dies with this process, even by
SIGKILL (harness/running/parent_death.py), so it never runs on beside the next run's cases; its
temporary folder is inside the run folder's CASES_DIR, and leftovers of a killed run are removed
when the next run starts there. A results write that fails (disk full, read-only) is rolled back
to the last complete case and raised as ResultsNotWritten. This process must not import a
framework (that starts thread pools that compete with the case being measured).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.results.environment import available_cores, machine_identity, machine_label
from harness.results.reading import read_results
from harness.results.records import RESULTS_FILE, CaseRecord
from harness.running.case import JSON_TOKEN, THREADS_TOKEN, Case, CaseOutcome
from harness.running.process import execute_case
from harness.running.progress import case_progress

__all__ = ["JSON_TOKEN", "THREADS_TOKEN", "Case", "CaseTally", "CasesInterrupted", "LocalExecutor",
           "ResultsNotWritten", "latest_case_status", "lock_run_dir", "run_cases"]

LOGS_DIR = "logs"
LOCK_FILE = ".lock"
CASES_DIR = ".cases"  # each case's temporary folder (its records, stdout, stderr) while it runs

OK, FAILED, TIMEOUT, SKIPPED, INTERRUPTED = (CaseRecord.OK, CaseRecord.FAILED, CaseRecord.TIMEOUT,
                                              CaseRecord.SKIPPED, CaseRecord.INTERRUPTED)

Postprocess = Callable[["Case", list[dict[str, Any]]], list[dict[str, Any]]]


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
    executor=None,
) -> CaseTally:
    """Run the cases (by default with LocalExecutor, in order, every core), appending each
    finished one to run_dir/results.jsonl.

    The caller holds lock_run_dir(run_dir) (harness/running/session.py holds it for the whole run).
    `env` holds variables set for every case on top of this process's environment. With
    `resume`, cases whose latest status is "ok" are skipped. Ctrl-C stops the executor (which
    kills or cancels what is in flight), records every case in flight as failed "interrupted"
    and raises CasesInterrupted.
    """
    _check_unique_ids(cases)
    run_dir = Path(run_dir)
    executor = executor or LocalExecutor(available_cores() or 1)
    done = _prepare_results(run_dir / RESULTS_FILE, resume)
    todo = [case for case in cases if done.get(case.case_id) != OK]
    (run_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(run_dir / CASES_DIR, ignore_errors=True)  # left by a run that was killed
    (run_dir / CASES_DIR).mkdir()
    runnable = [case for case in todo if not case.skip_reason]
    with case_progress(todo, len(cases) - len(todo)) as progress:
        stream = _ResultStream(run_dir, postprocess, progress, already_ok=len(cases) - len(todo))
        try:
            for case in todo:
                if case.skip_reason:
                    stream.began(case)
                    stream.record(case, CaseOutcome(SKIPPED, None, 0.0, f"skipped: {case.skip_reason}", []))
            # closing: an interruption or an early stop ends the executor's work (Ray: cancels its tasks)
            with contextlib.closing(executor.outcomes(runnable, run_dir, dict(env or {}), stream.began)) as outcomes:
                for case, outcome in outcomes:
                    stream.record(case, outcome)
                    if stop_on_failure and outcome.status in (FAILED, TIMEOUT):
                        break
        except KeyboardInterrupt:
            stream.record_interrupted()
            raise CasesInterrupted(stream.tally()) from None
    return stream.tally()


class _ResultStream:
    """What one run_cases call has written to results.jsonl so far: counts by status, the cases
    in flight (recorded as interrupted on Ctrl-C), and the progress display it keeps up to date."""

    def __init__(self, run_dir: Path, postprocess: Postprocess | None, progress, already_ok: int):
        self.run_dir, self.results = run_dir, run_dir / RESULTS_FILE
        self.postprocess, self.progress, self.already_ok = postprocess, progress, already_ok
        self.counts: Counter[str] = Counter()
        self.in_flight: dict[str, tuple[Case, float]] = {}
        self.started = time.monotonic()

    def tally(self) -> CaseTally:
        counts = self.counts
        return CaseTally(counts[OK], counts[FAILED], counts[TIMEOUT], counts[SKIPPED], self.already_ok,
                         time.monotonic() - self.started, self.run_dir)

    def began(self, case: Case) -> None:
        self.in_flight[case.case_id] = (case, time.monotonic())
        self.progress.start(case)

    def record(self, case: Case, outcome: CaseOutcome) -> None:
        try:
            _append(self.results, _block(case, outcome, self.postprocess))
        except OSError as exc:
            raise ResultsNotWritten(self.tally(), case.case_id, exc.strerror or str(exc)) from None
        self.in_flight.pop(case.case_id, None)
        self.counts[outcome.status] += 1
        self.progress.finish(case, outcome.status, outcome.elapsed_s)

    def record_interrupted(self) -> None:
        """Each case in flight as failed "interrupted" (best effort: the interruption is what the
        user must hear of, not a write that failed on the way out)."""
        for case, case_started in list(self.in_flight.values()):
            stopped = CaseRecord(case.case_id, FAILED, case.argv, time.monotonic() - case_started, INTERRUPTED)
            with contextlib.suppress(OSError):
                _append(self.results, [stopped.as_dict()])
            self.counts[FAILED] += 1
            self.progress.finish(case, FAILED, stopped.elapsed_s)


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


def log_name(case: Case) -> str:
    return case.case_id.replace("/", "__") + ".log"


class LocalExecutor:
    """The default executor: the cases on this machine, each in its own process
    (harness/running/process.py), with `threads` for every case; one after another, or up to
    `jobs` non-exclusive cases at once."""

    name = "local"

    def __init__(self, threads: int, jobs: int = 1):
        self.threads, self.jobs = threads, jobs

    def outcomes(self, cases: Sequence[Case], run_dir: Path, env: Mapping[str, str],
                 started: Callable[[Case], None]) -> Iterator[tuple[Case, CaseOutcome]]:
        """Each case's outcome as it finishes; `env`: variables set on top of this environment.
        Closing the iterator (Ctrl-C, a stop on failure) kills the cases in flight."""
        machine, child_env = machine_identity(), {**os.environ, **env}

        def execute(case: Case, cancel: threading.Event | None = None) -> CaseOutcome:
            return execute_case(case, run_dir / CASES_DIR, run_dir / LOGS_DIR / log_name(case), child_env,
                                self.threads, machine, cancel=cancel)

        if self.jobs == 1:
            for case in cases:
                started(case)
                yield case, execute(case)
            return
        yield from _concurrently(cases, self.jobs, execute, started)


def _concurrently(cases: Sequence[Case], jobs: int, execute: Callable[[Case, threading.Event], CaseOutcome],
                  started: Callable[[Case], None]) -> Iterator[tuple[Case, CaseOutcome]]:
    """Up to `jobs` cases in flight, in order, each executed in a thread; an exclusive case waits
    for the machine to empty and runs alone. On close, `cancel` kills what is in flight and the
    pool waits for those processes to be gone."""
    pending, running, cancel = list(reversed(cases)), {}, threading.Event()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="case") as pool:
        try:
            while pending or running:
                while pending and len(running) < jobs and not _alone(pending[-1], running.values()):
                    case = pending.pop()
                    started(case)
                    running[pool.submit(execute, case, cancel)] = case
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield running.pop(future), future.result()
        finally:
            cancel.set()


def _alone(case: Case, running) -> bool:
    """Whether `case` must wait: it is exclusive and something runs, or an exclusive case runs."""
    return bool(running) and (case.exclusive or any(other.exclusive for other in running))


def _block(case: Case, outcome: CaseOutcome, postprocess: Postprocess | None) -> list[dict[str, Any]]:
    """What results.jsonl gets for a finished case: records, derived records, CaseRecord. Every
    record names the case and the machine it ran on; the CaseRecord describes that machine."""
    derived = postprocess(case, outcome.records) if postprocess and outcome.status == OK else []
    where = machine_label(outcome.machine) if outcome.machine else ""
    tagged = [{**record, "case_id": case.case_id, "machine": where} for record in [*outcome.records, *derived]]
    end = CaseRecord(case.case_id, outcome.status, case.argv, outcome.elapsed_s, outcome.error, outcome.returncode,
                     outcome.started_at, outcome.ended_at, outcome.machine)
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
