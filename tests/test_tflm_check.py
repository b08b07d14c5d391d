"""The TFLM checks: the smallest arena TFLM runs a model in, an offline-planned model
compared with its original inside TFLM, and the C header export."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, require_shared

from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.export import c_source
from tflm_vmcu.ir import Graph
from tflm_vmcu.plan_format import write_metadata
from tflm_vmcu.planner.tflm_greedy import OFFLINE_METADATA, tflm_greedy_offsets
from tflm_vmcu.reader import read_model
from tflm_vmcu.tflm_check import _bisect, compare_in_tflm, search_arena
from tflm_vmcu.tflm_reference import run_tflm
from tflm_vmcu.validate import make_inputs

CONV = MODELS / "op_conv_2d.tflite"
PERSON = "tflm_person_detect.tflite"


def _with_offline_plan(model: bytes, offsets: dict[int, int]) -> bytes:
    """The model with an OfflineMemoryAllocation entry: offsets[t] for tensor t, -1
    (planned online) for the others."""
    n = len(read_model(model).tensors)
    words = [1, 1, n, *(offsets.get(t, -1) for t in range(n))]
    return write_metadata(model, OFFLINE_METADATA, np.array(words, dtype="<i4").tobytes())


def _first_square_1x1_conv(graph: Graph) -> tuple[int, int]:
    """(input, output) of the first 1x1 stride-1 CONV_2D whose input and output have
    the same size and more than one channel."""
    for op in graph.operators:
        if op.opcode != "CONV_2D":
            continue
        src, weights, dst = (graph.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        if (
            weights.shape[1:3] == (1, 1)
            and op.options.get("stride_h") == op.options.get("stride_w") == 1
            and src.nbytes == dst.nbytes
            and dst.shape[-1] > 1
        ):
            return src.index, dst.index
    raise AssertionError("no 1x1 conv with equal input and output size")


def _conv_or_person() -> list[object]:
    return [pytest.param(CONV, id=CONV.name), pytest.param(PERSON, id=PERSON)]


def _model(path: Path | str) -> bytes:
    return (path if isinstance(path, Path) else require_shared(path)).read_bytes()


# ---------------------------------------------------------------------------------------
# Smallest arena
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["op_conv_2d.tflite", "op_fully_connected.tflite", "fc_autoencoder.tflite"]
)
def test_smallest_arena_is_tight(name: str) -> None:
    """Checked again by run_tflm, each size in its own process: the model runs in the
    arena found and fails 16 bytes below it."""
    model = (MODELS / name).read_bytes()
    found = search_arena(model)
    assert found.arena % 16 == 0
    assert found.arena >= found.reported > 0
    inputs = make_inputs(read_model(model), 1, 0)
    assert run_tflm(model, inputs, found.arena).outputs
    with pytest.raises(TflmVmcuError):
        run_tflm(model, inputs, found.arena - 16)


def test_smallest_arena_refuses_a_too_small_upper_bound() -> None:
    with pytest.raises(TflmVmcuError, match="does not allocate and invoke"):
        search_arena(CONV.read_bytes(), hi=1024)


@pytest.mark.parametrize("guess", [0, 1, 5, 36, 37, 38, 60, 99, 100])
def test_bisect_finds_the_threshold_from_any_guess(guess: int) -> None:
    tried: list[int] = []

    def runs(n: int) -> bool:
        tried.append(n)
        return n >= 37

    assert _bisect(runs, 0, 100, guess) == 37
    assert len(tried) <= 2 * 7 + 2
    if guess == 37:
        assert tried == [37, 36]


# ---------------------------------------------------------------------------------------
# Original against planned, inside TFLM
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _conv_or_person())
def test_tflm_own_greedy_plan_is_identical(path: Path | str) -> None:
    original = _model(path)
    planned = _with_offline_plan(original, tflm_greedy_offsets(read_model(original)))
    result = compare_in_tflm(original, planned, runs=3)
    assert result.bit_identical, result.message()
    assert result.mismatched_runs == result.mismatched_elements == 0
    assert result.planned_arena == result.original_arena
    assert "bit-identical" in result.message()
    assert result.to_json()["stock_smallest_arena_bytes"] == result.original_arena


@pytest.mark.parametrize("path", _conv_or_person())
def test_conv_output_on_its_input_is_caught(path: Path | str) -> None:
    """A 1x1 conv with more than one output channel re-reads each input pixel after
    writing the first channel of that output pixel: an exact overlap is unsafe."""
    original = _model(path)
    graph = read_model(original)
    offsets = tflm_greedy_offsets(graph)
    src, dst = _first_square_1x1_conv(graph)
    offsets[dst] = offsets[src]
    result = compare_in_tflm(original, _with_offline_plan(original, offsets), runs=3)
    assert not result.bit_identical
    assert result.mismatched_runs > 0
    assert 0 < result.mismatched_elements <= result.output_elements
    assert "not safe" in result.message()
    assert f"changes {result.mismatched_elements:,} of" in result.message()


# ---------------------------------------------------------------------------------------
# C header
# ---------------------------------------------------------------------------------------

_MAIN = """\
#include "model_data.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const unsigned char kHead[8] = {%s};
static unsigned char arena[MODEL_DATA_ARENA_BYTES];

int main(void) {
  if (model_data_len != %d || sizeof(model_data) != %d) return 1;
  if (memcmp(model_data, kHead, 8) != 0) return 2;
  if ((uintptr_t)model_data %% 16 != 0) return 3;
  if (sizeof(arena) != %d) return 4;
  puts("ok");
  return 0;
}
"""

_COMPILERS = [
    pytest.param("gcc", "-std=c99", "main.c", id="gcc-c99"),
    pytest.param("gcc", "-std=c11", "main.c", id="gcc-c11"),
    pytest.param("g++", "-std=c++11", "main.cc", id="g++-c++11"),
    pytest.param("g++", "-std=c++17", "main.cc", id="g++-c++17"),
]


@pytest.mark.parametrize(("compiler", "std", "source"), _COMPILERS)
def test_export_compiles_and_holds_the_model(
    tmp_path: Path, compiler: str, std: str, source: str
) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    model = CONV.read_bytes()
    (tmp_path / "model_data.h").write_text(c_source(model, "model_data", 12336, "tflm"))
    head = ", ".join(f"0x{b:02x}" for b in model[:8])
    (tmp_path / source).write_text(_MAIN % (head, len(model), len(model), 12336))
    exe = tmp_path / "main"
    flags = ["-Wall", "-Wextra", "-Werror", "-pedantic"]
    subprocess.run(
        [compiler, std, *flags, str(tmp_path / source), "-o", str(exe)],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "ok\n")


def test_export_text() -> None:
    text = c_source(bytes(range(30)), "net", 4096, "tflm-vmcu")
    assert "#define NET_ARENA_BYTES 4096" in text
    assert "const unsigned int net_len = 30;" in text
    rows = [line for line in text.splitlines() if line.startswith("    0x")]
    assert [len(r.split(",")) - (r.endswith(",")) for r in rows] == [12, 12, 6]
    assert "pool plus runtime" in text


@pytest.mark.parametrize(("name", "target"), [("3d", "tflm"), ("a-b", "tflm"), ("ok", "tvm")])
def test_export_refuses_bad_names_and_targets(name: str, target: str) -> None:
    with pytest.raises(TflmVmcuError):
        c_source(b"\0", name, 16, target)
