"""What XLA does in a JAX process, for the JAX backends (backends/jax_backend.py, keras_jax_backend.py):
the size of its CPU client's intra-op thread pool, and counts of what one training step executes (its jaxpr, and
the optimized HLO module XLA compiles from it).

Thread pool (jaxlib 0.10, xla/pjrt/utils.cc DefaultThreadPoolSize): the CPU client, created on
first use of jax (not at import), sizes its pool from the environment variable PJRT_NPROC, then
NPROC, else the schedulable cores; its threads are named "tf_XLAEigen". XLA_FLAGS has no thread
count: `--intra_op_parallelism_threads` is a TensorFlow option (XLA aborts the process on it:
"Unknown flag in XLA_FLAGS"), and `--xla_cpu_multi_thread_eigen=false` leaves the pool's size
as it is (it makes Eigen's own kernels single-threaded).
Constraints: jax is never imported here; these functions read /proc, the environment, jaxprs and
HLO text that the backend hands them.
"""

from __future__ import annotations

import os
import re

from backends.base import GraphCount

_HLO_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*[^=]*?\s([a-z][\w\-]*)\(", re.MULTILINE)
_POOL_THREAD_NAME = "tf_XLAEigen"  # how XLA's CPU client names its intra-op pool's threads


def pool_threads() -> int | None:
    """Threads of XLA's intra-op pool alive in this process (Linux /proc: 0 before the client
    exists), None where the OS does not say."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return None
    count = 0
    for task in os.listdir(tasks):
        try:
            with open(f"{tasks}/{task}/comm") as comm:
                count += comm.read().strip() == _POOL_THREAD_NAME
        except OSError:  # a thread that ended meanwhile
            continue
    return count


def default_pool_size() -> int:
    """What XLA's DefaultThreadPoolSize() reads: PJRT_NPROC, then NPROC, else the schedulable cores."""
    for variable in ("PJRT_NPROC", "NPROC"):
        value = os.environ.get(variable, "")
        if value.strip().isdigit():
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_settings() -> dict[str, object]:
    """The XLA CPU thread settings a JAX-engine backend reports in settings()."""
    return {
        "intra_op_threads": pool_threads() or default_pool_size(),  # XLA's tf_XLAEigen pool
        "pjrt_nproc": os.environ.get("PJRT_NPROC", "unset"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "x64": "off globally; float64 models run in jax.enable_x64(True)",
    }


def configure_pool(threads: int, client_exists: bool) -> None:
    """Size XLA's CPU intra-op pool: PJRT_NPROC while the CPU client does not exist yet
    (`client_exists`: jax._src.xla_bridge.backends_are_initialized()); once it exists its size is
    fixed, and another count is refused (RuntimeError), as the tensorflow backend refuses."""
    if not client_exists:
        os.environ["PJRT_NPROC"] = str(threads)
        return
    running = pool_threads() or default_pool_size()
    if running != threads:
        raise RuntimeError(f"JAX was already initialized in this process with {running} intra-op threads, "
                           f"not {threads}")


def _graph(name: str, ops: dict[str, int]) -> GraphCount:
    return GraphCount(name, sum(ops.values()), dict(sorted(ops.items())))


def count_jaxpr(jaxpr) -> GraphCount:
    """A jaxpr's top-level equations: what an eager step dispatches one by one (a nested jit, such
    as a jnp function that is itself jitted, is one call)."""
    ops: dict[str, int] = {}
    for eqn in jaxpr.eqns:
        ops[eqn.primitive.name] = ops.get(eqn.primitive.name, 0) + 1
    return _graph("jaxpr", ops)


def _inlined(jaxpr, ops: dict[str, int]) -> dict[str, int]:
    for eqn in jaxpr.eqns:
        subs = [getattr(item, "jaxpr", item) for value in eqn.params.values()
                for item in (value if isinstance(value, (tuple, list)) else (value,))
                if hasattr(getattr(item, "jaxpr", item), "eqns")]  # a Jaxpr, or a ClosedJaxpr's
        for sub in subs:
            _inlined(sub, ops)
        if not subs:
            ops[eqn.primitive.name] = ops.get(eqn.primitive.name, 0) + 1
    return ops


def count_jaxpr_inlined(jaxpr) -> GraphCount:
    """A jaxpr's equations with every nested jaxpr (pjit, custom_jvp_call, ...) inlined: what jit
    hands XLA, before XLA's own simplification and fusion."""
    return _graph("jaxpr_inlined", _inlined(jaxpr, {}))


def count_hlo(text: str) -> GraphCount:
    """Instructions by opcode of an optimized HLO module's text (`%name = shape opcode(...)`), in
    every computation, fused ones included; parameters and constants are not work."""
    ops: dict[str, int] = {}
    for opcode in _HLO_INSTRUCTION.findall(text):
        if opcode not in ("parameter", "constant"):
            ops[opcode] = ops.get(opcode, 0) + 1
    return _graph("xla_hlo", ops)
