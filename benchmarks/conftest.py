"""pytest-benchmark wiring: the --suite option, thread settings, and machine info.

pytest-benchmark times everything in this one process, so both frameworks live in it when both
are selected. Their thread counts are set before first use (torch first: importing TensorFlow
before torch has crashed), and benchmarks are ordered so all of one framework run before the
other. For strictly one framework per process, select one: `-k torch` or `-k tensorflow`
(`python -m harness time/run` always isolate frameworks).
"""

from __future__ import annotations

import os

import pytest

THREADS = len(os.sched_getaffinity(0))


def pytest_addoption(parser):
    parser.addoption("--suite", choices=["quick", "default", "full"], default="quick",
                     help="benchmark matrix size (harness/suites.py): quick <= 3 min on 2 cores")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: 0 if "[torch" in item.name else 1)


@pytest.fixture(scope="session")
def backends_by_name():
    from backends import create_backend
    from harness.errors import HarnessInputError

    made = {}

    def get(name: str, device: str = "cpu"):
        key = (name, device)
        if key not in made:
            try:
                made[key] = create_backend(name, device=device, threads=THREADS)
            except HarnessInputError as exc:  # framework missing, or no GPU for cuda
                pytest.skip(f"skipped: {exc}")
        return made[key]

    return get


def pytest_benchmark_update_machine_info(config, machine_info):
    from harness.environment import collect_environment

    machine_info["harness_environment"] = collect_environment(THREADS)
