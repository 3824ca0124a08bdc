"""Backends: one module per framework behind the interface in backends/base.py.

`backend_class(name)` imports only that backend's module (which itself imports its framework
lazily). In a process that uses both frameworks, create the torch backend first: importing
TensorFlow before torch has crashed on import.
"""

from __future__ import annotations

import importlib

from harness.errors import HarnessInputError

BACKEND_NAMES = ("torch", "tensorflow")
_CLASSES = {
    "torch": ("backends.torch_backend", "TorchBackend"),
    "tensorflow": ("backends.tensorflow_backend", "TensorFlowBackend"),
}


def backend_class(name: str):
    if name not in _CLASSES:
        raise HarnessInputError(f"--backend: {name!r} is not one of {', '.join(BACKEND_NAMES)}")
    module_name, class_name = _CLASSES[name]
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(name: str, device: str = "cpu", threads: int | None = None):
    """The configured backend, or HarnessInputError (exit 2) when its framework is missing."""
    cls = backend_class(name)
    availability = cls.availability()
    if not availability.ok:
        raise HarnessInputError(f"--backend {name}: not available: {availability.reason}")
    return cls(device=device, threads=threads)
