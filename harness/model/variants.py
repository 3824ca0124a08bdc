"""Variants: composable transforms of a spec, written `--variant "dropout=0,bn=before"`.

A variant axis is one small object (Axis): its key, how its value is parsed, how it changes a
spec (layers or optimizer: `apply` gets the whole spec), and the values a full sweep visits.
AXES lists them once, in the order they are applied; parsing, labels, `--help`, parity sweeps
and suites all read that list. Adding an axis is adding one Axis to AXES.

`baseline` is the spec as written. Shorthands (SHORTHANDS) are spellings of one key=value.
bn is applied before dropout so that `bn=before,dropout=absent` puts BN where dropout was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from harness.errors import HarnessInputError
from harness.model.layers import KERNEL_LAYERS, BatchNorm, Dropout
from harness.model.spec import L2_STYLES, OPTIMIZER_IMPLS, ModelSpec, Optimizer, check_spec

ABSENT = "absent"
BASELINE = "baseline"
BN_PLACEMENTS = ("none", "before", "after")

Value = str | float


@dataclass(frozen=True)
class Axis:
    key: str
    help: str  # one line: what the values mean
    parse: Callable[[str, str], Value]  # (value text, "source: full text") -> value; HarnessInputError if bad
    apply: Callable[[ModelSpec, Value], ModelSpec]
    sweep: tuple[str, ...]  # the values a full sweep visits (parity checks every one)


def _number(key: str, high: float | None) -> Callable[[str, str], Value]:
    def parse(text: str, source: str) -> Value:
        if text == ABSENT:
            return ABSENT
        try:
            value = float(text)
        except ValueError:
            raise HarnessInputError(f"{source}: {key}={text!r} is not '{ABSENT}' or a number") from None
        if not (math.isfinite(value) and value >= 0.0 and (high is None or value < high)):
            limit = f"[0, {high:g})" if high is not None else "[0, inf)"
            raise HarnessInputError(f"{source}: {key}={text}: {value:g} is not in {limit}")
        return value

    return parse


def _choice(key: str, choices: tuple[str, ...]) -> Callable[[str, str], Value]:
    def parse(text: str, source: str) -> Value:
        if text not in choices:
            raise HarnessInputError(f"{source}: {key}={text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _spec_field(key: str) -> Callable[[ModelSpec, Value], ModelSpec]:
    return lambda spec, value: replace(spec, **{key: value})


# What `optimizer=NAME` puts in the spec: each optimizer at the presets' usual settings.
OPTIMIZERS = {"sgd": Optimizer("sgd", lr=0.01, momentum=0.9), "adam": Optimizer("adam", lr=1e-3)}


def _place_batchnorm(spec: ModelSpec, placement: Value) -> ModelSpec:
    layers = list(spec.layers)

    def next_to_dropout(index: int) -> bool:
        neighbours = layers[max(index - 1, 0):index] + layers[index + 1:index + 2]
        return any(isinstance(layer, Dropout) for layer in neighbours)

    kept = [layer for i, layer in enumerate(layers) if not (isinstance(layer, BatchNorm) and next_to_dropout(i))]
    if placement == "none":
        return spec.with_layers(kept)
    placed = []
    for layer in kept:
        if isinstance(layer, Dropout) and placement == "before":
            placed += [BatchNorm(), layer]
        elif isinstance(layer, Dropout):
            placed += [layer, BatchNorm()]
        else:
            placed.append(layer)
    return spec.with_layers(placed)


def _set_dropout(spec: ModelSpec, rate: Value) -> ModelSpec:
    if rate == ABSENT:
        return spec.with_layers(layer for layer in spec.layers if not isinstance(layer, Dropout))
    return spec.with_layers(Dropout(rate) if isinstance(layer, Dropout) else layer for layer in spec.layers)


def _set_penalty(key: str) -> Callable[[ModelSpec, Value], ModelSpec]:
    def apply(spec: ModelSpec, value: Value) -> ModelSpec:
        penalty = None if value == ABSENT else value
        return spec.with_layers(replace(layer, **{key: penalty}) if isinstance(layer, KERNEL_LAYERS) else layer
                                for layer in spec.layers)

    return apply


AXES: tuple[Axis, ...] = (
    Axis("bn", "none|before|after: remove every BatchNorm right before/after a dropout layer, then (before/after) "
               "put one (Keras defaults) immediately before/after each dropout",
         _choice("bn", BN_PLACEMENTS), _place_batchnorm, ("before", "after", "none")),
    Axis("dropout", "absent|RATE: remove every dropout layer, or set every dropout rate (0 <= RATE < 1)",
         _number("dropout", 1.0), _set_dropout, (ABSENT, "0", "0.5")),
    Axis("l1", "absent|VALUE: on every dense/conv2d kernel, no L1 regularizer or this penalty (>= 0)",
         _number("l1", None), _set_penalty("l1"), (ABSENT, "0.0001")),
    Axis("l2", "absent|VALUE: likewise for L2 (absent and 0 differ: a zero penalty is still computed)",
         _number("l2", None), _set_penalty("l2"), (ABSENT, "0", "0.0001")),
    Axis("l2_style", "penalty|weight_decay: how torch writes L2: l2*sum(w^2) in the loss, or the optimizer's "
                     "coupled weight_decay=2*l2 on the L2 kernels (Keras has only kernel_regularizer)",
         _choice("l2_style", L2_STYLES), _spec_field("l2_style"), ()),
    Axis("optimizer", "sgd|adam: SGD(lr 0.01, momentum 0.9) or Adam(lr 1e-3, betas 0.9/0.999, eps 1e-8)",
         _choice("optimizer", tuple(OPTIMIZERS)), lambda spec, name: replace(spec, optimizer=OPTIMIZERS[name]),
         ("adam",)),
    Axis("optimizer_impl", "stock|matched: each framework's own optimizer class, or Adam with PyTorch's epsilon "
                           "placement in TensorFlow (what parity trains with)",
         _choice("optimizer_impl", OPTIMIZER_IMPLS), _spec_field("optimizer_impl"), ()),
)
AXIS_BY_KEY = {axis.key: axis for axis in AXES}

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
    """A parsed variant: (key, value) settings in AXES order. No settings: the baseline."""

    settings: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, **settings: Value) -> Variant:
        unknown = set(settings) - set(AXIS_BY_KEY)
        if unknown:
            raise ValueError(f"unknown variant keys {sorted(unknown)}")
        return cls(tuple((axis.key, settings[axis.key]) for axis in AXES if axis.key in settings))

    def get(self, key: str) -> Value | None:
        return dict(self.settings).get(key)

    @property
    def label(self) -> str:
        """Canonical text: keys in AXES order, numbers in %g form; "baseline" when empty."""
        return ",".join(f"{key}={_format(value)}" for key, value in self.settings) or BASELINE


def _format(value: Value) -> str:
    return value if isinstance(value, str) else f"{value:.12g}"


def parse_variant(text: str, source: str = "--variant") -> Variant:
    text = text.strip()
    if text in ("", BASELINE):
        return Variant()
    settings: dict[str, Value] = {}
    for part in text.split(","):
        part = SHORTHANDS.get(part.strip(), part.strip())
        key, sep, value = (piece.strip() for piece in part.partition("="))
        if not sep or key not in AXIS_BY_KEY:
            known = ", ".join(f"{k}=..." for k in AXIS_BY_KEY)
            raise HarnessInputError(
                f"{source}: {part!r} in {text!r} is not a variant (use {known}, {BASELINE} or {', '.join(SHORTHANDS)})")
        if key in settings:
            raise HarnessInputError(f"{source}: {key} is given twice in {text!r}")
        settings[key] = AXIS_BY_KEY[key].parse(value, source)
    return Variant.of(**settings)


def apply_variant(spec: ModelSpec, variant: Variant) -> ModelSpec:
    """The spec with the variant's changes; its name gets the variant label appended."""
    result = spec
    for key, value in variant.settings:
        result = AXIS_BY_KEY[key].apply(result, value)
    if variant.settings:
        result = replace(result, name=f"{spec.name}[{variant.label}]")
    check_spec(result, f"{spec.name} with variant {variant.label}")
    return result


