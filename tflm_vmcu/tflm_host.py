"""Runs models in TFLM built on the host from a TFLM tree (tools/tflm_host).

`run_stock` builds (cached, see tflm_build) tools/tflm_host/stock_main.cc against the
tree and runs a model in it: TFLM's own planner and reference kernels, every op of
tools/tflm_host/all_ops.h registered. `run_plugin` runs the same program built with the
tflm-vmcu plug-in (cpp/tflm_plugin): the model's plan places the buffers and this runtime's
ring kernels run the ops it has.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import TflmVmcuError
from .reader import read_model
from .tflm_build import build_program, cache_root

_USED_RE = re.compile(r"^arena_used_bytes=(\d+)$", re.MULTILINE)
_FIRST_ARENA = 16 << 20  # first try when no arena is given
_MAX_ARENA = 1 << 30
_ALIGN = 16


def source_dir() -> Path:
    """The sources holding tools/tflm_host (tflm_vmcu.sources)."""
    from .sources import source_root

    return source_root()


def stock_program(tree: Path, cache_dir: Path | None = None, plugin: bool = False) -> Path:
    """Builds (cached) the host runner for `tree`, with the plug-in or stock; returns its
    path."""
    root = source_dir()
    src = root / "tools" / "tflm_host" / "stock_main.cc"
    # One copy per tree and source checkout, so that runs against two trees, or from two
    # checkouts sharing a cache, never swap programs.
    key = f"{Path(tree).resolve()}\n{root.resolve()}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = "plugin_main" if plugin else "stock_main"
    out = cache_root(cache_dir) / "bin" / f"{name}-{tag}"
    if not plugin:
        return build_program(tree, [src], out, include_dirs=[src.parent], cache_dir=cache_dir)
    # The plug-in and the runtime's own sources: the kernels the interpreter runs.
    runtime = sorted((root / "cpp" / "src").rglob("*.cc"))
    sources = [src, root / "cpp" / "tflm_plugin" / "tflm_plugin.cc", *runtime]
    includes = [src.parent, root / "cpp" / "include", root / "cpp" / "src"]
    includes.append(root / "cpp" / "tflm_plugin" / "include")
    return build_program(
        tree, sources, out, include_dirs=includes, defines=["TFLM_VMCU_PLUGIN"], cache_dir=cache_dir
    )


class _Runner:
    """Runs one model with given inputs at different arena sizes."""

    def __init__(
        self, program: Path, model: bytes, inputs: list[np.ndarray], tmp: str, plugin: bool
    ) -> None:
        self.program, self.dir = program, Path(tmp)
        self.what = "TFLM + plug-in" if plugin else "stock TFLM"
        (self.dir / "model.tflite").write_bytes(model)
        self.inputs = []
        for i, arr in enumerate(inputs):
            path = self.dir / f"in_{i}.bin"
            path.write_bytes(np.ascontiguousarray(arr).tobytes())
            self.inputs.append(str(path))
        self.out = self.dir / "out"
        self.out.mkdir()

    def run(
        self, arena: int, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        for f in self.out.iterdir():
            f.unlink()
        cmd = [str(self.program), str(self.dir / "model.tflite"), str(arena), str(self.out)]
        return subprocess.run(
            [*cmd, *self.inputs],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            env={**os.environ, **(env or {})},
        )


def _message(proc: subprocess.CompletedProcess[str], runner: _Runner) -> str:
    why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    return f"{runner.what} failed ({why}): {' | '.join(lines[-4:]) or 'no message'}"


def _looks_like_arena(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == 1 and "AllocateTensors failed" in proc.stderr


def _smallest_arena(runner: _Runner) -> int:
    """Bisection over multiples of 16 for the smallest arena that runs: first a large
    arena (doubled while AllocateTensors fails), then arena_used_bytes rounded up as a
    hint (usually the answer), then bisection between the largest failure and the
    smallest success."""
    hi = _FIRST_ARENA
    ok = runner.run(hi)
    while ok.returncode != 0:
        if not _looks_like_arena(ok) or hi >= _MAX_ARENA:
            raise TflmVmcuError(_message(ok, runner))
        hi *= 2
        ok = runner.run(hi)
    lo = 0  # largest arena known to fail (0: none tried)
    hint = -(-_used(ok) // _ALIGN) * _ALIGN
    for probe in (hint, hint - _ALIGN):
        if lo < probe < hi:
            if runner.run(probe).returncode == 0:
                hi = probe
            else:
                lo = probe
    while hi - lo > _ALIGN:
        mid = (lo + hi) // 2 // _ALIGN * _ALIGN
        if runner.run(mid).returncode == 0:
            hi = mid
        else:
            lo = mid
    return hi


def _used(proc: subprocess.CompletedProcess[str]) -> int:
    m = _USED_RE.search(proc.stdout)
    if m is None:
        raise TflmVmcuError(f"stock TFLM printed no arena_used_bytes: {proc.stdout[-200:]!r}")
    return int(m.group(1))


def smallest_arena(
    tree: Path,
    model_bytes: bytes,
    inputs: list[np.ndarray],
    cache_dir: Path | None = None,
    plugin: bool = False,
) -> tuple[int, int]:
    """The smallest arena (a multiple of 16 bytes, found by bisection) with which stock
    TFLM (or TFLM with the plug-in) runs the model on these inputs, and arena_used_bytes()
    reported with it."""
    program = stock_program(tree, cache_dir, plugin)
    with tempfile.TemporaryDirectory() as tmp:
        runner = _Runner(program, model_bytes, inputs, tmp, plugin)
        arena = _smallest_arena(runner)
        return arena, _used(runner.run(arena))


def run_stock(
    tree: Path,
    model_bytes: bytes,
    inputs: list[np.ndarray],
    arena_bytes: int | None = None,
    cache_dir: Path | None = None,
    plugin: bool = False,
) -> tuple[list[np.ndarray], int]:
    """Runs the model once in stock TFLM built from `tree` (with `plugin`, in TFLM with the
    tflm-vmcu plug-in: the model must carry a plan for it); returns the outputs (dtype
    and shape from the model) and interpreter.arena_used_bytes().

    With arena_bytes None, runs with the smallest arena that works, found by bisection
    on multiples of 16 bytes (arena_used_bytes rounded up to 16 is tried first; TFLM may
    need more than it reports, for temporary allocations during setup). Raises
    TflmVmcuError with TFLM's message if AllocateTensors or Invoke fails."""
    graph = read_model(model_bytes)
    program = stock_program(tree, cache_dir, plugin)
    with tempfile.TemporaryDirectory() as tmp:
        runner = _Runner(program, model_bytes, inputs, tmp, plugin)
        arena = _smallest_arena(runner) if arena_bytes is None else arena_bytes
        proc = runner.run(arena)
        if proc.returncode != 0:
            raise TflmVmcuError(_message(proc, runner))
        outputs = []
        for k, t in enumerate(graph.tensors[i] for i in graph.outputs):
            raw = (runner.out / f"out_{k}.bin").read_bytes()
            outputs.append(np.frombuffer(raw, dtype=t.np_dtype).reshape(t.shape).copy())
        return outputs, _used(proc)


