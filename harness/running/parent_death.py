"""Run a command that dies with the process that started it: `python -m harness.running.parent_death PID ARGV...`.

A case process runs in its own session (so the runner can kill its whole process group), which
also means it would outlive a runner killed with SIGKILL, and go on competing with the next
run's timing cases. This launcher asks Linux to SIGKILL it when its parent dies
(prctl PR_SET_PDEATHSIG, which survives the exec below), checks that the parent (PID) is still
the one that started it (it may have died before the request took effect), then replaces itself
with ARGV. Elsewhere than Linux it only execs ARGV.

It runs before the case and imports nothing heavy; it must not be given anything but a command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 125
EXIT_CANNOT_START = 127  # as a shell says "command not found"


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(EXIT_PARENT_GONE)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        sys.exit(EXIT_CANNOT_START)


if __name__ == "__main__":
    main(sys.argv[1:])
