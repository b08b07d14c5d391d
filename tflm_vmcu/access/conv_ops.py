"""Access-order models of the windowed and dense kernels: CONV_2D, DEPTHWISE_CONV_2D,
AVERAGE_POOL_2D, MAX_POOL_2D and FULLY_CONNECTED (cpp/src/kernels/{conv,depthwise_conv,
pooling,fully_connected}.cc). Only the activation input (position 0) may be overlapped.

Units, in execution order (batch > out_y > out_x > ...):
  CONV_2D            one output pixel: reads its receptive field (lowest byte: channel 0 of
                     the first valid tap of the top valid row), writes its out_channels bytes.
  DEPTHWISE_CONV_2D  multiplier 1: one block of CHANNEL_BLOCK channels of one output pixel,
                     reading from that block's first channel of the first valid tap;
                     multiplier m > 1: one input channel c of one output pixel (reads from
                     channel c of the first valid tap, writes its m outputs).
  *_POOL_2D          one block of CHANNEL_BLOCK channels of one output pixel (as above).
  FULLY_CONNECTED    one batch row: reads input row b, writes output row b.

Where the C++ runs finer units than these on a wrapping input (one output byte at a time,
each re-reading the whole unit's input from the same lowest byte), the displacement bound
is the same: every byte of a unit reads from the unit's read_lo and writes below its
write_hi. A unit whose window lies entirely in the padding reads nothing; the hazard
checker then counts its writes as part of the unit before, so it inherits that unit's
read_lo.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Operator
from . import NO_READ, Steps, register, units

CHANNEL_BLOCK = 64  # kChannelBlock in cpp/src/kernels/{depthwise_conv,pooling}.cc


@register("CONV_2D")
def conv_2d(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    filt = graph.tensors[op.inputs[1]]
    first, _ = _window_starts(graph, op, filt.shape[1], filt.shape[2], dilated=True)
    out_d = graph.tensors[op.outputs[0]].shape[3]
    return _blocks(first, out_d, out_d, 1)


@register("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    filt = graph.tensors[op.inputs[1]]
    first, in_d = _window_starts(graph, op, filt.shape[1], filt.shape[2], dilated=True)
    mult = int(op.options.get("depth_multiplier", 1))
    return _blocks(first, in_d, CHANNEL_BLOCK if mult == 1 else 1, mult)


@register("AVERAGE_POOL_2D", "MAX_POOL_2D")
def pool_2d(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    first, in_d = _window_starts(graph, op, fh, fw, dilated=False)
    return _blocks(first, in_d, CHANNEL_BLOCK, 1)


@register("FULLY_CONNECTED")
def fully_connected(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    out_d, accum = graph.tensors[op.inputs[1]].shape
    batches = graph.tensors[op.inputs[0]].nbytes // accum
    rows = np.arange(batches, dtype=np.int64)
    return units((rows + 1) * out_d, rows * accum)


def _window_starts(
    graph: Graph, op: Operator, fh: int, fw: int, *, dilated: bool
) -> tuple[np.ndarray, int]:
    """Per output pixel (row-major), the input byte of channel 0 of the window's first valid
    tap (-1 when the window lies in the padding), and the input depth."""
    n, in_h, in_w, in_d = graph.tensors[op.inputs[0]].shape
    _, out_h, out_w, _ = graph.tensors[op.outputs[0]].shape
    o = op.options
    sh, sw = int(o["stride_h"]), int(o["stride_w"])
    dh = int(o.get("dilation_h_factor", 1)) if dilated else 1
    dw = int(o.get("dilation_w_factor", 1)) if dilated else 1
    y, y_ok = _first_tap(out_h, in_h, fh, sh, dh)
    x, x_ok = _first_tap(out_w, in_w, fw, sw, dw)
    b = np.arange(n, dtype=np.int64)[:, None, None]
    at = ((b * in_h + y[None, :, None]) * in_w + x[None, None, :]) * in_d
    ok = np.broadcast_to(y_ok[None, :, None] & x_ok[None, None, :], at.shape)
    return np.where(ok, at, -1).reshape(-1), in_d


def _first_tap(
    out_size: int, in_size: int, taps: int, stride: int, dilation: int
) -> tuple[np.ndarray, np.ndarray]:
    """Input index of the first valid tap per output position (ValidTaps in
    cpp/src/kernels/conv_common.h), and whether the window has any valid tap."""
    eff = (taps - 1) * dilation + 1
    pad = max(0, ((out_size - 1) * stride + eff - in_size) // 2)  # ComputePadding
    origin = np.arange(out_size, dtype=np.int64) * stride - pad
    start = np.where(origin < 0, (-origin + dilation - 1) // dilation, 0)
    end = np.where(origin < in_size, np.minimum((in_size - 1 - origin) // dilation + 1, taps), 0)
    return origin + dilation * start, start < end


def _blocks(first: np.ndarray, channels: int, block: int, mult: int) -> Steps:
    """Units of `block` input channels per output pixel (all channels when block == channels),
    each reading from its first channel of the pixel's first valid tap and writing its
    channels' outputs (`mult` output bytes per input channel)."""
    c0 = np.arange(0, channels, block, dtype=np.int64)
    pixels = np.arange(len(first), dtype=np.int64)[:, None]
    write_hi = (pixels * channels + np.minimum(c0 + block, channels)[None, :]) * mult
    read_lo = np.where(first[:, None] >= 0, first[:, None] + c0[None, :], NO_READ).reshape(-1)
    # A unit that reads nothing belongs, for the hazard checker, to the unit before it.
    reads = read_lo != NO_READ
    last = np.maximum.accumulate(np.where(reads, np.arange(len(read_lo)), -1))
    read_lo = np.where(last >= 0, read_lo[np.maximum(last, 0)], NO_READ)
    return units(write_hi.reshape(-1), read_lo)


def tflm_reference_steps(graph: Graph, op: Operator, pos: int) -> Steps | None:
    """TFLM's reference DEPTHWISE_CONV_2D and *_POOL_2D run finer units than ours: one
    channel of one output pixel (reading that channel of every tap, then writing it), so
    an offline plan for stock TFLM may overlap them more closely."""
    if pos != 0 or op.opcode not in ("DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return None
    if op.opcode == "DEPTHWISE_CONV_2D":
        filt = graph.tensors[op.inputs[1]]
        first, in_d = _window_starts(graph, op, filt.shape[1], filt.shape[2], dilated=True)
        return _blocks(first, in_d, 1, int(op.options.get("depth_multiplier", 1)))
    fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
    first, in_d = _window_starts(graph, op, fh, fw, dilated=False)
    return _blocks(first, in_d, 1, 1)
