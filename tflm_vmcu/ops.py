"""The one table of per-op facts: which tflite builtin ops the runtime runs.

Each row names the op, its builtin code in the tflite schema and what the kernel
supports. The C++ registry (cpp/src/registry.cc) holds the same list of codes; a
test checks that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpInfo:
    name: str
    code: int
    summary: str


SUPPORTED_OPS: tuple[OpInfo, ...] = (
    OpInfo("ADD", 0, "int8, fused activation, broadcast"),
    OpInfo("AVERAGE_POOL_2D", 1, "int8, SAME/VALID, strides, fused activation"),
    OpInfo("CONCATENATION", 2, "any axis, up to 10 inputs"),
    OpInfo("CONV_2D", 3, "int8, per-channel/per-tensor weights, strides, dilation"),
    OpInfo("DEPTHWISE_CONV_2D", 4, "int8, depth multiplier, strides, dilation"),
    OpInfo("DEQUANTIZE", 6, "int8 -> float32"),
    OpInfo("FULLY_CONNECTED", 9, "int8, optional bias, keep_num_dims"),
    OpInfo("LOGISTIC", 14, "int8"),
    OpInfo("MAX_POOL_2D", 17, "int8, SAME/VALID, strides, fused activation"),
    OpInfo("MUL", 18, "int8, fused activation, broadcast"),
    OpInfo("RELU", 19, "int8"),
    OpInfo("RELU6", 21, "int8"),
    OpInfo("RESHAPE", 22, "any type"),
    OpInfo("SOFTMAX", 25, "int8 -> int8 over the last axis"),
    OpInfo("PAD", 34, "int8, up to 5-D"),
    OpInfo("TRANSPOSE", 39, "int8, up to 6-D"),
    OpInfo("MEAN", 40, "int8, keep_dims"),
    OpInfo("QUANTIZE", 114, "float32 -> int8, int8 -> int8"),
    OpInfo("HARD_SWISH", 117, "int8"),
)

BY_NAME: dict[str, OpInfo] = {op.name: op for op in SUPPORTED_OPS}
BY_CODE: dict[int, OpInfo] = {op.code: op for op in SUPPORTED_OPS}


def is_supported(op_name: str) -> bool:
    return op_name in BY_NAME
