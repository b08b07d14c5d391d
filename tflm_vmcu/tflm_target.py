"""A kernel-safe offline plan for stock TensorFlow Lite Micro.

Stock TFLM places every tensor where the model's "OfflineMemoryAllocation" metadata
says, overlaps included, and checks nothing. This module plans a linear (non-ring)
placement that overlaps an op's output with a dying input only where the named kernel
library's access order makes it safe:

- "reference": TFLM's reference kernels (what the PyPI runtime and most ports run).
  Their loop orders are the access-order models of this project's kernels
  (tflm_vmcu/access) or finer, so those displacements are safe for them too, except
  where TFLM differs (overrides below).
- "portable": safe under any implementation (CMSIS-NN, vendor kernels): only exact
  in-place overlaps of element-wise ops without broadcast, SOFTMAX, and RESHAPE
  sharing its input's bytes.

Offsets are multiples of 4 bytes (the segment size with the smallest head is chosen;
TFLM checks no alignment of offline offsets, and int8 kernels need none beyond 4).
Every activation tensor is pinned: pinning only some lets TFLM's greedy planner block
the gain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import numpy as np

from . import access
from .errors import TflmVmcuError
from .ir import Graph, Operator
from .plan_format import write_metadata
from .planner.plan import Plan
from .planner.ring import plan_ring
from .planner.tflm_greedy import tflm_head_bytes
from .reader import read_model

OFFLINE_METADATA = "OfflineMemoryAllocation"
KERNELS_METADATA = "tflm_vmcu.offline_plan_kernels"
KERNEL_LIBRARIES = ("reference", "portable")
TFLM_SEGMENTS = (4, 8, 16)

# Reference kernels whose order differs from this project's model of the op:
# MEAN zeroes its output before reading any input; CONCATENATION and RESHAPE use
# memcpy, whose order within a copy is unspecified (RESHAPE may share its input's
# bytes exactly: TFLM then skips the copy).
_REFERENCE_NO_OVERLAP = {"MEAN", "CONCATENATION", "RESHAPE"}

# Ops that any implementation can run exactly in place (same offset, same size).
_PORTABLE_IN_PLACE = {
    "ADD",
    "MUL",
    "RELU",
    "RELU6",
    "LOGISTIC",
    "HARD_SWISH",
    "SOFTMAX",
    "QUANTIZE",
}


def reference_rule(graph: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
    if op.opcode in _REFERENCE_NO_OVERLAP or graph.tensors[op.inputs[pos]].is_constant:
        return None
    d = access.min_displacement(graph, op, pos, tflm_reference=True)
    return None if d is None else (d, False)


def portable_rule(graph: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
    if op.opcode not in _PORTABLE_IN_PLACE:
        return None
    src, dst = graph.tensors[op.inputs[pos]], graph.tensors[op.outputs[0]]
    if src.shape != dst.shape or src.type_code != dst.type_code:
        return None  # broadcast operand, or a type change (QUANTIZE float32 -> int8)
    return 0, True


RULES = {"reference": reference_rule, "portable": portable_rule}


@dataclass
class TflmCompileResult:
    model: bytes
    plan: Plan
    greedy_head_bytes: int  # TFLM's own head for the model (replica)


def offline_words(graph: Graph, plan: Plan) -> bytes:
    """[version 1, subgraph count 1, tensor count, offset per tensor (-1: not pinned)]."""
    offsets = np.full(len(graph.tensors), -1, dtype="<i4")
    for p in plan.placements.values():
        if p.nbytes > 0:
            offsets[p.tensor] = p.offset
    return struct.pack("<3i", 1, 1, len(graph.tensors)) + offsets.tobytes()


def compile_for_tflm(
    data: bytes, kernels: str = "reference", unsafe_shift: int = 0
) -> TflmCompileResult:
    """The model with an offline plan that stock TFLM with `kernels` runs safely.

    `unsafe_shift` (tests only) moves the first output that overlaps an input that many
    bytes closer to it, making the plan deliberately unsafe."""
    if kernels not in RULES:
        raise TflmVmcuError(f"unknown kernel library '{kernels}' (use one of {KERNEL_LIBRARIES})")
    graph = read_model(data)
    if graph.num_subgraphs != 1:
        raise TflmVmcuError("offline plans are written for single-subgraph models only")
    plan = plan_ring(graph, segments=TFLM_SEGMENTS, rule=RULES[kernels], linear=True)
    if unsafe_shift:
        plan = _shift_one_overlap(graph, plan, unsafe_shift)
    greedy = tflm_head_bytes(graph)
    if plan.pool_bytes > greedy and not unsafe_shift:
        raise TflmVmcuError(f"offline plan needs {plan.pool_bytes} bytes, TFLM's own {greedy}")
    model = write_metadata(data, OFFLINE_METADATA, offline_words(graph, plan))
    # Which kernel library the plan is safe for, for `export` to say in the header.
    model = write_metadata(model, KERNELS_METADATA, kernels.encode())
    return TflmCompileResult(model, plan, greedy)


def _shift_one_overlap(graph: Graph, plan: Plan, shift: int) -> Plan:
    """Moves the output of the first op that overlaps its input `shift` bytes closer."""
    for op in graph.operators:
        out = plan.placements.get(op.outputs[0])
        for t in op.inputs:
            src = plan.placements.get(t)
            if out is None or src is None or src.last != op.index:
                continue
            if out.offset < src.offset + src.nbytes and src.offset < out.offset + out.nbytes:
                moved = replace(out, offset=out.offset + shift)
                return replace(plan, placements={**plan.placements, out.tensor: moved})
    raise TflmVmcuError("the plan overlaps no output with its input: nothing to make unsafe")
