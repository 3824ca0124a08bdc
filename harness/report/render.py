"""The report as a document: blocks that render to both Markdown and an HTML page.

A report is a list of blocks (Heading, Text, VerdictGroup, Table, Image, Fold); this module defines
them, renders them to report.md and index.html, and holds the few block builders both reports
share (a key/value table of nested facts, a saved plot, milliseconds and microseconds).
index.html opens with a table of contents (every level-2 heading and fold); a Fold is a
<details> section, closed unless it says otherwise, so controls and raw tables cost no height
until a reader opens them. Tables wrap their cells to the page width (no horizontal scrolling
at 1280 px); a Table may colour single cells (cell_tones) as well as rows.

Constraints: rendering decides nothing about the content. index.html embeds its PNGs as data URIs
and its CSS inline, so it opens offline; every text put into it goes through html.escape. Table
cells are flattened to one line and capped at MAX_CELL_CHARS in both formats.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from harness.errors import HarnessInputError

PLOT_DIR = "plots"
MAX_CELL_CHARS = 300
LONG_CELL_CHARS = 40  # longer cells may wrap anywhere in HTML; shorter ones (numbers, CIs) only at spaces
LONG_TOKEN_CHARS = 24  # nor may a cell with a longer word (a class path): it would widen the table

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
    cell_tones: tuple[tuple[str, ...], ...] = ()  # per row, per cell; overrides nothing, adds a class


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str


@dataclass(frozen=True)
class Fold:
    """A titled section a reader opens on demand (HTML <details>; Markdown: a heading and its blocks)."""

    title: str
    blocks: tuple  # of Block
    level: int = 2
    open: bool = False


Block = Heading | Text | VerdictGroup | Table | Image | Fold


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


def without_constant_columns(table: Table) -> list[Block]:
    """A wide table with the columns that hold one value in every row taken out and named once
    above it ("in every row: device cpu, threads 2"), so that it fits the page; two rows or more."""
    if len(table.rows) < 2:
        return [table]
    constant = [i for i in range(len(table.headers)) if len({row[i] for row in table.rows}) == 1]
    if not constant:
        return [table]
    keep = [i for i in range(len(table.headers)) if i not in constant]
    said = ", ".join(f"{table.headers[i]} {table.rows[0][i]}" for i in constant)
    cell_tones = tuple(tuple(tones[i] for i in keep) for tones in table.cell_tones)
    return [Text(f"In every row: {said}."),
            Table(tuple(table.headers[i] for i in keep), tuple(tuple(row[i] for i in keep) for row in table.rows),
                  table.tones, cell_tones)]


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
            case Fold(title, inner, level):
                parts.append(f"{'#' * level} {title}\n\n" + markdown(inner, out).rstrip("\n"))
    return "\n\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CELL_CHARS else flat[: MAX_CELL_CHARS - 1] + "…"


def html_page(title: str, blocks: Sequence[Block]) -> str:
    """index.html: one self-contained page (inline CSS, PNGs as data URIs, no scripts), a table of
    contents after the first heading (and its summary line)."""
    anchors = _anchors(blocks)
    parts = [_html_block(block, anchors) for block in blocks]
    toc = _toc(blocks, anchors)
    if toc:
        first = 1 if blocks and isinstance(blocks[0], Heading) else 0
        first += 1 if len(blocks) > first and isinstance(blocks[first], Text) else 0  # after the summary line
        parts.insert(first, toc)
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def images(blocks: Sequence[Block]) -> list[Image]:
    """Every Image among blocks, those inside folds included, in page order."""
    return [image for b in blocks for image in (images(b.blocks) if isinstance(b, Fold) else [b])
            if isinstance(image, Image)]


def _sections(blocks: Sequence[Block]) -> list[Heading | Fold]:
    """The blocks a table of contents lists: top-level level-2 headings and folds, and level-1
    headings of a merged report's machines."""
    return [b for b in blocks if isinstance(b, (Heading, Fold)) and b.level <= 2]


def _anchors(blocks: Sequence[Block]) -> dict[int, str]:
    """A unique id per listed section (by the block's position among the sections)."""
    found, used = {}, set()
    for block in _sections(blocks):
        slug = re.sub(r"[^a-z0-9]+", "-", (block.text if isinstance(block, Heading) else block.title).lower())
        slug = slug.strip("-")[:40] or "section"
        unique, n = slug, 2
        while unique in used:
            unique, n = f"{slug}-{n}", n + 1
        used.add(unique)
        found[id(block)] = unique
    return found


