"""Reading result files from disk, bounded: results.jsonl (read_results, the one reader of it, for
the runner and the report) and the small JSON files beside it (read_small_file + parse_json).

Constraints: a damaged or hostile file is refused in one line (HarnessInputError naming the file,
and the line where there is one), never by filling memory or hanging: only regular files are
opened (a FIFO would wait for a writer, a device could act), lines and files are read up to
their MAX_* bounds, and JSON nesting is capped. This module checks that a line is a JSON object;
whether that object is a valid record is harness/results/records.py's from_dict. It writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError
from harness.files import JSONTooDeep, open_regular_file, parse_json
from harness.results.records import CaseRecord


@dataclass(frozen=True)
class ResultsFile:
    """What a results.jsonl holds: `records` in file order, of which the first `finished` belong
    to finished cases (they end with the file's last CaseRecord, at byte `finished_end`)."""

    records: tuple[dict[str, Any], ...]
    finished: int
    finished_end: int
    warnings: tuple[str, ...]


# Bounds on what the report and the runner read, so that a damaged or hostile file is refused in
# one line instead of filling memory: a record is a few hundred kB at most (10^4 round times).
MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of results.jsonl


def read_results(path: Path) -> ResultsFile:
    """Read one JSON object per line: the one reader of results files (runner and report).

    A last line that is not a complete JSON object is the trace of a run killed while writing
    it: it is skipped with a warning. Anything else that is not a JSON object raises
    HarnessInputError naming the file and line, as do a line longer than MAX_LINE_BYTES (never
    read whole) and one nested deeper than MAX_JSON_DEPTH. A CaseRecord counts as finished only
    with its newline (the runner writes a block's lines in one write, newline last).
    """
    records: list[dict[str, Any]] = []
    finished, finished_end, offset, bad, number = 0, 0, 0, None, 0
    try:
        with open_regular_file(path) as handle:
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise HarnessInputError(f"{path}: line {number}: longer than {MAX_LINE_BYTES // 2**20} MiB, "
                                            "not a record")
                offset += len(raw)
                if not raw.strip():
                    continue
                if bad is not None:
                    raise HarnessInputError(f"{path}: line {bad}: not a JSON object")
                try:
                    record = parse_json(raw, f"{path}: line {number}")
                except JSONTooDeep:
                    raise
                except HarnessInputError:  # not JSON, also a UTF-8 sequence cut in half
                    record = None
                if not isinstance(record, dict):
                    bad = number
                    continue
                records.append(record)
                if record.get("kind") == CaseRecord.kind and raw.endswith(b"\n"):
                    finished, finished_end = len(records), offset
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read ({exc.strerror})") from None
    warnings = [f"{path}: line {bad} is incomplete (the run stopped while writing it) and was skipped."] \
        if bad is not None else []
    return ResultsFile(tuple(records), finished, finished_end, tuple(warnings))
