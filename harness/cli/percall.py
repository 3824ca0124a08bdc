"""`python -m harness percall`: the per-call cost of a layer that should be free, by dose-response
(harness/timing/percall.py), replicated in worker processes as `time` is."""

from __future__ import annotations

import argparse

from harness.cli.arguments import add_threads, choices
from harness.cli.options import say, write_json
from harness.cli.time import add_replication_args, spec_source, timing_request, timing_subcommand
from harness.model.resources import check_fits
from harness.timing.percall import (
    DEFAULT_COPIES,
    PERCALL_INSTANCES,
    LayerArg,
    check_per_call,
    measure_per_call,
    with_copies,
)


def copies_list(text: str) -> tuple[int, ...]:
    """argparse type of --copies: comma-separated counts of copies, 0 to 1000, at least two distinct."""
    try:
        values = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated whole numbers, e.g. 0,32,64,128") from None
    if len(values) < 2 or values[0] < 0 or values[-1] > 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least two different counts from 0 to 1000")
    return values


def cmd_percall(args) -> int:
    request = timing_request(args, (args.mode,), per_call_s=args.precision * 1e-6)
    layer = LayerArg.parse(args.layer)
    net_of = LayerArg.parse(args.net_of, "--net-of") if args.net_of else None
    check_per_call(layer, net_of, args.mode, args.copies)
    most = max(args.copies)
    check_fits(with_copies(request.spec, layer.layer, most), f"{spec_source(args)} with {most} x {args.layer}",
               models=(2 * len(args.copies) - 1 if net_of else len(args.copies)) * args.instances)
    record, found = measure_per_call(request, layer, args.copies, net_of,
                                     progress=lambda m: say(f"percall: {m}"))
    say(f"stopped: {found.summary()}")
    print(f"{'arm':36} {'median ms':>10} {'IQR ms':>8} {'processes x rounds':>18}")
    for r in found.records:
        print(f"{r.arm:36} {r.median_s * 1e3:10.3f} {r.iqr_s * 1e3:8.3f} "
              f"{f'{r.processes} x {r.rounds // r.processes}':>18}")
    print(record.sentence)
    if found.reached > request.replication.precision:
        print(f"warning: the target precision ±{args.precision:g} µs was not reached (±{found.reached * 1e6:.2f} µs: "
              f"{found.stop_reason}); a larger --budget narrows the CI.")
    write_json(args.json, [*found.records, record])
    return 0


def add_parser(sub) -> None:
    backends, modes, devices = choices()
    p = timing_subcommand(
        sub, "percall", cmd_percall, help="per-call cost of a layer that should be free (dose-response)",
        description="Insert k copies of a layer after the model's first layer (k = --copies), time the k-arms "
                    "interleaved in replicated worker processes, and fit step time against k: the slope is the cost "
                    "of one call, in µs with a 95% CI, and as a share of the step.",
        examples=("percall --backend torch --model mlp --layer dropout=0",
                  "percall --backend tensorflow --layer dropout=0 --mode compiled --json pc.json",
                  "percall --backend torch --layer busywait=20 --net-of busywait=0  (a layer of known cost)"),
        variants=False)
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
    add_threads(p)
    add_replication_args(p, precision_help="target 95%% CI half-width of the per-call cost, in µs (default: 1)",
                         precision_default=1.0, budget_default=120.0, instances_default=PERCALL_INSTANCES)
    p.add_argument("--json", metavar="FILE", help="write the timing records and the per_call record (default: none)")
