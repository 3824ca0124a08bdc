"""One worker process of a replicated timing comparison: `python -m harness.timing_worker JOB OUT`.

JOB is a JSON file written by harness/replication.py (backend, device, threads, the spec as a
dict, the TimingPlan, this process's index, seed and session); the worker imports that one
framework, runs harness.timing.measure once, and writes its TimingRecords to OUT as a JSON list.
Exit codes as the CLI's: 2 bad input, 3 the framework or device is not available here.
"""

from __future__ import annotations

import json
import os
import sys

from harness.worker import run_job


def main(job_path: str, out_path: str) -> int:
    from backends import create_backend
    from harness.spec import parse_spec
    from harness.timing import TimingPlan, measure

    job = json.loads(open(job_path, encoding="utf-8").read())
    plan = job["plan"]
    plan = TimingPlan(**{**plan, "variants": tuple(plan["variants"]), "modes": tuple(plan["modes"]),
                         "named_specs": tuple((label, spec) for label, spec in plan["named_specs"])})
    def produce():
        backend = create_backend(job["backend"], device=job["device"], threads=job["threads"])
        return measure(backend, parse_spec(job["spec"], "the job's spec"), plan, job["device"], job["threads"],
                       progress=lambda message: print(message, file=sys.stderr, flush=True),
                       process=job["process"], seed=job["seed"], session=job["session"])

    return run_job(produce, out_path)

if __name__ == "__main__":
    code = main(*sys.argv[1:])
    sys.stderr.flush()
    # Skip the interpreter's teardown (a framework's atexit handlers and module cleanup take about
    # a second, charged to the comparison's budget); the records are written and closed.
    os._exit(code)
