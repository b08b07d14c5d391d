"""Runs a model in the real TFLM runtime (PyPI tflite-micro) in a subprocess.

TFLM abort()s the whole process on some models, so it never runs in ours. The
child reads inputs from an .npz, writes outputs to another and prints TFLM's own
allocation report (head, tail, total) as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TflmVmcuError

DEFAULT_ARENA = 4 << 20
_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


@dataclass
class TflmResult:
    outputs: list[list[np.ndarray]]  # [run][output index]
    head_bytes: int
    tail_bytes: int
    total_bytes: int


def run_tflm(
    model: bytes,
    inputs: list[list[np.ndarray]],
    arena_size: int = DEFAULT_ARENA,
    timeout: float = 600,
) -> TflmResult:
    """Runs every input set through TFLM; raises TflmVmcuError if TFLM fails or aborts."""
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp, "model.tflite")
        in_path, out_path = Path(tmp, "in.npz"), Path(tmp, "out.npz")
        model_path.write_bytes(model)
        arrays: dict[str, Any] = {
            f"r{r}_{i}": a for r, arrs in enumerate(inputs) for i, a in enumerate(arrs)
        }
        np.savez(in_path, **arrays)
        cmd = [
            sys.executable,
            "-m",
            "tflm_vmcu.tflm_reference",
            str(model_path),
            str(in_path),
            str(out_path),
            str(arena_size),
            str(len(inputs)),
        ]
        # cwd=tmp: the child must import the installed package, not a source tree in cwd.
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=tmp
        )
        if proc.returncode != 0:
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise TflmVmcuError(f"tflite-micro runtime failed on this model ({why}): {tail}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(out_path) as z:
            outputs = [
                [z[f"r{r}_{i}"] for i in range(report["num_outputs"])] for r in range(len(inputs))
            ]
    return TflmResult(outputs, report["head"], report["tail"], report["total"])


def _allocation_report(interp: object) -> dict[str, int]:
    """Captures print_allocations(), which writes to fd 2 from C++."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            interp.print_allocations()  # type: ignore[attr-defined]
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
    return {k: int(v) for k, v in _ALLOC_RE.findall(text)}


def _child(model_path: str, in_path: str, out_path: str, arena: int, runs: int) -> None:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(Path(model_path).read_bytes(), arena_size=arena)
    outputs: dict[str, Any] = {}
    num_outputs = 0
    with np.load(in_path) as z:
        for r in range(runs):
            i = 0
            while f"r{r}_{i}" in z:
                interp.set_input(z[f"r{r}_{i}"], i)  # TFLM reuses input memory: set each run
                i += 1
            interp.invoke()
            num_outputs = 0
            while True:
                try:
                    outputs[f"r{r}_{num_outputs}"] = np.array(interp.get_output(num_outputs))
                except (IndexError, RuntimeError, ValueError):
                    break
                num_outputs += 1
    np.savez(out_path, **outputs)
    alloc = _allocation_report(interp)
    print(
        json.dumps(
            {
                "head": alloc.get("head", 0),
                "tail": alloc.get("tail", 0),
                "total": alloc.get("total", 0),
                "num_outputs": num_outputs,
            }
        )
    )


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
