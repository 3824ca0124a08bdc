"""Command line: a thin layer over the library. `python -m harness COMMAND --help` for each.

Exit codes: 0 success; 1 a parity check failed (or a run had failed cases); 2 bad input (one
line on stderr, no traceback); 3 skipped: the backend's framework or the device is not available
here; 130 interrupted. Backend, mode and device choices come from the backend registry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from backends import REFERENCE, backend_class, backend_names, create_backend, parity_partners, registry
from harness.errors import EXIT_SKIPPED, BackendUnavailable, HarnessInputError
from harness.spec import PRESETS

DEFAULT_THREADS = len(os.sched_getaffinity(0))


def _write_json(path: str | None, records) -> None:
    if path:
        Path(path).write_text(json.dumps([r.as_dict() for r in records], indent=1) + "\n", encoding="utf-8")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _specs(args):
    from harness.spec import resolve_spec

    if args.model or args.spec:
        return [resolve_spec(args.model, args.spec)]
    return list(PRESETS.values())


def _validate_variants(variants):
    from harness.variants import parse_variant

    for text in variants:
        parse_variant(text)


def cmd_parity(args) -> int:
    from harness.parity import check_variant
    from harness.suites import SUITES

    specs = _specs(args)
    variants = args.variant or list(SUITES["default"].parity_variants)
    _validate_variants(variants)
    reference = create_backend(REFERENCE, threads=args.threads)  # created first: see backends/__init__.py
    partners = []
    for name in [args.against] if args.against else parity_partners():
        try:
            partners.append(create_backend(name, threads=args.threads))
        except BackendUnavailable as exc:
            if args.against:
                raise
            _say(f"skipped: {name}: {exc}")
    if not partners:
        raise BackendUnavailable(f"parity: no backend to compare with {REFERENCE} is available here")
    records = []
    for other in partners:
        for spec in specs:
            for text in variants:
                _say(f"parity {REFERENCE}-{other.name} {spec.name} [{text}] ...")
                records += check_variant(reference, other, spec, text)
    _write_json(args.json, records)
    print(f"{'backends':22} {'model':12} {'variant':34} {'check':34} {'max_abs':>9} {'max_rel':>9} {'tol':>9}  verdict")
    for r in records:
        print(f"{'-'.join(r.backends):22} {r.model:12} {r.variant:34} {r.check:34} {r.max_abs_err:9.1e} "
              f"{r.max_rel_err:9.1e} {r.tol:9.1e}  {'pass' if r.passed else 'FAIL'}")
    failed = [r for r in records if not r.passed]
    print(f"{len(records) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def cmd_time(args) -> int:
    from harness.spec import resolve_spec
    from harness.timing import TimingPlan, compare_against_first, measure

    spec = resolve_spec(args.model, args.spec)
    _validate_variants(args.variant)
    modes = tuple(args.mode or ["eager"])
    for mode in modes:
        backend_class(args.backend).check_mode(mode)
    backend = create_backend(args.backend, device=args.device, threads=args.threads)
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
    from harness.run_suite import run_suite

    return run_suite(args)


def _add_model_args(parser, default_all: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", choices=list(PRESETS),
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


class _LineKeepingFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so its line breaks are kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        def hanging(line: str) -> str:  # an indented line continues 4 columns further in
            depth = len(line) - len(line.lstrip())
            return indent + " " * (depth + 4 if depth else 0)

        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hanging(line),
                                        break_on_hyphens=False) for line in text.splitlines())


def _variants_epilog() -> str:
    from harness.variants import AXES, BASELINE, SHORTHANDS

    axes = "\n".join(f"  {axis.key}={axis.help}" for axis in AXES)
    return (f"variants: '{BASELINE}' or comma-separated key=value settings, e.g. 'dropout=0,bn=before':\n{axes}\n"
            f"  shorthands: {', '.join(SHORTHANDS)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Cross-framework (PyTorch vs TensorFlow/Keras 3) parity and per-training-step timing.",
    )
    epilog = {"epilog": _variants_epilog(), "formatter_class": _LineKeepingFormatter}
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backends = backend_names()
    modes = list(dict.fromkeys(m for cls in registry().values() for m in cls.MODES))
    devices = list(dict.fromkeys(d for cls in registry().values() for d in cls.DEVICES))
    threads_help = f"intra-op threads for each framework, set before first use (default: {DEFAULT_THREADS}, the cores available)"

    p = sub.add_parser("parity", **epilog, help="check that PyTorch and TensorFlow compute the same numbers",
                       description="Load the same weights into both frameworks and compare outputs, losses, gradients, "
                                   "optimizer steps and BatchNorm statistics. Exit 0 only if every check passes.")
    _add_model_args(p, default_all=True)
    p.add_argument("--against", choices=parity_partners(),
                   help=f"the backend compared with {REFERENCE} (default: every one available here)")
    p.add_argument("--variant", action="append", metavar="V", help="e.g. 'dropout=0,bn=before' (repeatable; default: all)")
    p.add_argument("--json", metavar="FILE", help="write one record per check")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, help=threads_help)
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("time", **epilog, help="per-training-step time of variants, interleaved, with CIs",
                       description="Time one training step (forward, loss, backward, update) of each variant. With two or "
                                   "more arms they are measured interleaved and compared with the first (median ratio, "
                                   "95% bootstrap CI, verdict).")
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends)
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable; the first is the baseline A")
    p.add_argument("--mode", action="append", choices=modes, help="repeatable (default: eager)")
    p.add_argument("--device", default="cpu", choices=devices)
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

    p = sub.add_parser("inspect", **epilog, help="count the graph nodes one training step executes",
                       description="torch: autograd nodes of one step, the torch.compile (dynamo) graph and the AOT "
                                   "forward/backward graphs. tensorflow: ops of the traced tf.function step.")
    _add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends)
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable")
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS, help=threads_help)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", **epilog, help="the main job: parity + timing matrix + inspection, then a report",
                       description="Run a suite, each case in its own process, results appended to results.jsonl as they "
                                   "finish; then write report.md and index.html.")
    p.add_argument("--suite", choices=["quick", "default", "full"], default="default")
    p.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under reports/runs/)")
    p.add_argument("--resume", action="store_true", help="skip the cases already finished in --out")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends))
    p.add_argument("--models", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    p.add_argument("--variants", nargs="+", metavar="V", help="timing variants (default: the suite's)")
    p.add_argument("--devices", nargs="+", choices=devices, help="default: the suite's (cuda only where present)")
    p.add_argument("--modes", nargs="+", choices=modes, help="default: the suite's")
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
    except BackendUnavailable as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return EXIT_SKIPPED
    except HarnessInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
