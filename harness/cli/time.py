"""`python -m harness time`, and what every timing command shares: the replication options and
the TimingRequest they are turned into (harness/timing/request.py). The comparison runs in worker
processes (harness/timing/replication.py); this process imports no framework.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from backends import backend_class, backend_names
from harness.cli.arguments import add_model_args, add_pair_args, add_threads, choices, epilog, subcommand
from harness.cli.options import (
    bounded_float,
    bounded_int,
    check_output_file,
    note_unchanged,
    pair_source,
    say,
    write_json,
)
from harness.errors import HarnessInputError
from harness.model.resources import check_fits
from harness.model.spec import resolve_spec
from harness.model.variants import Arm, parse_variants, variant_arms
from harness.ported.pair import PairSource
from harness.ported.timing import OPTIMIZERS, PAIR_BACKENDS, side_label
from harness.stats import MIN_PROCESSES
from harness.timing.controls import (
    AA_CONTROL,
    NOISY_FLOOR,
    compare_against_first,
    framework_comparisons,
    step_time_half_width,
    widest_half_width,
)
from harness.timing.replication import run_replicated
from harness.timing.replication_plan import DEFAULT_MIN_PROCESSES, ReplicationPlan
from harness.timing.request import TimingRequest
from harness.timing.session import TimingPlan


def spec_source(args) -> str:
    """Where the command's spec came from, for messages."""
    return args.spec or f"--model {args.model or 'mlp'}"


def timing_request(args, modes: tuple[str, ...], variants: Sequence[str] = (), per_call_s: float | None = None,
                   pair: PairSource | None = None, backend: str | None = None, **plan) -> TimingRequest:
    """The request of a timing command, every option checked before anything runs: the output
    path and process counts first, then the backend class (looked up once) with its modes and
    device, the spec (read once), and each of `variants` parsed and applied once into the plan's
    arms. `plan` sets TimingPlan fields beyond the replication options. `per_call_s`: the target
    half-width of a per-call cost, in seconds (else --precision, a fraction). With `pair` (a
    user's models) `backend` names the framework that times its side, and there is no spec."""
    check_output_file(args.json, "--json")
    min_processes = _min_processes(args)
    cls = backend_class(backend or args.backend)
    for mode in modes:
        cls.check_mode(mode)
    cls.check_device(args.device)
    if pair:
        spec, arms = None, (Arm(side_label(cls.name), None),)
    else:
        spec = resolve_spec(args.model, args.spec)
        arms = variant_arms(spec, parse_variants(variants)) if variants else ()
    replication = ReplicationPlan(precision=args.precision if per_call_s is None else per_call_s,
                                  budget_s=args.budget if args.budget is not None else cls.TIMING_BUDGET_S,
                                  min_processes=min_processes, max_processes=args.max_processes,
                                  unit="fraction" if per_call_s is None else "s")
    timing_plan = TimingPlan(arms=arms, modes=modes, process_s=args.process_seconds, rounds=args.rounds,
                             steps=args.steps, warmup=args.warmup, round_s=args.round_seconds,
                             instances=args.instances, **plan)
    for arm in arms if spec else ():  # refused before anything is built: every model a process holds must fit
        check_fits(arm.spec, f"{spec_source(args)} [{arm.label}]", models=timing_plan.models_held())
    return TimingRequest(backend=cls, device=args.device, threads=args.threads, spec=spec, plan=timing_plan,
                         replication=replication, pair=pair, optimizer=getattr(args, "optimizer", "sgd"))


def _min_processes(args) -> int:
    """--min-processes, refused above --max-processes; its default yields to a smaller maximum."""
    if args.min_processes is None:
        return min(DEFAULT_MIN_PROCESSES, args.max_processes)
    if args.min_processes > args.max_processes:
        raise HarnessInputError(f"--min-processes {args.min_processes} is more than --max-processes "
                                f"{args.max_processes}")
    return args.min_processes


def _note_idioms(request: TimingRequest) -> None:
    """Say when a backend builds a variant's idiom as another one (e.g. Keras has no coupled
    weight_decay: it builds its kernel_regularizer, the same objective)."""
    backend = request.backend
    for arm in request.plan.arms:
        if not backend.builds_as_written(arm.spec):
            idioms = ", ".join(f"{idiom} {'/'.join(values)}" for idiom, values in backend.IDIOMS.items())
            say(f"note: {backend.name} builds {arm.label!r} with its own idiom ({idioms} only): this arm times that")


def cmd_time(args) -> int:
    modes = tuple(dict.fromkeys(args.mode or ["eager"]))
    if args.torch or args.keras:
        return _time_pair(args, modes)
    if not args.backend or not args.variant:
        raise HarnessInputError("time needs --backend and at least one --variant (or your own models: --torch, "
                                "--keras, --input-shape, --classes)")
    request = timing_request(args, modes, args.variant, aa=args.aa, inject=args.inject_slowdown,
                             reference_loop=args.reference_loop)
    note_unchanged(request.spec, request.plan.arms)
    _note_idioms(request)
    found = run_replicated(request, widest_half_width, progress=lambda m: say(f"time: {m}"))
    say(f"stopped: {found.summary()}")
    comparisons = compare_against_first(found.records) if len(found.records) > 1 else []
    _print_session(request, found, comparisons, args.precision)
    write_json(args.json, [*found.records, *comparisons])
    return 0


