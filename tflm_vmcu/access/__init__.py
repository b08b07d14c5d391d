"""Access-order models of the runtime's kernels, for the planner.

The models themselves live in C++ (cpp/src/access_order.cc): the runtime's plan verifier
proves every plan safe with them at load, and the planner asks the same code through the
binding, so the two can never disagree. A model walks an op's units of work (each reads its
inputs, then writes its output; cpp/src/ring.h) and gives the smallest displacement of the
output behind an input that keeps every write off input bytes still to be read.
"""

from __future__ import annotations

from typing import Any

from .. import _runtime
from ..ir import Graph, Operator


def _operand(graph: Graph, t: int, with_data: bool = True) -> tuple[Any, ...] | None:
    if t < 0:
        return None
    x = graph.tensors[t]
    return (list(x.shape), x.type_code, x.data if with_data and x.is_constant else None)


def min_displacement(
    graph: Graph, op: Operator, input_pos: int, tflm_reference: bool = False
) -> int | None:
    """Smallest safe displacement (bytes) of op's output behind its input at `input_pos`,
    None if the output must not overlap it. With `tflm_reference`, for TFLM's reference
    kernels (finer units for DEPTHWISE_CONV_2D and pooling)."""
    from ..fusion import BLOCK_OP  # fusion imports the planner, which imports this module

    if input_pos >= len(op.inputs) or op.inputs[input_pos] < 0:
        return None
    if graph.tensors[op.inputs[input_pos]].is_constant:
        return None
    if op.opcode == BLOCK_OP:
        return block_min_displacement(op.options["block"]) if input_pos == 0 else None
    d = _runtime.min_displacement(
        op.builtin_code,
        op.options,
        [_operand(graph, t) for t in op.inputs],
        _operand(graph, op.outputs[0], with_data=False),
        input_pos,
        tflm_reference,
    )
    return None if d < 0 else int(d)


def block_geometry(block: Any, window: bool) -> dict[str, Any]:
    """BlockGeometry (cpp/src/kernels/block_schedule.h) of one fused block
    (tflm_vmcu.fusion.Block)."""
    g: dict[str, Any] = {"residual": block.has_residual, "window": window}
    for prefix, shape in (
        ("in", block.in_shape),
        ("mid", block.mid_shape),
        ("out", block.out_shape),
    ):
        g.update(zip((f"{prefix}_h", f"{prefix}_w", f"{prefix}_c"), shape, strict=True))
    for name, (h, w) in (
        ("kernel", block.kernel),
        ("stride", block.stride),
        ("pad", block.pad),
        ("expand_kernel", block.expand_kernel),
        ("expand_stride", block.expand_stride),
        ("expand_pad", block.expand_pad),
    ):
        g[f"{name}_h"], g[f"{name}_w"] = h, w
    return g


def _stages(fused: Any) -> list[dict[str, Any]]:
    return [block_geometry(b, fused.window) for b in fused.stages]


def block_min_displacement(fused: Any) -> int:
    """The same for a fused block or chain (tflm_vmcu.fusion.Block or Chain), its input and
    output."""
    return int(_runtime.block_min_displacement(_stages(fused)))


def workspace_bytes(fused: Any) -> int:
    """Workspace bytes the fused kernel needs for a block or chain (-1: malformed)."""
    return int(_runtime.chain_workspace_bytes(_stages(fused)))
