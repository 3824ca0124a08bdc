"""Command line: a thin layer over the library. `python -m harness COMMAND --help` for each.

Exit codes: 0 success; 1 a parity check failed; 2 bad input (one line on stderr, no traceback);
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.errors import HarnessInputError

DEFAULT_THREADS = len(os.sched_getaffinity(0))


def _write_json(path: str | None, records) -> None:
    if path:
        Path(path).write_text(json.dumps([r.as_dict() for r in records], indent=1) + "\n", encoding="utf-8")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _specs(args):
    from harness.spec import PRESETS, resolve_spec

    if args.model or args.spec:
        return [resolve_spec(args.model, args.spec)]
    return list(PRESETS.values())


def _validate_variants(variants):
    from harness.variants import parse_variant

    for text in variants:
        parse_variant(text)


def cmd_parity(args) -> int:
    from harness.parity import check_variant
    from harness.suites import PARITY_VARIANTS

    specs = _specs(args)
    variants = args.variant or list(PARITY_VARIANTS)
    _validate_variants(variants)
    from backends import backend_class, create_backend

    reference = create_backend("torch", threads=args.threads)  # torch first: see backends/__init__.py
    availability = backend_class("tensorflow").availability()
    if not availability.ok:
        print(f"skipped: tensorflow: {availability.reason}")
        _write_json(args.json, [])
        return 0
    other = create_backend("tensorflow", threads=args.threads)
    records = []
    for spec in specs:
        for text in variants:
            _say(f"parity {spec.name} [{text}] ...")
            records += check_variant(reference, other, spec, text)
    _write_json(args.json, records)
    print(f"{'model':12} {'variant':34} {'check':34} {'max_abs':>9} {'max_rel':>9} {'tol':>9}  verdict")
    for r in records:
        print(f"{r.model:12} {r.variant:34} {r.check:34} {r.max_abs_err:9.1e} {r.max_rel_err:9.1e} {r.tol:9.1e}  "
              f"{'pass' if r.passed else 'FAIL'}")
    failed = [r for r in records if not r.passed]
    print(f"{len(records) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def cmd_time(args) -> int:
    from backends import create_backend
    from harness.spec import resolve_spec
    from harness.timing import TimingPlan, compare_against_first, measure

    spec = resolve_spec(args.model, args.spec)
    _validate_variants(args.variant)
    modes = tuple(args.mode or ["eager"])
    backend = create_backend(args.backend, device=args.device, threads=args.threads)
    for mode in modes:
        if mode not in backend.MODES:
            raise HarnessInputError(f"--mode: {args.backend} has no mode {mode!r} (modes: {', '.join(backend.MODES)})")
    plan = TimingPlan(tuple(args.variant), modes, args.rounds, args.steps, args.warmup, args.aa, args.inject_slowdown,
                      args.reference_loop, args.round_seconds)
    records = measure(backend, spec, plan, args.device, args.threads, progress=lambda m: _say(f"time: {m}"))
    comparisons = compare_against_first(records) if len(records) > 1 else []
    _write_json(args.json, [*records, *comparisons])
    print(f"{args.backend} {spec.name} on {args.device}, {args.threads} threads; settings: {backend.settings()}")
    print(f"{'arm':44} {'median ms':>10} {'IQR ms':>8} {'rounds x steps':>15} {'setup s':>8}")
    for r in records:
        print(f"{r.arm:44} {r.median_s * 1e3:10.3f} {r.iqr_s * 1e3:8.3f} {f'{r.rounds} x {r.steps_per_round}':>15} "
              f"{r.setup_s:8.2f}")
    for c in comparisons:
        print(c.sentence)
    return 0


def cmd_inspect(args) -> int:
    from backends import create_backend
    from harness.data import synthetic_batch
    from harness.records import InspectRecord
    from harness.spec import resolve_spec
    from harness.variants import variant_spec

    spec = resolve_spec(args.model, args.spec)
    _validate_variants(args.variant)
    backend = create_backend(args.backend, threads=args.threads)
    records = []
    for text in args.variant:
        variant, vspec = variant_spec(spec, text)
        _say(f"inspect {args.backend} {spec.name} [{variant.label}] ...")
        x, y = synthetic_batch(vspec)
        for count in backend.build(vspec).graph_counts(x, y):
            records.append(InspectRecord(args.backend, spec.name, variant.label, count.graph, count.node_count,
                                         count.op_counts))
    _write_json(args.json, records)
    print(f"{'variant':34} {'graph':14} {'nodes':>6}")
    for r in records:
        print(f"{r.variant:34} {r.graph:14} {r.node_count:6d}")
    return 0


def cmd_report(args) -> int:
    from harness.report import build_report

    paths = build_report([Path(p) for p in args.inputs], Path(args.out) if args.out else None)
    print(f"wrote {paths.markdown} and {paths.html}")
    return 0


def cmd_run(args) -> int:
    from harness.run import run

    return run(args)


def _add_model_args(parser, default_all: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", choices=["mlp", "cnn"],
                       help="a built-in preset" + (" (default: both)" if default_all else " (default: mlp)"))
    group.add_argument("--spec", metavar="FILE", help="a JSON or TOML model spec file (see README)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Cross-framework (PyTorch vs TensorFlow/Keras 3) parity and per-training-step timing.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    threads_help = f"intra-op threads for each framework, set before first use (default: {DEFAULT_THREADS}, the cores available)"

    p = sub.add_parser("parity", help="check that PyTorch and TensorFlow compute the same numbers",
                       description="Load the same weights into both frameworks and compare outputs, losses, gradients, "
                                   "optimizer steps and BatchNorm statistics. Exit 0 only if every check passes.")
    _add_model_args(p, default_all=True)
    p.add_argument("--variant", action="append", metavar="V", help="e.g. 'dropout=0,bn=before' (repeatable; default: all)")
    p.add_argument("--json", metavar="FILE", help="write one record per check")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, help=threads_help)
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("time", help="per-training-step time of variants, interleaved, with CIs",
                       description="Time one training step (forward, loss, backward, update) of each variant. With two or "
                                   "more arms they are measured interleaved and compared with the first (median ratio, "
                                   "95%% bootstrap CI, verdict).")
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=["torch", "tensorflow"])
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable; the first is the baseline A")
    p.add_argument("--mode", action="append", choices=["eager", "compiled", "xla"], help="repeatable (default: eager)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, help=threads_help)
    p.add_argument("--rounds", type=_positive_int, default=30, help="interleaved rounds (default: 30)")
    p.add_argument("--steps", type=_positive_int, help="steps per round (default: calibrated per arm to --round-seconds)")
    p.add_argument("--round-seconds", type=_positive_float, default=0.05, metavar="S",
                   help="how long one arm runs per round (default: 0.05); longer rounds average out more jitter")
    p.add_argument("--warmup", type=int, default=5, help="warm-up steps per arm after the first (compiling) step")
    p.add_argument("--aa", action="store_true", help="add an A/A copy of the first arm: measures the noise floor")
    p.add_argument("--inject-slowdown", type=float, default=0.0, metavar="F",
                   help="add a copy of the first arm that spins F x its step time after each step (e.g. 0.05)")
    p.add_argument("--reference-loop", action="store_true",
                   help="add a hand-written training loop (mlp preset, eager) to measure the harness's own overhead")
    p.add_argument("--json", metavar="FILE", help="write timing and comparison records")
    p.set_defaults(func=cmd_time)

    p = sub.add_parser("inspect", help="count the graph nodes one training step executes",
                       description="torch: autograd nodes of one step, the torch.compile (dynamo) graph and the AOT "
                                   "forward/backward graphs. tensorflow: ops of the traced tf.function step.")
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=["torch", "tensorflow"])
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, help=threads_help)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="the main job: parity + timing matrix + inspection, then a report",
                       description="Run a suite, each case in its own process, results appended to results.jsonl as they "
                                   "finish; then write report.md and index.html.")
    p.add_argument("--suite", choices=["quick", "default", "full"], default="default")
    p.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under reports/runs/)")
    p.add_argument("--resume", action="store_true", help="skip the cases already finished in --out")
    p.add_argument("--backends", nargs="+", choices=["torch", "tensorflow"], default=["torch", "tensorflow"])
    p.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    p.add_argument("--variants", nargs="+", metavar="V", help="timing variants (default: the suite's)")
    p.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="default: the suite's (cuda only where present)")
    p.add_argument("--modes", nargs="+", choices=["eager", "compiled", "xla"], help="default: the suite's")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, help=threads_help)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="render report.md and index.html from a run folder or pytest-benchmark JSON")
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR_OR_JSON")
    p.add_argument("--out", metavar="DIR")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
