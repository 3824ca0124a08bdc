"""Typed access to one decoded JSON/TOML object of a spec, with errors that say where a bad value
came from: `my.json: layers[2].rate: 1.5 is not in [0, 1)`.

It raises nothing but HarnessInputError. It knows no spec field names: harness/model/spec.py and
harness/model/layers.py say which fields exist and what they may hold.
"""

from __future__ import annotations

import json
import math
from typing import Any

from harness.errors import HarnessInputError

REQUIRED = object()  # default meaning "the field must be present"


class Fields:
    """Typed access to one JSON object, with errors that say where the bad value came from."""

    def __init__(self, data: Any, where: str, allowed: tuple[str, ...]):
        if not isinstance(data, dict):
            raise HarnessInputError(f"{where}: expected an object, got {describe(data)}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise HarnessInputError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(allowed)})")
        self.data, self.where = data, where

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            raise HarnessInputError(f"{self.where}: missing required field {key!r}")
        return default

    def int(self, key: str, default: Any = REQUIRED, minimum: int = 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise HarnessInputError(f"{self.where}.{key}: expected an integer, got {describe(value)}")
        if value < minimum:
            raise HarnessInputError(f"{self.where}.{key}: {value} must be >= {minimum}")
        return value

    def pair(self, key: str, default: Any = REQUIRED) -> tuple[int, int] | None:
        """An integer or [h, w] of positive integers (None only when it is the default)."""
        value = self.raw(key, default)
        if value is None:
            return None
        items = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not (
            isinstance(items, (list, tuple))
            and len(items) == 2
            and all(isinstance(item, int) and not isinstance(item, bool) and item >= 1 for item in items)
        ):
            raise HarnessInputError(
                f"{self.where}.{key}: expected a positive integer or [h, w] of positive integers, got {describe(value)}"
            )
        return (items[0], items[1])

    def number(self, key: str, default: Any = REQUIRED, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = True) -> float | None:
        """A finite number in [low, high) by default; None only when it is the default."""
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            raise HarnessInputError(f"{self.where}.{key}: expected a finite number, got {describe(value)}")
        value = float(value)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            interval = (
                f"{'(' if low_open else '['}{'-inf' if low is None else f'{low:g}'}, "
                f"{'inf' if high is None else f'{high:g}'}{')' if high_open else ']'}"
            )
            raise HarnessInputError(f"{self.where}.{key}: {value:g} is not in {interval}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = REQUIRED) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise HarnessInputError(f"{self.where}.{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    def text(self, key: str, default: Any = REQUIRED) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or not value:
            raise HarnessInputError(f"{self.where}.{key}: expected a non-empty string, got {describe(value)}")
        return value


def describe(value: Any) -> str:
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return f"{kind.get(type(value), type(value).__name__)} ({json.dumps(value, default=str)[:40]})"
