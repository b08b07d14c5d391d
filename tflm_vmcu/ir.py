"""A small plain IR of a .tflite model: tensors, operators, graph inputs/outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ModelError, UnsupportedError

# tflite TensorType code -> (name, numpy dtype or None when numpy has no equivalent).
TENSOR_TYPES: dict[int, tuple[str, Any]] = {
    0: ("float32", np.float32),
    1: ("float16", np.float16),
    2: ("int32", np.int32),
    3: ("uint8", np.uint8),
    4: ("int64", np.int64),
    5: ("string", None),
    6: ("bool", np.bool_),
    7: ("int16", np.int16),
    8: ("complex64", np.complex64),
    9: ("int8", np.int8),
    10: ("float64", np.float64),
    15: ("uint32", np.uint32),
    16: ("uint16", np.uint16),
    17: ("int4", None),
}


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int = 0

    @property
    def scale(self) -> float:
        return self.scales[0] if self.scales else 0.0

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_code: int
    quant: Quantization | None
    data: bytes | None  # constant data; None for activations
    is_variable: bool = False

    @property
    def dtype_name(self) -> str:
        return TENSOR_TYPES.get(self.type_code, (f"type{self.type_code}", None))[0]

    @property
    def np_dtype(self) -> Any:
        return TENSOR_TYPES.get(self.type_code, ("", None))[1]

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def itemsize(self) -> int:
        dt = self.np_dtype
        return int(np.dtype(dt).itemsize) if dt is not None else 0

    @property
    def nbytes(self) -> int:
        return math.prod(max(int(d), 0) for d in self.shape) * self.itemsize


@dataclass
class Operator:
    index: int
    opcode: str  # builtin name, e.g. "CONV_2D", or "CUSTOM:<code>"
    builtin_code: int
    inputs: tuple[int, ...]  # -1 = omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """Subgraph 0 of a model (the one the runtime executes)."""

    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    num_subgraphs: int = 1
    metadata: dict[str, bytes] = field(default_factory=dict)
    # Tensors a plan must not wrap around the pool end (fused kernels' workspaces).
    contiguous: tuple[int, ...] = ()
    # Buffers whose data lies outside the flatbuffer (the schema's offset/size).
    external_buffers: tuple[int, ...] = ()

    def activation_tensors(self) -> list[Tensor]:
        return [t for t in self.tensors if not t.is_constant]


# The runtime's limits on shapes (kMaxRank, kMaxDim in cpp/, 2 GiB per tensor).
MAX_RANK = 6
MAX_DIM = 1 << 24
MAX_TENSOR_BYTES = (1 << 31) - 1


def check_shapes(graph: Graph) -> None:
    """Raises UnsupportedError (ModelError for a negative dimension) unless every shape is
    within the runtime's limits (Model::Init in cpp/src/model.cc): rank, dimensions, and
    bytes (zero dimensions left out) within 2 GiB. Stock TFLM allows more."""
    for t in graph.tensors:
        if len(t.shape) > MAX_RANK:
            raise UnsupportedError(
                f"tensor '{t.name}' has rank {len(t.shape)}; at most {MAX_RANK} is supported"
            )
        nonzero_bytes = max(t.itemsize, 1)
        for d, dim in enumerate(t.shape):
            if dim < 0 or dim > MAX_DIM:
                raise (ModelError if dim < 0 else UnsupportedError)(
                    f"tensor '{t.name}' has dimension {d} = {dim} (dynamic or out of range)"
                )
            nonzero_bytes *= max(dim, 1)
        if nonzero_bytes > MAX_TENSOR_BYTES:
            raise UnsupportedError(f"tensor '{t.name}' is larger than 2 GiB")


def check_graph(graph: Graph) -> None:
    """Raises ModelError unless the operators form a graph that runs in file order, with
    one output each: the checks of the runtime's CheckGraph (cpp/src/graph_checks.cc),
    which the planner relies on (every activation it reads is placed before)."""
    ops, tensors = graph.operators, graph.tensors
    if not ops:
        raise ModelError("the model has no operators")
    for i, t in enumerate(graph.inputs):
        if tensors[t].is_constant:
            raise ModelError(f"model input {i} is constant tensor '{tensors[t].name}'")
    writer: dict[int, int] = {}
    for op in ops:
        for t in op.outputs:
            if t >= 0:
                writer.setdefault(t, op.index)
    written = set(graph.inputs)
    for op in ops:
        for k, t in enumerate(op.inputs):
            if t < 0 or tensors[t].is_constant or tensors[t].is_variable or t in written:
                continue
            name = tensors[t].name
            if t in op.outputs:
                raise ModelError(
                    f"operator {op.index} ({op.opcode}) input {k}: reads its own output '{name}'"
                )
            later = writer.get(t)
            if later is not None:
                raise ModelError(
                    f"operator {op.index} ({op.opcode}) input {k}: tensor '{name}' is written "
                    f"later, by operator {later} ({ops[later].opcode}) (operators must be in "
                    "execution order, without cycles)"
                )
            raise ModelError(
                f"operator {op.index} ({op.opcode}) input {k}: tensor '{name}' has no data "
                "(empty buffer), is not a model input and no operator writes it"
            )
        if len(op.outputs) != 1 or op.outputs[0] < 0:
            raise ModelError(
                f"operator {op.index} ({op.opcode}) has {len(op.outputs)} outputs; "
                "the planner supports operators with one"
            )
        for t in op.outputs:
            if tensors[t].is_constant:
                raise ModelError(
                    f"operator {op.index} ({op.opcode}) writes constant tensor '{tensors[t].name}'"
                )
            written.add(t)
    for i, t in enumerate(graph.outputs):
        if t not in written or tensors[t].is_constant:
            raise ModelError(
                f"model output {i} '{tensors[t].name}' is written by no operator and is not "
                "a model input"
            )
