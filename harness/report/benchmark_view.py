"""The pytest-benchmark report: one or more `pytest --benchmark-json` files as a plot and a table.

Constraints: this module reads the JSON files it is given and checks that they hold what the
report shows (HarnessInputError naming the path otherwise); it measures nothing, decides no
verdict (pytest-benchmark's rounds are not interleaved), and renders nothing itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import plots
from harness.errors import HarnessInputError
from harness.report.render import Block, Heading, Table, Text, facts_table, ms, save_plot

BENCHMARK_STATS = ("mean", "median", "stddev", "iqr", "rounds")
EXTRA_INFO = ("backend", "model", "variant", "device", "mode", "threads")


def load_benchmark_json(path: Path) -> dict[str, Any]:
    """Read one `pytest --benchmark-json` file and check that it has what the report shows."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessInputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        raise HarnessInputError(
            f"{path}: not pytest-benchmark output (expected 'machine_info' and a 'benchmarks' list, "
            "as written by pytest --benchmark-json)")
    if not data["benchmarks"]:
        raise HarnessInputError(f"{path}: no benchmarks in this file")
    for index, bench in enumerate(data["benchmarks"]):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        lacking = [f"stats.{k}" for k in BENCHMARK_STATS if not isinstance(stats, dict) or k not in stats]
        if not isinstance(bench, dict) or "name" not in bench or lacking:
            raise HarnessInputError(f"{path}: benchmarks[{index}]: missing {', '.join(['name', *lacking])}")
    return data


def benchmark_blocks(files: list[tuple[Path, dict]], out: Path) -> list[Block]:
    """The whole pytest-benchmark report for (path, load_benchmark_json(path)) pairs; the plot is saved under `out`."""
    benchmarks = [bench for _, data in files for bench in data["benchmarks"]]
    groups = {bench.get("group") for bench in benchmarks}
    machine = files[0][1]["machine_info"]
    summary = (f"{len(benchmarks)} benchmarks in {len(groups)} group(s) from {', '.join(p.name for p, _ in files)}; "
               f"first file recorded {files[0][1].get('datetime', 'at an unrecorded time')} on "
               f"{machine.get('node', '?')} ({machine.get('cpu', {}).get('brand_raw', 'unrecorded CPU')}), "
               f"Python {machine.get('python_version', '?')}.")
    blocks: list[Block] = [
        Heading("pytest-benchmark report", 1),
        Text(summary),
        Heading("Plots"),
        save_plot("benchmarks", "Median time per benchmark by group (whiskers: interquartile range)",
                  lambda: plots.benchmark_figure(benchmarks), out),
        Heading("Benchmarks"),
        _benchmark_table(files),
    ]
    for path, data in files:
        facts = {"machine_info": data["machine_info"], "commit_info": data.get("commit_info", {})}
        blocks += [Heading(f"Machine and commit: {path.name}"), facts_table(facts)]
    return blocks


def _benchmark_table(files: list[tuple[Path, dict]]) -> Table:
    several = len(files) > 1
    rows = []
    for path, data in files:
        for bench in data["benchmarks"]:
            stats, extra = bench["stats"], bench.get("extra_info") or {}
            rows.append(((path.name,) if several else ()) + (
                bench["name"], str(bench.get("group") or ""), ms(stats["mean"]), ms(stats["median"]),
                ms(stats["stddev"]), ms(stats["iqr"]), str(stats["rounds"]),
                *(str(extra.get(key, "")) for key in EXTRA_INFO)))
    headers = (("file",) if several else ()) + (
        "name", "group", "mean ms", "median ms", "stddev ms", "IQR ms", "rounds", *EXTRA_INFO)
    return Table(headers, tuple(rows))
