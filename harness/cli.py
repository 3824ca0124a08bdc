"""Command line: a thin layer over the library. `python -m harness COMMAND --help` for each.

Exit codes: 0 success; 1 a parity check failed (or a run had failed cases); 2 bad input (one
line on stderr, no traceback); 3 skipped: the backend's framework or the device is not available
here; 130 interrupted. Backend, mode and device choices come from the backend registry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backends import REFERENCE, backend_class, backend_names, create_backend, parity_partners, registry
from harness.cli_checks import (
    AVAILABLE_CORES, allocation_failure, bounded_float, bounded_int, check_output_file, check_output_folder,
    check_threads, checked_variants, note_unchanged,
)
from harness.errors import EXIT_SKIPPED, BackendUnavailable, HarnessInputError
from harness.spec import PRESETS

DEFAULT_THREADS = AVAILABLE_CORES


def _write_json(path: str | None, records) -> None:
    if path:
        try:
            Path(path).write_text(json.dumps([r.as_dict() for r in records], indent=1) + "\n", encoding="utf-8")
        except OSError as exc:  # the path was checked first; this is e.g. a full disk
            raise HarnessInputError(f"--json {path}: could not write the records ({exc.strerror}); "
                                    "the results are printed below") from None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _specs(args):
    from harness.spec import resolve_spec

    if args.model or args.spec:
        return [resolve_spec(args.model, args.spec)]
    return list(PRESETS.values())


def _check_memory(args, spec, variants, models: float) -> None:
    """Refuse, before anything is built, a model (in any of its variants) that would not fit in
    memory `models` times over (harness/resources.py)."""
    from harness.resources import check_fits
    from harness.variants import variant_spec

    source = args.spec or f"--model {spec.name}"
    for text in variants:
        check_fits(variant_spec(spec, text)[1], f"{source} [{text}]", models=models)


def cmd_parity(args) -> int:
    from harness.parity import check_variant
    from harness.suites import SUITES

    specs = _specs(args)
    variants = checked_variants(args.variant or SUITES["default"].parity_variants)
    check_output_file(args.json, "--json")
    for spec in specs:  # three models at once: reference, other framework, float64 oracle (2x)
        _check_memory(args, spec, variants, models=4)
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
    print(f"{'backends':22} {'model':12} {'variant':34} {'check':34} {'max_abs':>9} {'max_rel':>9} {'tol':>9}  verdict")
    for r in records:
        print(f"{'-'.join(r.backends):22} {r.model:12} {r.variant:34} {r.check:34} {r.max_abs_err:9.1e} "
              f"{r.max_rel_err:9.1e} {r.tol:9.1e}  {'info' if r.info else 'pass' if r.passed else 'FAIL'}")
    failed = [r for r in records if not r.passed]
    info = sum(r.info for r in records)
    if info:
        print(f"({info} 'info' rows: stock optimizers compared for information, not checks; see README)")
    print(f"{len(records) - len(failed) - info} passed, {len(failed)} failed")
    _write_json(args.json, records)
    return 1 if failed else 0


def _note_idioms(backend, spec, variants) -> None:
    """Say when a backend builds a variant's idiom as another one (e.g. Keras has no coupled
    weight_decay: it builds its kernel_regularizer, the same objective)."""
    from harness.variants import variant_spec

    for text in variants:
        if not backend.builds_as_written(variant_spec(spec, text)[1]):
            idioms = ", ".join(f"{idiom} {'/'.join(values)}" for idiom, values in backend.IDIOMS.items())
            _say(f"note: {backend.name} builds {text!r} with its own idiom ({idioms} only): this arm times that")


NOISY_FLOOR = 0.05  # an A/A floor above this makes a session's small verdicts untrustworthy


def cmd_time(args) -> int:
    from harness.questions import AA_CONTROL
    from harness.spec import resolve_spec
    from harness.timing import TimingPlan, compare_against_first, measure

    spec = resolve_spec(args.model, args.spec)
    variants = checked_variants(args.variant)
    modes = tuple(dict.fromkeys(args.mode or ["eager"]))
    for mode in modes:
        backend_class(args.backend).check_mode(mode)
    check_output_file(args.json, "--json")
    note_unchanged(spec, variants)
    _note_idioms(backend_class(args.backend), spec, variants)
    controls = (args.aa + (args.inject_slowdown > 0)) * len(modes) + args.reference_loop
    _check_memory(args, spec, variants, models=len(variants) * len(modes) + controls)  # every arm is built
    backend = create_backend(args.backend, device=args.device, threads=args.threads)
    plan = TimingPlan(tuple(variants), modes, args.rounds, args.steps, args.warmup, args.aa, args.inject_slowdown,
                      args.reference_loop, args.round_seconds)
    records = measure(backend, spec, plan, args.device, args.threads, progress=lambda m: _say(f"time: {m}"))
    comparisons = compare_against_first(records) if len(records) > 1 else []
    print(f"{args.backend} {spec.name} on {args.device}, {args.threads} threads; settings: {backend.settings()}")
    print(f"{'arm':44} {'median ms':>10} {'IQR ms':>8} {'rounds x steps':>15} {'setup s':>8}")
    for r in records:
        print(f"{r.arm:44} {r.median_s * 1e3:10.3f} {r.iqr_s * 1e3:8.3f} {f'{r.rounds} x {r.steps_per_round}':>15} "
              f"{r.setup_s:8.2f}")
    for c in comparisons:
        print(c.sentence)
    for c in comparisons:
        if c.question == AA_CONTROL and c.noise_floor is not None and c.noise_floor > NOISY_FLOOR:
            print(f"warning: this session was noisy ({c.mode}: A/A noise floor ±{c.noise_floor:.0%}); an effect smaller "
                  "than that cannot be told from noise here. Rerun on a quieter machine.")
    _write_json(args.json, [*records, *comparisons])
    return 0


def cmd_inspect(args) -> int:
    from harness.data import synthetic_batch
    from harness.records import InspectRecord
    from harness.spec import resolve_spec
    from harness.variants import variant_spec

    spec = resolve_spec(args.model, args.spec)
    variants = checked_variants(args.variant)
    check_output_file(args.json, "--json")
    note_unchanged(spec, variants)
    _check_memory(args, spec, variants, models=2)  # the model and its compiled graph's buffers
    backend = create_backend(args.backend, threads=args.threads)
    records = []
    for text in variants:
        variant, vspec = variant_spec(spec, text)
        _say(f"inspect {args.backend} {spec.name} [{variant.label}] ...")
        x, y = synthetic_batch(vspec)
        for count in backend.build(vspec).graph_counts(x, y):
            records.append(InspectRecord(args.backend, spec.name, variant.label, count.graph, count.node_count,
                                         count.op_counts))
    print(f"{'variant':34} {'graph':14} {'nodes':>6}")
    for r in records:
        print(f"{r.variant:34} {r.graph:14} {r.node_count:6d}")
    _write_json(args.json, records)
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


def _add_model_args(parser, default_all: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", choices=list(PRESETS),
                       help="a built-in preset: mlp (784-512-256-10) or cnn (the Keras MNIST CNN)"
                            + (" (default: both)" if default_all else " (default: mlp)"))
    group.add_argument("--spec", metavar="FILE", help="a JSON or TOML model spec file (README: Model spec)")


def _add_threads(parser) -> None:
    parser.add_argument("--threads", type=bounded_int(1, 1 << 20), default=DEFAULT_THREADS,
                        help=f"intra-op threads for each framework, set before first use (default: {DEFAULT_THREADS}, "
                             "the cores available; more needs --oversubscribe)")
    parser.add_argument("--oversubscribe", action="store_true", help="allow --threads above the cores available")


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
    p.add_argument("--rounds", type=bounded_int(1, 100_000), default=30,
                   help="interleaved rounds, 1 to 100000 (default: 30; a verdict needs at least 10)")
    p.add_argument("--steps", type=bounded_int(1, 100_000),
                   help="steps per round (default: calibrated per arm to --round-seconds)")
    p.add_argument("--round-seconds", type=bounded_float(0.0, 10.0, low_open=True), default=0.05, metavar="S",
                   help="how long one arm runs per round, (0, 10] (default: 0.05); longer rounds average out more jitter")
    p.add_argument("--warmup", type=bounded_int(0, 10_000), default=5,
                   help="warm-up steps per arm after the first (compiling) step (default: 5)")
    p.add_argument("--aa", action="store_true", help="add an A/A copy of the first arm: measures the noise floor")
    p.add_argument("--inject-slowdown", type=bounded_float(0.0, 1.0), default=0.0, metavar="F",
                   help="add a copy of the first arm that spins F x its step time after each step, F in [0, 1] "
                        "(default: 0, none; e.g. 0.05)")
    p.add_argument("--reference-loop", action="store_true",
                   help="add a hand-written training loop (mlp preset, eager) to measure the harness's own overhead")
    p.add_argument("--json", metavar="FILE", help="write timing and comparison records (default: none)")

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

    suites = "; ".join(f"{name}: {len(s.questions)} questions, modes {'+'.join(s.modes)}, {s.rounds} rounds"
                       for name, s in SUITES.items())
    p = _subcommand(sub, "run", cmd_run, help="the main job: parity + timing matrix + inspection, then a report",
                       description="Run a suite, each case in its own process, results appended to results.jsonl as "
                                   "they finish; then write report.md and index.html. Ctrl-C (or SIGTERM) keeps the "
                                   f"finished cases and prints the command that resumes. Suites: {suites} (README: "
                                   "Suites).",
                       **_epilog("run --suite quick", "run --backends torch --models mlp --out reports/runs/mine",
                                 "run --out reports/runs/mine --resume"))
    p.add_argument("--suite", choices=list(SUITES), default="default",
                   help="what to measure (default: default, about 15 min on 2 cores; quick about 3 min)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under reports/runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: skip its finished cases")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends),
                   help=f"(default: {' '.join(backends)})")
    p.add_argument("--models", nargs="+", choices=list(PRESETS), default=list(PRESETS),
                   help=f"(default: {' '.join(PRESETS)})")
    p.add_argument("--variants", nargs="+", metavar="V", help="timing variants (default: the suite's)")
    p.add_argument("--devices", nargs="+", choices=devices, help="(default: the suite's; cuda only where present)")
    p.add_argument("--modes", nargs="+", choices=modes, help="(default: the suite's)")
    _add_threads(p)

    p = _subcommand(sub, "report", cmd_report, help="render report.md and index.html from a run folder or pytest-benchmark JSON",
                       description="Render a run folder (its results.jsonl and environment.json) or pytest-benchmark "
                                   "JSON files (pytest --benchmark-json) into report.md, a self-contained index.html "
                                   "and PNG plots.",
                       **_epilog("report reports/runs/mine", "report bench.json --out /tmp/bench-report",
                                 variants=False))
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR_OR_JSON",
                   help="one run folder, or one or more pytest-benchmark JSON files")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the run folder, or the first JSON's folder)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "threads"):
            check_threads(args.threads, args.oversubscribe)
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
    except Exception as exc:
        if not allocation_failure(exc):
            raise
        where = getattr(args, "spec", None) or f"--model {getattr(args, 'model', None) or 'mlp'}"
        print(f"error: {where}: the framework could not allocate memory for this model "
              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return 2
