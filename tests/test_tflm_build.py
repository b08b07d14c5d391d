"""Stock TFLM built on the host from a TFLM source tree: bit-exact with the tflite-micro
Python runtime, the smallest arena against arena_used_bytes(), the build cache and its
errors. Needs ../shared/third_party/tflite-micro/reference (skipped without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, committed_models, model_params, shared_models

import tflm_vmcu
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.tflm_build import build_program, tflm_library
from tflm_vmcu.tflm_host import run_stock, smallest_arena, stock_program
from tflm_vmcu.tflm_reference import run_tflm
from tflm_vmcu.validate import make_inputs

TREE = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "reference"
pytestmark = pytest.mark.skipif(
    not TREE.is_dir(),
    reason=f"{TREE} not present (TFLM source trees live in ../shared/third_party/tflite-micro)",
)

# person_detect and the other shared models when present, and every committed model.
MODELS = committed_models() + shared_models()

# Models where stock TFLM needs a larger arena than arena_used_bytes() reports, by exactly
# this many bytes (measured with the shared reference tree): temporary allocations while
# FULLY_CONNECTED and SVDF prepare outgrow the final head. Every other model runs in
# arena_used_bytes() rounded up to 16.
ARENA_ABOVE_USED = {
    "fc_autoencoder.tflite": 4752,
    "op_fully_connected.tflite": 64,
    "op_fully_connected_per_tensor.tflite": 64,
    "mlperf_ad01_int8.tflite": 656,
    "tflm_keyword_scrambled_8bit.tflite": 2912,
}


@pytest.fixture(scope="session")
def library(tflm_cache: Path) -> Path:
    return tflm_library(TREE, tflm_cache)


@pytest.fixture(scope="session")
def stock(library: Path, tflm_cache: Path) -> Path:
    return stock_program(TREE, tflm_cache)


def test_library_and_program_are_cached(library: Path, stock: Path, tflm_cache: Path) -> None:
    assert library.is_file()
    assert stock.is_file()
    start = time.monotonic()
    assert tflm_library(TREE, tflm_cache) == library
    assert stock_program(TREE, tflm_cache) == stock
    assert time.monotonic() - start < 5  # no compiler run: only stats and a hash


def test_person_detect_is_present_or_skipped() -> None:
    if not any(p.name == "tflm_person_detect.tflite" for p in MODELS):
        pytest.skip("../shared/models/tflm_person_detect.tflite not present")


@pytest.mark.parametrize("path", model_params(MODELS))
def test_stock_host_tflm_is_bit_exact_with_python_runtime(
    path: Path, stock: Path, tflm_cache: Path
) -> None:
    data = path.read_bytes()
    inputs = make_inputs(tflm_vmcu.read_model(data), runs=3, seed=7)
    expected = run_tflm(data, inputs).outputs
    for run, arrays in enumerate(inputs):
        outputs, used = run_stock(TREE, data, arrays, arena_bytes=4 << 20, cache_dir=tflm_cache)
        assert used > 0
        assert len(outputs) == len(expected[run])
        for k, (got, want) in enumerate(zip(outputs, expected[run], strict=True)):
            assert got.dtype == want.dtype, f"run {run} output {k}"
            assert np.array_equal(got, want), f"run {run} output {k} differs"


@pytest.mark.parametrize("path", model_params(MODELS))
def test_smallest_arena_matches_arena_used_bytes(path: Path, stock: Path, tflm_cache: Path) -> None:
    data = path.read_bytes()
    inputs = make_inputs(tflm_vmcu.read_model(data), runs=1, seed=1)[0]
    arena, used = smallest_arena(TREE, data, inputs, cache_dir=tflm_cache)
    assert arena % 16 == 0
    if path.name in ARENA_ABOVE_USED:
        assert arena - used == ARENA_ABOVE_USED[path.name], f"arena {arena}, used {used}"
    else:
        assert used <= arena < used + 16, f"smallest arena {arena}, arena_used_bytes {used}"
    # run_stock without an arena runs at that smallest arena, with the same outputs.
    outputs, used_default = run_stock(TREE, data, inputs, cache_dir=tflm_cache)
    assert used_default == used
    reference, _ = run_stock(TREE, data, inputs, arena_bytes=4 << 20, cache_dir=tflm_cache)
    for got, want in zip(outputs, reference, strict=True):
        assert np.array_equal(got, want)
    # 16 bytes less fails: AllocateTensors refuses, or (fc_autoencoder) TFLM crashes.
    with pytest.raises(TflmVmcuError, match=r"AllocateTensors failed|signal 11"):
        run_stock(TREE, data, inputs, arena_bytes=arena - 16, cache_dir=tflm_cache)


def test_missing_tree_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TflmVmcuError, match="does not exist"):
        tflm_library(tmp_path / "no-such-tree", tmp_path)
    (tmp_path / "tree" / "tensorflow").mkdir(parents=True)
    with pytest.raises(TflmVmcuError, match=r"not a complete TFLM source tree.*micro_interpreter"):
        tflm_library(tmp_path / "tree", tmp_path)


def test_compile_and_link_errors_name_the_file(
    library: Path, tflm_cache: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.cc"
    bad.write_text('#include "tensorflow/lite/micro/micro_interpreter.h"\nint main() { nope(); }\n')
    with pytest.raises(TflmVmcuError, match=r"compiling bad\.cc failed: .*bad\.cc:2.*nope"):
        build_program(TREE, [bad], tmp_path / "bad", cache_dir=tflm_cache)
    unresolved = tmp_path / "unresolved.cc"
    unresolved.write_text("void missing();\nint main() { missing(); }\n")
    with pytest.raises(TflmVmcuError, match=r"linking failed: .*missing"):
        build_program(TREE, [unresolved], tmp_path / "unresolved", cache_dir=tflm_cache)


def test_program_is_rebuilt_when_a_header_changes(
    library: Path, tflm_cache: Path, tmp_path: Path
) -> None:
    (tmp_path / "value.h").write_text("#define VALUE 3\n")
    main = tmp_path / "main.cc"
    main.write_text('#include "value.h"\nint main() { return VALUE; }\n')
    program = build_program(
        TREE, [main], tmp_path / "prog", include_dirs=[tmp_path], cache_dir=tflm_cache
    )
    assert subprocess.run([program], check=False).returncode == 3
    (tmp_path / "value.h").write_text("#define VALUE 5\n")
    os.utime(tmp_path / "value.h", ns=(time.time_ns(), time.time_ns() + 10**9))
    program = build_program(
        TREE, [main], tmp_path / "prog", include_dirs=[tmp_path], cache_dir=tflm_cache
    )
    assert subprocess.run([program], check=False).returncode == 5


def test_stock_runner_reports_tflm_errors(stock: Path, tflm_cache: Path) -> None:
    data = (ROOT / "models" / "op_add.tflite").read_bytes()
    wrong = [np.zeros((1, 3), np.int8)]
    with pytest.raises(TflmVmcuError, match="input size mismatch"):
        run_stock(TREE, data, wrong, arena_bytes=1 << 20, cache_dir=tflm_cache)


def test_library_compile_error_names_the_file(tmp_path: Path) -> None:
    """A tree whose first source does not compile: one error naming that file and the
    compiler's first error line (the other sources are not all compiled first)."""
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree)
    first = "tensorflow/compiler/mlir/lite/core/api/error_reporter.cc"  # sources are sorted
    (tree / first).write_text("this is not C++;\n")
    with pytest.raises(TflmVmcuError) as err:
        tflm_library(tree, tmp_path / "cache")
    message = str(err.value)
    assert f"compiling {first} failed" in message
    assert "error_reporter.cc:1:1: error:" in message
    assert "\n" not in message
