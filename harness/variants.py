"""Variants: composable transforms of a spec, written `--variant "dropout=0,bn=before"`.

Keys (each at most once; applied in this order: bn, dropout, l1, l2):
  bn=none|before|after     remove every BatchNorm right before/after a dropout layer, then (for
                           before/after) put one (Keras defaults) immediately before/after each dropout
  dropout=absent|RATE      remove every dropout layer, or set every dropout rate (0 <= RATE < 1)
  l1=absent|VALUE          on every dense/conv2d kernel: no regularizer, or this penalty (>= 0)
  l2=absent|VALUE          likewise for L2 (absent and 0 are different: see harness/spec.py)
`baseline` is the spec as written. Shorthands: see SHORTHANDS.

bn is applied before dropout so that `bn=before,dropout=absent` puts BN where dropout was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from harness.errors import HarnessInputError
from harness.spec import KERNEL_LAYERS, BatchNorm, Dropout, ModelSpec, check_spec

ABSENT = "absent"
KEYS = ("bn", "dropout", "l1", "l2")
BN_PLACEMENTS = ("none", "before", "after")

SHORTHANDS = {
    "no-dropout": "dropout=absent",
    "dropout-absent": "dropout=absent",
    "dropout-p0": "dropout=0",
    "dropout-p0.5": "dropout=0.5",
    "bn-before-dropout": "bn=before",
    "bn-after-dropout": "bn=after",
    "no-bn": "bn=none",
    "no-l2": "l2=absent",
    "l2-absent": "l2=absent",
    "l2-0": "l2=0",
    "no-l1": "l1=absent",
    "l1-0": "l1=0",
}


@dataclass(frozen=True)
class Variant:
    """A parsed variant. None means "leave as written"."""

    bn: str | None = None
    dropout: str | float | None = None
    l1: str | float | None = None
    l2: str | float | None = None

    @property
    def label(self) -> str:
        """Canonical text: keys in a fixed order, numbers in %g form; "baseline" when empty."""
        parts = [f"{key}={_format(getattr(self, key))}" for key in KEYS if getattr(self, key) is not None]
        return ",".join(parts) or "baseline"


def _format(value: str | float) -> str:
    return value if isinstance(value, str) else f"{value:.12g}"


def _number(key: str, text: str, source: str, high: float | None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HarnessInputError(f"{source}: {key}={text!r} is not '{ABSENT}' or a number") from None
    if not (math.isfinite(value) and value >= 0.0 and (high is None or value < high)):
        limit = f"[0, {high:g})" if high is not None else "[0, inf)"
        raise HarnessInputError(f"{source}: {key}={text}: {value:g} is not in {limit}")
    return value


def parse_variant(text: str, source: str = "--variant") -> Variant:
    text = text.strip()
    if text in ("", "baseline"):
        return Variant()
    settings: dict[str, str | float] = {}
    for part in text.split(","):
        part = SHORTHANDS.get(part.strip(), part.strip())
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in KEYS:
            known = ", ".join(f"{k}=..." for k in KEYS)
            raise HarnessInputError(
                f"{source}: {part!r} in {text!r} is not a variant (use {known}, baseline or {', '.join(SHORTHANDS)})"
            )
        if key in settings:
            raise HarnessInputError(f"{source}: {key} is given twice in {text!r}")
        if key == "bn":
            if value not in BN_PLACEMENTS:
                raise HarnessInputError(f"{source}: bn={value!r} is not one of {', '.join(BN_PLACEMENTS)}")
            settings[key] = value
        else:
            settings[key] = ABSENT if value == ABSENT else _number(key, value, source, 1.0 if key == "dropout" else None)
    return Variant(**settings)


def apply_variant(spec: ModelSpec, variant: Variant) -> ModelSpec:
    """The spec with the variant's changes; its name gets the variant label appended."""
    layers = list(spec.layers)
    if variant.bn is not None:
        layers = _place_batchnorm(layers, variant.bn)
    if variant.dropout == ABSENT:
        layers = [layer for layer in layers if not isinstance(layer, Dropout)]
    elif variant.dropout is not None:
        layers = [Dropout(variant.dropout) if isinstance(layer, Dropout) else layer for layer in layers]
    for key in ("l1", "l2"):
        value = getattr(variant, key)
        if value is not None:
            penalty = None if value == ABSENT else value
            layers = [replace(layer, **{key: penalty}) if isinstance(layer, KERNEL_LAYERS) else layer for layer in layers]
    name = spec.name if variant == Variant() else f"{spec.name}[{variant.label}]"
    result = spec.with_layers(layers, name=name)
    check_spec(result, f"{spec.name} with variant {variant.label}")
    return result


def _place_batchnorm(layers: list, placement: str) -> list:
    def next_to_dropout(index: int) -> bool:
        neighbours = layers[max(index - 1, 0):index] + layers[index + 1:index + 2]
        return any(isinstance(layer, Dropout) for layer in neighbours)

    kept = [layer for i, layer in enumerate(layers) if not (isinstance(layer, BatchNorm) and next_to_dropout(i))]
    if placement == "none":
        return kept
    placed = []
    for layer in kept:
        if isinstance(layer, Dropout) and placement == "before":
            placed += [BatchNorm(), layer]
        elif isinstance(layer, Dropout):
            placed += [layer, BatchNorm()]
        else:
            placed.append(layer)
    return placed


def variant_spec(spec: ModelSpec, text: str) -> tuple[Variant, ModelSpec]:
    variant = parse_variant(text)
    return variant, apply_variant(spec, variant)
