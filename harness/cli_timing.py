"""The timing commands of the CLI (harness/cli.py): time, percall and calibrate, and the options
they share. Each runs its comparison in worker processes (harness/replication.py); this process
imports no framework.
"""

from __future__ import annotations

from backends import backend_class, backend_names
from harness.cli_checks import (
    bounded_float, bounded_int, check_memory, check_output_file, checked_variants, note_unchanged, say, write_json,
)
from harness.replication import DEFAULT_MIN_PROCESSES
from harness.stats import MIN_PROCESSES
from harness.timing import TimingPlan, compare_against_first


def _note_idioms(backend, spec, variants) -> None:
    """Say when a backend builds a variant's idiom as another one (e.g. Keras has no coupled
    weight_decay: it builds its kernel_regularizer, the same objective)."""
    from harness.variants import variant_spec

    for text in variants:
        if not backend.builds_as_written(variant_spec(spec, text)[1]):
            idioms = ", ".join(f"{idiom} {'/'.join(values)}" for idiom, values in backend.IDIOMS.items())
            say(f"note: {backend.name} builds {text!r} with its own idiom ({idioms} only): this arm times that")


NOISY_FLOOR = 0.05  # an A/A floor above this makes a session's small verdicts untrustworthy


def _replication(args, per_call_s: float | None = None):
    """The replication options; for a per-call cost, the target half-width `per_call_s` in seconds."""
    from harness.replication import ReplicationPlan

    return ReplicationPlan(precision=args.precision if per_call_s is None else per_call_s, budget_s=budget_s(args),
                           min_processes=min(args.min_processes, args.max_processes),
                           max_processes=args.max_processes, unit="fraction" if per_call_s is None else "s")


def budget_s(args) -> float:
    """--budget, or the framework's default (Backend.TIMING_BUDGET_S: its start and step costs)."""
    return args.budget if args.budget is not None else backend_class(args.backend).TIMING_BUDGET_S


def _timing_plan(args, variants, modes, aa=False, inject=0.0, reference_loop=False):
    return TimingPlan(tuple(variants), tuple(modes), args.process_seconds, args.rounds, args.steps, args.warmup,
                      aa, inject, reference_loop, args.round_seconds, args.instances)


def widest_half_width(records) -> float:
    """The precision a session of arms has reached: the widest CI half-width (about its estimate)
    of its comparisons (each arm against the first, each control against its base); 0 for a
    single arm."""
    return max(c.paired.ci_half_width for c in compare_against_first(records)) if len(records) > 1 else 0.0


def cmd_time(args) -> int:
    from harness.questions import AA_CONTROL
    from harness.replication import run_replicated
    from harness.spec import resolve_spec
    spec = resolve_spec(args.model, args.spec)
    variants = checked_variants(args.variant)
    modes = tuple(dict.fromkeys(args.mode or ["eager"]))
    for mode in modes:
        backend_class(args.backend).check_mode(mode)
    backend_class(args.backend).check_device(args.device)
    check_output_file(args.json, "--json")
    note_unchanged(spec, variants)
    _note_idioms(backend_class(args.backend), spec, variants)
    plan = _timing_plan(args, variants, modes, args.aa, args.inject_slowdown, args.reference_loop)
    controls = (args.aa + (args.inject_slowdown > 0)) * len(modes) + args.reference_loop
    check_memory(args, spec, variants, models=(len(variants) * len(modes) + controls) * args.instances)

    found = run_replicated(args.backend, args.device, args.threads, spec, plan, _replication(args), widest_half_width,
                           progress=lambda m: say(f"time: {m}"))
    say(f"stopped: {found.summary()}")
    records = found.records
    comparisons = compare_against_first(records) if len(records) > 1 else []
    print(f"{args.backend} {spec.name} on {args.device}, {args.threads} threads; settings: {records[0].settings}")
    print(f"{'arm':44} {'median ms':>10} {'IQR ms':>8} {'processes x rounds':>18} {'setup s':>8}")
    for r in records:
        print(f"{r.arm:44} {r.median_s * 1e3:10.3f} {r.iqr_s * 1e3:8.3f} {f'{r.processes} x {r.rounds // r.processes}':>18} "
              f"{r.setup_s:8.2f}")
    for c in comparisons:
        spread = f" [per-process ratios {min(c.process_ratios):.3f}-{max(c.process_ratios):.3f}]" \
            if c.processes > 1 else ""
        print(c.sentence + spread)
    for c in comparisons:
        if c.question == AA_CONTROL and c.noise_floor is not None and c.noise_floor > NOISY_FLOOR:
            print(f"warning: this session was noisy ({c.mode}: A/A noise floor ±{c.noise_floor:.0%}); an effect smaller "
                  "than that cannot be told from noise here. Rerun on a quieter machine.")
    if comparisons and found.reached > args.precision:
        print(f"warning: the target precision ±{args.precision:.1%} was not reached (±{found.reached:.1%}: "
              f"{found.stop_reason}); a larger --budget narrows the CIs.")
    write_json(args.json, [*records, *comparisons])
    return 0


