"""One case of a study: `python -m harness.study.worker JOB OUT` (harness/running/worker.py).

JOB, made by harness/study/plan.py, names the backend, threads, data set, model, variants and
the StudyPlan; the worker imports that one framework, loads the data set, trains every variant
for every seed of the plan (harness/study/train.py: train_run) and writes all their records to OUT.
"""

from __future__ import annotations

import sys

from harness.running.worker import read_job, serve


def main(job_argument: str, out_path: str) -> int:
    from backends import create_backend
    from harness.study.datasets import load_dataset
    from harness.study.train import StudyPlan, StudyVariant, train_run

    job = read_job(job_argument)
    plan = StudyPlan(**{**job["plan"], "seeds": tuple(job["plan"]["seeds"])})

    def produce():
        backend = create_backend(job["backend"], device="cpu", threads=int(job["threads"]))
        data = load_dataset(job["data"], images=job["model"] == "cnn")
        variants = [StudyVariant.parse(text) for text in job["variants"]]
        return [record for seed in plan.seeds for variant in variants
                for record in train_run(backend, data, job["model"], variant, seed, plan,
                                        progress=lambda message: print(message, file=sys.stderr, flush=True))]

    return serve(produce, out_path)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
