"""`backend`: a test parametrised over every backend (backend_factory: the root conftest.py)."""

from __future__ import annotations

import pytest

from backends import BACKEND_NAMES


@pytest.fixture(params=BACKEND_NAMES)
def backend(request, backend_factory):
    return backend_factory(request.param)
