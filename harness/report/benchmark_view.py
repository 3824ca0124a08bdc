"""The pytest-benchmark report: one or more `pytest --benchmark-json` files as a plot and a table.

Times are per training step: a benchmark whose extra_info says `steps_per_call` (Keras's
model.fit runs 10 steps per call) is divided by it, so it sits beside per-step bars on the same
scale. The table has a relative column (each median against the fastest of its group:
pytest-benchmark's rounds are not interleaved, so this is an unpaired ratio, not a paired one);
the machine and commit facts are folded.

Constraints: this module reads the JSON files it is given and checks that they hold what the
report shows (HarnessInputError naming the path otherwise); it measures nothing, decides no
verdict (pytest-benchmark's rounds are not interleaved), and renders nothing itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.files import parse_json, read_small_file
from harness.report import plots
from harness.report.render import (
    Block,
    Fold,
    Heading,
    Table,
    Text,
    facts_table,
    ms,
    save_plot,
    without_constant_columns,
)

BENCHMARK_STATS = ("mean", "median", "stddev", "iqr", "rounds")
OPTIONAL_STATS = ("q1", "q3")  # drawn as the whiskers where present
RELATIVE_NOTE = ("\"vs fastest in group\": each median per step ÷ the fastest of its group. pytest-benchmark times one "
                 "benchmark after another, so this ratio is unpaired and carries any drift of the machine between "
                 "them; for a paired ratio with a 95% CI (arms interleaved round by round, in several processes) "
                 "use `python -m harness time --variant A --variant B`. Two of these JSON files of one machine: "
                 "pytest-benchmark's --benchmark-compare with --benchmark-compare-fail; two run folders: "
                 "`python -m harness report --compare OLD NEW --fail-above 5`.")
EXTRA_INFO = ("backend", "model", "variant", "device", "mode", "threads")


def load_benchmark_json(path: Path) -> dict[str, Any]:
    """Read one `pytest --benchmark-json` file (a regular file of at most MAX_JSON_FILE_BYTES) and
    check that it has what the report shows, of the types it shows them as."""
    data = parse_json(read_small_file(path), str(path))
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) \
            or not isinstance(data.get("machine_info"), dict):
        raise HarnessInputError(
            f"{path}: not pytest-benchmark output (expected a 'machine_info' object and a 'benchmarks' list, "
            "as written by pytest --benchmark-json)")
    if not data["benchmarks"]:
        raise HarnessInputError(f"{path}: no benchmarks in this file")
    if not isinstance(data.get("commit_info", {}), dict):
        raise HarnessInputError(f"{path}: commit_info: {_shown(data['commit_info'])} is not an object")
    for index, bench in enumerate(data["benchmarks"]):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        lacking = [f"stats.{k}" for k in BENCHMARK_STATS if not isinstance(stats, dict) or k not in stats]
        if not isinstance(bench, dict) or "name" not in bench or lacking:
            raise HarnessInputError(f"{path}: benchmarks[{index}]: missing {', '.join(['name', *lacking])}")
        _check_benchmark(bench, f"{path}: benchmarks[{index}]")
    return data


def _check_benchmark(bench: dict[str, Any], where: str) -> None:
    """HarnessInputError naming the first field of one benchmark that the report cannot show: a
    name or group that is not text (a group is grouped by, so it must be hashable), a statistic
    that is not a finite number, extra_info that is not an object."""
    if not isinstance(bench["name"], str):
        raise HarnessInputError(f"{where}.name: {_shown(bench['name'])} is not a string")
    if not isinstance(bench.get("group"), (str, type(None))):
        raise HarnessInputError(f"{where}.group: {_shown(bench['group'])} is not a string")
    if not isinstance(bench.get("extra_info"), (dict, type(None))):
        raise HarnessInputError(f"{where}.extra_info: {_shown(bench['extra_info'])} is not an object")
    for key in (*BENCHMARK_STATS, *OPTIONAL_STATS):
        value = bench["stats"].get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise HarnessInputError(f"{where}.stats.{key}: {_shown(value)} is not a finite number")


def _shown(value: Any) -> str:
    """A JSON value as it appears in an error line, cut to 40 characters."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


def benchmark_blocks(files: list[tuple[Path, dict]], out: Path) -> list[Block]:
    """The whole pytest-benchmark report for (path, load_benchmark_json(path)) pairs; the plot is saved under `out`."""
    benchmarks = [bench for _, data in files for bench in data["benchmarks"]]
    groups = {bench.get("group") for bench in benchmarks}
    machine = files[0][1]["machine_info"]
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    summary = (f"{len(benchmarks)} benchmarks in {len(groups)} group(s) from {', '.join(p.name for p, _ in files)}; "
               f"first file recorded {files[0][1].get('datetime', 'at an unrecorded time')} on "
               f"{machine.get('node', '?')} ({cpu.get('brand_raw', 'unrecorded CPU')}), "
               f"Python {machine.get('python_version', '?')}.")
    blocks: list[Block] = [
        Heading("pytest-benchmark report", 1),
        Text(summary),
        Heading("Benchmarks"),
        *without_constant_columns(_benchmark_table(files)),
        Text(RELATIVE_NOTE),
        Heading("Plots"),
        save_plot("benchmarks", "Median time per training step by group (whiskers: interquartile range; a "
                  "benchmark of several steps per call divided by them)", lambda: plots.benchmark_figure(benchmarks),
                  out),
    ]
    for path, data in files:
        facts = {"machine_info": data["machine_info"], "commit_info": data.get("commit_info", {})}
        blocks.append(Fold(f"Machine and commit: {path.name}", (facts_table(facts),)))
    return blocks


def _benchmark_table(files: list[tuple[Path, dict]]) -> Table:
    several = len(files) > 1
    benchmarks = [bench for _, data in files for bench in data["benchmarks"]]
    fastest: dict[Any, float] = {}
    for bench in benchmarks:
        per_step = bench["stats"]["median"] / plots.steps_per_call(bench)
        fastest[bench.get("group")] = min(fastest.get(bench.get("group"), per_step), per_step)
    rows = []
    for path, data in files:
        for bench in data["benchmarks"]:
            stats, extra, steps = bench["stats"], bench.get("extra_info") or {}, plots.steps_per_call(bench)
            base = fastest[bench.get("group")]
            relative = f"×{stats['median'] / steps / base:.2f}" if base > 0 else "—"
            rows.append(((path.name,) if several else ()) + (
                bench["name"], str(bench.get("group") or ""), ms(stats["median"] / steps), relative,
                ms(stats["mean"] / steps), ms(stats["stddev"] / steps), ms(stats["iqr"] / steps), str(steps),
                str(stats["rounds"]), *(str(extra.get(key, "")) for key in EXTRA_INFO)))
    headers = (("file",) if several else ()) + (
        "name", "group", "median ms per step", "vs fastest in group", "mean ms", "stddev ms", "IQR ms",
        "steps per call", "rounds", *EXTRA_INFO)
    return Table(headers, tuple(rows))
