"""The README's spec reference and Suites section against the code they describe.

Every name the code accepts (top-level fields, layer types and their fields, activations,
paddings, optimizers) must be documented, required-or-default as the parser has it; the TOML
example must be the JSON example; the Suites tables must say what harness/suite/suites.py and
harness/suite/questions.py say. Sections are found by their headings, table rows by their first
cell, so a failure names the section, the row and what is missing or wrong.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from backends import backend_class, backend_names
from harness.errors import HarnessInputError
from harness.model.layers import ACTIVATIONS, LAYER_TYPES, PADDINGS
from harness.model.spec import OPTIMIZER_FIELDS, PRESETS, ModelSpec, load_spec, parse_spec
from harness.model.variants import BASELINE, parse_variant
from harness.study.suites import STUDY_SUITES, STUDY_VARIANTS
from harness.suite.questions import TIMING_QUESTIONS
from harness.suite.suites import SUITES
from harness.timing.controls import REFERENCE_LOOP

README = Path(__file__).resolve().parent.parent / "README.md"
SPEC_HEADING = "## Model spec (JSON or TOML)"
SUITES_HEADING = "## Suites"
CHOICES = {"activation": ACTIVATIONS, "padding": PADDINGS}


# ---------------------------------------------------------------------------------------------
# Reading the README


def section(heading: str, parent: str | None = None) -> str:
    """The text under `heading` (a whole line, e.g. "## Suites"; with `parent`, a subsection of that
    section) up to the next heading of the same or a higher level; lines in ``` fences are no headings."""
    lines = (section(parent) if parent else README.read_text(encoding="utf-8")).splitlines()
    if heading not in lines:
        pytest.fail(f"README.md {parent + ' ' if parent else ''}has no heading {heading!r}")
    level = len(heading) - len(heading.lstrip("#"))
    body, fenced = [], False
    for line in lines[lines.index(heading) + 1:]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            break
        body.append(line)
    return "\n".join(body)


def tables(text: str) -> list[list[dict[str, str]]]:
    """The Markdown tables in `text`, each a list of rows {header: cell} (`\\|` is a literal pipe)."""
    found, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif block:
            header, rows = block[0], block[2:]
            found.append([dict(zip(header, row)) for row in rows])
            block = []
    return found


def table_with(text: str, header: str, where: str) -> list[dict[str, str]]:
    for table in tables(text):
        if table and header in table[0]:
            return table
    pytest.fail(f"README.md {where}: no table with a {header!r} column")


def code_name(cell: str) -> str | None:
    """`name` -> name; anything else (an empty cell, prose) -> None."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


def grouped(rows: list[dict[str, str]], key: str) -> dict[str, list[dict[str, str]]]:
    """Rows grouped by the `key` column; a row with an empty `key` cell continues the group above."""
    groups: dict[str, list[dict[str, str]]] = {}
    current = None
    for row in rows:
        if row[key]:
            current = code_name(row[key]) or row[key]
            groups.setdefault(current, [])
        groups[current].append(row)
    return groups


def tokens(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def numbers(cell: str) -> list[float]:
    return [float(n) for n in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", cell)]


def check_default(cell: str, value, where: str) -> None:
    """The README's default cell says what the parser fills in when the field is absent."""
    assert cell and "required" not in cell, f"{where}: documented as {cell!r}, but the field is optional"
    if isinstance(value, str):
        assert f'"{value}"' in cell, f"{where}: default is {value!r}, README says {cell!r}"
    elif isinstance(value, tuple):
        assert numbers(cell) == list(value), f"{where}: default is {list(value)}, README says {cell!r}"
    elif value is not None:
        assert value in numbers(cell), f"{where}: default is {value!r}, README says {cell!r}"


def check_required(cell: str, where: str) -> None:
    assert cell == "required", f"{where}: the field is required, README says {cell!r}"


def example_blocks() -> dict[str, str]:
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", section(SPEC_HEADING), re.S | re.M)
    found: dict[str, str] = {}
    for lang, body in blocks:
        assert lang not in found, f"README.md {SPEC_HEADING!r}: more than one ```{lang} example"
        found[lang] = body
    for lang in ("json", "toml"):
        assert lang in found, f"README.md {SPEC_HEADING!r}: no ```{lang} example"
    return found


