"""The backend registry: a backend is one module under backends/, and nothing else names it.

A test-only backend module (a subclass of the torch backend named `torch2`) is put in a folder
named by HARNESS_BACKEND_PATH (the registry searches it as part of the package, and timing's
worker processes inherit it), as if it were a new file in backends/; then `time` and
`inspect` run through it, and suites, parity and the CLI offer it, with no other file edited.
"""

from __future__ import annotations

import json

import pytest

import backends
from backends import REFERENCE, backend_class, backend_names, parity_partners, registry
from harness.cli.main import main
from harness.suite.planning import RunRequest, plan_cases
from harness.suite.suites import SUITES

TORCH2_MODULE = '''"""A second torch backend under another name (test only)."""

from backends.torch_backend import TorchBackend


class Torch2Backend(TorchBackend):
    name = "torch2"
'''


@pytest.fixture
def torch2(tmp_path, monkeypatch, backend_factory):
    backend_factory("torch")  # torch configured first, with the session's threads
    (tmp_path / "torch2_backend.py").write_text(TORCH2_MODULE)
    monkeypatch.setattr(backends, "__path__", list(backends.__path__))  # restored after the test
    monkeypatch.setenv(backends.BACKEND_PATH_VARIABLE, str(tmp_path))
    registry.cache_clear()
    yield
    monkeypatch.undo()
    registry.cache_clear()


def test_the_shipped_backends_in_creation_order():
    assert backend_names()[:2] == ("torch", "tensorflow")
    assert REFERENCE == "torch" and "tensorflow" in parity_partners()


def test_a_new_backend_module_is_discovered(torch2):
    assert "torch2" in backend_names()
    assert backend_class("torch2").MODES == ("eager", "compiled")
    assert "torch2" in parity_partners()


def test_time_runs_through_a_new_backend(torch2, tmp_path, capsys):
    out = tmp_path / "t.json"
    code = main(["time", "--backend", "torch2", "--variant", "dropout=absent", "--variant", "dropout=0",
                 "--rounds", "3", "--steps", "1", "--warmup", "0", "--instances", "1", "--max-processes", "1",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    records = json.loads(out.read_text())
    assert {r["backend"] for r in records} == {"torch2"}
    assert [r["arm"] for r in records if r["kind"] == "timing"] == ["dropout=absent/eager", "dropout=0/eager"]


def test_inspect_runs_through_a_new_backend(torch2, tmp_path, capsys):
    out = tmp_path / "i.json"
    assert main(["inspect", "--backend", "torch2", "--variant", "dropout=0", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert {r["backend"] for r in records} == {"torch2"}
    assert {r["graph"] for r in records} == {"autograd", "dynamo", "aot_forward", "aot_backward"}


def test_run_plans_a_new_backends_cases_and_its_parity(torch2):
    suite = SUITES["quick"]
    request = RunRequest(suite=suite, backends=("torch", "torch2"), models=("mlp",), variants=suite.timing_variants,
                         devices=("cpu",), modes=suite.modes)
    ids = [case.case_id for case in plan_cases(request)]
    assert ids == ["parity/torch2/mlp", "time/torch/mlp/cpu/eager", "inspect/torch/mlp",
                   "time/torch2/mlp/cpu/eager", "inspect/torch2/mlp"]


def test_a_backend_module_with_two_backends_is_refused(tmp_path, monkeypatch):
    (tmp_path / "twin_backend.py").write_text(
        TORCH2_MODULE + "\n\nclass Torch3Backend(TorchBackend):\n    name = 'torch3'\n")
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    registry.cache_clear()
    try:
        with pytest.raises(TypeError, match="exactly one Backend subclass"):
            registry()
    finally:
        monkeypatch.undo()
        registry.cache_clear()
