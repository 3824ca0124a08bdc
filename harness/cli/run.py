"""`python -m harness run` and `python -m harness study`: a suite planned into cases, run into a
run folder (harness/running/session.py), then reported (harness/report/)."""

from __future__ import annotations

import datetime
import sys
from dataclasses import replace
from pathlib import Path

from harness.cli.arguments import add_executor, add_threads, choices, epilog, subcommand
from harness.cli.options import AVAILABLE_CORES, bounded_int, check_output_folder
from harness.errors import HarnessInputError
from harness.model.spec import PRESETS
from harness.model.variants import parse_variants
from harness.report import build_report
from harness.running.session import check_run_folder, make_executor, resume_command, run_in_folder, skip_reasons
from harness.study.plan import check_data, plan_study_cases
from harness.study.suites import STUDY_SUITES
from harness.suite.answers import question_comparisons
from harness.suite.planning import RunRequest, check_request, plan_cases, resolve_devices
from harness.suite.suites import SUITES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = PROJECT_ROOT / "reports" / "runs"


def _report(out: Path) -> str:
    paths = build_report([out])
    return f"report: {paths.markdown}\n        {paths.html}"


def run_request(args) -> RunRequest:
    suite = SUITES[args.suite]
    variants = parse_variants(args.variants or suite.timing_variants, "--variants", merge=True)
    request = RunRequest(suite=suite, backends=tuple(dict.fromkeys(args.backends)),
                         models=tuple(dict.fromkeys(args.models or suite.models)),
                         variants=tuple(v.label for v in variants), devices=resolve_devices(suite, args.devices),
                         modes=tuple(dict.fromkeys(args.modes or suite.modes)))
    check_request(request)  # bad options fail here, before the folder is looked at
    return request


def cmd_run(args) -> int:
    request = run_request(args)
    out = Path(args.out) if args.out is not None else RUNS_DIR / (datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                                                                  + f"-{args.suite}")
    check_output_folder(str(out) if args.out is None else args.out, "--out")
    check_run_folder(out, args.resume)
    executor = make_executor(args.executor, args.ray_address, args.threads)
    cases = plan_cases(request, skip_reasons(executor, request.backends))
    return run_in_folder("run", cases, out, resume=args.resume, again=resume_command("run", sys.argv[2:], out),
                         executor=executor, label=f"{args.suite} suite", report=_report,
                         postprocess=question_comparisons)


def cmd_study(args) -> int:
    suite = STUDY_SUITES[args.suite]
    if args.data is not None:
        check_data(args.data)
    if args.seeds is not None or args.epochs is not None:
        suite = replace(suite, seeds=args.seeds or suite.seeds, epochs=args.epochs or suite.epochs)
    out = Path(args.out) if args.out is not None else RUNS_DIR / f"study-{args.suite}"
    check_output_folder(str(out) if args.out is None else args.out, "--out")
    check_run_folder(out, args.resume)
    backends = tuple(dict.fromkeys(args.backends))
    threads, jobs = study_jobs(args)
    executor = make_executor(args.executor, args.ray_address, threads, jobs)
    cases = plan_study_cases(suite, backends, skip_reasons(executor, backends), args.data)
    return run_in_folder("study", cases, out, resume=args.resume, again=resume_command("study", sys.argv[2:], out),
                         executor=executor, label=f"{args.suite} study", report=_report)