def _time_pair(args, modes: tuple[str, ...]) -> int:
    """time --torch M:F --keras M:F: each framework's side of a user's pair timed in its own
    worker processes (its modes interleaved and paired, as for spec arms), then each mode's
    Keras step against torch's: unpaired, so its CI is over the two sides' processes."""
    pair = pair_source(args, {"--model": args.model, "--spec": args.spec, "--variant": args.variant,
                              "--reference-loop": args.reference_loop})
    if args.backend and args.backend not in PAIR_BACKENDS:
        raise HarnessInputError(f"--backend {args.backend}: a pair given with --torch/--keras is timed on "
                                f"{' or '.join(PAIR_BACKENDS)} (its Keras side runs on TensorFlow)")
    names = [args.backend] if args.backend else list(PAIR_BACKENDS)
    requests = [timing_request(args, modes, pair=pair, backend=name, aa=args.aa, inject=args.inject_slowdown)
                for name in names]  # every option checked before the first worker starts
    records, comparisons = [], []
    for request in requests:
        side = request.plan.arms[0].label  # "torch", "keras on tensorflow"
        found = run_replicated(request, step_time_half_width,
                               progress=lambda m, side=side: say(f"time {side}: {m}"))
        say(f"stopped: {found.summary()}")
        session = compare_against_first(found.records) if len(found.records) > 1 else []
        _print_session(request, found, session, args.precision)
        records += found.records
        comparisons += session
    across = framework_comparisons([r for r in records if r.role == "arm"])
    for comparison in across:
        print(f"{comparison.sentence} [unpaired: each framework timed in its own processes, the CI is over them]")
    write_json(args.json, [*records, *comparisons, *across])
    return 0


def _print_session(request: TimingRequest, found, comparisons, precision: float) -> None:
    """One backend's records and comparisons, with the warnings a reader needs."""
    records = found.records
    print(f"{request.backend.name} {records[0].model} on {request.device}, {request.threads} threads; "
          f"{settings_text(records[0].settings)}")
    print(f"{'arm':44} {'median ms':>10} {'IQR ms':>8} {'processes x rounds':>18} {'setup s':>8}")
    for r in records:
        print(f"{r.arm:44} {r.median_s * 1e3:10.3f} {r.iqr_s * 1e3:8.3f} "
              f"{f'{r.processes} x {r.rounds // r.processes}':>18} {r.setup_s:8.2f}")
    for c in comparisons:
        spread = f" [per-process ratios {min(c.process_ratios):.3f}-{max(c.process_ratios):.3f}]" \
            if c.processes > 1 else ""
        print(c.sentence + spread)
    for c in comparisons:
        if c.question == AA_CONTROL and c.noise_floor is not None and c.noise_floor > NOISY_FLOOR:
            print(f"warning: this session was noisy ({c.mode}: A/A noise floor ±{c.noise_floor:.1%}, above "
                  f"±{NOISY_FLOOR:.0%}); an effect smaller than that cannot be told from noise here. Another "
                  "program or CPU frequency scaling is the usual cause: rerun with the machine idle.")
    if comparisons and found.reached > precision:
        reached = f"±{found.reached:.1%}" if math.isfinite(found.reached) else "no CI: it needs two processes"
        print(f"warning: the target precision ±{precision:.1%} was not reached ({reached}: "
              f"{found.stop_reason}); a larger --budget narrows the CIs.")


def settings_text(settings: dict) -> str:
    """A backend's settings (Backend.settings()) as a reader's line: "torch 2.13.0; intra op threads 2;
    tf32 matmul off" rather than a dict's repr."""
    shown = dict(settings)
    head = " ".join(str(shown.pop(key)) for key in ("framework", "version") if key in shown)
    parts = [head] if head else []
    for key, value in shown.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        parts.append(f"{key.replace('_', ' ')} {value}")
    return "; ".join(parts)