def variant_spec(spec: ModelSpec, text: str) -> tuple[Variant, ModelSpec]:
    variant = parse_variant(text)
    return variant, apply_variant(spec, variant)


def sweep(keys: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The baseline, then every sweep value of each axis (all axes, or these keys), one at a time."""
    return (BASELINE, *(f"{axis.key}={value}" for axis in AXES if keys is None or axis.key in keys
                        for value in axis.sweep))


def parse_variants(texts: Sequence[str], option: str = "--variant", merge: bool = False) -> tuple[Variant, ...]:
    """Parse every variant once and refuse an empty one. Two that mean the same (e.g. `no-dropout`
    and `dropout=absent`) are refused (timing a variant against itself is an A/A control: use
    --aa), or with `merge` kept once (a run's list of variants to time)."""
    seen: dict[str, tuple[str, Variant]] = {}
    for text in texts:
        if not text.strip():
            raise HarnessInputError(f"{option} {text!r}: empty; write 'baseline' for the spec as written")
        variant = parse_variant(text, f"{option} {text!r}")
        if variant.label in seen and not merge:
            first = seen[variant.label][0]
            same = f"{first!r} and {text!r} are" if first != text else f"{text!r} is"
            raise HarnessInputError(f"{option}: {same} the same variant ({variant.label}), given twice; "
                                    "give it once (for an A/A control, use --aa)")
        seen.setdefault(variant.label, (text, variant))
    return tuple(variant for _, variant in seen.values())


@dataclass(frozen=True)
class Arm:
    """What one arm times, before a mode is chosen: a variant of the spec, applied once by the
    parent (`variant_arms`), any other spec (a model with k copies of a layer: percall), or no
    spec (a user's own model: harness/ported/timing.py builds it)."""

    label: str  # the variant's label, the named spec's, or the user's factory
    spec: ModelSpec | None


def variant_arms(spec: ModelSpec, variants: Sequence[Variant]) -> tuple[Arm, ...]:
    """One arm per parsed variant of `spec`."""
    return tuple(Arm(variant.label, apply_variant(spec, variant)) for variant in variants)
