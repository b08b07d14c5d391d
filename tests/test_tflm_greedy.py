"""The TFLM head replica agrees with the real tflite-micro runtime, byte for byte.

The runtime's own allocation report is the oracle: every committed and shared model,
plus small hand-built models that isolate one rule each (scratch requests, offline
offsets, odd lifetimes). An independent check confirms that the replica's offsets never
put two tensors that must coexist on the same bytes.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from conftest import committed_models, model_params, shared_models
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tflm_vmcu.ir import Graph
from tflm_vmcu.planner.tflm_greedy import (
    ALIGNMENT,
    Buffer,
    greedy_offsets,
    peak_live_bytes,
    plan_end,
    tflm_greedy_offsets,
    tflm_head_bytes,
    tflm_plan,
)
from tflm_vmcu.reader import load_bytes, read_model
from tflm_vmcu.tflm_reference import run_tflm
from tflm_vmcu.validate import make_inputs

ALL_MODELS = model_params(committed_models() + shared_models())


def _tflm_head(model: bytes) -> int:
    graph = read_model(model)
    return run_tflm(model, make_inputs(graph, 1, 0)).head_bytes


# ---------------------------------------------------------------------------------------
# Real models
# ---------------------------------------------------------------------------------------


def test_shared_models_present() -> None:
    if not shared_models():
        pytest.skip("../shared/models not present: only committed models were compared")


@pytest.mark.parametrize("path", ALL_MODELS)
def test_head_matches_tflm(path: Path) -> None:
    graph = read_model(path)
    plan = tflm_plan(graph)
    assert plan.unmodelled_ops == (), "ops with unknown scratch requests"
    assert plan.head_bytes == _tflm_head(load_bytes(path))


@pytest.mark.parametrize("path", ALL_MODELS)
def test_lower_bound_at_most_head(path: Path) -> None:
    graph = read_model(path)
    bound = peak_live_bytes(graph)
    assert bound <= tflm_head_bytes(graph)
    # Not vacuous: each op needs at least its own activation inputs and outputs at once.
    assert bound >= max(_op_activation_bytes(graph, k) for k in range(len(graph.operators)))


def _op_activation_bytes(graph: Graph, k: int) -> int:
    op = graph.operators[k]
    used = {t for t in (*op.inputs, *op.outputs) if t >= 0}
    return sum(
        graph.tensors[t].nbytes
        for t in used
        if not graph.tensors[t].is_constant and not graph.tensors[t].is_variable
    )


def _moments_alive(graph: Graph) -> list[set[int]]:
    """Activation tensors whose value must be held before op 0, during each op and after
    the last op: from the first op that touches them (graph inputs: before op 0) to the
    last (graph outputs: to the end)."""
    n = len(graph.operators)
    born: dict[int, int] = {t: -1 for t in graph.inputs}
    dies: dict[int, int] = {t: -1 for t in graph.inputs}
    for k, op in enumerate(graph.operators):
        for t in (*op.inputs, *op.outputs):
            if t >= 0:
                born.setdefault(t, k)
                dies[t] = k
    for t in graph.outputs:
        born.setdefault(t, n)
        dies[t] = n
    planned = {
        t
        for t in born
        if not graph.tensors[t].is_constant
        and not graph.tensors[t].is_variable
        and graph.tensors[t].nbytes > 0
    }
    return [{t for t in planned if born[t] <= m <= dies[t]} for m in range(-1, n + 1)]


@pytest.mark.parametrize("path", ALL_MODELS)
def test_offsets_never_overlap_live_tensors(path: Path) -> None:
    graph = read_model(path)
    offsets = tflm_greedy_offsets(graph)
    head = tflm_head_bytes(graph)
    for moment, alive in enumerate(_moments_alive(graph), start=-1):
        missing = alive - offsets.keys()
        assert not missing, f"tensors {sorted(missing)} have no offset"
        spans = sorted((offsets[t], offsets[t] + graph.tensors[t].nbytes, t) for t in alive)
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            assert end <= start, f"tensors {a} and {b} overlap at op {moment}"
    for t, off in offsets.items():
        assert off % ALIGNMENT == 0
        assert off + graph.tensors[t].nbytes <= head


# ---------------------------------------------------------------------------------------
# GreedyMemoryPlanner on the cases of upstream greedy_memory_planner_test.cc
# ---------------------------------------------------------------------------------------


def _buffers(*specs: tuple[int, int, int]) -> list[Buffer]:
    return [Buffer(size, first, last) for size, first, last in specs]


def test_greedy_basics() -> None:
    buffers = _buffers((10, 0, 1), (20, 2, 3))
    offsets = greedy_offsets(buffers)
    assert offsets == [0, 0]
    assert plan_end(buffers, offsets) == 20


def test_greedy_medium() -> None:
    buffers = _buffers((10, 0, 1), (20, 1, 2), (30, 2, 3), (40, 3, 4), (50, 0, 1))
    offsets = greedy_offsets(buffers)
    assert offsets == [50, 70, 40, 0, 0]
    assert plan_end(buffers, offsets) == 90


def test_greedy_overlap_case() -> None:
    buffers = _buffers((100, 0, 1), (50, 2, 3), (20, 1, 2))
    assert plan_end(buffers, greedy_offsets(buffers)) == 120


def test_equal_sizes_place_last_added_first() -> None:
    """Stable sort of the reverse add order: among equal sizes the last added wins 0."""
    buffers = _buffers((16, 0, 2), (16, 0, 2), (16, 0, 2))
    assert greedy_offsets(buffers) == [32, 16, 0]


def test_offline_buffers_pinned_even_when_overlapping() -> None:
    buffers = [Buffer(64, 0, 1, offline_offset=0), Buffer(64, 0, 1, offline_offset=32)]
    buffers.append(Buffer(32, 1, 1))
    assert greedy_offsets(buffers) == [0, 32, 96]


# ---------------------------------------------------------------------------------------
# Hand-built models, each isolating one rule, against the runtime
# ---------------------------------------------------------------------------------------

I8, I32 = schema.TensorType.INT8, schema.TensorType.INT32
TensorSpec = tuple[tuple[int, ...], int, "np.ndarray[Any, Any] | None"]
OpSpec = tuple[str, list[int], list[int]]


def _options(opcode: str) -> tuple[int, Any]:
    if opcode == "ADD":
        return schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    reducer = schema.ReducerOptionsT()
    reducer.keepDims = True
    return schema.BuiltinOptions.ReducerOptions, reducer


def _tensor(model: Any, index: int, spec: TensorSpec) -> Any:
    shape, type_code, data = spec
    t = schema.TensorT()
    t.shape, t.type, t.name, t.buffer = list(shape), type_code, f"t{index}", 0
    if data is not None:
        buf = schema.BufferT()
        buf.data = list(np.ascontiguousarray(data).view(np.uint8).ravel())
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
    if type_code == I8:
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [0.05], [0]
    return t


def _operator(codes: list[int], spec: OpSpec) -> Any:
    opcode, inputs, outputs = spec
    code = getattr(schema.BuiltinOperator, opcode)
    if code not in codes:
        codes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = codes.index(code), inputs, outputs
    op.builtinOptionsType, op.builtinOptions = _options(opcode)
    return op


def _build(
    tensors: list[TensorSpec],
    ops: list[OpSpec],
    io: tuple[list[int], list[int]],
    offline: list[int] | None = None,
    variables: tuple[int, ...] = (),
) -> bytes:
    """A one-subgraph .tflite model; `offline` adds OfflineMemoryAllocation metadata."""
    model = schema.ModelT()
    model.version, model.buffers, model.metadata = 3, [schema.BufferT()], []
    subgraph = schema.SubGraphT()
    subgraph.tensors = [_tensor(model, i, spec) for i, spec in enumerate(tensors)]
    for i in variables:
        subgraph.tensors[i].isVariable = True
    codes: list[int] = []
    subgraph.operators = [_operator(codes, spec) for spec in ops]
    subgraph.inputs, subgraph.outputs = io
    model.subgraphs = [subgraph]
    model.operatorCodes = []
    for code in codes:
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
    if offline is not None:
        buf = schema.BufferT()
        buf.data = list(np.array([1, 1, len(offline), *offline], dtype="<i4").view(np.uint8))
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = "OfflineMemoryAllocation", len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _reduce(opcode: str, shape: tuple[int, ...], axes: list[int]) -> bytes:
    out_shape = tuple(1 if d in axes else n for d, n in enumerate(shape))
    axis = np.array(axes, dtype=np.int32)
    tensors: list[TensorSpec] = [
        (shape, I8, None),
        ((len(axes),), I32, axis),
        (out_shape, I8, None),
    ]
    return _build(tensors, [(opcode, [0, 1], [2])], ([0], [2]))


def _adds(sizes: list[int], ops: list[OpSpec], io: tuple[list[int], list[int]], **kw: Any) -> bytes:
    return _build([((1, n), I8, None) for n in sizes], ops, io, **kw)


CHAIN: list[OpSpec] = [("ADD", [0, 0], [1]), ("ADD", [1, 1], [2])]

SYNTHETIC = {
    # Scratch requests: int32 sums per output element, then an int per input dimension
    # and per axis (ranks and axis counts chosen so each size shows in the head).
    "mean_rank4": _reduce("MEAN", (1, 4, 4, 64), [1, 2]),
    "mean_rank6_one_axis": _reduce("MEAN", (1, 2, 2, 2, 2, 64), [1]),
    "mean_rank8_six_axes": _reduce("MEAN", (1, 2, 2, 2, 2, 2, 2, 64), [1, 2, 3, 4, 5, 6]),
    "sum_rank4": _reduce("SUM", (1, 4, 4, 64), [1, 2]),
    "reduce_max_rank6": _reduce("REDUCE_MAX", (1, 2, 2, 2, 2, 64), [1, 2, 3, 4]),
    # Offline offsets: all pinned, some pinned, pinned on top of each other.
    "offline_all": _adds([64, 64, 64], CHAIN, ([0], [2]), offline=[0, 64, 0]),
    "offline_some": _adds(
        [64, 32, 64, 64],
        [("ADD", [0, 0], [2]), ("ADD", [2, 2], [3])],
        ([0, 1], [3]),
        offline=[-1, -1, 48, -1],
    ),
    "offline_overlapping": _adds([64, 64, 64], CHAIN, ([0], [2]), offline=[0, 32, -1]),
    # A variable tensor lives in the tail unless it has an offline offset.
    "variable_in_tail": _adds([64, 64, 64], [("ADD", [0, 1], [2])], ([0], [2]), variables=(1,)),
    "variable_pinned": _adds(
        [64, 64, 64], [("ADD", [0, 1], [2])], ([0], [2]), offline=[-1, 128, -1], variables=(1,)
    ),
    # Lifetimes: an input no op reads, an output read by a later op, a tensor nothing
    # touches (still planned), a tensor read but never written.
    "unused_input_early_output": _adds(
        [64, 96, 96, 96],
        [("ADD", [1, 1], [2]), ("ADD", [2, 2], [3])],
        ([0, 1], [2, 3]),
    ),
    "untouched_tensor": _adds([64, 64, 64, 512], CHAIN, ([0], [2])),
    "read_never_written": _adds(
        [64, 64, 64, 64], [("ADD", [0, 0], [1]), ("ADD", [1, 3], [2])], ([0], [2])
    ),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_hand_built_model_head_matches_tflm(name: str) -> None:
    model = SYNTHETIC[name]
    assert tflm_head_bytes(read_model(model)) == _tflm_head(model)


def test_mean_scratch_counts() -> None:
    """The rank-6 MEAN keeps 512 sums (2,048 B), 6 dims (32 B) and 1 axis (16 B)."""
    plan = tflm_plan(read_model(SYNTHETIC["mean_rank6_one_axis"]))
    assert sorted(b.size for b in plan.buffers if b.tensor is None) == [16, 32, 2048]
