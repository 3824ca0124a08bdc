"""Bad specs are refused quickly, before anything is allocated: the memory estimate of a model
(harness/model/resources.py) and the spec file guards (harness/model/spec.py: load_spec).

Expected sizes are computed here from the layer formulas, not read back from harness.model.resources.
Nothing here allocates in proportion to a spec; a spec file that could block or run away is read
in a child process with a time limit and an address-space limit.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import harness.model.resources as resources
from harness.errors import HarnessInputError
from harness.model.layers import Conv2D, Dense, Flatten
from harness.model.resources import MemoryEstimate, available_memory_bytes, check_fits, estimate_memory, format_bytes
from harness.model.spec import PRESETS, ModelSpec, Optimizer, load_spec

GB = 10**9
F32 = 4
INT64 = 8
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def dense_spec(features: int, hidden: int, batch_size: int = 32) -> ModelSpec:
    return ModelSpec("big", (features,), 10, (Dense(hidden, activation="relu"), Dense(10)),
                     Optimizer("sgd", 0.01, 0.9), batch_size=batch_size)


def refusal(spec: ModelSpec, source: str, **kwargs) -> tuple[str, float]:
    """check_fits's message for a spec it must refuse, and how long refusing took."""
    start = time.perf_counter()
    with pytest.raises(HarnessInputError) as info:
        check_fits(spec, source, **kwargs)
    return str(info.value), time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# The estimate, by hand

MLP_PARAMS = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
MLP_OUTPUTS = 512 + 512 + 256 + 256 + 10  # dense, dropout, dense, dropout, dense (per example)


def test_mlp_parameter_count_by_hand():
    assert MLP_PARAMS == 535_818


def test_mlp_estimate_by_hand():
    spec = PRESETS["mlp"]  # SGD with momentum 0.9, batch 32
    batch = spec.batch_size
    estimate = estimate_memory(spec)
    assert estimate.parameters == MLP_PARAMS * F32
    assert estimate.gradients == MLP_PARAMS * F32
    assert estimate.optimizer_state == MLP_PARAMS * F32  # one momentum buffer
    assert estimate.activations == 2 * MLP_OUTPUTS * batch * F32  # each output kept, and its gradient
    assert estimate.batch == batch * 784 * F32 + batch * INT64
    assert estimate.total == 3 * MLP_PARAMS * F32 + 2 * MLP_OUTPUTS * batch * F32 + batch * (784 * F32 + INT64)
    first = (784 * 512 + 512) * 3 * F32 + 2 * 512 * batch * F32  # weights, gradients, momentum; output
    assert (estimate.largest_layer_index, estimate.largest_layer_type, estimate.largest_layer_bytes) == (
        0, "dense", first)


def test_cnn_estimate_by_hand():
    spec = PRESETS["cnn"]
    batch = spec.batch_size
    conv1, conv2 = 3 * 3 * 1 * 32 + 32, 3 * 3 * 32 * 64 + 64
    dense1, dense2 = 5 * 5 * 64 * 128 + 128, 128 * 10 + 10
    params = conv1 + conv2 + dense1 + dense2
    # conv, pool, dropout, conv, pool, dropout, flatten, dense, dropout, dense
    outputs = (26 * 26 * 32 + 2 * 13 * 13 * 32 + 11 * 11 * 64 + 3 * 5 * 5 * 64 + 2 * 128 + 10)
    estimate = estimate_memory(spec)
    assert estimate.parameters == estimate.gradients == estimate.optimizer_state == params * F32
    assert estimate.activations == 2 * outputs * batch * F32
    assert estimate.total == 3 * params * F32 + 2 * outputs * batch * F32 + batch * (28 * 28 * F32 + INT64)
    assert (estimate.largest_layer_index, estimate.largest_layer_type, estimate.largest_layer_bytes) == (
        0, "conv2d", conv1 * 3 * F32 + 2 * 26 * 26 * 32 * batch * F32)


@pytest.mark.parametrize("optimizer, buffers", [
    (Optimizer("sgd", 0.01, momentum=0.9), 1),
    (Optimizer("sgd", 0.01, momentum=0.0), 0),
    (Optimizer("adam", 0.001), 2),
])
def test_optimizer_state_buffers(optimizer, buffers):
    estimate = estimate_memory(replace(PRESETS["mlp"], optimizer=optimizer))
    assert estimate.optimizer_state == buffers * MLP_PARAMS * F32


