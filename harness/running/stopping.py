"""SIGTERM handled as Ctrl-C: a command stopped by `kill` (or a batch system) unwinds as an
interrupted one does, so its workers are killed, its temporary folders removed and its finished
work kept; it then exits 128 + the signal (143), as a shell reports a process killed by SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does; the dict it yields
    names the signal that stopped the run (empty for Ctrl-C)."""
    received: dict = {}

    def handler(number, frame):
        received.update(number=number, name=f"stopped by {signal.Signals(number).name}")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
