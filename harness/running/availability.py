"""Which backends' frameworks can be had here, asked without importing any of them.

Each backend is tried in a worker process of its own (harness/running/worker.py: it dies with
this process), so this process imports no framework and survives one that crashes; the checks
run at once (importing TensorFlow alone takes seconds), before any case.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.running.worker import launch, stderr_tail

AVAILABILITY_TIMEOUT_S = 120
_AVAILABILITY_CODE = ("import json, sys; from backends import backend_class; "
                      "a = backend_class(sys.argv[1]).availability(); print(json.dumps([a.ok, a.reason]))")


def unavailable_backends(names) -> dict[str, str]:
    """{backend: why not} for the backends whose framework cannot be imported here."""
    names = list(dict.fromkeys(names))
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        reasons = list(pool.map(unavailable_reason, names))
    return {name: reason for name, reason in zip(names, reasons) if reason}


def unavailable_reason(name: str) -> str:
    """Why `name`'s framework cannot be used here, or "" if it can."""
    with tempfile.TemporaryDirectory(prefix="harness-probe-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            returncode, timed_out = launch([sys.executable, "-c", _AVAILABILITY_CODE, name], out, err,
                                           timeout_s=AVAILABILITY_TIMEOUT_S)
        if timed_out:
            return f"importing it took longer than {AVAILABILITY_TIMEOUT_S} s"
        if returncode < 0:
            return f"importing it crashed ({signal.Signals(-returncode).name})"
        if returncode != 0:
            return f"checking it failed: {stderr_tail(err_path, lines=1) or f'exit {returncode}, no message'}"
        ok, reason = json.loads(out_path.read_text(encoding="utf-8").strip().splitlines()[-1])
    return "" if ok else reason
