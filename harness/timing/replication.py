"""One timing comparison, replicated: worker processes run one after another until the CI is as
narrow as asked (`precision`) or the time budget is spent, and their rounds are merged.

Why processes: every round of one process shares its memory layout, allocator state, thread
placement and model instances, and these bias a process's estimate as a whole (Mytkowicz et
al., ASPLOS 2009); pyperf runs 20 worker processes by default for the same reason. Each worker
(harness/timing/worker.py) builds fresh instances of every arm in its own random order and times
them interleaved (harness/timing/session.py: measure); harness/stats.py turns the per-process estimates
into one CI. Workers run strictly one at a time (two timing processes would time each other),
each launched through harness/running/parent_death.py so none outlives this process.

How the budget is spent (Kalibera & Jones, ISMM 2013: repeat at the level whose variance
dominates, as often as its cost allows). With 8 instances per arm in each process, rounds are
what vary (README, "How the numbers can be trusted", has the measurements), so the half-width
goes as t(n-1) / sqrt(all rounds). A process's start (imports, building, warming) buys no
rounds, so processes should be few, but t(n-1) is large for few. So the first process runs
`process_s` of rounds and shows what a process costs before its rounds and how noisy its rounds
are; each later one runs as many seconds of rounds as `planned_processes` of them need to reach
the precision (rounds scale as 1/half-width squared), capped by an equal share of the budget
left, less the start cost, and never less than `process_s` (next_process_s).

This process imports no framework: a worker imports exactly one. The budget counts everything
(process start, imports, building, compiling); a new process starts only if the last one's wall
time still fits in what is left, except that min_processes always run: fewer give no verdict at
all, so a comparison whose processes are too slow for its budget overruns it (its process_end_s
shows by how much) rather than end with nothing to say.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import stats
from harness.errors import HarnessInputError
from harness.results.records import TimingRecord, from_dict
from harness.running.worker import job_argument, launch, raise_for_exit, read_records, stderr_tail
from harness.timing.replication_plan import ReplicationPlan
from harness.timing.request import TimingRequest

PRECISION_REACHED = "precision reached"
BUDGET_SPENT = "budget spent"
MAX_PROCESSES = "maximum number of processes reached"
NORMAL_95 = 1.96


@dataclass(frozen=True)
class Replicated:
    records: list[TimingRecord]  # one per arm, every process's rounds merged
    stop_reason: str
    elapsed_s: float
    reached: float  # the precision_of the merged records when it stopped
    plan: ReplicationPlan

    def summary(self) -> str:
        processes = self.records[0].processes
        reached = (f"CI half-width {self.plan.format(self.reached)}" if math.isfinite(self.reached)
                   else "no CI over processes (it needs two)")
        return f"{self.stop_reason}: {reached} after {processes} process{'' if processes == 1 else 'es'}, " \
               f"{self.elapsed_s:.0f} s"


def merge_processes(per_process: Sequence[Sequence[TimingRecord]], ends_s: Sequence[float],
                    stop_reason: str = "") -> list[TimingRecord]:
    """One record per arm from each process's records of it (same arms, same order): rounds
    concatenated with their process ids; step-time summaries over all rounds; setup, warm-up
    and steps per round as the mean (steps: the first process's) over processes."""
    merged = []
    for arm_records in zip(*per_process, strict=True):
        first = arm_records[0]
        if any(r.arm != first.arm for r in arm_records):
            raise ValueError(f"processes timed different arms: {[r.arm for r in arm_records]}")
        times = tuple(t for r in arm_records for t in r.times_s)
        summary = stats.summarize(times)
        merged.append(replace(
            first, times_s=times, process_of_round=tuple(p for r in arm_records for p in r.process_of_round),
            median_s=summary.median, iqr_s=summary.iqr, rounds=summary.n, processes=len(arm_records),
            setup_s=sum(r.setup_s for r in arm_records) / len(arm_records),
            warmup_s=sum(r.warmup_s for r in arm_records) / len(arm_records),
            process_end_s=tuple(ends_s), stop_reason=stop_reason,
        ))
    return merged


def run_replicated(request: TimingRequest, precision_of: Callable[[list[TimingRecord]], float],
                   progress: Callable[[str], None] = lambda message: None) -> Replicated:
    """Run worker processes of `plan` until precision_of(merged records) <= replication.precision,
    the budget would be exceeded by another process, or max_processes ran; never fewer than
    min_processes (or max_processes, if smaller). Raises BackendUnavailable (exit 3 of a worker) or HarnessInputError
    (exit 2, or a worker that failed: its stderr's tail)."""
    request.check_spin_fits()
    plan, replication = request.plan, request.replication
    session = os.urandom(6).hex()
    begin = time.perf_counter()
    per_process: list[list[TimingRecord]] = []
    ends: list[float] = []
    process_plan = plan
    with tempfile.TemporaryDirectory(prefix="harness-time-") as folder:
        while True:
            index = len(per_process)
            started = time.perf_counter()
            job = request.worker_job(process_plan, index, int(session, 16) + index, session)
            per_process.append(_run_worker(Path(folder), index, job))
            now = time.perf_counter()
            ends.append(now - begin)
            merged = merge_processes(per_process, ends)
            if index == 0:  # its CI over rounds alone plans the later processes; it stops nothing
                first_half_width = precision_of(merged)
            reached = precision_of(merged) if index > 0 else float("inf")
            last_s, start_cost_s = now - started, (now - started) - process_plan.process_s
            if plan.rounds is None:
                process_plan = replace(plan, process_s=next_process_s(
                    plan.process_s, first_half_width, replication, replication.budget_s - (now - begin),
                    len(per_process), start_cost_s))
                last_s = max(0.0, start_cost_s) + process_plan.process_s  # what the next one will take
            progress(_progress_line(index, now - started, now - begin, reached, replication))
            if len(per_process) >= replication.min_processes and reached <= replication.precision:
                reason = PRECISION_REACHED
            elif len(per_process) >= replication.max_processes:
                reason = MAX_PROCESSES
            elif now - begin + last_s > replication.budget_s and len(per_process) >= replication.min_processes:
                reason = BUDGET_SPENT
            else:
                continue
            return Replicated(merge_processes(per_process, ends, reason), reason, now - begin, reached, replication)


def _progress_line(index: int, process_s: float, elapsed_s: float, reached: float,
                   replication: ReplicationPlan) -> str:
    """After each process: where the CI stands; after the first, the overrun a user should expect
    when the processes a verdict needs will not fit the budget (they run anyway)."""
    done = f"process {index + 1} done in {process_s:.0f} s"
    if index > 0 and not math.isfinite(reached):
        return f"{done}; no CI yet after {elapsed_s:.0f} s (budget {replication.budget_s:.0f} s)"
    if index > 0:
        return (f"{done}; CI half-width {replication.format(reached)} after {elapsed_s:.0f} s "
                f"(target {replication.format(replication.precision)}, budget {replication.budget_s:.0f} s)")
    projected_s = elapsed_s * min(replication.min_processes, replication.max_processes)
    if projected_s > replication.budget_s:
        return (f"{done}; warning: the {replication.min_processes} processes a verdict needs will take about "
                f"{projected_s:.0f} s, over the budget of {replication.budget_s:.0f} s (they run anyway; "
                f"a smaller model or a larger --budget avoids this)")
    return f"{done} (the CI needs a second process; budget {replication.budget_s:.0f} s)"


def next_process_s(first_s: float, first_half_width: float, replication: ReplicationPlan, budget_left_s: float,
                   done: int, start_cost_s: float) -> float:
    """Seconds of rounds for the next process, from the first one (`first_s` seconds of rounds
    whose one-process CI had `first_half_width`): what each of `planned_processes` processes
    needs for their t-interval to reach the precision, if rounds are all that vary; at most an
    equal share of the budget left over the processes still planned (at least one), less what a
    process costs before its rounds (`start_cost_s`); never below `first_s`."""
    planned = replication.planned_processes
    per_process = first_half_width / NORMAL_95  # its CI over rounds: a percentile bootstrap, about normal
    wanted = stats.t_quantile(planned) * per_process / math.sqrt(planned)
    needed_s = first_s * (wanted / replication.precision) ** 2 if math.isfinite(wanted) else math.inf
    share_s = budget_left_s / max(1, planned - done) - max(0.0, start_cost_s)
    return max(first_s, min(needed_s, share_s))


def _run_worker(folder: Path, index: int, job: dict) -> list[TimingRecord]:
    """One worker process of the comparison (harness/timing/worker.py), by the worker protocol."""
    out_path, err_path = folder / f"{index}.out.json", folder / f"{index}.err.txt"
    argv = [sys.executable, "-m", "harness.timing.worker", job_argument(job, folder), str(out_path)]
    with open(err_path, "wb") as err:
        returncode, _ = launch(argv, err, err)
    tail = stderr_tail(err_path)
    raise_for_exit(returncode, tail, f"timing worker {index + 1}")
    try:
        return [from_dict(record) for record in read_records(out_path)]
    except ValueError as exc:  # exit 0 without its records: say so, with what it printed
        raise HarnessInputError(f"timing worker {index + 1} exited 0 but {exc}:\n  "
                                + tail.replace("\n", "\n  ")) from None
