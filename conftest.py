"""Session-wide backends for tests/ and benchmarks/ (one pytest process may run both).

Each framework is configured once, with one thread count (the cores available): TensorFlow's
thread pools cannot be resized after first use. torch is always configured before TensorFlow
(importing TensorFlow first has crashed). A backend that cannot be had here (framework missing,
no GPU for cuda) skips the test with the reason.
"""

from __future__ import annotations

import pytest

from backends import backend_names, create_backend
from harness.cli.arguments import DEFAULT_THREADS as THREADS
from harness.errors import HarnessInputError


@pytest.fixture(scope="session")
def backend_factory():
    made: dict[tuple[str, str], object] = {}

    def get(name: str, device: str = "cpu"):
        names = backend_names()
        for earlier in names[: names.index(name) + 1]:
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
