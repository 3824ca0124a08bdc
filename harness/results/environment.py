"""What machine and software produced a run's results, written next to them as environment.json.

Framework versions come from the installed package metadata of each registered backend's
DISTRIBUTIONS (backends/__init__.py): this runs in the orchestrating process, which must not
import torch or TensorFlow (importing them starts thread pools that would compete with the cases
being timed).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from backends import registry
from harness.model.resources import physical_memory_bytes
from harness.results.records import SCHEMA_VERSION

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_FILE = "environment.json"
ENV_FLAGS = ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL")
COMMAND_TIMEOUT_S = 10


def collect_environment(threads: int | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "available_cores": available_cores(),
        "memory_total_bytes": physical_memory_bytes(),
        "frameworks": _framework_versions(),
        "gpu": _gpus(),
        "env": {name: os.environ.get(name) for name in ENV_FLAGS},
        "threads": threads,
        "git": _git_state(PROJECT_ROOT),
    }


def machine_label(machine: Mapping[str, Any]) -> str:
    """A short name for where a case ran: the host, and the Ray node where there is one (two
    nodes of a test cluster share a host)."""
    host = str(machine.get("host") or "unknown host")
    node = str(machine.get("ray_node_id") or "")
    return f"{host}/{node[:8]}" if node else host


def machine_identity(ray_node_id: str = "") -> dict[str, Any]:
    """What every case record says about the machine it ran on: enough to tell machines apart in
    a merged report and to know what each one was (harness/report/machines.py)."""
    return {
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "cores": available_cores(),
        "gpu": ", ".join(g["name"] for g in _gpus() or []),
        "frameworks": _framework_versions(),
        "ray_node_id": ray_node_id,
    }


def write_environment(run_dir: Path, threads: int | None = None) -> Path:
    path = Path(run_dir) / ENVIRONMENT_FILE
    path.write_text(json.dumps(collect_environment(threads), indent=2) + "\n", encoding="utf-8")
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor()


def available_cores() -> int | None:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _framework_versions() -> dict[str, str]:
    """{distribution: version} of every installed distribution a backend names."""
    versions = {}
    for backend in registry().values():
        for name in backend.DISTRIBUTIONS:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return versions


def _output(argv: list[str], cwd: Path | None = None) -> str | None:
    """stdout of a short command, or None if it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def _gpus() -> list[dict[str, str]] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = _output(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if out is None:
        return None
    gpus = []
    for line in out.splitlines():
        if line.strip():
            name, _, driver = line.rpartition(",")
            gpus.append({"name": name.strip(), "driver_version": driver.strip()})
    return gpus


def _git_state(root: Path) -> dict[str, Any] | None:
    commit = _output(["git", "rev-parse", "HEAD"], cwd=root)
    if commit is None:
        return None
    # --no-optional-locks: do not take index.lock, which would race a concurrent commit.
    status = _output(["git", "--no-optional-locks", "status", "--porcelain"], cwd=root)
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}