def study_jobs(args) -> tuple[int | None, int]:
    """(threads per case, cases at once) for `study`. A study case trains models too small to
    keep two threads busy, so locally the default is one thread per case and a case per core;
    --threads alone fixes the jobs that fit the cores, --jobs alone the threads. Ray: --jobs is
    refused (Ray places the cases on free CPUs), threads as `run` sets them."""
    if args.executor == "ray":
        if args.jobs is not None:
            raise HarnessInputError(f"--jobs {args.jobs}: only for --executor local (Ray runs the study's cases on "
                                    "the cluster's free CPUs)")
        return args.threads, 1
    jobs = args.jobs or max(1, AVAILABLE_CORES // (args.threads or 1))
    threads = args.threads or max(1, AVAILABLE_CORES // jobs)
    if jobs * threads > AVAILABLE_CORES and not args.oversubscribe:
        raise HarnessInputError(f"--jobs {jobs} with --threads {threads}: {jobs * threads} threads on the "
                                f"{AVAILABLE_CORES} cores this process may use; use --oversubscribe to run them anyway")
    return threads, jobs


def add_parsers(sub) -> None:
    _add_run_parser(sub)
    _add_study_parser(sub)


def _add_run_parser(sub) -> None:
    backends, modes, devices = choices()
    suites = "; ".join(f"{name}: {len(s.questions)} questions, modes {'+'.join(s.modes)}, "
                       f"{s.budget_s:g} s per timing case" for name, s in SUITES.items())
    p = subcommand(sub, "run", cmd_run, help="the main job: parity + timing matrix + inspection, then a report",
                       description="Run a suite, each case in its own process, results appended to results.jsonl as "
                                   "they finish; then write report.md and index.html. Ctrl-C (or SIGTERM) keeps the "
                                   f"finished cases and prints the command that resumes. Suites: {suites} (README: "
                                   "Suites).",
                       **epilog("run --suite quick", "run --backends torch --models mlp --out reports/runs/mine",
                                 "run --out reports/runs/mine --resume"))
    p.add_argument("--suite", choices=list(SUITES), default="default",
                   help="what to measure (default: default). On 2 cores: default about 30 min with torch, "
                        "tensorflow and keras_torch (the README's install), about 60 min with all five backends, "
                        "16–23 min with --backends torch tensorflow; quick 2–3 min (8 min, five backends); reference "
                        "with the default study, torch and tensorflow: 46–100 min")
    p.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under reports/runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: skip its finished cases")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends),
                   help=f"(default: {' '.join(backends)})")
    p.add_argument("--models", nargs="+", choices=list(PRESETS),
                   help="(default: the suite's; quick: mlp, others: mlp cnn)")
    p.add_argument("--variants", nargs="+", metavar="V", help="timing variants (default: the suite's)")
    p.add_argument("--devices", nargs="+", choices=devices, help="(default: the suite's; cuda only where present)")
    p.add_argument("--modes", nargs="+", choices=modes, help="(default: the suite's)")
    add_threads(p, per_node=True)
    add_executor(p)


def _add_study_parser(sub) -> None:
    backends, _, _ = choices()
    p = subcommand(sub, "study", cmd_study, help="train on real data: what regularization does, both frameworks, CIs",
                    description="Train small models on an offline data set in each framework (same initial weights, "
                                "same batches), for each variant (none, L2, dropout, early stopping, augmentation, BN "
                                "alone, BN with dropout before and after it, L1 with Adam and SGD) and seed; record "
                                "per-epoch losses, accuracies and weight constancy, BatchNorm's variance shift and "
                                "the kernels' sparsity; then report a claims ledger with paired "
                                "CIs. Results go to --out as `run` writes them (durable per case, --resume).",
                    **epilog("study --data digits --suite quick --out reports/runs/study",
                              "study --suite default --out reports/runs/study-default",
                              "study --data cifar10:/data/cifar-10-batches-py --seeds 3 --out reports/runs/cifar",
                              variants=False))
    p.add_argument("--suite", choices=list(STUDY_SUITES), default="quick",
                   help="; ".join(f"{name}: " + ", ".join(f"{t.data} {t.model} ({len(t.variants)} variants)"
                                                          for t in suite.targets)
                                  + f", {suite.seeds} seeds, {suite.epochs} epochs"
                                  for name, suite in STUDY_SUITES.items()) + " (default: quick)")
    p.add_argument("--data", metavar="D", help="digits, mnist1d or cifar10:PATH (a folder of the python-pickle "
                                                "batches; never downloaded) instead of the suite's data sets")
    p.add_argument("--seeds", type=bounded_int(1, 1000), metavar="N", help="seeds per variant (default: the suite's)")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), metavar="E", help="epochs per run (default: the suite's)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: reports/runs/study-SUITE)")
    p.add_argument("--resume", action="store_true", help="continue the study in --out: skip its finished cases")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends),
                   help=f"(default: {' '.join(backends)})")
    add_threads(p, per_node=True, default_text=f"cores ÷ --jobs, so 1 here with {AVAILABLE_CORES} jobs; with "
                                                "--executor ray the cores of the node")
    p.add_argument("--jobs", type=bounded_int(1, 1024), metavar="N",
                   help=f"cases (seeds) trained at once on this machine (default: cores ÷ --threads, "
                        f"{AVAILABLE_CORES} here at 1 thread each); jobs × threads above the cores needs "
                        "--oversubscribe")
    add_executor(p)
