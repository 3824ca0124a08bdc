"""Busy-waiting for a known time: the known costs that calibrate the timing method (an injected
slowdown after a step, harness/timing/session.py; the BusyWait layer, harness/model/layers.py)."""

from __future__ import annotations

import time


def spin(seconds: float) -> None:
    """Keep this core busy for `seconds` (sleeping would hand the core to another thread)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
