"""A run folder's session: check it, lock it, run the cases into it, stop cleanly.

Shared by `run` and `study` (harness/cli/run.py, harness/cli/study.py). Nothing in an existing
run folder is written until the run is known to proceed: the folder (its type, writability,
existing results, --resume) is checked first. SIGTERM is handled like Ctrl-C: the cases in
flight are killed and recorded, finished cases are kept, and the command that resumes is printed.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import HarnessInputError
from harness.results.environment import ENVIRONMENT_FILE, available_cores, write_environment
from harness.results.reading import read_results
from harness.results.records import RESULTS_FILE
from harness.running.availability import unavailable_backends
from harness.running.case import Case
from harness.running.plan_file import PLAN_FILE, RunPlan, check_plan, settle_plan
from harness.running.runner import (
    CASES_DIR,
    LOCK_FILE,
    LOGS_DIR,
    CasesInterrupted,
    LocalExecutor,
    Postprocess,
    ResultsNotWritten,
    latest_case_status,
    lock_run_dir,
    run_cases,
)
from harness.running.stopping import sigterm_as_interrupt


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse a run folder this run cannot use, before anything in it is written. The folder
    itself (a file? writable? a valid name?) is checked at the CLI edge, by check_output_folder."""
    for name, is_folder in ((RESULTS_FILE, False), (ENVIRONMENT_FILE, False), (LOCK_FILE, False),
                            (LOGS_DIR, True), (CASES_DIR, True)):
        path = out / name
        if path.exists() and path.is_dir() != is_folder:
            raise HarnessInputError(f"--out {out}: {name} is a {'folder' if path.is_dir() else 'file'}; "
                                    f"a run needs it to be a {'folder' if is_folder else 'file'}")
    results = out / RESULTS_FILE
    has_results = results.is_file() and results.stat().st_size > 0
    has_plan = (out / PLAN_FILE).is_file()  # a run killed in its first case has a plan, no results
    if (has_results or has_plan) and not resume:
        raise HarnessInputError(f"--out {out}: this folder already has {'results' if has_results else 'a run'}; "
                                "use --resume to continue that run, or another --out")
    if resume and not has_plan:
        raise HarnessInputError(f"--resume: {out} has no {PLAN_FILE}, so there is no run to resume there"
                                + (" that this version can check (it was made by an older harness: start a new "
                                   "--out)" if has_results else ""))
    if resume and has_results:
        found = read_results(results)  # raises on a damaged file, naming the line
        latest_case_status(found.records[:found.finished], str(results))  # raises on a case record without case_id


def resume_command(command: str, argv: Sequence[str], out: Path) -> str:
    """The command that resumes this run: the user's options minus --out/--resume, plus both."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--out":
            skip = True
        elif not token.startswith("--out=") and token != "--resume":
            kept.append(token)
    return shlex.join(["python", "-m", "harness", command, *kept, "--out", str(out), "--resume"])


def make_executor(executor: str, ray_address: str, threads: int | None, jobs: int = 1):
    """The --executor's executor. `threads` None: the cores here (local), or per node (Ray).
    `jobs`: non-exclusive cases at once, locally (Ray packs them onto free CPUs itself)."""
    if executor == "ray":
        from harness.running.ray_executor import RayExecutor  # only this path imports Ray

        executor = RayExecutor(ray_address, threads=threads)
        executor.connect()  # an unreachable cluster is refused before the run folder exists
        return executor
    return LocalExecutor(threads or available_cores() or 1, jobs)


def skip_reasons(executor, backends) -> dict[str, str]:
    """{backend: why not} for the cases to plan as skipped: frameworks missing here. On Ray the
    cases run elsewhere, so none is judged from here: a case whose node lacks its framework
    exits 3 and is recorded as skipped there."""
    return {} if executor.name == "ray" else unavailable_backends(backends)


def run_in_folder(command: str, cases: Sequence[Case], out: Path, *, resume: bool, again: str, executor,
                  label: str, report: Callable[[Path], str], postprocess: Postprocess | None = None) -> int:
    """Run `command`'s planned cases into the run folder `out` (locked; its plan and environment
    written once; a resume of another plan refused), then `report` it (what it returns is
    printed). Ctrl-C or SIGTERM: the cases in flight are recorded and `again` is printed. Returns
    the command's exit code."""
    plan = RunPlan.of(command, getattr(executor, "threads", None), cases)
    check_plan(out, plan, resume)  # before the lock file: a refused resume writes nothing
    with lock_run_dir(out), sigterm_as_interrupt() as received:
        settle_plan(out, plan, resume)
        if not (out / ENVIRONMENT_FILE).exists():  # a resumed run keeps the machine it started on
            write_environment(out, getattr(executor, "threads", None))
        where = f" on the Ray cluster at {executor.address}" if executor.name == "ray" else ""
        print(f"run: {len(cases)} cases ({label}) into {out}{where}", file=sys.stderr)
        try:
            tally = run_cases(cases, out, resume=resume, postprocess=postprocess, executor=executor)
        except CasesInterrupted as exc:
            finished = f"{exc.tally.ok} case{'' if exc.tally.ok == 1 else 's'} finished"
            print(f"{received.get('name', 'interrupted')}; {finished}, resume with: {again}", file=sys.stderr)
            return 128 + received.get("number", signal.SIGINT)
        except ResultsNotWritten as exc:
            print(f"error: {exc}. Every case recorded before it is intact; {exc.case_id} is lost. "
                  f"Make room, then resume with: {again}", file=sys.stderr)
            return 1
        written = report(out)
    print(f"{tally.ok} ok, {tally.failed} failed, {tally.timeout} timed out, {tally.skipped} skipped "
          f"(each with its reason: a framework or device not here, a mode not measurable), "
          f"{tally.already_ok} already ok from an earlier run; {tally.total_s:.0f} s")
    print(written)
    return 0 if tally.failed == 0 and tally.timeout == 0 else 1
