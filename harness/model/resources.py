"""Will a spec's model fit in this machine's memory? An estimate from the spec alone, made before
any framework allocates anything, so that an absurd spec is refused in one line (exit 2) instead
of growing until the kernel kills the process.

What this module must not do: import a framework (torch, TensorFlow, numpy) or allocate anything
in proportion to the spec. Every size is a Python int (no overflow), so an estimate for
`"input_shape": [100000000]` or a batch of 10^9 takes microseconds. The numbers are estimates,
not measurements: they count what one training step keeps alive (parameters, their gradients,
the optimizer's buffers, the activations kept for the backward, the synthetic batch) and leave
out what is small or framework-specific (BatchNorm running statistics, dropout masks, allocator
slack, the framework's own footprint). Activations are counted twice (the output and its
gradient) to stay on the safe side.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath

from harness.errors import HarnessInputError
from harness.model.spec import ModelSpec, infer_shapes

SAFE_FRACTION = 0.5  # of the available memory, what one run may plan to use
ACTIVATION_COPIES = 2  # each layer output is kept for the backward, and its gradient is made there
LABEL_BYTES = 8  # int64 labels
_UNITS = ("bytes", "kB", "MB", "GB", "TB", "PB", "EB")

_MEMINFO = Path("/proc/meminfo")
_PROC_CGROUP = Path("/proc/self/cgroup")
_CGROUP_MOUNT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one model needs to train, by part; `largest_layer_*` names the layer that needs the
    most (its parameters with their gradients and optimizer state, and its activations)."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    batch: int  # the synthetic inputs and their int64 labels
    largest_layer_index: int
    largest_layer_type: str
    largest_layer_bytes: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations + self.batch


def optimizer_buffers(spec: ModelSpec) -> int:
    """State buffers the optimizer keeps per parameter: SGD with momentum one, plain SGD none,
    Adam two (first and second moments)."""
    if spec.optimizer.type == "adam":
        return 2
    return 1 if spec.optimizer.momentum > 0 else 0


def estimate_memory(spec: ModelSpec, dtype_bytes: int = 4) -> MemoryEstimate:
    """What one model of `spec` keeps alive during a training step, in bytes of `dtype_bytes`
    floats (4: float32), from the layers' shapes and costs (harness/model/spec.py, harness/model/layers.py)."""
    shapes = infer_shapes(spec)
    per_parameter = dtype_bytes * (2 + optimizer_buffers(spec))  # the value, its gradient, the state
    parameter_count, activation_elements = 0, 0
    largest = (-1, 0, "")  # (bytes, -index, type): on a tie, the first layer
    for index, (layer, in_shape, out_shape) in enumerate(zip(spec.layers, shapes.inputs, shapes.outputs)):
        params, _ = layer.cost(in_shape, out_shape)
        outputs = math.prod(out_shape) * spec.batch_size * ACTIVATION_COPIES
        parameter_count += params
        activation_elements += outputs
        largest = max(largest, (params * per_parameter + outputs * dtype_bytes, -index, layer.type))
    layer_bytes, negative_index, layer_type = largest
    parameter_bytes = parameter_count * dtype_bytes
    return MemoryEstimate(
        parameters=parameter_bytes,
        gradients=parameter_bytes,
        optimizer_state=parameter_bytes * optimizer_buffers(spec),
        activations=activation_elements * dtype_bytes,
        batch=spec.batch_size * (math.prod(spec.input_shape) * dtype_bytes + LABEL_BYTES),
        largest_layer_index=-negative_index,
        largest_layer_type=layer_type,
        largest_layer_bytes=layer_bytes,
    )


def format_bytes(count: int) -> str:
    """`41.0 GB`: decimal units up to EB, then a power of ten. Never overflows, whatever the int."""
    if count >= 10 ** 300:  # past what a float can show in EB
        return f"10^{math.floor(math.log10(count))} bytes"
    power = 0
    while power < len(_UNITS) - 1 and count >= 1000 ** (power + 1):
        power += 1
    return f"{count} bytes" if power == 0 else f"{count / 1000 ** power:.1f} {_UNITS[power]}"


