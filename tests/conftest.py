"""Shared fixtures: configured backends (torch first, threads fixed before first use) and
TF32 off; a backend whose framework is missing is skipped with the reason."""

from __future__ import annotations

import pytest

from backends import BACKEND_NAMES, backend_class


@pytest.fixture(scope="session")
def backend_factory():
    made = {}

    def get(name: str):
        if name not in made:
            # torch is always configured before TensorFlow (import order matters)
            for earlier in BACKEND_NAMES[: BACKEND_NAMES.index(name) + 1]:
                if earlier in made:
                    continue
                availability = backend_class(earlier).availability()
                made[earlier] = backend_class(earlier)(threads=2) if availability.ok else availability.reason
        if isinstance(made[name], str):
            pytest.skip(f"skipped: {name}: {made[name]}")
        return made[name]

    return get


@pytest.fixture(params=BACKEND_NAMES)
def backend(request, backend_factory):
    return backend_factory(request.param)
