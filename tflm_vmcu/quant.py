"""Fixed-point requantisation parameters, computed exactly as TFLM's Prepare does
(tensorflow/lite/kernels/internal/quantization_util.cc, kernel_util.cc), so the
compiler can store them in the model (flash) instead of the runtime's RAM."""

from __future__ import annotations

import math

import numpy as np

from .ir import Graph, Operator

# Ops whose per-channel multipliers/shifts the compiler precomputes, with the filter
# dimension that holds the output channels.
CHANNEL_DIM = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}


def quantize_multiplier(multiplier: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: multiplier ~= q * 2^(shift - 31), q in [2^30, 2^31)."""
    if multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(multiplier)
    q_fixed = math.floor(q * (1 << 31) + 0.5)  # exact: q * 2^31 < 2^31 has <= 22 fraction bits
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), shift


def channel_params(graph: Graph, op: Operator) -> np.ndarray | None:
    """int32[2 * C]: multipliers then shifts of a conv/depthwise op, or None."""
    dim = CHANNEL_DIM.get(op.opcode)
    if dim is None or len(op.inputs) < 2:
        return None
    inp, flt, out = (graph.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if not (inp.quant and flt.quant and out.quant) or len(flt.shape) != 4:
        return None
    channels = flt.shape[dim]
    scales = flt.quant.scales if flt.quant.per_channel else flt.quant.scales[:1] * channels
    if len(scales) != channels:
        return None
    in_scale, out_scale = float(np.float32(inp.quant.scale)), float(np.float32(out.quant.scale))
    pairs = [quantize_multiplier(in_scale * float(np.float32(s)) / out_scale) for s in scales]
    return np.array([m for m, _ in pairs] + [s for _, s in pairs], dtype=np.int32)
