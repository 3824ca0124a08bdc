"""Busy-waiting for a known time: the known costs that calibrate the timing method (an injected
slowdown after a step, harness/timing/session.py; the BusyWait layer, harness/model/layers.py)."""

from __future__ import annotations

import time


def spin(seconds: float) -> None:
    """Keep this core busy for `seconds` (sleeping would hand the core to another thread)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class SpinIdentity:
    """The behaviour of a busy-wait layer (harness/model/layers.py BusyWait) in any framework:
    mixed into a torch Module or a Keras Layer (backends/_torch_layers.py, _keras_layers.py),
    whose forward/call returns `self.pass_through(x)`."""

    def __init__(self, seconds: float):
        super().__init__()  # the framework's Module/Layer
        self.seconds = seconds

    def pass_through(self, x):
        spin(self.seconds)
        return x
