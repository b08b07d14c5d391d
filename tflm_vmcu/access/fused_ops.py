"""Access-order model of the fused inverted bottleneck (cpp/src/kernels/
inverted_bottleneck.cc), for its input A and output E (the workspace never overlaps).

Units, in execution order. Rows mode, for each output row:
  - each B row the row newly needs (rows up to its last valid depthwise tap; none when its
    window lies entirely in the padding), in order: reads the A row it is computed from
    (lowest byte: the row's first pixel), writes only the workspace;
  - each output pixel: reads the workspace and, with the residual ADD, the A pixel at the
    same position; writes the output pixel.
Window mode, for each output pixel: one unit reading the A pixels of its window (lowest
byte: the A pixel of its first valid tap), writing only the workspace; then the output
pixel's unit as above.
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


def _taps(origin: int, kernel: int, size: int) -> tuple[int, int]:
    """Valid taps [first, last) of one axis (ValidTaps, dilation 1)."""
    return max(0, -origin), min(kernel, size - origin)


def block_steps(b: Block) -> Steps:
    return window_steps(b) if b.window else rows_steps(b)


def window_steps(b: Block) -> Steps:
    in_w, in_c = b.in_shape[1], b.in_shape[2]
    out_h, out_w, out_c = b.out_shape
    read_lo: list[int] = []
    write_hi: list[int] = []
    for oy in range(out_h):
        y0 = oy * b.stride[0] - b.pad[0]
        ky0, ky1 = _taps(y0, b.kernel[0], b.mid_shape[0])
        for ox in range(out_w):
            x0 = ox * b.stride[1] - b.pad[1]
            kx0, kx1 = _taps(x0, b.kernel[1], b.mid_shape[1])
            if ky1 > ky0 and kx1 > kx0:
                ay, ax = (y0 + ky0) * b.expand_stride[0], (x0 + kx0) * b.expand_stride[1]
                read_lo.append((ay * in_w + ax) * in_c)
                write_hi.append(NO_WRITE)
            px = oy * out_w + ox
            read_lo.append(px * in_c if b.has_residual else NO_READ)
            write_hi.append((px + 1) * out_c)
    return units(np.array(write_hi), np.array(read_lo), np.ones(len(read_lo), dtype=bool))


def rows_steps(b: Block) -> Steps:
    in_w, in_c = b.in_shape[1], b.in_shape[2]
    out_h, out_w, out_c = b.out_shape
    mid_h = b.mid_shape[0]
    read_lo: list[int] = []
    write_hi: list[int] = []
    next_row = 0
    for oy in range(out_h):
        y0 = oy * b.stride[0] - b.pad[0]
        first_tap, last_tap = _taps(y0, b.kernel[0], mid_h)
        need = y0 + last_tap if last_tap > first_tap else next_row
        while next_row < need:
            read_lo.append(next_row * b.expand_stride[0] * in_w * in_c)
            write_hi.append(NO_WRITE)
            next_row += 1
        px = oy * out_w + np.arange(out_w, dtype=np.int64)
        read_lo.extend(px * in_c if b.has_residual else np.full(out_w, NO_READ))
        write_hi.extend((px + 1) * out_c)
    return units(np.array(write_hi), np.array(read_lo), np.ones(len(read_lo), dtype=bool))
