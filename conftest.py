"""Session-wide backends for tests/ and benchmarks/ (one pytest process may run both).

Each framework is configured once, with one thread count (the cores available): TensorFlow's
thread pools cannot be resized after first use. torch is always configured before TensorFlow
(importing TensorFlow first has crashed). A backend that cannot be had here (framework missing,
no GPU for cuda) skips the test with the reason.

A process holds one Keras engine (backends/_keras_engine.py), so one pytest process tests the
backends of one engine: those named in HARNESS_TEST_BACKENDS (comma-separated), by default every
backend that is not Keras or is Keras on TensorFlow. Any other backend's tests are skipped here,
saying so; tests/test_keras_engines.py runs them in a pytest process of their own per engine.
"""

from __future__ import annotations

import os

import pytest

from backends import backend_class, backend_names, create_backend
from backends._keras_engine import keras_engine
from harness.cli.arguments import DEFAULT_THREADS as THREADS
from harness.errors import HarnessInputError

SELECTION_VARIABLE = "HARNESS_TEST_BACKENDS"
DEFAULT_KERAS_ENGINE = "tensorflow"


def selected_backends() -> tuple[str, ...]:
    """The backends this pytest process tests (HARNESS_TEST_BACKENDS, or the default: see above)."""
    value = os.environ.get(SELECTION_VARIABLE, "")
    if not value:
        return tuple(name for name in backend_names()
                     if keras_engine(backend_class(name)) in (None, DEFAULT_KERAS_ENGINE))
    names = tuple(name.strip() for name in value.split(","))
    unknown = [name for name in names if name not in backend_names()]
    if unknown:
        raise pytest.UsageError(f"{SELECTION_VARIABLE}: {', '.join(unknown)} is not a backend "
                                f"({', '.join(backend_names())})")
    return names


@pytest.fixture(scope="session")
def backend_factory():
    made: dict[tuple[str, str], object] = {}
    selected = [name for name in backend_names() if name in selected_backends()]

    def get(name: str, device: str = "cpu"):
        if name not in selected:
            engine = keras_engine(backend_class(name))
            pytest.skip(f"skipped: {name} is not tested in this process ({SELECTION_VARIABLE}: "
                        f"{', '.join(selected)}); Keras on {engine} needs a process of its own: "
                        f"tests/test_keras_engines.py runs its tests with {SELECTION_VARIABLE}={name}")
        for earlier in selected[: selected.index(name) + 1]:
            if (earlier, device) not in made:
                try:
                    made[(earlier, device)] = create_backend(earlier, device=device, threads=THREADS)
                except HarnessInputError as exc:
                    made[(earlier, device)] = str(exc)
        backend = made[(name, device)]
        if isinstance(backend, str):
            pytest.skip(f"skipped: {backend}")
        return backend

    return get