# ---------------------------------------------------------------------------------------------
# What this process may use


def _read_int(path: Path, scale: int = 1) -> int | None:
    """The integer a kernel file holds (None: absent, unreadable, or "max", cgroup v2's no limit)."""
    try:
        return int(path.read_text(encoding="ascii").strip()) * scale
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _meminfo_available() -> int | None:
    try:
        lines = _MEMINFO.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key == "MemAvailable":
            fields = value.split()
            return int(fields[0]) * 1024 if fields and fields[0].isdigit() else None  # "24101444 kB"
    return None


def _cgroup_limits() -> list[int]:
    """The memory limits of this process's cgroup and of its ancestors (v2 `memory.max`, v1
    `memory.limit_in_bytes`), each where its file can be read."""
    try:
        lines = _PROC_CGROUP.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, cgroup = rest.partition(":")
        if hierarchy == "0" and not controllers:
            base, name = _CGROUP_MOUNT, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = _CGROUP_MOUNT / "memory", "memory.limit_in_bytes"
        else:
            continue
        parts = PurePosixPath(cgroup).parts[1:]
        for depth in range(len(parts), -1, -1):
            limit = _read_int(base.joinpath(*parts[:depth], name))
            if limit is not None and limit > 0:
                limits.append(limit)
    return limits


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def available_memory_bytes() -> int | None:
    """Bytes this process may use: the smallest of /proc/meminfo's MemAvailable, the cgroup
    memory limits (v2 or v1) of this process, and the physical memory. None only where none of
    them can be read (not Linux, no sysconf). Never raises."""
    known = [value for value in (_meminfo_available(), *_cgroup_limits(), physical_memory_bytes()) if value]
    return min(known) if known else None


# ---------------------------------------------------------------------------------------------
# The check


def check_fits(spec: ModelSpec, source: str, models: float = 1.0, dtype_bytes: int = 4,
               available: int | None = None) -> MemoryEstimate:
    """Refuse a spec whose models would not fit: raise HarnessInputError (the CLI prints it as one
    line and exits 2) when `models` x the estimate exceeds SAFE_FRACTION of the available memory.

    source: where the spec came from, named first in the message (the spec file path, `--model cnn`).
    models: how many copies of the model the caller holds at once, in units of `dtype_bytes`
        floats. Parity holds each framework in float32 and in float64: models=6 with
        dtype_bytes=4. Timing holds one per arm.
    available: bytes this run may use; None measures them (available_memory_bytes()). Where
        nothing can be measured, nothing is refused.

    Returns the estimate of one model. The message names the estimate and its parts, the limit,
    and the largest layer, e.g. `my.json: needs about 30.0 GB (parameters 10.0 GB, gradients
    10.0 GB, optimizer state 10.0 GB, ...), more than the 11.8 GB this run may use (50% of the
    23.6 GB available); largest: layers[0] (dense) 30.0 GB`.
    """
    estimate = estimate_memory(spec, dtype_bytes)
    if available is None:
        available = available_memory_bytes()
    if available is None:
        return estimate
    needed = math.ceil(Fraction(models) * estimate.total)
    allowed = math.floor(SAFE_FRACTION * available)
    if needed <= allowed:
        return estimate
    parts = (("parameters", estimate.parameters, ""), ("gradients", estimate.gradients, ""),
             ("optimizer state", estimate.optimizer_state, ""),
             ("activations", estimate.activations, f" at batch_size {spec.batch_size}"),
             ("input batch", estimate.batch, ""))
    listed = ", ".join(f"{name} {format_bytes(size)}{note}" for name, size, note in parts if size)
    amount = (f"{format_bytes(needed)} ({listed})" if models == 1
              else f"{format_bytes(needed)} for {models:g} model copies (each: {listed})")
    raise HarnessInputError(
        f"{source}: needs about {amount}, more than the {format_bytes(allowed)} "
        f"this run may use ({SAFE_FRACTION:.0%} of the {format_bytes(available)} available); largest: "
        f"layers[{estimate.largest_layer_index}] ({estimate.largest_layer_type}) "
        f"{format_bytes(estimate.largest_layer_bytes)}"
    )
