"""Turn a run folder, or pytest-benchmark JSON files, into report.md and a self-contained index.html.

A run folder holds the results file (harness.results.records, one record per line) and the environment
file (harness.results.environment). The report leads with the answers: one table of every measured
question (harness.suite.questions) with its verdict and CI per session, the warnings (a noisy
machine among them) and the questions not measured, named in one line. Then come the study's
ledger, the per-call costs, the plots (harness.report.plots), and, folded until opened, the
verdicts in words, calibration, one raw table per record kind and the environment.

The package, one concern a module: `reading` (run folder -> RunFolder), `verdicts` (the answers),
`sections` (the run report's blocks: `answers` opens it, `stability` warns of a noisy machine,
`engines` compares Keras with its engine, `ordering` lists backends with Keras beside its engine),
`benchmark_view` (the pytest-benchmark report), `compare` (two runs of one machine: what got
slower, for CI), `render` (blocks -> Markdown and HTML, folds and a table of contents).

Constraints: the report reads records and never measures. index.html embeds its PNGs as data
URIs and its CSS inline, so it opens offline; every text put into it goes through html.escape.
Bad input raises HarnessInputError naming the path. A run killed mid-write leaves a truncated last
line: that line is skipped with a warning in the report, while a corrupt line elsewhere is fatal;
a line that is not a valid record is skipped with a warning, never turned into a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessInputError
from harness.report.benchmark_view import benchmark_blocks, load_benchmark_json
from harness.report.compare import RunComparison, compare_runs, comparison_blocks
from harness.report.machines import machine_names, machines_blocks, one_machine
from harness.report.reading import read_run_folders
from harness.report.render import Block, Heading, html_page, images, markdown
from harness.report.sections import run_blocks

MARKDOWN = "report.md"
HTML = "index.html"
COMPARE_MARKDOWN = "compare.md"
COMPARE_HTML = "compare.html"


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    plots: tuple[Path, ...]


def build_report(inputs: Sequence[Path], out_dir: Path | None = None) -> ReportPaths:
    """Write report.md, index.html and the plot PNGs for run folders or pytest-benchmark files.

    Several run folders (or one Ray run whose cases ran on several machines) make a merged
    report: harness/report/machines.py first, then each machine's own report. out_dir defaults
    to the run folder (several: a merged-A+B folder beside the first), or to the folder of the
    first benchmark file.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise HarnessInputError("report: no input given (a run folder or pytest-benchmark JSON files)")
    seen: dict[Path, Path] = {}
    for path in paths:
        if not path.exists():
            raise HarnessInputError(f"{path}: no such file or folder")
        first = seen.get(path.resolve())
        if first is not None:  # one run given twice would be reported as two machines
            alias = f" (first as {first})" if first != path else ""
            raise HarnessInputError(f"{path}: given twice{alias}; give each input once")
        seen[path.resolve()] = path
    if paths[0].is_dir():
        for path in paths[1:]:
            if not path.is_dir():
                raise HarnessInputError(f"{path}: give run folders, or only pytest-benchmark JSON files")
        runs = [run for path in paths for run in read_run_folders(path)]
        if len(runs) == 1:
            out = Path(out_dir) if out_dir else runs[0].folder
            title, blocks = f"Cross-framework run report: {runs[0].folder.name}", run_blocks(runs[0], out)
        else:
            out = Path(out_dir) if out_dir else (paths[0] if len(paths) == 1 else default_merged_folder(paths))
            title, blocks = merged_report(runs, out)
    else:
        benchmarks = [(path, load_benchmark_json(path)) for path in paths]
        out = Path(out_dir) if out_dir else paths[0].parent
        title, blocks = "pytest-benchmark report", benchmark_blocks(benchmarks, out)
    out.mkdir(parents=True, exist_ok=True)
    markdown_path, page = out / MARKDOWN, out / HTML
    try:
        markdown_path.write_text(markdown(blocks, out), encoding="utf-8")
        page.write_text(html_page(title, blocks), encoding="utf-8")
    except OSError as exc:
        raise HarnessInputError(f"{out}: could not write the report ({exc.strerror}); the results are unchanged, "
                                "rerun `python -m harness report` when the folder is writable") from None
    return ReportPaths(markdown_path, page, tuple(image.path for image in images(blocks)))


def compare_report(new: Path, old: Path, threshold: float, out_dir: Path | None = None
                   ) -> tuple[ReportPaths, RunComparison]:
    """Compare two run folders of one machine (`report --compare OLD NEW`, harness/report/compare.py)
    and write compare.md and compare.html (default: into the new run's folder); the comparison says
    what regressed."""
    runs = []
    for path in (old, new):
        if not Path(path).is_dir():
            raise HarnessInputError(f"{path}: --compare OLD NEW takes two run folders; this is not a folder")
        found = read_run_folders(Path(path))
        if len(found) != 1:
            raise HarnessInputError(f"{path}: its cases ran on {len(found)} machines; --compare needs one "
                                    "machine's run")
        runs.append(found[0])
    if runs[0].folder.resolve() == runs[1].folder.resolve():
        raise HarnessInputError(f"{new}: compared with itself; give an older run folder first: --compare OLD NEW")
    comparison = compare_runs(runs[0], runs[1], threshold)
    out = Path(out_dir) if out_dir else runs[1].folder
    blocks = comparison_blocks(comparison)
    out.mkdir(parents=True, exist_ok=True)
    markdown_path, page = out / COMPARE_MARKDOWN, out / COMPARE_HTML
    try:
        markdown_path.write_text(markdown(blocks, out), encoding="utf-8")
        page.write_text(html_page(blocks[0].text, blocks), encoding="utf-8")
    except OSError as exc:
        raise HarnessInputError(f"{out}: could not write the comparison ({exc.strerror})") from None
    return ReportPaths(markdown_path, page, ()), comparison


def default_merged_folder(paths: Sequence[Path]) -> Path:
    """Where a report merging several run folders goes by default: beside the first, named after all."""
    return paths[0].resolve().parent / ("merged-" + "+".join(p.resolve().name for p in paths))


def merged_report(runs, out: Path) -> tuple[str, list[Block]]:
    """The machines and their answers side by side, then each machine's own report (its plots
    under plots-<n>/ so that two machines' plots do not overwrite each other)."""
    names, same = machine_names(runs), one_machine(runs)
    title = f"Report: {len(runs)} runs on one machine" if same else f"Cross-machine report: {len(runs)} machines"
    blocks = [Heading(title, 1), *machines_blocks(runs, names)]
    for index, (name, run) in enumerate(zip(names, runs), start=1):
        blocks += [Heading(f"{'Run' if same else 'Machine'} {name}", 1), *run_blocks(run, out / f"machine-{index}")]
    return title, blocks
