"""Checks a model in the real TFLM runtime (PyPI tflite-micro): the smallest arena it
runs in, and whether a planned model gives the same outputs as the original.

The arena that print_allocations() reports is not always enough: temporary allocations
during setup can need more. So the smallest arena is searched for by trial: a size
passes when the interpreter both allocates and invokes. The trials run in a child
process, because TFLM can abort() or crash the process on a bad model or a too-small
arena.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TflmVmcuError
from .planner.tflm_greedy import ALIGNMENT, align_up
from .reader import read_model
from .tflm_reference import DEFAULT_ARENA, _allocation_report, run_tflm
from .validate import compare, make_inputs


@dataclass
class ArenaSearch:
    """What search_arena found, and the trials it took."""

    arena: int  # smallest arena_size that allocates and invokes, bytes
    reported: int  # the total print_allocations() reports in a large arena
    trials: list[int]  # arena sizes tried, in order
    crashes: list[int]  # sizes at which TFLM crashed the child (counted as too small)


def search_arena(model: bytes, hi: int | None = None, timeout: float = 600) -> ArenaSearch:
    """Searches for the smallest arena_size, a multiple of 16 bytes, in which the
    tflite-micro runtime allocates and invokes `model`. `hi` is a size the model is
    expected to run in (default 4 MiB); raises TflmVmcuError if it does not run there.

    All trials run in one child process. Some too-small arenas make TFLM crash rather
    than fail (seen at sizes between the failing and the working ones); such a size
    counts as too small and the search goes on in a new child.
    """
    top = align_up(hi or DEFAULT_ARENA)
    with tempfile.TemporaryDirectory() as tmp, _Trials(model, Path(tmp), timeout) as trial:
        ok, reported = trial(top)
        if not ok:
            raise TflmVmcuError(
                f"the tflite-micro runtime does not allocate and invoke this model in an "
                f"arena of {top:,} bytes: {trial.last_error()}"
            )
        units = _bisect(
            lambda u: trial(u * ALIGNMENT)[0], 0, top // ALIGNMENT, align_up(reported) // ALIGNMENT
        )
        return ArenaSearch(units * ALIGNMENT, reported, trial.sizes, trial.crashes)


def smallest_arena(model: bytes, hi: int | None = None) -> int:
    """The smallest arena_size, a multiple of 16 bytes, in which the tflite-micro runtime
    allocates and invokes `model` (see search_arena)."""
    return search_arena(model, hi).arena


@dataclass
class TflmComparison:
    """An original and a planned model, both run in TFLM on the same inputs."""

    runs: int
    bit_identical: bool
    mismatched_runs: int  # runs in which any output byte differs
    mismatched_elements: int  # output elements that differ, over all runs and outputs
    output_elements: int  # output elements compared, over all runs and outputs
    original_arena: int  # smallest TFLM arena, bytes
    planned_arena: int

    def to_json(self) -> dict[str, Any]:
        """In the names every command's JSON uses (docs/JSON.md)."""
        return {
            "bit_exact": self.bit_identical,
            "runs": self.runs,
            "mismatched_runs": self.mismatched_runs,
            "mismatched_elements": self.mismatched_elements,
            "output_elements": self.output_elements,
            "stock_smallest_arena_bytes": self.original_arena,
            "smallest_arena_bytes": self.planned_arena,
        }

    def message(self) -> str:
        if not self.bit_identical:
            return (
                f"planned model changes {self.mismatched_elements:,} of "
                f"{self.output_elements:,} output values ({self.mismatched_runs} of "
                f"{self.runs} runs) in TFLM: the plan is not safe for these kernels"
            )
        change = self.planned_arena / self.original_arena - 1 if self.original_arena else 0.0
        return (
            f"planned model is bit-identical to the original in TFLM on {self.runs} runs; "
            f"smallest TFLM arena {self.original_arena:,} -> {self.planned_arena:,} bytes "
            f"({change:+.1%})"
        )