def json_example() -> dict:
    return json.loads(example_blocks()["json"])


def missing_field_error(data: dict, field: str) -> bool:
    """Whether parsing `data` fails because `field` is missing."""
    try:
        parse_spec(data, "example.json")
    except HarnessInputError as exc:
        return f"missing required field {field!r}" in str(exc)
    return False


# ---------------------------------------------------------------------------------------------
# The spec reference


def test_top_level_fields_are_documented_as_parsed():
    where = "README.md ### Top-level fields"
    rows = grouped(table_with(section("### Top-level fields", SPEC_HEADING), "field", where), "field")
    names = [f.name for f in dataclasses.fields(ModelSpec)]
    assert set(rows) == set(names), f"{where}: missing {sorted(set(names) - set(rows))}, " \
                                    f"not spec fields {sorted(set(rows) - set(names))}"
    example = json_example()
    for name in names:
        cell, here = rows[name][0]["default"], f"{where}: `{name}`"
        without = {k: v for k, v in example.items() if k != name}
        if missing_field_error(without, name):
            check_required(cell, here)
        elif name == "name":
            assert parse_spec(without, "dir/example.json").name == "example" and "stem" in cell, \
                f"{here}: the default is the file's stem, README says {cell!r}"
        else:
            check_default(cell, getattr(parse_spec(without, "example.json"), name), here)


def layer_rows() -> dict[str, list[dict[str, str]]]:
    where = "README.md ### Layer types"
    return grouped(table_with(section("### Layer types", SPEC_HEADING), "field", where), "`type`")


@pytest.mark.parametrize("kind", list(LAYER_TYPES))
def test_layer_type_and_its_fields_are_documented(kind):
    where = f"README.md ### Layer types: `{kind}`"
    groups = layer_rows()
    assert kind in groups, f"README.md ### Layer types: no rows for layer type `{kind}`"
    rows = {code_name(row["field"]): row for row in groups[kind] if code_name(row["field"])}
    fields = {f.name: f for f in dataclasses.fields(LAYER_TYPES[kind])}
    assert set(rows) == set(fields), f"{where}: missing fields {sorted(set(fields) - set(rows))}, " \
                                     f"not fields of this type {sorted(set(rows) - set(fields))}"
    for name, field in fields.items():
        row, here = rows[name], f"{where}.`{name}`"
        if field.default is dataclasses.MISSING:
            check_required(row["default"], here)
        else:
            check_default(row["default"], field.default, here)
        for choice in CHOICES.get(name, ()):
            assert choice in tokens(row["value"]), f"{here}: allowed value {choice!r} is not listed"


def test_every_layer_type_in_the_table_exists():
    unknown = sorted(set(layer_rows()) - set(LAYER_TYPES))
    assert not unknown, f"README.md ### Layer types documents layer types the code lacks: {unknown}"


@pytest.mark.parametrize("name, values", list(CHOICES.items()), ids=list(CHOICES))
def test_every_choice_is_documented(name, values):
    text = section("### Layer types", SPEC_HEADING)
    missing = [value for value in values if f"`{value}`" not in text]
    assert not missing, f"README.md ### Layer types: {name} values {missing} are not documented"


