"""Runs a model in the real TFLM runtime (PyPI tflite-micro) in a subprocess.

TFLM abort()s the whole process on some models, so it never runs in ours. The
child reads inputs from an .npz, writes outputs to another and prints TFLM's own
allocation report (head, tail, total) as JSON.
"""

from __future__ import annotations

import contextlib
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
_REPLY = "tflm_vmcu.reply "  # marks the child's answer among anything TFLM prints
_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


@dataclass
class TflmResult:
    outputs: list[list[np.ndarray]]  # [run][output index]
    head_bytes: int
    tail_bytes: int
    total_bytes: int


def _write_request(tmp: str, model: bytes, inputs: list[list[np.ndarray]]) -> list[str]:
    """Writes the model and inputs under tmp; the child's arguments after the arena."""
    model_path = Path(tmp, "model.tflite")
    in_path, out_path = Path(tmp, "in.npz"), Path(tmp, "out.npz")
    model_path.write_bytes(model)
    arrays: dict[str, Any] = {
        f"r{r}_{i}": a for r, arrs in enumerate(inputs) for i, a in enumerate(arrs)
    }
    np.savez(in_path, **arrays)
    return [str(model_path), str(in_path), str(out_path)]


def _read_result(tmp: str, report: dict[str, int], runs: int) -> TflmResult:
    with np.load(Path(tmp, "out.npz")) as z:
        outputs = [[z[f"r{r}_{i}"] for i in range(report["num_outputs"])] for r in range(runs)]
    return TflmResult(outputs, report["head"], report["tail"], report["total"])


def _failure(returncode: int, stderr: str) -> TflmVmcuError:
    why = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    tail = (stderr.strip().splitlines() or ["no message"])[-1]
    return TflmVmcuError(f"tflite-micro runtime failed on this model ({why}): {tail}")


def run_tflm(
    model: bytes,
    inputs: list[list[np.ndarray]],
    arena_size: int = DEFAULT_ARENA,
    timeout: float = 600,
) -> TflmResult:
    """Runs every input set through TFLM; raises TflmVmcuError if TFLM fails or aborts."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_request(tmp, model, inputs)
        cmd = [sys.executable, "-m", "tflm_vmcu.tflm_reference", *paths]
        cmd += [str(arena_size), str(len(inputs))]
        # cwd=tmp: the child must import the installed package, not a source tree in cwd.
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=tmp
        )
        if proc.returncode != 0:
            raise _failure(proc.returncode, proc.stderr)
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        return _read_result(tmp, report, len(inputs))


class TflmSession:
    """One long-lived TFLM child process for many models (the property tests run
    thousands; starting a process per model would dominate). If TFLM aborts on a model,
    that call raises and the next call starts a new child."""

    def __init__(self, arena_size: int = DEFAULT_ARENA) -> None:
        self.arena_size = arena_size
        self._dir = tempfile.TemporaryDirectory()
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: Any = None

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is not None:
            self._stop()  # the child died on the previous model
        if self._proc is None:
            # Lives as long as the child: it holds TFLM's message if the child aborts.
            self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tflm_vmcu.tflm_reference", "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                cwd=self._dir.name,
            )
        return self._proc

    def run(self, model: bytes, inputs: list[list[np.ndarray]]) -> TflmResult:
        proc = self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        paths = _write_request(self._dir.name, model, inputs)
        request = {"args": [*paths, self.arena_size, len(inputs)]}
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died; reported below
        for line in proc.stdout:
            if line.startswith(_REPLY):
                return _read_result(self._dir.name, json.loads(line[len(_REPLY) :]), len(inputs))
        self._stderr.seek(0)
        raise _failure(proc.wait(), self._stderr.read())

    def _stop(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        self._stop()
        self._dir.cleanup()

    def __enter__(self) -> TflmSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def _run_child(model_path: str, in_path: str, out_path: str, arena: int, runs: int) -> str:
    """Runs one request in this (child) process; returns the JSON report."""
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
    report = {k: alloc.get(k, 0) for k in ("head", "tail", "total")}
    return json.dumps({**report, "num_outputs": num_outputs})


def _serve() -> None:
    """Answers one JSON request per stdin line until stdin closes."""
    for line in sys.stdin:
        model_path, in_path, out_path, arena, runs = json.loads(line)["args"]
        report = _run_child(model_path, in_path, out_path, int(arena), int(runs))
        sys.stdout.write(_REPLY + report + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        print(_run_child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
