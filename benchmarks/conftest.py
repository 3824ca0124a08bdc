"""pytest-benchmark wiring: the --suite option, benchmark order, and machine info.

pytest-benchmark times everything in this one process, so both frameworks live in it when both
are selected. Their thread counts are set once, before first use (backend_factory in the root
conftest.py), and benchmarks are ordered so all of one framework run before the other.
For strictly one framework per process, select one: `-k torch` or `-k tensorflow`
(`python -m harness time/run` always isolate frameworks).
"""

from __future__ import annotations

from harness.cli.arguments import DEFAULT_THREADS


def pytest_addoption(parser):
    parser.addoption("--suite", choices=["quick", "default", "full"], default="quick",
                     help="benchmark matrix size (harness/suite/suites.py): quick <= 3 min on 2 cores")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: 0 if "[torch" in item.name else 1)


def pytest_benchmark_update_machine_info(config, machine_info):
    from harness.results.environment import collect_environment

    machine_info["harness_environment"] = collect_environment(DEFAULT_THREADS)
