"""The size sweep: when does a layer that should be free (Dropout(p=0)) stop mattering?

Its per-call cost is fixed (a framework's overhead of calling a layer: a few µs in torch eager,
~120 µs in Keras eager), so its share of a training step falls as the step grows. The sweep
measures both at several model sizes: the mlp preset with its hidden layers scaled (first hidden
layer SIZE units, second SIZE/2; 512 is the preset) or the cnn preset's filters (SIZE and 2xSIZE;
32 is the preset), one `percall` case (dose-response, harness/timing/percall.py) per backend, mode
and size. From those records, `thresholds` gives the step time below which the layer costs more
than 1% (and 0.1%) of a step: per_call / share, per_call pooled over the sizes (inverse-variance
weighted: the cost of calling a layer does not depend on the tensor it returns unchanged; the
per-size estimates are kept, so a reader can check that).

The sized specs are written into the run folder (specs/NAME.json) and each case is a
`python -m harness percall --spec FILE ...` command, so a sweep is a run folder like `run`'s:
durable per case, resumable, reported by `harness report`. Framework-free.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import HarnessInputError
from harness.model.layers import Conv2D, Dense
from harness.model.spec import PRESETS, ModelSpec, check_spec
from harness.results.records import PerCallRecord
from harness.running.case import THREADS_TOKEN, Case

SWEEP_SIZES = {"mlp": (64, 256, 1024, 4096), "cnn": (8, 16, 32, 64)}
SHARES = (0.01, 0.001)  # the thresholds the report states: 1% and 0.1% of a step
DEFAULT_LAYER = "dropout=0"
DEFAULT_BUDGET_S = 40.0
SIZE_SEPARATOR = "@"  # a sized spec's name: "mlp@1024"


def sized_spec(model: str, size: int) -> ModelSpec:
    """The preset `model` at `size`: mlp hidden units (size, size // 2); cnn filters (size, 2 * size)."""
    if model not in SWEEP_SIZES:
        raise HarnessInputError(f"--model: {model!r} has no size sweep (one of {', '.join(SWEEP_SIZES)})")
    if size < 2:
        raise HarnessInputError(f"--sizes: {size} is too small (at least 2)")
    preset = PRESETS[model]
    widths = iter((size, max(1, size // 2)) if model == "mlp" else (size, 2 * size))
    layers, hidden = [], [i for i, layer in enumerate(preset.layers) if isinstance(layer, (Dense, Conv2D))][:2]
    for i, layer in enumerate(preset.layers):
        if i in hidden:
            field = "units" if isinstance(layer, Dense) else "filters"
            layer = replace(layer, **{field: next(widths)})
        layers.append(layer)
    spec = preset.with_layers(tuple(layers), name=f"{model}{SIZE_SEPARATOR}{size}")
    check_spec(spec, spec.name)
    return spec


def size_of(model_name: str) -> int | None:
    """The size in a sized spec's name ("mlp@1024" -> 1024); None for any other model."""
    base, separator, size = model_name.partition(SIZE_SEPARATOR)
    return int(size) if separator and size.isdigit() else None


def plan_sweep_cases(folder: Path, model: str, sizes: Sequence[int], backends: Sequence[str],
                     modes: Sequence[str], layer: str, budget_s: float,
                     unavailable: dict[str, str] | None = None,
                     backend_modes: dict[str, tuple[str, ...]] | None = None) -> list[Case]:
    """A percall case per backend, mode (those the backend has) and size; writes the sized specs
    into folder/specs/."""
    unavailable, specs = unavailable or {}, folder / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    cases = []
    for size in sizes:
        spec = sized_spec(model, size)
        path = specs / f"{spec.name.replace(SIZE_SEPARATOR, '-')}.json"
        path.write_text(json.dumps(spec.to_dict(), indent=1) + "\n", encoding="utf-8")
        for backend in backends:
            for mode in modes:
                if backend_modes is not None and mode not in backend_modes.get(backend, ()):
                    continue
                argv = (sys.executable, "-m", "harness", "percall", "--spec", str(path), "--backend", backend,
                        "--mode", mode, "--layer", layer, "--threads", THREADS_TOKEN, "--budget", f"{budget_s:g}",
                        "--json", "{json}")
                cases.append(Case(f"sweep/{backend}/{spec.name}/{mode}/{layer}", argv, 2 * budget_s + 300.0,
                                  f"percall {backend} {spec.name} {mode} {layer}", budget_s,
                                  unavailable.get(backend, "")))
    return cases


@dataclass(frozen=True)
class Threshold:
    """For one backend, mode and layer: the per-call cost pooled over the sweep's sizes, and the
    step time below which one call costs more than `share` of a step, with 95% CIs."""

    backend: str
    mode: str
    layer: str
    share: float
    per_call_s: float
    per_call_low_s: float
    per_call_high_s: float
    sizes: tuple[int, ...]

    @property
    def step_s(self) -> float:
        return self.per_call_s / self.share

    @property
    def step_low_s(self) -> float:
        return max(self.per_call_low_s, 0.0) / self.share

    @property
    def step_high_s(self) -> float:
        return self.per_call_high_s / self.share

    @property
    def sentence(self) -> str:
        if self.per_call_high_s <= 0:
            return (f"{self.backend} {self.mode}: {self.layer} has no measurable cost at any size "
                    f"(per call at most {self.per_call_high_s * 1e6:.2f} µs): below no step time does it cost "
                    f"{self.share * 100:g}%")
        if self.per_call_low_s <= 0:  # the CI holds 0: only its upper end bounds the threshold
            per_call, low, high = (v * 1e6 for v in (self.per_call_s, self.per_call_low_s, self.per_call_high_s))
            return (f"{self.backend} {self.mode}: no measurable cost per {self.layer} call ({per_call:.2f} µs, 95% CI "
                    f"{low:.2f} to {high:.2f}, pooled over sizes "
                    f"{', '.join(map(str, self.sizes))}); even at the CI's upper end, it costs more than "
                    f"{self.share * 100:g}% of a step only below {_ms(self.step_high_s)} per step")
        return (f"{self.backend} {self.mode}: below {_ms(self.step_s)} per step (95% CI {_ms(self.step_low_s)}–"
                f"{_ms(self.step_high_s)}), one {self.layer} call costs more than {self.share * 100:g}% of it "
                f"({self.per_call_s * 1e6:.2f} µs per call, pooled over sizes {', '.join(map(str, self.sizes))})")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def pooled(records: Sequence[PerCallRecord]) -> tuple[float, float, float]:
    """The inverse-variance weighted mean of per-call costs and its 95% CI (normal: each input is
    already a mean over processes). A record whose CI has zero width gets the narrowest other
    one's weight."""
    half = [max(r.half_width_s, 1e-12) for r in records]
    weights = [1 / (h / 1.96) ** 2 for h in half]
    total = sum(weights)
    mean = sum(w * r.per_call_s for w, r in zip(weights, records)) / total
    width = 1.96 / math.sqrt(total)
    return mean, mean - width, mean + width


def thresholds(records: Iterable[PerCallRecord], shares: Sequence[float] = SHARES) -> list[Threshold]:
    """A Threshold per (backend, mode, layer) with per-call records at two or more sizes, per share."""
    groups: dict[tuple[str, str, str], list[PerCallRecord]] = {}
    for r in records:
        if isinstance(r, PerCallRecord) and not r.net_of and size_of(r.model) is not None:
            groups.setdefault((r.backend, r.mode, r.layer), []).append(r)
    found = []
    for (backend, mode, layer), group in groups.items():
        sizes = tuple(sorted({size_of(r.model) for r in group}))
        if len(sizes) < 2:
            continue
        mean, low, high = pooled(group)
        found += [Threshold(backend, mode, layer, share, mean, low, high, sizes) for share in shares]
    return found
