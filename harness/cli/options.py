"""Checks of command-line values, made before any work starts.

Every number must be finite and in its range; output paths must be usable before minutes of
measurement are spent. A failure is a HarnessInputError (or,
for argparse types, argparse's own error): one line naming the option and the value, exit 2.
A framework that fails to allocate memory is turned into the same kind of one-line error.
This module imports no framework.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessInputError
from harness.model.resources import check_fits
from harness.model.variants import BASELINE
from harness.ported.pair import PairSource, parse_shape
from harness.results.environment import available_cores

AVAILABLE_CORES = available_cores() or 1
MAX_THREADS_FORCED = 1024


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {high}]")
        return value

    return parse


def bounded_float(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (or (low, high] with low_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text} is not in {'(' if low_open else '['}{low:g}, {high:g}]")
        return value

    return parse


def check_threads(threads: int, oversubscribe: bool) -> None:
    """More threads than cores make timings meaningless (and 100000 crashed a framework)."""
    if threads > AVAILABLE_CORES and not oversubscribe:
        raise HarnessInputError(f"--threads {threads}: this machine lets the process use {AVAILABLE_CORES} cores; "
                                "use --oversubscribe to ask for more threads anyway")
    if threads > MAX_THREADS_FORCED:
        raise HarnessInputError(f"--threads {threads}: more than {MAX_THREADS_FORCED} is not supported")


def check_output_file(path: str | None, option: str) -> None:
    """A file the command will write at the end: its folder exists and is writable, and it is not
    itself a folder. Checked first, so finished work is never lost behind a bad path."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise HarnessInputError(f"{option} {path}: is a folder; give a file path")
    folder = target.parent
    if not folder.is_dir():
        raise HarnessInputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise HarnessInputError(f"{option} {path}: not writable here")


def check_output_folder(path: str | None, option: str) -> None:
    """A folder the command will create or write into: not a file, and writable."""
    if path is None:
        return
    if not path.strip():  # Path("") is ".": the command would write into the current folder
        raise HarnessInputError(f"{option} {path!r}: an empty path; name a folder")
    target = Path(path)
    try:
        if target.exists() and not target.is_dir():
            raise HarnessInputError(f"{option} {path}: is a file, not a folder")
        existing = next(p for p in (target, *target.parents) if p.exists())
    except OSError as exc:  # e.g. a name over the file system's 255 bytes
        raise HarnessInputError(f"{option} {path}: {exc.strerror}") from None
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HarnessInputError(f"{option} {path}: {existing} is not writable")


def note_unchanged(spec, arms) -> None:
    """Say so on stderr when a variant changes nothing in this model (e.g. no-dropout on a model
    without dropout): it then measures the baseline again, which a user should know."""
    for arm in arms:
        if arm.label != BASELINE and arm.spec.layers == spec.layers and arm.spec.optimizer == spec.optimizer:
            print(f"note: variant {arm.label!r} leaves {spec.name} unchanged (it measures the baseline again)",
                  file=sys.stderr)


def allocation_failure(exc: BaseException) -> bool:
    """Whether a framework ran out of memory (they raise different types with different words)."""
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in ("can't allocate", "DefaultCPUAllocator", "ResourceExhaustedError",
                                             "out of memory", "OOM when allocating", "_ArrayMemoryError"))


def json_record(record) -> dict:
    """A record as --json writes it: its stored fields, and under "derived" what the harness
    computes from them (a comparison's verdict and sentence), so a script need not re-implement
    the rules. `report` and --resume read only the stored fields."""
    derived = record.derived()
    return {**record.as_dict(), "derived": derived} if derived else record.as_dict()


def write_json(path: str | None, records) -> None:
    if path:
        try:
            Path(path).write_text(json.dumps([json_record(r) for r in records], indent=1) + "\n", encoding="utf-8")
        except OSError as exc:  # the path was checked first; this is e.g. a full disk
            raise HarnessInputError(f"--json {path}: could not write the records ({exc.strerror}); "
                                    "the results are printed below") from None


def check_memory(source: str, arms, models: float) -> None:
    """Refuse, before anything is built, a model (in any of its arms) that would not fit in
    memory `models` times over (harness/model/resources.py). `source`: where the spec came from."""
    for arm in arms:
        check_fits(arm.spec, f"{source} [{arm.label}]", models=models)


def say(message: str) -> None:
    """A progress or note line for the user, on stderr (stdout carries the results)."""
    print(message, file=sys.stderr, flush=True)


def pair_source(args, spec_options: dict[str, object]) -> PairSource:
    """The user's model pair of `--torch/--keras` (add_pair_args), every option checked, the
    factories found but not imported (importing them imports both frameworks): refused when a
    required option is missing or one of `spec_options` (the spec models' own: {option: value})
    is given too."""
    given = {"--torch": args.torch, "--keras": args.keras, "--input-shape": args.input_shape,
             "--classes": args.classes}
    missing = [option for option, value in given.items() if value is None]
    if missing:
        raise HarnessInputError(f"your own models need {', '.join(missing)} too (with --torch and --keras)")
    clashing = [option for option, value in spec_options.items() if value]
    if clashing:
        raise HarnessInputError(f"--torch/--keras time and compare your own models: {', '.join(clashing)} "
                                "apply to the harness's spec models")
    source = PairSource(args.torch, args.keras, parse_shape(args.input_shape), args.classes,
                        input_ints=args.input_ints, batch=args.batch, seed=args.seed)
    source.check()
    return source
