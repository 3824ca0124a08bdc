"""`--executor ray`: each case of a run is a Ray task on a cluster; results stream back to the driver.

Only this module imports Ray, and only when --executor ray is asked for (the `ray` extra). The
driver (harness/running/runner.py) stays the one writer of the run folder: each task runs its case
with harness/running/process.py on the node it landed on and returns the CaseOutcome, log included;
the driver appends it to results.jsonl as the local executor's cases are (fsync per case, under
the run folder's lock, --resume skips finished cases), so nothing is recorded twice.

Placement. Every node that runs cases declares one unit of the custom resource NODE_RESOURCE
(`ray start ... --resources '{"harness_node": 1}'`). A timing case (Case.exclusive) asks for the
whole unit, every other case for PACKED_SHARE of it and one CPU: so a timing case never shares its
node with another case of any kind, while parity, inspection and study cases pack onto free
CPUs. Thread counts: the run's --threads where given; otherwise a timing case uses every core of
its node, a packed case the one CPU it reserved.

Failures. A task whose worker or node dies is retried once by Ray (max_retries=1); Ray places the
retry wherever the resources are, which after a node's death is another node. A case that still
has no outcome is recorded as failed with Ray's reason. A case that fails on its own (exit code,
timeout) is not retried: that is its result. Ctrl-C (or SIGTERM) cancels every pending task,
force-killing the running ones (their case processes die with them: harness/running/parent_death.py);
the cases that finished are kept.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessInputError
from harness.results.environment import available_cores, machine_identity
from harness.results.records import CaseRecord
from harness.running.case import CaseOutcome
from harness.running.process import execute_case
from harness.running.runner import LOGS_DIR, log_name
from harness.running.worker import launch

NODE_RESOURCE = "harness_node"
PACKED_SHARE = 0.001  # a packed case's share of NODE_RESOURCE: a timing case cannot start beside it
RETRIES = 1  # Ray's max_retries: a case whose worker or node died runs once more
PROBE_TIMEOUT_S = 8.0  # a reachable cluster answers the probe in 2-3 s (Ray's import included)
PROBE = ("import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
         "ray.shutdown()")


def _run_on_node(case, env: Mapping[str, str], threads: int | None, driver_python: str) -> CaseOutcome:
    """The Ray task: run `case` on this node, in a temporary folder, and return its outcome."""
    import ray

    node_threads = threads or (available_cores() or 1 if case.exclusive else 1)
    machine = machine_identity(ray.get_runtime_context().get_node_id())
    with tempfile.TemporaryDirectory(prefix="harness-case-") as tmp:
        log_path = Path(tmp) / "case.log"
        outcome = execute_case(case, Path(tmp), log_path, {**os.environ, **env}, node_threads, machine,
                               python=sys.executable if case.argv and case.argv[0] == driver_python else None)
        log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    return dataclasses.replace(outcome, log=log)


class RayExecutor:
    """Runs cases as Ray tasks on the cluster at `address` ("auto": the one this machine is in)."""

    name = "ray"

    def __init__(self, address: str, threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise HarnessInputError("--executor ray: Ray is not installed here; install the extra with "
                                    "pip install -c constraints-cpu.txt -e \".[ray]\"") from None
        self.ray, self.address, self.threads = ray, address, threads

    def connect(self) -> None:
        """Join the cluster and check it can place cases; a HarnessInputError naming --ray-address
        otherwise. The run calls this before its folder is created; it is a no-op once connected."""
        ray = self.ray
        if ray.is_initialized():
            return
        _check_reachable(self.address)
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise HarnessInputError(f"--ray-address {self.address}: no Ray cluster could be reached there "
                                    f"({str(exc).splitlines()[0][:200]}); start one with `ray start --head` "
                                    "(README: Running on a Ray cluster)") from None
        if ray.cluster_resources().get(NODE_RESOURCE, 0) < 1:
            ray.shutdown()
            raise HarnessInputError(f"--ray-address {self.address}: no node of this cluster declares the "
                                    f"{NODE_RESOURCE!r} resource, so no case could be placed; start each node with "
                                    f"`ray start ... --resources '{{\"{NODE_RESOURCE}\": 1}}'`")

    def _warn_shared_hosts(self, cases: Sequence) -> None:
        ray = self.ray
        hosts = [n["NodeManagerAddress"] for n in ray.nodes()
                 if n.get("Alive") and n.get("Resources", {}).get(NODE_RESOURCE, 0) >= 1]
        shared = sorted({h for h in hosts if hosts.count(h) > 1})
        if shared and any(case.exclusive for case in cases):
            print(f"warning: {', '.join(shared)} runs more than one node with {NODE_RESOURCE}: timing cases on those "
                  "nodes share one machine and can run at the same time (fine for a test cluster, not for "
                  "measurements)", file=sys.stderr)

    def outcomes(self, cases: Sequence, run_dir: Path, env: Mapping[str, str],
                 started: Callable) -> Iterator[tuple[object, CaseOutcome]]:
        if not cases:
            return
        self.connect()
        self._warn_shared_hosts(cases)
        ray = self.ray
        task = ray.remote(_run_on_node)
        pending: dict = {}
        try:
            for case in cases:
                share = 1.0 if case.exclusive else PACKED_SHARE
                ref = task.options(num_cpus=1, resources={NODE_RESOURCE: share}, max_retries=RETRIES,
                                   retry_exceptions=False, name=case.case_id).remote(
                    case, dict(env), self.threads, sys.executable)
                pending[ref] = (case, time.time(), time.monotonic())
                started(case)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    case, submitted_at, submitted = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker or node died, twice
                        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                        outcome = CaseOutcome(CaseRecord.FAILED, None, time.monotonic() - submitted,
                                              f"Ray lost the case after {RETRIES + 1} attempts: "
                                              f"{type(exc).__name__}: {reason}", [], submitted_at, time.time())
                    if outcome.log:
                        _write_text(run_dir / LOGS_DIR / log_name(case), outcome.log)
                    yield case, outcome
        finally:
            for ref in pending:  # Ctrl-C, SIGTERM, or the runner stopped early
                ray.cancel(ref, force=True)
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse an address where no cluster answers within PROBE_TIMEOUT_S, with one line: ray.init
    itself keeps retrying for about 20 s and prints a screen of warnings first, so a child process
    tries (its output kept for the message)."""
    with tempfile.TemporaryFile() as output:
        returncode, timed_out = launch([sys.executable, "-c", PROBE, address], output, output,
                                       timeout_s=PROBE_TIMEOUT_S)
        output.seek(0)
        lines = output.read().decode(errors="replace").strip().splitlines()
    if timed_out or returncode != 0:
        why = f"no answer within {PROBE_TIMEOUT_S:g} s" if timed_out else (lines[-1][:200] if lines else "")
        raise HarnessInputError(f"--ray-address {address}: no Ray cluster could be reached there ({why}); start "
                                "one with `ray start --head` (README: Running on a Ray cluster)")


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"warning: {path}: the case log could not be written ({exc.strerror})", file=sys.stderr)
