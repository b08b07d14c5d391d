"""Progress of the steps that take seconds (building firmware, running QEMU, building a
TFLM library), on stderr. Off unless the command line turns it on: on a terminal by
default, always with -v (with the elapsed time), never with -q or --json."""

from __future__ import annotations

import sys
import time

_state = {"on": False, "verbose": False, "start": time.perf_counter()}


def configure(on: bool, verbose: bool = False) -> None:
    _state.update(on=on, verbose=verbose, start=time.perf_counter())


def step(message: str) -> None:
    """One line saying what is being done now."""
    if not _state["on"]:
        return
    elapsed = time.perf_counter() - float(_state["start"])
    stamp = f"[{elapsed:6.1f} s] " if _state["verbose"] else ""
    print(f"tflm-vmcu: {stamp}{message}", file=sys.stderr, flush=True)
