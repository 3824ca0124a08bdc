"""The report as a document: blocks that render to both Markdown and an HTML page.

A report is a list of blocks (Heading, Text, VerdictGroup, Table, Image); this module defines
them, renders them to report.md and index.html, and holds the few block builders both reports
share (a key/value table of nested facts, a saved plot, milliseconds and microseconds).

Constraints: rendering decides nothing about the content. index.html embeds its PNGs as data URIs
and its CSS inline, so it opens offline; every text put into it goes through html.escape. Table
cells are flattened to one line and capped at MAX_CELL_CHARS in both formats.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from harness.errors import HarnessInputError

PLOT_DIR = "plots"
MAX_CELL_CHARS = 300
LONG_CELL_CHARS = 40  # longer cells may wrap in HTML; shorter ones (numbers, CIs) do not

# A tone colours a line or table row in HTML: "good", "bad", "finding" (an effect), "missing".


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str
    tone: str = ""


@dataclass(frozen=True)
class VerdictLine:
    where: str
    sentence: str
    tone: str = ""


@dataclass(frozen=True)
class VerdictGroup:
    question: str
    lines: tuple[VerdictLine, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    tones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str


Block = Heading | Text | VerdictGroup | Table | Image


# ---- block builders shared by the run report and the pytest-benchmark report ------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g}"


def us(seconds: float) -> str:
    """Microseconds with two decimals below 10 µs, one above (per-call costs and their CIs)."""
    value = seconds * 1e6
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def save_plot(name: str, caption: str, make: Callable[[], Figure], out: Path) -> Image:
    """Draw a figure and save it as out/plots/<name>.png.

    Every figure is built and drawn here with mathtext off (text.parse_math): its labels are
    names from records and files, and a `$` in one (a variant named `$x^$`) is shown as a `$`
    rather than parsed as a formula, which fails on a bad one. No plot uses mathtext."""
    path = out / PLOT_DIR / f"{name}.png"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with matplotlib.rc_context({"text.parse_math": False}):
            make().savefig(path)
    except OSError as exc:
        raise HarnessInputError(f"{out}: could not write the report's plot {path.name} ({exc.strerror}); the results "
                                "are unchanged, rerun `python -m harness report` when the folder is writable") from None
    return Image(path, caption)


def facts_table(facts: dict[str, Any]) -> Table:
    """Nested facts (an environment record, pytest-benchmark's machine_info) as dotted key / value rows."""
    return Table(("key", "value"), tuple(_flatten(facts)))


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", _describe(value)))
    return rows


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(map(_describe, value)) if any(isinstance(v, dict) for v in value) \
            else ", ".join(map(_describe, value))
    if isinstance(value, dict):
        return ", ".join(f"{key}={_describe(item)}" for key, item in value.items())
    return str(value)


# ---- rendering ----------------------------------------------------------------------------------


def markdown(blocks: Sequence[Block], out: Path) -> str:
    """report.md; image links are relative to `out`, the folder it is written to."""
    parts = []
    for block in blocks:
        match block:
            case Heading(text, level):
                parts.append(f"{'#' * level} {text}")
            case Text(text, tone):
                parts.append(f"_{text}_" if tone == "missing" else text)
            case VerdictGroup(question, lines):
                parts.append(f"**{question}**\n\n" + "\n".join(
                    f"- {f'**{line.where}**: ' if line.where else ''}{line.sentence}" for line in lines))
            case Table(headers, rows):
                parts.append("\n".join(["| " + " | ".join(map(_md_cell, headers)) + " |",
                                        "|" + "---|" * len(headers),
                                        *("| " + " | ".join(map(_md_cell, row)) + " |" for row in rows)]))
            case Image(path, caption):
                parts.append(f"![{caption}]({path.relative_to(out).as_posix()})")
    return "\n\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CELL_CHARS else flat[: MAX_CELL_CHARS - 1] + "…"


def html_page(title: str, blocks: Sequence[Block]) -> str:
    """index.html: one self-contained page (inline CSS, PNGs as data URIs, no scripts)."""
    body = "\n".join(_html_block(block) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def _html_block(block: Block) -> str:
    e = html.escape
    match block:
        case Heading(text, level):
            return f"<h{level}>{e(text)}</h{level}>"
        case Text(text, tone):
            return f'<p class="{tone}">{e(text)}</p>'
        case VerdictGroup(question, lines):
            items = "\n".join(
                f'<li class="{line.tone}">' + (f'<span class="where">{e(line.where)}</span> ' if line.where else "")
                + f"{e(line.sentence)}</li>" for line in lines)
            return f'<div class="question"><h3>{e(question)}</h3>\n<ul>\n{items}\n</ul></div>'
        case Table(headers, rows, tones):
            head = "".join(f"<th>{e(h)}</th>" for h in headers)
            body = "\n".join(
                f'<tr class="{tones[i] if tones else ""}">' + "".join(_html_cell(c) for c in row)
                + "</tr>" for i, row in enumerate(rows))
            return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n'
                    f"<tbody>\n{body}\n</tbody></table></div>")
        case Image(path, caption):
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>")
    raise TypeError(f"unknown report block {block!r}")


def _html_cell(text: str) -> str:
    flat = _one_line(text)
    wrap = ' class="long"' if len(flat) > LONG_CELL_CHARS else ""
    return f"<td{wrap}>{html.escape(flat)}</td>"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fafafa;
       margin: 0; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.02rem; margin: 1rem 0 .3rem; }
.question { border-left: 4px solid #c9d3dd; padding: .1rem 0 .4rem .9rem; margin: .9rem 0; }
.question ul { margin: 0; padding-left: 1.3rem; }
.question li { margin: .25rem 0; font-size: 1.02rem; }
.where { font-weight: 600; color: #444; }
.where::after { content: ":"; }
li.good, p.good { color: #1e6b34; }
li.bad, p.bad { color: #a61e2d; font-weight: 600; }
li.finding { font-weight: 600; }
li.missing, p.missing { color: #777; font-style: italic; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .88rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
td { white-space: nowrap; }
td.long { white-space: normal; min-width: 18rem; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr.good td { background: #edf7ef; }
tr.bad td { background: #fbe7e9; color: #7a1420; }
tr.finding td { background: #fff5dc; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { color: #555; font-size: .9rem; }
"""
