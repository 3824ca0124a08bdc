"""One case of a study: `python -m harness.study_worker JOB OUT`.

JOB is a JSON object (inline, so the case's recorded command says everything) made by
harness/study_run.py (backend, threads, data, model, variants, the StudyPlan); the worker imports
that one framework, loads the data set, trains every variant for every seed of the plan
(harness/study.py: train_run) and writes all their records to OUT as a JSON list.
Exit codes as the CLI's: 2 bad input, 3 the framework is not available here.
"""

from __future__ import annotations

import json
import sys

from harness.worker import run_job


def main(job_text: str, out_path: str) -> int:
    from backends import create_backend
    from harness.datasets import load_dataset
    from harness.study import StudyPlan, StudyVariant, train_run

    job = json.loads(job_text)
    plan = StudyPlan(**{**job["plan"], "seeds": tuple(job["plan"]["seeds"])})
    def produce():
        backend = create_backend(job["backend"], device="cpu", threads=int(job["threads"]))
        data = load_dataset(job["data"], images=job["model"] == "cnn")
        variants = [StudyVariant.parse(text) for text in job["variants"]]
        return [record for seed in plan.seeds for variant in variants
                for record in train_run(backend, data, job["model"], variant, seed, plan,
                                        progress=lambda message: print(message, file=sys.stderr, flush=True))]

    return run_job(produce, out_path)

if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