def compare_in_tflm(
    original: bytes, planned: bytes, runs: int = 5, seed: int = 0
) -> TflmComparison:
    """Runs both models in TFLM, each in its smallest arena, on the same seeded inputs
    and compares the outputs bit for bit."""
    if runs < 1:
        raise TflmVmcuError("compare_in_tflm needs at least one run")
    graph = read_model(original)
    inputs = make_inputs(graph, runs, seed)
    original_arena, planned_arena = smallest_arena(original), smallest_arena(planned)
    ref = run_tflm(original, inputs, original_arena).outputs
    got = run_tflm(planned, inputs, planned_arena).outputs
    if len(got[0]) != len(ref[0]):
        raise TflmVmcuError(
            f"the planned model has {len(got[0])} outputs, the original has {len(ref[0])}"
        )
    names = [graph.tensors[t].name for t in graph.outputs]
    per_run = [
        sum(d.mismatches for d in compare([g], [r], names)) for g, r in zip(got, ref, strict=True)
    ]
    return TflmComparison(
        runs=runs,
        bit_identical=not any(per_run),
        mismatched_runs=sum(1 for n in per_run if n),
        mismatched_elements=sum(per_run),
        output_elements=sum(a.size for r in ref for a in r),
        original_arena=original_arena,
        planned_arena=planned_arena,
    )


# ---------------------------------------------------------------------------------------
# The search: trials in a child process, bisection in this one
# ---------------------------------------------------------------------------------------


class _Trials:
    """A child process that tries arena sizes for one model, one per line on its stdin,
    and answers one JSON line each; started again after a crash."""

    def __init__(self, model: bytes, tmp: Path, timeout: float) -> None:
        self._model_path = tmp / "model.tflite"
        self._model_path.write_bytes(model)
        self._log_path = tmp / "stderr.txt"
        self._deadline = time.monotonic() + timeout
        self._proc: subprocess.Popen[str] | None = None
        self._timer: threading.Timer | None = None
        self._timed_out = False
        self.sizes: list[int] = []
        self.crashes: list[int] = []

    def __enter__(self) -> _Trials:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def __call__(self, arena: int) -> tuple[bool, int]:
        """Whether the model allocates and invokes in `arena` bytes, and the total that
        TFLM reports when it does."""
        self.sizes.append(arena)
        proc = self._proc or self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(f"{arena}\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = proc.stdout.readline()
        if line:
            answer = json.loads(line)
            return bool(answer["ok"]), int(answer["reported"])
        code = proc.wait()
        self._stop()
        if self._timed_out:
            raise TflmVmcuError("the tflite-micro runtime timed out on this model")
        if len(self.sizes) == 1:
            why = f"signal {-code}" if code < 0 else f"exit {code}"
            raise TflmVmcuError(
                f"tflite-micro runtime failed on this model ({why}): {self.last_error()}"
            )
        self.crashes.append(arena)
        return False, 0

    def last_error(self) -> str:
        lines = self._log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def _start(self) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "tflm_vmcu.tflm_check", str(self._model_path)]
        with self._log_path.open("w") as log:
            # cwd: the child must import the installed package, not a source tree in cwd.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=self._model_path.parent,
            )
        self._timer = threading.Timer(max(self._deadline - time.monotonic(), 0), self._kill)
        self._timer.start()
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._timed_out = True
            self._proc.kill()

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            self._proc.wait()
        self._proc, self._timer = None, None


def _bisect(runs: Callable[[int], bool], lo: int, hi: int, guess: int) -> int:
    """The smallest n in (lo, hi] with runs(n), given that lo fails (or is 0) and hi
    runs, assuming that success is monotone. Searches outwards from `guess` first, in
    doubling steps, so a good guess needs few trials."""
    step = 1
    if lo < guess < hi:
        if runs(guess):
            hi = guess
            while hi - step > lo:
                if not runs(hi - step):
                    lo = hi - step
                    break
                hi -= step
                step *= 2
        else:
            lo = guess
            while lo + step < hi:
                if runs(lo + step):
                    hi = lo + step
                    break
                lo += step
                step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if runs(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _runs_at(model: bytes, arena: int) -> tuple[bool, int]:
    """Whether TFLM allocates and invokes `model` (zero inputs) in `arena` bytes, and
    the total it then reports."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
        i = 0
        while True:
            try:
                details = interp.get_input_details(i)
            except IndexError:
                break
            interp.set_input(np.zeros(details["shape"], dtype=details["dtype"]), i)
            i += 1
        interp.invoke()
    except RuntimeError:
        return False, 0
    return True, _allocation_report(interp).get("total", 0)


def _serve(model_path: str) -> None:
    model = Path(model_path).read_bytes()
    for line in sys.stdin:
        ok, reported = _runs_at(model, int(line))
        print(json.dumps({"ok": ok, "reported": reported}), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1])
