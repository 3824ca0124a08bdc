"""environment.json: machine, software and project state, collected without importing a framework."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest

from backends import registry
from harness.results import environment
from harness.results.environment import ENV_FLAGS, collect_environment, write_environment
from harness.results.records import SCHEMA_VERSION


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def test_machine_and_software_facts():
    env = collect_environment(threads=2)

    assert env["schema"] == SCHEMA_VERSION
    assert datetime.fromisoformat(env["date"]).utcoffset().total_seconds() == 0
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["logical_cores"] == os.cpu_count()
    assert 1 <= env["available_cores"] <= env["logical_cores"]
    assert env["memory_total_bytes"] > 2**20
    assert isinstance(env["cpu_model"], str)
    assert env["threads"] == 2
    # Every backend's DISTRIBUTIONS (backends/base.py), those installed here, once each.
    names = dict.fromkeys(name for cls in registry().values() for name in cls.DISTRIBUTIONS)
    assert {"torch", "tensorflow", "keras", "jax", "optax"} <= set(names)
    expected = {name: installed(name) for name in names}
    assert env["frameworks"] == {name: version for name, version in expected.items() if version}


def test_cpu_model_comes_from_proc_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "model name" not in cpuinfo.read_text():
        pytest.skip("no model name in /proc/cpuinfo here")
    first = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("model name"))

    assert collect_environment()["cpu_model"] == first.split(":", 1)[1].strip()


def test_collecting_does_not_import_the_frameworks():
    code = ("import sys; from harness.results.environment import collect_environment; collect_environment(); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    root = Path(environment.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(root)}).stdout

    assert out.strip() == "[]"


def test_env_flags_are_recorded_and_unset_ones_are_none(monkeypatch):
    for name in ENV_FLAGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")

    flags = collect_environment()["env"]

    assert flags == {name: None for name in ENV_FLAGS} | {"OMP_NUM_THREADS": "2",
                                                          "TF_ENABLE_ONEDNN_OPTS": "0"}


def test_gpus_are_read_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 550.54.15'\n"
                    "echo 'NVIDIA A100-SXM4-40GB, 550.54.15'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert collect_environment()["gpu"] == [
        {"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15"},
        {"name": "NVIDIA A100-SXM4-40GB", "driver_version": "550.54.15"}]


def test_no_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    assert collect_environment()["gpu"] is None


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert collect_environment()["gpu"] is None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_and_dirty_state(tmp_path, monkeypatch):
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "a.txt").write_text("one\n")
    git("add", "a.txt", cwd=tmp_path)
    git("commit", "-q", "-m", "first", cwd=tmp_path)
    monkeypatch.setattr(environment, "PROJECT_ROOT", tmp_path)

    clean = collect_environment()["git"]
    (tmp_path / "a.txt").write_text("two\n")
    dirty = collect_environment()["git"]

    assert clean == {"commit": git("rev-parse", "HEAD", cwd=tmp_path).strip(), "dirty": False}
    assert dirty["dirty"] is True


def test_outside_a_git_checkout_git_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setattr(environment, "PROJECT_ROOT", tmp_path)

    assert collect_environment()["git"] is None


def test_write_environment_writes_indented_json(tmp_path):
    path = write_environment(tmp_path, 4)

    text = path.read_text()
    assert path == tmp_path / "environment.json"
    assert text.startswith('{\n  "schema": ')
    written = json.loads(text)
    assert written["threads"] == 4
    assert set(written) == set(collect_environment(4))