def test_dtype_bytes_scales_the_floats_not_the_labels():
    spec = PRESETS["mlp"]
    single, double = estimate_memory(spec, dtype_bytes=4), estimate_memory(spec, dtype_bytes=8)
    assert double.parameters == 2 * single.parameters and double.activations == 2 * single.activations
    assert double.batch == spec.batch_size * (784 * 8 + INT64)


def test_estimate_is_frozen():
    with pytest.raises(AttributeError):
        estimate_memory(PRESETS["mlp"]).parameters = 0  # type: ignore[misc]
    assert isinstance(estimate_memory(PRESETS["cnn"]), MemoryEstimate)


def test_absurd_shapes_are_estimated_instantly_and_exactly():
    features = 10**400  # a Python int: no overflow, no float
    spec = dense_spec(features, 10**300)
    start = time.perf_counter()
    estimate = estimate_memory(spec)
    assert time.perf_counter() - start < 0.5
    assert estimate.parameters == (features * 10**300 + 10**300 + 10**300 * 10 + 10) * F32


def test_conv_on_a_huge_image():
    spec = ModelSpec("image", (20000, 20000, 3), 10, (Conv2D(32, (3, 3), padding="same"), Flatten(), Dense(10)),
                     Optimizer("sgd", 0.01), batch_size=32)
    estimate = estimate_memory(spec)
    assert estimate.batch == 32 * (20000 * 20000 * 3 * F32 + INT64)
    assert estimate.largest_layer_index in (0, 1)  # the conv's output, or the flatten of it (same size)


# ---------------------------------------------------------------------------------------------
# Refusing what does not fit


def test_huge_dense_layer_is_refused_naming_the_layer():
    spec = dense_spec(50000, 50000)
    msg, seconds = refusal(spec, "big.json", available=16 * GB)
    assert seconds < 0.5
    weights = (50000 * 50000 + 50000) * F32
    assert msg.startswith("big.json: needs about ")
    for part in ("parameters", "gradients", "optimizer state", "activations", "layers[0] (dense)",
                 format_bytes(weights), format_bytes(8 * GB), format_bytes(16 * GB)):
        assert part in msg, (part, msg)
    assert "\n" not in msg


def test_huge_batch_is_refused_naming_the_batch():
    spec = replace(PRESETS["mlp"], batch_size=10**9)
    msg, seconds = refusal(spec, "--model mlp", available=16 * GB)
    assert seconds < 0.5
    assert msg.startswith("--model mlp: ") and "batch_size 1000000000" in msg
    assert format_bytes(2 * MLP_OUTPUTS * 10**9 * F32) in msg  # the activations


def test_absurd_shapes_are_refused_instantly():
    spec = dense_spec(10**400, 10**300)
    msg, seconds = refusal(spec, "absurd.json", models=4, available=16 * GB)
    assert seconds < 0.5
    assert "absurd.json" in msg and "layers[0] (dense)" in msg and "4 model copies" in msg


def test_models_multiplies_the_estimate():
    spec = PRESETS["cnn"]
    total = estimate_memory(spec).total
    check_fits(spec, "cnn", models=4, available=8 * total)  # 4 copies use exactly half
    msg, _ = refusal(spec, "cnn", models=4, available=8 * total - 2)
    assert "4 model copies" in msg


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_fit_in_1_gb(name):
    spec = PRESETS[name]
    assert 4 * estimate_memory(spec).total < GB // 10  # parity's four copies: tens of MB
    assert check_fits(spec, f"--model {name}", models=4, available=GB) == estimate_memory(spec)


def test_nothing_is_refused_where_memory_is_unknown(monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: None)
    check_fits(dense_spec(50000, 50000), "big.json")


def test_importing_resources_imports_no_framework():
    code = "import sys, harness.model.resources; print(sorted({'torch', 'tensorflow', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


def test_format_bytes():
    assert format_bytes(512) == "512 bytes"
    assert format_bytes(41 * GB) == "41.0 GB"
    assert format_bytes(1536 * 10**6) == "1.5 GB"
    assert format_bytes(3 * 10**21) == "3000.0 EB"
    assert format_bytes(4 * 10**700) == "10^700 bytes"


# ---------------------------------------------------------------------------------------------
# What this process may use


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_available_memory_is_positive_and_at_most_physical():
    available = available_memory_bytes()
    assert available is not None and 0 < available <= physical_memory()


