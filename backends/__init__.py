"""Backends: the registry. Each module of this package (other than `base`, and the private
helpers a backend splits off, whose names start with "_") defines one Backend subclass; adding a
framework is adding one module here, and everything else (CLI choices, suites, the runner, parity
pairs, the environment record, plots, benchmarks) asks this registry.

Importing a backend module is cheap: it imports its framework lazily, inside methods (see
backends/base.py), so discovery never starts a framework. Backends are listed in LOAD_ORDER
(the order in which a process that uses several must create them: importing TensorFlow before
torch has crashed on import), then by name. REFERENCE is the framework every other is checked
against in parity (PyTorch).

A backend kept outside this package (a plugin, or a test's) is found in the folders listed in
the environment variable HARNESS_BACKEND_PATH (os.pathsep-separated), searched as part of this
package; being in the environment, it reaches the worker processes that time a backend too.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil

from backends.base import Backend
from harness.errors import BackendUnavailable, HarnessInputError

REFERENCE = "torch"
BACKEND_PATH_VARIABLE = "HARNESS_BACKEND_PATH"


@functools.cache
def registry() -> dict[str, type[Backend]]:
    """Every backend class defined in this package's modules, by name, in creation order."""
    found: dict[str, type[Backend]] = {}
    for folder in filter(None, os.environ.get(BACKEND_PATH_VARIABLE, "").split(os.pathsep)):
        if folder not in __path__:
            __path__.append(folder)
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base" or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        defined = [value for value in vars(module).values()
                   if isinstance(value, type) and issubclass(value, Backend)
                   and value.__module__ == module.__name__ and not getattr(value, "__abstractmethods__", None)]
        if len(defined) != 1:
            raise TypeError(f"{module.__name__}: a backend module defines exactly one Backend subclass, "
                            f"found {[cls.__name__ for cls in defined]}")
        cls = defined[0]
        if cls.name in found:
            raise TypeError(f"{module.__name__}: backend name {cls.name!r} is taken by {found[cls.name].__module__}")
        found[cls.name] = cls
    return dict(sorted(found.items(), key=lambda item: (item[1].LOAD_ORDER, item[0])))


def backend_names() -> tuple[str, ...]:
    return tuple(registry())


def backend_class(name: str) -> type[Backend]:
    classes = registry()
    if name not in classes:
        raise HarnessInputError(f"--backend: {name!r} is not one of {', '.join(classes)}")
    return classes[name]


def parity_partners() -> tuple[str, ...]:
    """The backends parity checks against the reference: every other one."""
    return tuple(name for name in registry() if name != REFERENCE)


def create_backend(name: str, device: str = "cpu", threads: int | None = None) -> Backend:
    """The configured backend; BackendUnavailable when its framework or the device is missing."""
    cls = backend_class(name)
    availability = cls.availability()
    if not availability.ok:
        raise BackendUnavailable(f"--backend {name}: not available: {availability.reason}")
    return cls(device=device, threads=threads)
