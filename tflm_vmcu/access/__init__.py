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


def block_min_displacement(block: Any) -> int:
    """The same for a fused inverted bottleneck (tflm_vmcu.fusion.Block), its input A and
    output E."""
    return int(
        _runtime.block_min_displacement(
            {
                "in_w": block.in_shape[1],
                "in_c": block.in_shape[2],
                "mid_h": block.mid_shape[0],
                "mid_w": block.mid_shape[1],
                "kernel_h": block.kernel[0],
                "kernel_w": block.kernel[1],
                "stride_h": block.stride[0],
                "stride_w": block.stride[1],
                "pad_h": block.pad[0],
                "pad_w": block.pad[1],
                "expand_stride_h": block.expand_stride[0],
                "expand_stride_w": block.expand_stride[1],
                "expand_pad_h": block.expand_pad[0],
                "expand_pad_w": block.expand_pad[1],
                "out_h": block.out_shape[0],
                "out_w": block.out_shape[1],
                "out_c": block.out_shape[2],
                "residual": block.has_residual,
                "window": block.window,
            }
        )
    )
