"""Access-order model of the fused inverted bottleneck (cpp/src/kernels/
inverted_bottleneck.cc), for its input A and output E (the workspace never overlaps).

Units, in execution order, for each output row:
  - each B row the row newly needs (rows up to its last valid depthwise tap; none when its
    window lies entirely in the padding), in order:
    reads the A row it is computed from (lowest byte: the row's first pixel), writes only
    the workspace;
  - each output pixel: reads the workspace and, with the residual ADD, the A pixel at the
    same position; writes the output pixel.
"""

from __future__ import annotations

import numpy as np

from ..fusion import BLOCK_OP, Block
from ..ir import Graph, Operator
from . import NO_READ, NO_WRITE, Steps, register, units


@register(BLOCK_OP)
def inverted_bottleneck(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    return block_steps(op.options["block"])


def block_steps(b: Block) -> Steps:
    in_w, in_c = b.in_shape[1], b.in_shape[2]
    out_h, out_w, out_c = b.out_shape
    mid_h = b.mid_shape[0]
    read_lo: list[int] = []
    write_hi: list[int] = []
    next_row = 0
    for oy in range(out_h):
        y0 = oy * b.stride[0] - b.pad[0]
        first_tap = max(0, -y0)  # valid taps [first_tap, last_tap): ValidTaps
        last_tap = min(b.kernel[0], mid_h - y0)
        need = y0 + last_tap if last_tap > first_tap else next_row
        while next_row < need:
            read_lo.append(next_row * b.expand_stride[0] * in_w * in_c)
            write_hi.append(NO_WRITE)
            next_row += 1
        px = oy * out_w + np.arange(out_w, dtype=np.int64)
        read_lo.extend(px * in_c if b.has_residual else np.full(out_w, NO_READ))
        write_hi.extend((px + 1) * out_c)
    return units(np.array(write_hi), np.array(read_lo), np.ones(len(read_lo), dtype=bool))