_HAZARDS_RE = re.compile(r"^hazards=(\d+)\nfirst_hazard=(.*)$", re.MULTILINE)


def plugin_hazards(
    tree: Path,
    model_bytes: bytes,
    inputs: list[np.ndarray],
    arena_bytes: int,
    cache_dir: Path | None = None,
    verify_plan: bool = True,
) -> tuple[int, str]:
    """Runs the model once in TFLM + the plug-in under the hazard checker: the ring kernels
    and fused blocks report every read and write, each operator on a TFLM kernel reads all
    its inputs, then writes all its outputs. Returns the hazard count and the first.
    `verify_plan` False skips the plan verifier (tests of the checker on unsafe plans)."""
    program = stock_program(tree, cache_dir, plugin=True)
    env = {"TFLM_VMCU_HAZARDS": "1", **({} if verify_plan else {"TFLM_VMCU_NO_VERIFY": "1"})}
    with tempfile.TemporaryDirectory() as tmp:
        runner = _Runner(program, model_bytes, inputs, tmp, plugin=True)
        proc = runner.run(arena_bytes, env)
        if proc.returncode != 0:
            raise TflmVmcuError(_message(proc, runner))
        m = _HAZARDS_RE.search(proc.stdout)
        if m is None:
            raise TflmVmcuError(f"TFLM + plug-in printed no hazard count: {proc.stdout[-200:]!r}")
        return int(m.group(1)), m.group(2)


def run_plugin(
    tree: Path,
    model_bytes: bytes,
    inputs: list[np.ndarray],
    arena_bytes: int | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[np.ndarray], int]:
    """run_stock with the plug-in (`tflm-vmcu compile --target tflm-plugin` models)."""
    return run_stock(tree, model_bytes, inputs, arena_bytes, cache_dir, plugin=True)
