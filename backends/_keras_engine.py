"""Which engine Keras 3 runs on in this process, and importing Keras on the one a backend needs.

Keras reads KERAS_BACKEND once, at its first import, and keeps that engine (tensorflow, torch or
jax) for the life of the process: the three Keras backends (tensorflow, keras_torch, keras_jax)
never share a process. A backend whose engine differs from the one Keras already runs on here is
refused with BackendUnavailable naming both (`skipped: <reason>`), never run on the wrong engine.
Each Keras backend class names its engine in KERAS_ENGINE; `keras_engine` reads it (None for a
backend that is not Keras), so callers that plan processes (tests/conftest.py, parity) can keep
the engines apart.

Constraints: nothing here imports keras except `import_keras`, which a backend calls when it is
configured; `engine_conflict` and `keras_availability` only look (sys.modules, importlib.util),
so a backend's availability() never picks the process's engine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys

from backends.base import Availability, Backend
from harness.errors import BackendUnavailable

ENGINE_VARIABLE = "KERAS_BACKEND"


def keras_engine(cls: type[Backend]) -> str | None:
    """The Keras engine a backend class runs on, None for a backend that is not Keras."""
    return getattr(cls, "KERAS_ENGINE", None)


def loaded_engine() -> str | None:
    """The engine Keras runs on in this process, None while keras is not imported."""
    keras = sys.modules.get("keras")
    return None if keras is None else keras.backend.backend()


def engine_conflict(engine: str) -> str:
    """Why Keras on `engine` cannot run in this process ("" when it can)."""
    found = loaded_engine()
    if found is None or found == engine:
        return ""
    return (f"Keras is already loaded on the {found} engine in this process (Keras reads {ENGINE_VARIABLE} once, "
            f"at its first import); Keras on {engine} needs a process of its own")


def keras_availability(engine: str, framework: str, extra: str) -> Availability:
    """Whether Keras 3 and the engine's framework are installed and the engine is free here,
    without importing either (find_spec and the installed metadata only)."""
    if importlib.util.find_spec(framework) is None:
        return Availability(False, f"{framework} is not installed (pip install -e \".[{extra}]\")")
    if importlib.util.find_spec("keras") is None:
        return Availability(False, f"keras is not installed (pip install -e \".[{extra}]\")")
    version = importlib.metadata.version("keras")
    if not version.startswith("3."):
        return Availability(False, f"Keras 3 is required, found keras {version}")
    conflict = engine_conflict(engine)
    return Availability(not conflict, conflict)


def import_keras(engine: str):
    """keras, running on `engine`: imported with KERAS_BACKEND set to it, or already imported on
    it. BackendUnavailable when this process's Keras runs on another engine."""
    conflict = engine_conflict(engine)
    if conflict:
        raise BackendUnavailable(conflict)
    if "keras" not in sys.modules:
        os.environ[ENGINE_VARIABLE] = engine  # the backend names its engine: a caller's KERAS_BACKEND must not win
    import keras

    if keras.backend.backend() != engine:  # e.g. a keras older than KERAS_BACKEND
        raise BackendUnavailable(f"Keras runs on {keras.backend.backend()}, not {engine}, in this process")
    return keras
