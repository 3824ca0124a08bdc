"""The `report` command: render run folders or pytest-benchmark JSON, or compare two runs of one machine.

`report DIR` renders one run; `report A B` merges runs of several machines side by side (no
timing compared across machines); `report --compare OLD NEW` compares two runs of one machine and
exits 1 when something got slower by more than --fail-above (for CI). Thin: parsing and printing
only, the work is harness.report's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.arguments import epilog, subcommand
from harness.cli.options import check_output_folder
from harness.errors import HarnessInputError

DEFAULT_FAIL_ABOVE = 5.0  # percent
MAX_LISTED = 20  # regressions printed; the rest are in compare.md


def cmd_report(args) -> int:
    from harness.report import build_report, compare_report
    from harness.report.compare import verdict_line

    check_output_folder(args.out, "--out")
    if args.fail_above is not None and not args.compare:
        raise HarnessInputError("--fail-above: only with --compare OLD NEW (it is the threshold of a comparison)")
    if not args.compare:
        paths = build_report([Path(p) for p in args.inputs], Path(args.out) if args.out else None)
        print(f"wrote {paths.markdown} and {paths.html}")
        return 0
    if len(args.inputs) != 2:
        raise HarnessInputError(f"--compare: give two run folders, the old run then the new one (got "
                                f"{len(args.inputs)}: {', '.join(args.inputs)})")
    threshold = DEFAULT_FAIL_ABOVE if args.fail_above is None else args.fail_above
    old, new = (Path(p) for p in args.inputs)
    paths, comparison = compare_report(new, old, threshold / 100, Path(args.out) if args.out else None)
    print(verdict_line(comparison))
    for change in comparison.regressions[:MAX_LISTED]:
        print(f"  {change.kind}: {change.what}: {change.old} -> {change.new}: {change.said}")
    if len(comparison.regressions) > MAX_LISTED:
        print(f"  and {len(comparison.regressions) - MAX_LISTED} more")
    print(f"wrote {paths.markdown} and {paths.html} (every row, with how it is computed)")
    return 1 if comparison.regressions else 0


def _percent(text: str) -> float:
    """--fail-above's value: a percentage ≥ 0 ("5" or "5%")."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of percent (say 5 for 5%)") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a percentage ≥ 0")
    return value


def add_parser(sub) -> None:
    p = subcommand(sub, "report", cmd_report,
                   help="render report.md and index.html from run folders or pytest-benchmark JSON; or compare two "
                        "runs of one machine (--compare OLD NEW)",
                   description="Render a run folder (its results.jsonl and environment.json) or pytest-benchmark "
                               "JSON files (pytest --benchmark-json) into report.md, a self-contained index.html "
                               "and PNG plots. Several run folders (say, one per machine), or a Ray run whose "
                               "cases ran on several machines, make one merged report: a table of the machines, "
                               "the same question's answer on each machine side by side, then each machine's "
                               "own report. Comparisons are only ever made within one machine's session.\n"
                               "With --compare OLD NEW, compare two run folders of the same machine instead, "
                               "the older first: each step time and each question's cost, "
                               "new ÷ old with a 95% CI, written to compare.md and compare.html; exit 1 when one "
                               "is more than --fail-above percent slower with a CI wholly above no change (for "
                               "CI), 0 otherwise.",
                   **epilog("report reports/runs/mine", "report reports/runs/box-a reports/runs/box-b --out "
                            "reports/merged", "report --compare reports/runs/yesterday reports/runs/today "
                            "--fail-above 5", "report bench.json --out /tmp/bench-report", variants=False))
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR_OR_JSON",
                   help="one or more run folders, or one or more pytest-benchmark JSON files; with --compare, two "
                        "run folders: OLD then NEW")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the run folder; several run folders: "
                                                "merged-A+B beside the first; JSON: the first JSON's folder; "
                                                "--compare: the new run folder)")
    p.add_argument("--compare", action="store_true",
                   help="compare two run folders of one machine, OLD then NEW: new ÷ old per step time and question "
                        "cost with a 95%% CI; exit 1 when one is more than --fail-above percent slower")
    p.add_argument("--fail-above", type=_percent, metavar="PERCENT",
                   help=f"with --compare: exit 1 when a step time or question cost got more than PERCENT slower "
                        f"(default {DEFAULT_FAIL_ABOVE:g})")
