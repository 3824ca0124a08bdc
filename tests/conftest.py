"""`backend`: a test parametrised over every backend (backend_factory: the root conftest.py, which
skips a backend this process does not test, e.g. Keras on another engine than this process's)."""

from __future__ import annotations

import pytest

from backends import backend_names


@pytest.fixture(params=backend_names())
def backend(request, backend_factory):
    return backend_factory(request.param)