def add_replication_args(parser, precision_help: str = "target 95%% CI half-width of every comparison, as a "
                          "fraction (default: 0.01, i.e. ±1%%)", precision_default: float = 0.01,
                          budget_default: float | None = None, instances_default: int = TimingPlan.instances) -> None:
    """How a comparison is replicated across worker processes (harness/replication.py)."""
    group = parser.add_argument_group("replication (each process builds fresh instances; README: How the numbers can be trusted)")
    group.add_argument("--precision", type=bounded_float(0.0, 10.0, low_open=True), default=precision_default,
                       metavar="F", help=precision_help)
    default_text = (f"{budget_default:g}" if budget_default is not None else "the framework's: " + ", ".join(
        f"{name} {backend_class(name).TIMING_BUDGET_S:g}" for name in backend_names()))
    group.add_argument("--budget", type=bounded_float(0.0, 86_400.0, low_open=True), default=budget_default,
                       metavar="SECONDS", help=f"wall time for the whole comparison, process start and compilation "
                                               f"included (default: {default_text}); --min-processes run even if "
                                               "they overrun it")
    group.add_argument("--min-processes", type=bounded_int(1, 1000), default=DEFAULT_MIN_PROCESSES, metavar="N",
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
                       help=f"warm-up steps per instance after the first (compiling) step (default: {TimingPlan.warmup})")




def copies_list(text: str) -> tuple[int, ...]:
    """argparse type of --copies: comma-separated counts of copies, 0 to 1000, at least two distinct."""
    import argparse

    try:
        values = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated whole numbers, e.g. 0,32,64,128") from None
    if len(values) < 2 or values[0] < 0 or values[-1] > 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least two different counts from 0 to 1000")
    return values


def _check_timing_target(args) -> None:
    backend_class(args.backend).check_mode(args.mode)
    backend_class(args.backend).check_device(args.device)
    check_output_file(args.json, "--json")


def cmd_percall(args) -> int:
    from harness.percall import measure_per_call, parse_layer_arg, sentence, with_copies
    from harness.resources import check_fits
    from harness.spec import resolve_spec

    spec = resolve_spec(args.model, args.spec)
    _check_timing_target(args)
    layer = parse_layer_arg(args.layer)
    if args.net_of:
        parse_layer_arg(args.net_of, "--net-of")
    check_fits(with_copies(spec, layer, max(args.copies)), f"{args.spec or '--model ' + spec.name} with "
               f"{max(args.copies)} x {args.layer}",
               models=(2 * len(args.copies) - 1 if args.net_of else len(args.copies)) * args.instances)
    replication = _replication(args, per_call_s=args.precision * 1e-6)
    record, found = measure_per_call(args.backend, args.device, args.threads, spec, args.layer, args.mode,
                                     _timing_plan(args, (), (args.mode,)), replication, args.copies,
                                     progress=lambda m: say(f"percall: {m}"), net_of=args.net_of)
    say(f"stopped: {found.summary()}")
    print(f"{'arm':36} {'median ms':>10} {'IQR ms':>8} {'processes x rounds':>18}")
    for r in found.records:
        print(f"{r.arm:36} {r.median_s * 1e3:10.3f} {r.iqr_s * 1e3:8.3f} {f'{r.processes} x {r.rounds // r.processes}':>18}")
    print(sentence(record))
    if found.reached > replication.precision:
        print(f"warning: the target precision ±{args.precision:g} µs was not reached (±{found.reached * 1e6:.2f} µs: "
              f"{found.stop_reason}); a larger --budget narrows the CI.")
    write_json(args.json, [*found.records, record])
    return 0


def cmd_calibrate(args) -> int:
    from dataclasses import replace

    from harness.calibration import (KNOWN_COST_BUDGET_FACTOR, KNOWN_COST_NET_OF,
                                     known_cost_passed, known_cost_sentence, summarize_controls)
    from harness.percall import PERCALL_INSTANCES, measure_per_call
    from harness.records import PerCallRecord
    from harness.replication import run_replicated
    from harness.spec import resolve_spec
    from harness.variants import BASELINE

    spec = resolve_spec(args.model, args.spec)
    _check_timing_target(args)
    check_memory(args, spec, [BASELINE], models=3 * args.instances)
    plan = _timing_plan(args, (BASELINE,), (args.mode,), aa=True, inject=args.inject_slowdown)

    records, comparisons = [], []
    for index in range(args.comparisons):
        found = run_replicated(args.backend, args.device, args.threads, spec, plan, _replication(args), widest_half_width,
                               progress=lambda m, i=index: say(f"calibrate {i + 1}/{args.comparisons}: {m}"))
        session = compare_against_first(found.records)
        records += found.records
        comparisons += session
        print(" | ".join(f"{c.question}: ratio {c.ratio:.4f} (95% CI {c.ci_low:.4f}-{c.ci_high:.4f}), {c.verdict}"
                         for c in session) + f" | {found.records[0].processes} processes, {found.elapsed_s:.0f} s",
              flush=True)
    summaries = summarize_controls(comparisons)
    for summary in summaries:
        print(summary.sentence())
    known = []
    if args.known_cost_us > 0:
        replication = replace(_replication(args, per_call_s=args.known_cost_us * 1e-6 * 0.05),
                              budget_s=budget_s(args) * KNOWN_COST_BUDGET_FACTOR)
        record, found = measure_per_call(args.backend, args.device, args.threads, spec, f"busywait={args.known_cost_us:g}",
                                         "eager", replace(_timing_plan(args, (), ("eager",)),
                                                          instances=PERCALL_INSTANCES),
                                         replication, progress=lambda m: say(f"calibrate known cost: {m}"),
                                         net_of=KNOWN_COST_NET_OF)
        known += [*found.records, record]
        print(known_cost_sentence(record))
    write_json(args.json, [*records, *comparisons, *known])
    per_call = [r for r in known if isinstance(r, PerCallRecord)]
    return 0 if all(s.passed for s in summaries) and all(known_cost_passed(r) for r in per_call) else 1
