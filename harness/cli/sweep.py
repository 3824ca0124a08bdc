"""`python -m harness sweep`: the per-call cost of a layer that should be free, and the step time
it is measured against, at several model sizes (harness/timing/size_sweep.py), into a run folder
like `run`'s (durable per case, --resume), then reported; prints the step time below which one
call costs more than 1% and 0.1% of a step, per backend and mode."""

from __future__ import annotations

import sys
from pathlib import Path

from backends import backend_class
from harness.cli.arguments import add_executor, add_threads, choices, epilog, subcommand
from harness.cli.options import bounded_float, check_output_folder
from harness.errors import HarnessInputError
from harness.report import build_report
from harness.report.reading import read_run_folder
from harness.results.records import PerCallRecord
from harness.running.session import check_run_folder, make_executor, resume_command, run_in_folder, skip_reasons
from harness.timing.percall import LayerArg
from harness.timing.size_sweep import (
    DEFAULT_BUDGET_S,
    DEFAULT_LAYER,
    SWEEP_SIZES,
    plan_sweep_cases,
    sized_spec,
    thresholds,
)

RUNS_DIR = Path(__file__).resolve().parents[2] / "reports" / "runs"


def sizes_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise HarnessInputError(f"--sizes {text!r}: expected comma-separated whole numbers, e.g. 64,256,1024") from None
    if len(values) < 2 or values[0] < 2 or values[-1] > 16384:
        raise HarnessInputError(f"--sizes {text!r}: expected at least two different sizes from 2 to 16384")
    return values


def _report(out: Path) -> str:
    paths = build_report([out])
    found = thresholds(read_run_folder(out).of(PerCallRecord))
    lines = [t.sentence for t in found] or ["no backend and mode has per-call costs at two sizes: no threshold"]
    return "\n".join([*lines, f"report: {paths.markdown}", f"        {paths.html}"])


def cmd_sweep(args) -> int:
    sizes = sizes_list(args.sizes) if args.sizes else SWEEP_SIZES[args.model]
    LayerArg.parse(args.layer)  # a bad --layer fails here, before any case runs
    for size in sizes:
        sized_spec(args.model, size)
    out = Path(args.out) if args.out is not None else RUNS_DIR / f"sweep-{args.model}"
    check_output_folder(str(out) if args.out is None else args.out, "--out")
    check_run_folder(out, args.resume)
    backends = tuple(dict.fromkeys(args.backends))
    modes = tuple(dict.fromkeys(args.modes))
    executor = make_executor(args.executor, args.ray_address, args.threads)
    cases = plan_sweep_cases(out, args.model, sizes, backends, modes, args.layer, args.budget,
                             skip_reasons(executor, backends), {b: tuple(backend_class(b).MODES) for b in backends})
    if not cases:
        raise HarnessInputError(f"--modes {' '.join(modes)}: none of --backends {' '.join(backends)} has these modes")
    return run_in_folder("sweep", cases, out, resume=args.resume, again=resume_command("sweep", sys.argv[2:], out),
                         executor=executor, label=f"{args.model} size sweep", report=_report)


def add_parser(sub) -> None:
    backends, modes, _ = choices()
    sizes = "; ".join(f"{model}: {','.join(map(str, values))}" for model, values in SWEEP_SIZES.items())
    p = subcommand(sub, "sweep", cmd_sweep,
                   help="when does a free layer stop mattering? its per-call cost at several model sizes",
                   description="Measure the per-call cost of a layer that should be free (dose-response, as "
                               "`percall`) and the step time at several model sizes: the mlp preset with hidden "
                               "layers of SIZE and SIZE/2 units (512 is the preset), or the cnn preset with SIZE and "
                               "2xSIZE filters (32 is the preset). One case per backend, mode and size, into a run "
                               "folder (durable per case, --resume); then the report, with a plot of the share of a "
                               "step against step time, and the step time below which one call costs more than 1% "
                               f"and 0.1% of a step. Default sizes: {sizes}.",
                   **epilog("sweep --backends torch --modes eager --out reports/runs/sweep",
                            "sweep --model cnn --sizes 8,32 --backends torch tensorflow", variants=False))
    p.add_argument("--model", choices=list(SWEEP_SIZES), default="mlp", help="the preset to scale (default: mlp)")
    p.add_argument("--sizes", metavar="N,N,...", help="sizes to measure, at least two (default: the model's, above)")
    p.add_argument("--layer", default=DEFAULT_LAYER, metavar="L",
                   help=f"the layer whose per-call cost is measured, as `percall --layer` (default: {DEFAULT_LAYER})")
    p.add_argument("--backends", nargs="+", choices=backends, default=list(backends),
                   help=f"(default: {' '.join(backends)})")
    p.add_argument("--modes", nargs="+", choices=modes, default=["eager", "compiled"],
                   help="(default: eager compiled; a backend without a mode skips it)")
    p.add_argument("--budget", type=bounded_float(0.0, 86_400.0, low_open=True), default=DEFAULT_BUDGET_S,
                   metavar="SECONDS",
                   help=f"wall time of each case's dose-response (default: {DEFAULT_BUDGET_S:g})")
    p.add_argument("--out", metavar="DIR", help="run folder (default: reports/runs/sweep-MODEL)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: skip its finished cases")
    add_threads(p, per_node=True)
    add_executor(p)
