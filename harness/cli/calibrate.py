"""`python -m harness calibrate`: evidence that the timing CIs are honest on this machine
(harness/timing/calibration.py): N sessions with an A/A copy and an injected slowdown, then a
layer of known per-call cost recovered by `percall`."""

from __future__ import annotations

from dataclasses import replace

from harness.cli.arguments import add_threads, choices
from harness.cli.options import bounded_float, bounded_int, say, write_json
from harness.cli.time import add_replication_args, timing_request, timing_subcommand
from harness.model.variants import BASELINE
from harness.results.records import PerCallRecord
from harness.timing.calibration import (
    DEFAULT_COMPARISONS,
    DEFAULT_INJECTED,
    KNOWN_COST_BUDGET_FACTOR,
    KNOWN_COST_NET_OF,
    KNOWN_COST_US,
    known_cost_passed,
    known_cost_sentence,
    summarize_controls,
)
from harness.timing.controls import compare_against_first, widest_half_width
from harness.timing.percall import PERCALL_INSTANCES, LayerArg, measure_per_call
from harness.timing.replication import run_replicated

KNOWN_COST_PRECISION = 0.05  # the known-cost fit's target half-width, as a share of the known cost


def cmd_calibrate(args) -> int:
    request = timing_request(args, (args.mode,), [BASELINE], aa=True, inject=args.inject_slowdown)

    records, comparisons = [], []
    for index in range(args.comparisons):
        found = run_replicated(request, widest_half_width,
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
        known_request = timing_request(args, ("eager",), per_call_s=args.known_cost_us * 1e-6 * KNOWN_COST_PRECISION,
                                       ).with_plan(instances=PERCALL_INSTANCES)
        known_request = replace(known_request, replication=replace(
            known_request.replication, budget_s=request.replication.budget_s * KNOWN_COST_BUDGET_FACTOR))
        record, found = measure_per_call(known_request, LayerArg.parse(f"busywait={args.known_cost_us:g}"),
                                         net_of=LayerArg.parse(KNOWN_COST_NET_OF, "--net-of"),
                                         progress=lambda m: say(f"calibrate known cost: {m}"))
        known += [*found.records, record]
        print(known_cost_sentence(record))
    write_json(args.json, [*records, *comparisons, *known])
    per_call = [r for r in known if isinstance(r, PerCallRecord)]
    return 0 if all(s.passed for s in summaries) and all(known_cost_passed(r) for r in per_call) else 1


def add_parser(sub) -> None:
    backends, modes, devices = choices()
    p = timing_subcommand(
        sub, "calibrate", cmd_calibrate, help="check that the timing CIs are honest on this machine",
        description="Run N A/A comparisons and N against an injected slowdown (both in each session), and report "
                    "coverage (A/A CIs containing 1; target ≥ 90%), the CI half-widths and the detection rate of the "
                    "slowdown (target ≥ 90%); then recover a layer of known per-call cost with `percall`, net of the "
                    "same layer spinning 0 µs (target within ±20%). Exit 1 if a target is missed.",
        examples=("calibrate --backend torch --model mlp",
                  "calibrate --backend tensorflow --comparisons 30 --budget 90 --json calibration.json"),
        variants=False)
    p.add_argument("--comparisons", type=bounded_int(1, 10_000), default=DEFAULT_COMPARISONS, metavar="N",
                   help=f"sessions; each gives one A/A and one injected comparison (default: {DEFAULT_COMPARISONS})")
    p.add_argument("--inject-slowdown", type=bounded_float(0.0, 1.0, low_open=True), default=DEFAULT_INJECTED,
                   metavar="F", help=f"the known slowdown to detect, as a fraction (default: {DEFAULT_INJECTED:g})")
    p.add_argument("--known-cost-us", type=bounded_float(0.0, 1e5), default=KNOWN_COST_US, metavar="US",
                   help="per-call cost of the busy-wait layer percall must recover "
                   f"(default: {KNOWN_COST_US:g}; 0: skip)")
    p.add_argument("--mode", choices=modes, default="eager", help="(default: eager)")
    p.add_argument("--device", default="cpu", choices=devices, help="(default: cpu)")
    add_threads(p)
    add_replication_args(p, precision_help="target 95%% CI half-width of each comparison (default: 0.01)")
    p.add_argument("--json", metavar="FILE", help="write the timing, comparison and per_call records (default: none)")
