"""One worker process of a replicated timing comparison: `python -m harness.timing.worker JOB OUT`.

JOB (harness/running/worker.py: the one worker protocol) is made by TimingRequest.worker_job:
backend, device, threads, the spec (or a user's model pair and its optimizer), the TimingPlan
with its arms' specs, this process's index, seed and session. The worker imports that one
framework (and, for a pair, that framework's factory only), runs harness.timing.session.measure
once, and writes its TimingRecords to OUT.
"""

from __future__ import annotations

import os
import sys

from harness.running.worker import read_job, serve


def main(job_argument: str, out_path: str) -> int:
    from backends import create_backend
    from harness.model.spec import parse_spec
    from harness.timing.session import SpecSubject, TimingPlan, measure

    job = read_job(job_argument)
    plan = TimingPlan.from_job(job["plan"])

    def produce():
        backend = create_backend(job["backend"], device=job["device"], threads=job["threads"])
        if job.get("pair"):  # a user's model pair: this backend's side of it
            from harness.ported.pair import PairSource
            from harness.ported.timing import PortedSubject

            subject = PortedSubject(backend, PairSource.from_job(job["pair"]), job["optimizer"])
        else:
            subject = SpecSubject(backend, parse_spec(job["spec"], "the job's spec"))
        return measure(backend, subject, plan, job["device"], job["threads"],
                       progress=lambda message: print(message, file=sys.stderr, flush=True),
                       process=job["process"], seed=job["seed"], session=job["session"])

    return serve(produce, out_path)


if __name__ == "__main__":
    code = main(*sys.argv[1:])
    sys.stderr.flush()
    # Skip the interpreter's teardown (a framework's atexit handlers and module cleanup take about
    # a second, charged to the comparison's budget); the records are written and closed.
    os._exit(code)
