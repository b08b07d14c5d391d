"""A small plain IR of a .tflite model: tensors, operators, graph inputs/outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
        return int(np.prod(self.shape, dtype=np.int64)) * self.itemsize


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

    def activation_tensors(self) -> list[Tensor]:
        return [t for t in self.tensors if not t.is_constant]
