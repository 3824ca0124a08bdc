"""Reading files a user or another program hands in, bounded: the one place that opens them.

Constraints: a damaged or hostile file is refused in one line (HarnessInputError naming it), never
by filling memory, hanging or acting on a device: only regular files are opened (a FIFO would
wait for a writer, a device could act), at most a limit of bytes is read, and JSON nesting is
capped. Used for spec files (harness/model/spec.py), results and the JSON beside them
(harness/results/reading.py), benchmark files, run plans and CIFAR batches.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import HarnessInputError

MAX_JSON_FILE_BYTES = 64 * 1024 * 1024  # environment.json, a pytest-benchmark JSON file
MAX_JSON_DEPTH = 100  # nesting of any JSON read; records and environments nest 3 or 4 deep
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@contextmanager
def open_regular_file(path: Path, limit: int | None = None) -> Iterator[BinaryIO]:
    """`path` opened for binary reading, refused (HarnessInputError naming it) unless it is a
    regular file of at most `limit` bytes. The type is checked before opening (opening a FIFO
    waits for a writer; opening a device can act on it) and again on the opened file (it may have
    been replaced meanwhile). Raises OSError as open() does (a missing file)."""
    _refuse_unless_regular(path, os.stat(path), limit)
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as handle:
        _refuse_unless_regular(path, os.fstat(handle.fileno()), limit)
        yield handle


def read_small_file(path: Path, limit: int = MAX_JSON_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (open_regular_file); at most limit + 1
    bytes are read, so a file that grows while it is read cannot run away either."""
    try:
        with open_regular_file(path, limit) as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise HarnessInputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > limit:
        raise HarnessInputError(f"{path}: grew past the {limit // 2**20} MiB limit while it was read")
    return raw


def _refuse_unless_regular(path: Path, info: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _FILE_KINDS if is_kind(info.st_mode)), "not a regular file")
        raise HarnessInputError(f"{path}: is {kind}, not a regular file")
    if limit is not None and info.st_size > limit:
        raise HarnessInputError(f"{path}: {info.st_size} bytes, more than the {limit // 2**20} MiB limit")


class JSONTooDeep(HarnessInputError):
    """JSON nested deeper than MAX_JSON_DEPTH: refused even as the last line of a results file,
    which is otherwise taken for a write cut short."""


def parse_json(raw: bytes, source: str) -> Any:
    """One JSON document, or HarnessInputError in one line naming `source`: not JSON, not UTF-8,
    an integer over Python's digit limit (ValueError), or nesting deeper than MAX_JSON_DEPTH
    (absurd nesting otherwise ends in RecursionError, here or in whatever walks the value)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JSONTooDeep(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise HarnessInputError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except ValueError as exc:  # not UTF-8; an integer of more than 4300 digits
        raise HarnessInputError(f"{source}: not valid JSON ({str(exc)[:100]})") from None
    stack = [(value, 1)]
    while stack:  # iterative: a recursive walk would be what fails
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JSONTooDeep(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value