@pytest.mark.parametrize("kind", list(OPTIMIZER_FIELDS))
def test_optimizer_and_its_fields_are_documented_as_parsed(kind):
    where = f"README.md ### Optimizers: `{kind}`"
    groups = grouped(table_with(section("### Optimizers", SPEC_HEADING), "field", where), "`type`")
    assert kind in groups, f"README.md ### Optimizers: no rows for optimizer `{kind}`"
    rows = {code_name(row["field"]): row for row in groups[kind] if code_name(row["field"])}
    names = [name for name in OPTIMIZER_FIELDS[kind] if name != "type"]
    assert set(rows) == set(names), f"{where}: missing fields {sorted(set(names) - set(rows))}, " \
                                    f"not fields of this optimizer {sorted(set(rows) - set(names))}"
    required = [name for name in names if rows[name]["default"] == "required"]
    example = json_example()
    minimal = {"type": kind, **{name: 0.5 for name in required}}
    try:
        parsed = parse_spec({**example, "optimizer": minimal}, "example.json").optimizer
    except HarnessInputError as exc:
        pytest.fail(f"{where}: with only the fields documented as required, parsing fails: {exc}")
    for name in names:
        here = f"{where}.`{name}`"
        if name in required:
            without = {k: v for k, v in minimal.items() if k != name}
            assert missing_field_error({**example, "optimizer": without}, name), \
                f"{here}: documented as required, but the parser does without it"
        else:
            check_default(rows[name]["default"], getattr(parsed, name), here)


def test_toml_example_is_the_json_example(tmp_path):
    pytest.importorskip("tomllib", reason="TOML specs need Python 3.11+")
    blocks = example_blocks()
    path = tmp_path / "example.toml"
    path.write_text(blocks["toml"], encoding="utf-8")
    from_toml = load_spec(path)
    from_json = parse_spec(json.loads(blocks["json"]), "example.json")
    assert from_toml == from_json, f"README.md {SPEC_HEADING!r}: the TOML example is not the JSON example:\n" \
                                   f"TOML {from_toml.to_dict()}\nJSON {from_json.to_dict()}"


# ---------------------------------------------------------------------------------------------
# Suites


SUITE_ROWS = {  # row of the suites table -> what it must say, from a Suite
    "variants timed": lambda suite: {parse_variant(v).label for v in suite.timing_variants},
    "modes": lambda suite: set(suite.modes),
    "models": lambda suite: set(suite.models),
    "budget": lambda suite: [suite.budget_s, suite.process_s, suite.instances, suite.round_s],
    "per-call": lambda suite: [suite.percall_budget_s] if suite.percall_layers else [],
    "calibration": lambda suite: ([suite.calibration, *([suite.calibration_budget_s] if suite.calibration_budget_s else
                                  [backend_class(name).TIMING_BUDGET_S for name in backend_names()])]
                                  if suite.calibration else []),
    "parity variants": lambda suite: {parse_variant(v).label for v in suite.parity_variants},
    "inspect variants": lambda suite: {parse_variant(v).label for v in suite.inspect_variants},
    "devices": lambda suite: set(suite.devices),
    "study": lambda suite: {suite.study} - {""},
}
KNOWN = {  # the mode and device names any backend has: the tokens of those rows worth comparing
    "modes": {mode for name in backend_names() for mode in backend_class(name).MODES},
    "devices": {device for name in backend_names() for device in backend_class(name).DEVICES},
    "models": set(PRESETS),
    "study": set(STUDY_SUITES),
}


def suites_table() -> dict[str, dict[str, str]]:
    """{row name: {suite name: cell}}, with "same as `S`" / "same as R" resolved to suite S's or row
    R's cell."""
    where = f"README.md {SUITES_HEADING!r}"
    rows = table_with(section(SUITES_HEADING), f"`{next(iter(SUITES))}`", where)
    table = {row[""]: {code_name(key): cell for key, cell in row.items() if code_name(key)} for row in rows}

    def resolve(row: str, suite: str, seen: int = 0) -> str:
        cell = table[row][suite]
        target = cell.removeprefix("same as ").strip()
        if cell.startswith("same as ") and seen < 5:
            if code_name(target) in table[row]:
                return resolve(row, code_name(target), seen + 1)
            if target in table:
                return resolve(target, suite, seen + 1)
        return cell

    return {row: {suite: resolve(row, suite) for suite in cells} for row, cells in table.items()}