def fake_kernel(monkeypatch, tmp_path: Path, cgroup: str, limits: dict[str, str], mem_available_kb: int) -> None:
    """/proc/meminfo, /proc/self/cgroup and cgroup limit files under tmp_path."""
    (tmp_path / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable:   {mem_available_kb} kB\n")
    (tmp_path / "cgroup").write_text(cgroup)
    for relative, value in limits.items():
        (tmp_path / "fs" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / relative).write_text(value + "\n")
    monkeypatch.setattr(resources, "_MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(resources, "_PROC_CGROUP", tmp_path / "cgroup")
    monkeypatch.setattr(resources, "_CGROUP_MOUNT", tmp_path / "fs")


def test_available_memory_without_a_cgroup_limit_is_mem_available(monkeypatch, tmp_path):
    fake_kernel(monkeypatch, tmp_path, "0::/a\n", {"a/memory.max": "max"}, 1024)
    assert available_memory_bytes() == 1024 * 1024


def test_cgroup_v2_limit_of_an_ancestor_counts(monkeypatch, tmp_path):
    fake_kernel(monkeypatch, tmp_path, "0::/a/b\n", {"a/b/memory.max": "max", "a/memory.max": "5000000"}, 10**6)
    assert available_memory_bytes() == 5_000_000


def test_cgroup_v1_limit(monkeypatch, tmp_path):
    fake_kernel(monkeypatch, tmp_path, "5:cpu,cpuacct:/x\n4:memory:/x\n0::/\n",
                {"memory/x/memory.limit_in_bytes": "3000000", "memory/memory.limit_in_bytes": "9223372036854771712"},
                10**6)
    assert available_memory_bytes() == 3_000_000


def test_unreadable_kernel_files_fall_back_to_physical_memory(monkeypatch, tmp_path):
    fake_kernel(monkeypatch, tmp_path, "garbage without colons\n4:memory\n", {}, 0)
    (tmp_path / "meminfo").write_bytes(b"\xff\xfe not text")
    assert available_memory_bytes() == physical_memory()


# ---------------------------------------------------------------------------------------------
# Spec files that are not regular files of a sane size

CHILD = """
import sys
from harness.errors import HarnessInputError
from harness.model.spec import load_spec
try:
    load_spec(sys.argv[1])
except HarnessInputError as exc:
    print(exc)
    sys.exit(2)
"""
CHILD_MEMORY = 512 * 1024 * 1024  # address space: a spec that runs away fails the test, not the machine


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def load_in_child(path: str) -> str:
    """load_spec(path) in a child process that may take 5 s and 512 MiB; its one-line error."""
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, path], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=5, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_spec({path!r}) did not return within 5 s")
    assert done.returncode == 2, done.stderr
    return done.stdout.strip()


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    msg = load_in_child(str(fifo))
    assert str(fifo) in msg and "FIFO" in msg and "\n" not in msg


def test_dev_zero_is_refused():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    msg = load_in_child("/dev/zero")
    assert "/dev/zero" in msg and "character device" in msg


def test_directory_is_refused(tmp_path):
    folder = tmp_path / "specs.json"
    folder.mkdir()
    with pytest.raises(HarnessInputError, match="is a directory") as info:
        load_spec(folder)
    assert str(folder) in str(info.value)


def test_file_over_the_size_limit_is_refused(tmp_path):
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (2 * 1024 * 1024))
    with pytest.raises(HarnessInputError, match="1 MiB") as info:
        load_spec(path)
    assert str(path) in str(info.value) and str(2 * 1024 * 1024) in str(info.value)


def test_file_at_the_size_limit_is_read(tmp_path):
    source = PROJECT_ROOT / "tests" / "specs" / "issue_example.json"
    text = source.read_text(encoding="utf-8")
    path = tmp_path / "issue_example.json"
    path.write_text(text + " " * (1024 * 1024 - len(text.encode("utf-8"))), encoding="utf-8")
    assert path.stat().st_size == 1024 * 1024
    assert load_spec(path) == load_spec(source)


def test_symlink_to_a_spec_file_is_followed(tmp_path):
    target = PROJECT_ROOT / "tests" / "specs" / "issue_example.json"
    link = tmp_path / "issue_example.json"
    link.symlink_to(target)
    assert load_spec(link) == load_spec(target)