def _toc(blocks: Sequence[Block], anchors: dict[int, str]) -> str:
    sections = [b for b in _sections(blocks) if not (isinstance(b, Heading) and b.level == 1 and b is blocks[0])]
    if len(sections) < 2:
        return ""
    items = "".join(
        f'<li class="l{b.level}"><a href="#{anchors[id(b)]}">'
        f"{html.escape(b.text if isinstance(b, Heading) else b.title)}</a></li>" for b in sections)
    return f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>'


def _html_block(block: Block, anchors: dict[int, str] | None = None) -> str:
    e = html.escape
    anchor = (anchors or {}).get(id(block))
    ident = f' id="{anchor}"' if anchor else ""
    match block:
        case Heading(text, level):
            return f"<h{level}{ident}>{e(text)}</h{level}>"
        case Fold(title, inner, level, is_open):
            body = "\n".join(_html_block(b) for b in inner)
            return (f'<details{ident}{" open" if is_open else ""}><summary><h{level}>{e(title)}</h{level}></summary>'
                    f"\n{body}\n</details>")
        case Text(text, tone):
            return f'<p class="{tone}">{e(text)}</p>'
        case VerdictGroup(question, lines):
            items = "\n".join(
                f'<li class="{line.tone}">' + (f'<span class="where">{e(line.where)}</span> ' if line.where else "")
                + f"{e(line.sentence)}</li>" for line in lines)
            return f'<div class="question"><h3>{e(question)}</h3>\n<ul>\n{items}\n</ul></div>'
        case Table(headers, rows, tones, cell_tones):
            head = "".join(f"<th>{e(h)}</th>" for h in headers)
            body = "\n".join(
                f'<tr class="{tones[i] if tones else ""}">'
                + "".join(_html_cell(c, cell_tones[i][j] if cell_tones else "") for j, c in enumerate(row))
                + "</tr>" for i, row in enumerate(rows))
            return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n'
                    f"<tbody>\n{body}\n</tbody></table></div>")
        case Image(path, caption):
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(caption)}">'
                    f"<figcaption>{e(caption)}</figcaption></figure>")
    raise TypeError(f"unknown report block {block!r}")


def _html_cell(text: str, tone: str = "") -> str:
    flat = _one_line(text)
    long = len(flat) > LONG_CELL_CHARS or max(map(len, flat.split()), default=0) > LONG_TOKEN_CHARS
    classes = " ".join(c for c in ("long" if long else "", tone) if c)
    return f'<td class="{classes}">{html.escape(flat)}</td>' if classes else f"<td>{html.escape(flat)}</td>"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fafafa;
       margin: 0; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: .8rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 1.6rem; }
h1 + p { font-size: .88rem; color: #444; margin: .2rem 0; }
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
table { border-collapse: collapse; font-size: .82rem; margin: .5rem 0 1rem; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .2rem .4rem; text-align: left; vertical-align: top; }
td.long { min-width: 9rem; overflow-wrap: anywhere; }
td:first-child { min-width: 8rem; }
th { background: #f0f0f0; }
td.good { background: #edf7ef; color: #1e6b34; }
td.finding { background: #fff5dc; font-weight: 600; }
td.bad { background: #fbe7e9; color: #7a1420; }
td.missing { color: #888; }
nav.toc { background: #f4f6f8; border: 1px solid #dde3e8; padding: .3rem .7rem; margin: .4rem 0 .6rem;
          font-size: .85rem; }
nav.toc ul { display: inline-flex; flex-wrap: wrap; gap: 0 1rem; list-style: none; margin: 0 0 0 .8rem; padding: 0; }
nav.toc li.l1 { flex-basis: 100%; font-weight: 600; }
details { margin: .4rem 0; }
details > summary { cursor: pointer; }
details > summary > h2, details > summary > h3 { display: inline; }
details > summary > h2 { font-size: 1.2rem; }
details[open] > summary { margin-bottom: .5rem; }
tr.good td { background: #edf7ef; }
tr.bad td { background: #fbe7e9; color: #7a1420; }
tr.finding td { background: #fff5dc; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { color: #555; font-size: .9rem; }
"""