@pytest.mark.parametrize("suite_name", list(SUITES))
def test_suites_table_says_what_the_suite_holds(suite_name):
    suite, table = SUITES[suite_name], suites_table()
    where = f"README.md {SUITES_HEADING!r}, `{suite_name}`"
    for row_start, expected in SUITE_ROWS.items():
        row = next((name for name in table if name.startswith(row_start)), None)
        assert row is not None, f"README.md {SUITES_HEADING!r}: no row {row_start!r} in the suites table"
        assert suite_name in table[row], f"{where}: no column for this suite"
        cell = table[row][suite_name]
        if row_start in ("budget", "per-call", "calibration"):
            documented = numbers(cell)
        elif row_start in KNOWN:
            documented = {t for t in tokens(cell) if t in KNOWN[row_start]}
        else:
            documented = {parse_variant(t).label for t in tokens(cell) if "=" in t or t == BASELINE}
        assert documented == expected(suite), f"{where}, {row}: README says {documented}, " \
                                              f"harness/suite/suites.py says {expected(suite)}"


@pytest.mark.parametrize("question", TIMING_QUESTIONS, ids=lambda q: q.key)
def test_timing_question_is_documented(question):
    where = f"README.md {SUITES_HEADING!r}: question `{question.key}`"
    rows = grouped(table_with(section(SUITES_HEADING), "question", where), "key")
    assert question.key in rows, f"{where}: not in the questions table"
    row = rows[question.key][0]
    assert row["question"] == question.text, f"{where}: text {row['question']!r} != {question.text!r}"
    for side, variant, mode in (("a", question.a_variant, question.a_mode), ("b", question.b_variant, question.b_mode)):
        cell = row[side]
        named = variant in cell if variant == REFERENCE_LOOP else variant in tokens(cell)
        assert named, f"{where}: arm {side} is {variant!r}, README says {cell!r}"
        assert mode is None or mode in cell, f"{where}: arm {side} is in mode {mode!r}, README says {cell!r}"
    asked_by = {name for name, suite in SUITES.items() if question in suite.questions}
    assert set(tokens(row["suites"])) == asked_by, \
        f"{where}: asked by {sorted(asked_by)}, README says {row['suites']!r}"


def test_every_suite_is_named_in_the_suites_section():
    text = section(SUITES_HEADING)
    missing = [name for name in SUITES if f"`{name}`" not in text]
    assert not missing, f"README.md {SUITES_HEADING!r}: suites {missing} are not described"


# ---------------------------------------------------------------------------------------------
# Study

STUDY_HEADING = "## Study"


@pytest.mark.parametrize("suite_name", list(STUDY_SUITES))
def test_study_table_says_what_the_study_suite_holds(suite_name):
    suite = STUDY_SUITES[suite_name]
    where = f"README.md {STUDY_HEADING!r}, `{suite_name}`"
    rows = {row[""]: row for row in table_with(section(STUDY_HEADING), f"`{suite_name}`", where)}
    pairs = tokens(rows["data sets and models"][f"`{suite_name}`"])
    assert list(zip(pairs[::2], pairs[1::2])) == [(t.data, t.model) for t in suite.targets], \
        f"{where}: data sets and models"
    assert numbers(rows["variants"][f"`{suite_name}`"]) == [len(t.variants) for t in suite.targets], \
        f"{where}: variants per data set and model"
    assert numbers(rows["seeds, epochs"][f"`{suite_name}`"]) == [suite.seeds, suite.epochs], f"{where}: seeds, epochs"


def test_study_variants_are_documented():
    text = section(STUDY_HEADING)
    missing = [v for v in STUDY_VARIANTS if f"`{v}`" not in text]
    assert not missing, f"README.md {STUDY_HEADING!r}: variants {missing} are not listed"