def add_replication_args(parser, precision_help: str = "target 95%% CI half-width of every comparison, as a "
                         "fraction (default: 0.01, i.e. ±1%%)", precision_default: float = 0.01,
                         budget_default: float | None = None, instances_default: int = TimingPlan.instances) -> None:
    """How a comparison is replicated across worker processes (harness/timing/replication.py)."""
    group = parser.add_argument_group("replication (each process builds fresh instances; README: How the numbers "
                                      "can be trusted)")
    group.add_argument("--precision", type=bounded_float(0.0, 10.0, low_open=True), default=precision_default,
                       metavar="F", help=precision_help)
    default_text = (f"{budget_default:g}" if budget_default is not None else "the framework's: " + ", ".join(
        f"{name} {backend_class(name).TIMING_BUDGET_S:g}" for name in backend_names()))
    group.add_argument("--budget", type=bounded_float(0.0, 86_400.0, low_open=True), default=budget_default,
                       metavar="SECONDS", help=f"wall time for the whole comparison, process start and compilation "
                                               f"included (default: {default_text}); --min-processes run even if "
                                               "they overrun it")
    group.add_argument("--min-processes", type=bounded_int(1, 1000), metavar="N",
                       help=f"worker processes before the precision or the budget may stop it (default: "
                            f"{DEFAULT_MIN_PROCESSES}; a verdict needs {MIN_PROCESSES})")
    group.add_argument("--max-processes", type=bounded_int(1, 1000), default=40, metavar="N", help="(default: 40)")
    group.add_argument("--process-seconds", type=bounded_float(0.0, 3600.0, low_open=True),
                       default=TimingPlan.process_s, metavar="S",
                       help=f"seconds of interleaved rounds in the first process; later ones share what is left of "
                            f"the budget, never less (default: {TimingPlan.process_s:g})")
    group.add_argument("--rounds", type=bounded_int(1, 100_000), metavar="N",
                       help="a fixed number of rounds per process instead of --process-seconds")
    group.add_argument("--instances", type=bounded_int(1, 64), default=instances_default, metavar="N",
                       help=f"fresh models of each arm per process; each round uses one at random (default: "
                            f"{instances_default}; a compiled arm compiles once per instance)")
    group.add_argument("--steps", type=bounded_int(1, 100_000),
                       help="steps per round (default: calibrated per arm to --round-seconds)")
    group.add_argument("--round-seconds", type=bounded_float(0.0, 10.0, low_open=True), default=TimingPlan.round_s,
                       metavar="S", help=f"how long one arm runs per round, (0, 10] (default: {TimingPlan.round_s:g})")
    group.add_argument("--warmup", type=bounded_int(0, 10_000), default=TimingPlan.warmup,
                       help=f"warm-up steps per instance after the first (compiling) step "
                            f"(default: {TimingPlan.warmup})")


def timing_subcommand(sub, name: str, func, *, help: str, description: str, examples: Sequence[str],
                      variants: bool = True, required_backend: bool = True) -> argparse.ArgumentParser:
    """A timing command's parser with what every timing command takes: the model and --backend."""
    p = subcommand(sub, name, func, help=help, description=description, **epilog(*examples, variants=variants))
    add_model_args(p)
    p.add_argument("--backend", required=required_backend, choices=backend_names(),
                   help="the framework to time " + ("(required)" if required_backend else
                                                    "(required; with --torch/--keras: default every one)"))
    return p


def add_parser(sub) -> None:
    backends, modes, devices = choices()
    p = timing_subcommand(
        sub, "time", cmd_time, help="per-training-step time of variants, interleaved, with CIs",
        description="Time one training step (forward, loss, backward, update) of each variant. With two or more arms "
                    "they are measured interleaved (every round runs every arm, in a new random order), replicated "
                    "in worker processes, and compared with the first: the ratio with its 95% CI over processes, the "
                    "per-process spread and a verdict. With --torch/--keras: your own model and its Keras port, each "
                    "framework in its own processes, its modes compared as arms, and Keras against torch per mode.",
        examples=("time --backend torch --variant dropout=absent --variant dropout=0 --aa",
                  "time --backend tensorflow --model cnn --variant baseline --mode eager --mode compiled",
                  "time --backend torch --variant baseline --reference-loop --json t.json",
                  "time --torch examples.residual_cnn:make_torch --keras examples.residual_cnn:make_keras "
                  "--input-shape 3,32,32 --classes 10 --mode eager --mode compiled"),
        required_backend=False)
    p.add_argument("--variant", action="append", metavar="V",
                   help="repeatable (at least one, unless --torch/--keras); the first is the baseline A the others "
                        "are compared with")
    p.add_argument("--mode", action="append", choices=modes, help="repeatable (default: eager)")
    p.add_argument("--device", default="cpu", choices=devices, help="(default: cpu)")
    add_threads(p)
    add_replication_args(p)
    p.add_argument("--aa", action="store_true", help="add an A/A copy of the first arm: measures the noise floor")
    p.add_argument("--inject-slowdown", type=bounded_float(0.0, 1.0), default=0.0, metavar="F",
                   help="add a copy of the first arm that spins F x its step time after each step, F in [0, 1] "
                        "(default: 0, none; e.g. 0.05)")
    p.add_argument("--reference-loop", action="store_true",
                   help="add a hand-written training loop (mlp preset, eager) to measure the harness's own overhead")
    p.add_argument("--json", metavar="FILE", help="write timing and comparison records, each comparison with its "
                                                  "verdict and sentence under 'derived' (default: none)")
    add_pair_args(p)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="with --torch/--keras: SGD (lr 0.01, momentum 0.9) or Adam (lr 1e-3) on both sides "
                        "(default: sgd)")
