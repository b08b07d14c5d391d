"""The example TFLM application with the tflm-vmcu plug-in (examples/tflm_plugin_app), built
with CMake against a TFLM source tree as a user builds it: it runs models compiled with
`tflm-vmcu compile --target tflm-plugin` bit-exact with stock TFLM (the tflite-micro
runtime) on the same input, in an arena in which stock TFLM cannot run the original model.
docs/MIGRATION.md shows the lines the example changes against a stock application.

Needs ../shared/third_party/tflite-micro/reference and cmake (skipped without them). The
build folder is kept in the TFLM build cache (tests/conftest.py: tflm_cache), so only the
first run compiles TFLM's interpreter and the plug-in (about a minute on two cores)."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, ROOT, TFLM_TREE

import tflm_vmcu
from tflm_vmcu.cli import main as cli
from tflm_vmcu.synth import ModelBuilder
from tflm_vmcu.tflm_check import smallest_arena
from tflm_vmcu.tflm_reference import run_tflm

APP = ROOT / "examples" / "tflm_plugin_app"
pytestmark = [
    pytest.mark.skipif(
        not TFLM_TREE.is_dir(),
        reason=f"{TFLM_TREE} not present (TFLM source trees live in "
        "../shared/third_party/tflite-micro)",
    ),
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed"),
]


def _with_tanh() -> bytes:
    """conv -> TANH -> conv: TANH has no ring kernel; the application registers TFLM's."""
    b = ModelBuilder(seed=13)
    x = b.conv2d(b.input([1, 16, 16, 4]), 8, (3, 3))
    y = b.unary("TANH", x, out_scale=1.0 / 128)
    return b.build([b.conv2d(y, 4, (3, 3))])


def _app_input(shape: tuple[int, ...], k: int) -> np.ndarray:
    """What main.cc writes into input k."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return ((i * 7 + k) % 251 - 125).astype(np.int8).reshape(shape)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build in the cached folder at a time (parallel test processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_app(cache: Path, model: Path, arena_bytes: int) -> subprocess.CompletedProcess[str]:
    """Configures and builds the example for `model` and `arena_bytes` (one cached build
    folder: a new model or arena rebuilds only the model array and main.cc) and runs it."""
    key = hashlib.sha256(f"{ROOT}|{TFLM_TREE.resolve()}".encode()).hexdigest()[:12]
    build = cache / f"example-tflm_plugin_app-{key}"
    with _locked(build.with_suffix(".lock")):
        configure = ["cmake", "-S", str(APP), "-B", str(build)]
        configure += [f"-DTFLM_VMCU_TFLM_SOURCE={TFLM_TREE}", f"-DTFLM_APP_MODEL={model}"]
        configure += [f"-DTFLM_APP_ARENA_BYTES={arena_bytes}"]
        for cmd in (configure, ["cmake", "--build", str(build), "-j2"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return subprocess.run(
            [str(build / "tflm_plugin_app")], capture_output=True, text=True, check=False
        )


def _results(proc: subprocess.CompletedProcess[str]) -> tuple[int, list[list[int]]]:
    """arena_used_bytes and the outputs the example printed."""
    assert proc.returncode == 0, proc.stderr
    used = re.search(r"^arena_used_bytes: (\d+)$", proc.stdout, re.MULTILINE)
    assert used is not None, proc.stdout
    outputs = re.findall(r"^output \d+:(.*)$", proc.stdout, re.MULTILINE)
    return int(used.group(1)), [[int(v) for v in line.split()] for line in outputs]


def _compiled(name: str, original: Path, cache: Path, tmp_path: Path) -> Path:
    """`tflm-vmcu compile --target tflm-plugin`, as a user runs it; the result is kept in
    the cache (rewritten only when it changes), so that a rerun rebuilds nothing."""
    out = tmp_path / f"{name}.plugin.tflite"
    assert cli(["compile", str(original), "-o", str(out), "--target", "tflm-plugin"]) == 0
    compiled = cache / "example-models" / out.name
    compiled.parent.mkdir(parents=True, exist_ok=True)
    if not compiled.is_file() or compiled.read_bytes() != out.read_bytes():
        shutil.copyfile(out, compiled)
    return compiled


@pytest.mark.parametrize("name", ["mobilenetv2_small", "conv_tanh_conv"])
def test_example_app_matches_stock_tflm_in_a_smaller_arena(
    name: str, tflm_cache: Path, tmp_path: Path
) -> None:
    original = MODELS / f"{name}.tflite"
    if name == "conv_tanh_conv":
        original = tmp_path / f"{name}.tflite"
        original.write_bytes(_with_tanh())
    compiled = _compiled(name, original, tflm_cache, tmp_path)

    # Stock TFLM on the original model and the input the example writes.
    data = original.read_bytes()
    graph = tflm_vmcu.read_model(data)
    inputs = [_app_input(graph.tensors[t].shape, k) for k, t in enumerate(graph.inputs)]
    stock = run_tflm(data, [inputs])
    stock_arena = smallest_arena(data)

    # The example, with an arena 16 bytes smaller than stock TFLM needs.
    used, outputs = _results(_run_app(tflm_cache, compiled, stock_arena - 16))
    assert len(outputs) == len(stock.outputs[0])
    for got, want in zip(outputs, stock.outputs[0], strict=True):
        assert want.dtype == np.int8
        assert got == want.ravel().tolist()
    assert used < stock.total_bytes
    print(
        f"{name}: arena_used_bytes {used:,}, stock TFLM {stock.total_bytes:,} "
        f"(smallest arena {stock_arena:,})"
    )


def test_example_app_refuses_a_too_small_arena(tflm_cache: Path, tmp_path: Path) -> None:
    """The plug-in's planner reports its true extent: in an arena smaller than the plan,
    AllocateTensors fails with a message, and the example says so (exit 1)."""
    original = tmp_path / "conv_tanh_conv.tflite"
    original.write_bytes(_with_tanh())
    proc = _run_app(tflm_cache, _compiled("conv_tanh_conv", original, tflm_cache, tmp_path), 2048)
    assert proc.returncode == 1
    # TFLM's message: the extent the planner reports does not fit.
    assert re.search(r"Failed to resize buffer\. Requested: \d+", proc.stderr), proc.stderr
    assert "AllocateTensors failed (arena of 2048 bytes)" in proc.stderr
    assert "arena_used_bytes" not in proc.stdout


def test_migration_doc_shows_the_lines_the_example_changes() -> None:
    """docs/MIGRATION.md's diff for the plug-in (section (c)): every added line is in the
    example, which marks the lines it changes with "tflm-vmcu:" (five)."""
    doc = (ROOT / "docs" / "MIGRATION.md").read_text()
    section = doc[doc.index("## (c)") :]
    diff = re.search(r"```diff\n(.*?)```", section, re.DOTALL)
    assert diff is not None
    added = [ln[1:].strip() for ln in diff.group(1).splitlines() if ln.startswith("+")]
    source = (APP / "main.cc").read_text()
    code = " ".join(ln.split("//")[0].strip() for ln in source.splitlines())
    for line in added:
        assert " ".join(line.split("//")[0].split()) in code, line
    assert source.count("// tflm-vmcu:") == 5
