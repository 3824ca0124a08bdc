"""Command line: a thin layer over the library. `python -m harness COMMAND --help` for each.

Exit codes: 0 success; 1 a parity check failed (or a run had failed cases); 2 bad input (one
line on stderr, no traceback); 3 skipped: the backend's framework or the device is not available
here; 130 interrupted. Backend, mode and device choices come from the backend registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backends import REFERENCE, backend_names, create_backend, parity_partners, registry
from harness.cli_checks import (
    AVAILABLE_CORES, allocation_failure, bounded_float, bounded_int, check_memory, check_output_file,
    check_output_folder, check_threads, checked_variants, note_unchanged, say, write_json,
)
from harness.cli_timing import add_replication_args, cmd_calibrate, cmd_percall, cmd_time, copies_list
from harness.errors import BackendUnavailable, HarnessInputError, report_expected_error
from harness.spec import PRESETS

DEFAULT_THREADS = AVAILABLE_CORES


def _specs(args):
    from harness.spec import resolve_spec

    if args.model or args.spec:
        return [resolve_spec(args.model, args.spec)]
    return list(PRESETS.values())


def cmd_parity(args) -> int:
    from harness.parity import check_variant
    from harness.suites import SUITES

    specs = _specs(args)
    variants = checked_variants(args.variant or SUITES["default"].parity_variants)
    check_output_file(args.json, "--json")
    for spec in specs:  # three models at once: reference, other framework, float64 oracle (2x)
        check_memory(args, spec, variants, models=4)
    reference = create_backend(REFERENCE, threads=args.threads)  # created first: see backends/__init__.py
    partners = []
    for name in [args.against] if args.against else parity_partners():
        try:
            partners.append(create_backend(name, threads=args.threads))
        except BackendUnavailable as exc:
            if args.against:
                raise
            say(f"skipped: {name}: {exc}")
    if not partners:
        raise BackendUnavailable(f"parity: no backend to compare with {REFERENCE} is available here")
    records = []
    for other in partners:
        for spec in specs:
            for text in variants:
                say(f"parity {REFERENCE}-{other.name} {spec.name} [{text}] ...")
                records += check_variant(reference, other, spec, text)
    print(f"{'backends':22} {'model':12} {'variant':34} {'check':34} {'max_abs':>9} {'max_rel':>9} {'tol':>9}  verdict")
    for r in records:
        print(f"{'-'.join(r.backends):22} {r.model:12} {r.variant:34} {r.check:34} {r.max_abs_err:9.1e} "
              f"{r.max_rel_err:9.1e} {r.tol:9.1e}  {'info' if r.info else 'pass' if r.passed else 'FAIL'}")
    failed = [r for r in records if not r.passed]
    info = sum(r.info for r in records)
    if info:
        print(f"({info} 'info' rows: stock optimizers compared for information, not checks; see README)")
    print(f"{len(records) - len(failed) - info} passed, {len(failed)} failed")
    write_json(args.json, records)
    return 1 if failed else 0


def cmd_inspect(args) -> int:
    from harness.data import synthetic_batch
    from harness.records import InspectRecord
    from harness.spec import resolve_spec
    from harness.variants import variant_spec

    spec = resolve_spec(args.model, args.spec)
    variants = checked_variants(args.variant)
    check_output_file(args.json, "--json")
    note_unchanged(spec, variants)
    check_memory(args, spec, variants, models=2)  # the model and its compiled graph's buffers
    backend = create_backend(args.backend, threads=args.threads)
    records = []
    for text in variants:
        variant, vspec = variant_spec(spec, text)
        say(f"inspect {args.backend} {spec.name} [{variant.label}] ...")
        x, y = synthetic_batch(vspec)
        for count in backend.build(vspec).graph_counts(x, y):
            records.append(InspectRecord(args.backend, spec.name, variant.label, count.graph, count.node_count,
                                         count.op_counts))
    print(f"{'variant':34} {'graph':14} {'nodes':>6}")
    for r in records:
        print(f"{r.variant:34} {r.graph:14} {r.node_count:6d}")
    write_json(args.json, records)
    return 0


def cmd_report(args) -> int:
    from harness.report import build_report

    check_output_folder(args.out, "--out")
    paths = build_report([Path(p) for p in args.inputs], Path(args.out) if args.out else None)
    print(f"wrote {paths.markdown} and {paths.html}")
    return 0


def cmd_run(args) -> int:
    from harness.run_suite import run_suite

    check_output_folder(args.out, "--out")
    return run_suite(args)


def cmd_study(args) -> int:
    from harness.study_run import cmd_study as study

    check_output_folder(args.out, "--out")
    return study(args)


def _add_model_args(parser, default_all: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", choices=list(PRESETS),
                       help="a built-in preset: mlp (784-512-256-10) or cnn (the Keras MNIST CNN)"
                            + (" (default: both)" if default_all else " (default: mlp)"))
    group.add_argument("--spec", metavar="FILE", help="a JSON or TOML model spec file (README: Model spec)")


def _add_threads(parser, per_node: bool = False) -> None:
    """--threads; `per_node`: a command whose cases may run on a Ray cluster leaves it unset
    (None) by default, so that each case takes the cores of the node it lands on."""
    default = (f"{DEFAULT_THREADS}, the cores available; with --executor ray the cores of the node a timing case "
               "owns, 1 for the others") if per_node else f"{DEFAULT_THREADS}, the cores available"
    parser.add_argument("--threads", type=bounded_int(1, 1 << 20), default=None if per_node else DEFAULT_THREADS,
                        help=f"intra-op threads for each framework, set before first use (default: {default}; "
                             "more than the cores here needs --oversubscribe)")
    parser.add_argument("--oversubscribe", action="store_true", help="allow --threads above the cores available")


def _add_executor(parser) -> None:
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: the cases one after another on this machine (default); ray: each case a Ray "
                             "task on the cluster at --ray-address, timing cases each on a node of its own "
                             "(README: Running on a Ray cluster; needs the ray extra)")
    parser.add_argument("--ray-address", metavar="ADDR", default="auto",
                        help="the Ray cluster to use with --executor ray: host:port of its head, or auto (the "
                             "cluster this machine belongs to; default: auto)")


class _LineKeepingFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so its line breaks are kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        def hanging(line: str) -> str:  # an indented line continues 4 columns further in
            depth = len(line) - len(line.lstrip())
            return indent + " " * (depth + 4 if depth else 0)

        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hanging(line),
                                        break_on_hyphens=False) for line in text.splitlines())


def _epilog(*examples: str, variants: bool = True) -> dict:
    from harness.variants import AXES, BASELINE, SHORTHANDS

    lines = ["examples:", *(f"  python -m harness {example}" for example in examples)]
    if variants:
        lines += ["", f"variants: '{BASELINE}' or comma-separated key=value settings, e.g. 'dropout=0,bn=before':",
                  *(f"  {axis.key}={axis.help}" for axis in AXES), f"  shorthands: {', '.join(SHORTHANDS)}"]
    return {"epilog": "\n".join(lines), "formatter_class": _LineKeepingFormatter}


def _subcommand(sub, name: str, func, **options) -> argparse.ArgumentParser:
    """A command's parser, bound to the function that runs it."""
    parser = sub.add_parser(name, **options)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from harness.calibration import DEFAULT_COMPARISONS, DEFAULT_INJECTED, KNOWN_COST_US
    from harness.percall import DEFAULT_COPIES, PERCALL_INSTANCES
    from harness.suites import SUITES

    parser = argparse.ArgumentParser(
        prog="python -m harness", formatter_class=_LineKeepingFormatter,
        description="Cross-framework (PyTorch vs TensorFlow/Keras 3) parity and per-training-step timing.\n"
                    "Exit codes: 0 ok; 1 a parity check or a case failed; 2 bad input; 3 skipped (framework or "
                    "device not available here); 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backends = backend_names()
    modes = list(dict.fromkeys(m for cls in registry().values() for m in cls.MODES))
    devices = list(dict.fromkeys(d for cls in registry().values() for d in cls.DEVICES))

    p = _subcommand(sub, "parity", cmd_parity, help="check that PyTorch and TensorFlow compute the same numbers",
                       description="Load the same weights into both frameworks and compare outputs, losses, gradients, "
                                   "optimizer steps and BatchNorm statistics. Exit 0 only if every check passes.",
                       **_epilog("parity", "parity --model cnn --variant 'dropout=0,bn=before'",
                                 "parity --spec my.toml --json parity.json"))
    _add_model_args(p, default_all=True)
    p.add_argument("--against", choices=parity_partners(),
                   help=f"the backend compared with {REFERENCE} (default: every one available here)")
    p.add_argument("--variant", action="append", metavar="V",
                   help="repeatable (default: every value of every variant axis, 12 variants)")
    p.add_argument("--json", metavar="FILE", help="write one record per check (default: none)")
    _add_threads(p)

    p = _subcommand(sub, "time", cmd_time, help="per-training-step time of variants, interleaved, with CIs",
                       description="Time one training step (forward, loss, backward, update) of each variant. With two "
                                   "or more arms they are measured interleaved (every round runs every arm, in a new "
                                   "random order) and compared with the first: median ratio, 95% bootstrap CI, verdict.",
                       **_epilog("time --backend torch --variant dropout=absent --variant dropout=0 --aa",
                                 "time --backend tensorflow --model cnn --variant baseline --mode eager --mode compiled",
                                 "time --backend torch --variant baseline --reference-loop --json t.json"))
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends, help="the framework to time (required)")
    p.add_argument("--variant", action="append", required=True, metavar="V",
                   help="repeatable (at least one); the first is the baseline A the others are compared with")
    p.add_argument("--mode", action="append", choices=modes, help="repeatable (default: eager)")
    p.add_argument("--device", default="cpu", choices=devices, help="(default: cpu)")
    _add_threads(p)
    add_replication_args(p)
    p.add_argument("--aa", action="store_true", help="add an A/A copy of the first arm: measures the noise floor")
    p.add_argument("--inject-slowdown", type=bounded_float(0.0, 1.0), default=0.0, metavar="F",
                   help="add a copy of the first arm that spins F x its step time after each step, F in [0, 1] "
                        "(default: 0, none; e.g. 0.05)")
    p.add_argument("--reference-loop", action="store_true",
                   help="add a hand-written training loop (mlp preset, eager) to measure the harness's own overhead")
    p.add_argument("--json", metavar="FILE", help="write timing and comparison records (default: none)")

    p = _subcommand(sub, "percall", cmd_percall, help="per-call cost of a layer that should be free (dose-response)",
                    description="Insert k copies of a layer after the model's first layer (k = --copies), time the "
                                "k-arms interleaved in replicated worker processes, and fit step time against k: the "
                                "slope is the cost of one call, in µs with a 95% CI, and as a share of the step.",
                    **_epilog("percall --backend torch --model mlp --layer dropout=0",
                              "percall --backend tensorflow --layer dropout=0 --mode compiled --json pc.json",
                              "percall --backend torch --layer busywait=20 --net-of busywait=0  (a layer of known cost)",
                              variants=False))
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends, help="the framework to time (required)")
    p.add_argument("--layer", required=True, metavar="L",
                   help="TYPE=VALUE: dropout=RATE, activation=NAME, batchnorm=MOMENTUM, busywait=MICROSECONDS; or a "
                        "JSON layer object (README: Model spec)")
    p.add_argument("--net-of", metavar="L", default="",
                   help="another layer (same forms as --layer) timed in the same rounds; its per-call cost is "
                        "subtracted, e.g. --layer busywait=100 --net-of busywait=0: the spin without the cost of "
                        "calling a layer (default: none)")
    p.add_argument("--copies", type=copies_list, default=DEFAULT_COPIES, metavar="K,K,...",
                   help=f"numbers of copies to time, at least two (default: {','.join(map(str, DEFAULT_COPIES))})")
    p.add_argument("--mode", choices=modes, default="eager", help="(default: eager)")
    p.add_argument("--device", default="cpu", choices=devices, help="(default: cpu)")
    _add_threads(p)
    add_replication_args(p, precision_help="target 95%% CI half-width of the per-call cost, in µs (default: 1)",
                         precision_default=1.0, budget_default=120.0, instances_default=PERCALL_INSTANCES)
    p.add_argument("--json", metavar="FILE", help="write the timing records and the per_call record (default: none)")

    p = _subcommand(sub, "calibrate", cmd_calibrate, help="check that the timing CIs are honest on this machine",
                    description="Run N A/A comparisons and N against an injected slowdown (both in each session), "
                                "and report coverage (A/A CIs containing 1; target ≥ 90%), the CI half-widths and the "
                                "detection rate of the slowdown (target ≥ 90%); then recover a layer of known per-call "
                                "cost with `percall`, net of the same layer spinning 0 µs (target within ±20%). "
                                "Exit 1 if a target is missed.",
                    **_epilog("calibrate --backend torch --model mlp", "calibrate --backend tensorflow --comparisons 30 "
                              "--budget 90 --json calibration.json", variants=False))
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends, help="the framework to time (required)")
    p.add_argument("--comparisons", type=bounded_int(1, 10_000), default=DEFAULT_COMPARISONS, metavar="N",
                   help=f"sessions; each gives one A/A and one injected comparison (default: {DEFAULT_COMPARISONS})")
    p.add_argument("--inject-slowdown", type=bounded_float(0.0, 1.0, low_open=True), default=DEFAULT_INJECTED,
                   metavar="F", help=f"the known slowdown to detect, as a fraction (default: {DEFAULT_INJECTED:g})")
    p.add_argument("--known-cost-us", type=bounded_float(0.0, 1e5), default=KNOWN_COST_US, metavar="US",
                   help=f"per-call cost of the busy-wait layer percall must recover (default: {KNOWN_COST_US:g}; 0: skip)")
    p.add_argument("--mode", choices=modes, default="eager", help="(default: eager)")
    p.add_argument("--device", default="cpu", choices=devices, help="(default: cpu)")
    _add_threads(p)
    add_replication_args(p, precision_help="target 95%% CI half-width of each comparison (default: 0.01)")
    p.add_argument("--json", metavar="FILE", help="write the timing, comparison and per_call records (default: none)")

    p = _subcommand(sub, "inspect", cmd_inspect, help="count the graph nodes one training step executes",
                       description="torch: autograd nodes of one step, the torch.compile (dynamo) graph and the AOT "
                                   "forward/backward graphs. tensorflow: ops of the traced tf.function step.",
                       **_epilog("inspect --backend torch --variant dropout=absent --variant dropout=0",
                                 "inspect --backend tensorflow --model cnn --variant l2=absent --variant l2=0"))
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends, help="the framework to inspect (required)")
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable (at least one)")
    _add_threads(p)
    p.add_argument("--json", metavar="FILE", help="write one record per variant and graph (default: none)")

    suites = "; ".join(f"{name}: {len(s.questions)} questions, modes {'+'.join(s.modes)}, {s.budget_s:g} s per timing case"
                       for name, s in SUITES.items())
    p = _subcommand(sub, "run", cmd_run, help="the main job: parity + timing matrix + inspection, then a report",
                       description="Run a suite, each case in its own process, results appended to results.jsonl as "
                                   "they finish; then write report.md and index.html. Ctrl-C (or SIGTERM) keeps the "
                                   f"finished cases and prints the command that resumes. Suites: {suites} (README: "
                                   "Suites).",
                       **_epilog("run --suite quick", "run --backends torch --models mlp --out reports/runs/mine",
                                 "run --out reports/runs/mine --resume"))
    p.add_argument("--suite", choices=list(SUITES), default="default",
                   help="what to measure (default: default, 16–23 min on 2 cores; quick 2–3 min; reference, with the default "
                        "study, 46–100 min)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under reports/runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: skip its finished cases")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends),
                   help=f"(default: {' '.join(backends)})")
    p.add_argument("--models", nargs="+", choices=list(PRESETS),
                   help="(default: the suite's; quick: mlp, others: mlp cnn)")
    p.add_argument("--variants", nargs="+", metavar="V", help="timing variants (default: the suite's)")
    p.add_argument("--devices", nargs="+", choices=devices, help="(default: the suite's; cuda only where present)")
    p.add_argument("--modes", nargs="+", choices=modes, help="(default: the suite's)")
    _add_threads(p, per_node=True)
    _add_executor(p)

    from harness.study_suites import STUDY_SUITES

    p = _subcommand(sub, "study", cmd_study, help="train on real data: what regularization does, both frameworks, CIs",
                    description="Train small models on an offline data set in each framework (same initial weights, "
                                "same batches), for each variant (none, L2, dropout, early stopping, BN with dropout "
                                "before and after it) and seed; record per-epoch losses, accuracies and weight "
                                "constancy, and BatchNorm's variance shift; then report a claims ledger with paired "
                                "CIs. Results go to --out as `run` writes them (durable per case, --resume).",
                    **_epilog("study --data digits --suite quick --out reports/runs/study",
                              "study --suite default --out reports/runs/study-default",
                              "study --data cifar10:/data/cifar-10-batches-py --seeds 3 --out reports/runs/cifar",
                              variants=False))
    p.add_argument("--suite", choices=list(STUDY_SUITES), default="quick",
                   help="quick: digits mlp, 3 seeds, 10 epochs; default: digits mlp and mnist1d mlp, 5 seeds, "
                        "20 epochs; full: default plus digits cnn, 10 seeds, 30 epochs (default: quick)")
    p.add_argument("--data", metavar="D", help="digits, mnist1d or cifar10:PATH (a folder of the python-pickle "
                                                "batches; never downloaded) instead of the suite's data sets")
    p.add_argument("--seeds", type=bounded_int(1, 1000), metavar="N", help="seeds per variant (default: the suite's)")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), metavar="E", help="epochs per run (default: the suite's)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: reports/runs/study-SUITE)")
    p.add_argument("--resume", action="store_true", help="continue the study in --out: skip its finished cases")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends),
                   help=f"(default: {' '.join(backends)})")
    _add_threads(p, per_node=True)
    _add_executor(p)

    p = _subcommand(sub, "report", cmd_report, help="render report.md and index.html from run folders or pytest-benchmark JSON",
                       description="Render a run folder (its results.jsonl and environment.json) or pytest-benchmark "
                                   "JSON files (pytest --benchmark-json) into report.md, a self-contained index.html "
                                   "and PNG plots. Several run folders (say, one per machine), or a Ray run whose "
                                   "cases ran on several machines, make one merged report: a table of the machines, "
                                   "the same question's answer on each machine side by side, then each machine's "
                                   "own report. Comparisons are only ever made within one machine's session.",
                       **_epilog("report reports/runs/mine", "report reports/runs/box-a reports/runs/box-b --out "
                                 "reports/merged", "report bench.json --out /tmp/bench-report", variants=False))
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR_OR_JSON",
                   help="one or more run folders, or one or more pytest-benchmark JSON files")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the run folder; several run folders: "
                                                "merged-A+B beside the first; JSON: the first JSON's folder)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "threads", None) is not None:
            check_threads(args.threads, args.oversubscribe)
        return args.func(args)
    except HarnessInputError as exc:  # BackendUnavailable too
        return report_expected_error(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not allocation_failure(exc):
            raise
        where = getattr(args, "spec", None) or f"--model {getattr(args, 'model', None) or 'mlp'}"
        print(f"error: {where}: the framework could not allocate memory for this model "
              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return 2
