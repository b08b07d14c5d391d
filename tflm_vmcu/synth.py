"""Builds int8 .tflite models directly (no TensorFlow): random seeded weights, any shapes,
strides, paddings and quantisation parameters. The property tests and the paper's layer
and module reproductions use it; the files are what TFLite's converter writes for the same
layers (int8 weights and activations, int32 biases, per-channel conv weights).

Output scales default to an estimate of the op's output spread (so that outputs use the
int8 range instead of saturating); `scale_factor` multiplies that estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from .errors import TflmVmcuError
from .plan_format import pack_model

_ACTIVATIONS = {
    "NONE": schema.ActivationFunctionType.NONE,
    "RELU": schema.ActivationFunctionType.RELU,
    "RELU6": schema.ActivationFunctionType.RELU6,
}
_PADDINGS = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}
_TYPES: dict[type, int] = {
    np.int8: schema.TensorType.INT8,
    np.int16: schema.TensorType.INT16,
    np.int32: schema.TensorType.INT32,
}
_INT8_STD = 73.9  # standard deviation of uniform int8 values


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """TFLite's output size for one spatial axis (0 when the window does not fit)."""
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        return -(-size // stride)
    return max(0, (size - effective) // stride + 1)


class ModelBuilder:
    """One subgraph, built op by op; every method returns the index of its output tensor."""

    def __init__(self, seed: int = 0, description: str = "tflm_vmcu.synth") -> None:
        self.rng = np.random.default_rng(seed)
        self.description = description
        self.tensors: list[schema.TensorT] = []
        self.buffers: list[schema.BufferT] = [schema.BufferT()]  # buffer 0: empty, by convention
        self.operators: list[schema.OperatorT] = []
        self.opcodes: list[int] = []
        self.inputs: list[int] = []
        self.shapes: list[tuple[int, ...]] = []
        self.quant: list[tuple[float, int]] = []

    # --- tensors -----------------------------------------------------------------------

    def _tensor(
        self,
        shape: Sequence[int],
        scale: float | Sequence[float] | np.ndarray,
        zero_point: int = 0,
        dtype: type = np.int8,
        data: np.ndarray | None = None,
        quantized_dimension: int = 0,
        name: str | None = None,
    ) -> int:
        t = schema.TensorT()
        t.shape = list(shape)
        t.type = _TYPES[dtype]
        t.name = name or f"t{len(self.tensors)}"
        q = schema.QuantizationParametersT()
        scales = [float(s) for s in np.atleast_1d(np.asarray(scale, dtype=np.float64))]
        q.scale = scales
        q.zeroPoint = [int(zero_point)] * len(scales)
        q.quantizedDimension = quantized_dimension
        t.quantization = q
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        self.shapes.append(tuple(int(d) for d in shape))
        self.quant.append((scales[0], int(zero_point)))
        return len(self.tensors) - 1

    def _int32(self, values: Sequence[int], name: str) -> int:
        data = np.asarray(values, dtype=np.int32)
        t = schema.TensorT()
        t.shape = [len(data)]
        t.type = schema.TensorType.INT32
        t.name = name
        buf = schema.BufferT()
        buf.data = np.frombuffer(data.tobytes(), np.uint8)
        self.buffers.append(buf)
        t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.shapes.append(tuple(t.shape))
        self.quant.append((0.0, 0))
        return len(self.tensors) - 1

    def input(self, shape: Sequence[int], scale: float = 0.02, zero_point: int = 0) -> int:
        index = self._tensor(shape, scale, zero_point, name=f"input{len(self.inputs)}")
        self.inputs.append(index)
        return index

    def _activation(self, shape: Sequence[int], scale: float, zero_point: int) -> int:
        if scale <= 0 or not math.isfinite(scale):
            raise TflmVmcuError(f"output scale {scale} is not a positive number")
        return self._tensor(shape, scale, int(np.clip(zero_point, -128, 127)))

    def _op(
        self,
        name: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options: Any = None,
        options_type: str | None = None,
    ) -> int:
        code = getattr(schema.BuiltinOperator, name)
        if code not in self.opcodes:
            self.opcodes.append(code)
        op = schema.OperatorT()
        op.opcodeIndex = self.opcodes.index(code)
        op.inputs = list(inputs)
        op.outputs = list(outputs)
        if options is not None:
            op.builtinOptionsType = getattr(schema.BuiltinOptions, options_type or "NONE")
            op.builtinOptions = options
        self.operators.append(op)
        return outputs[0]

    def _weights(self, shape: Sequence[int], dim: int, channels: int, per_channel: bool) -> int:
        w = self.rng.integers(-127, 128, size=shape, dtype=np.int8)
        scales = self.rng.uniform(0.002, 0.02, size=channels if per_channel else 1)
        return self._tensor(shape, scales, 0, data=w, quantized_dimension=dim)

    def _bias(self, in_index: int, w_index: int, channels: int, fan_in: int) -> int:
        w_scales = np.asarray(self.tensors[w_index].quantization.scale)
        scales = self.quant[in_index][0] * np.broadcast_to(w_scales, (channels,))
        spread = int(_INT8_STD * _INT8_STD * math.sqrt(fan_in))
        b = self.rng.integers(-spread, spread + 1, size=channels, dtype=np.int32)
        return self._tensor([channels], scales, 0, dtype=np.int32, data=b)

    def _acc_scale(self, x: int, w: int, fan_in: int, scale_factor: float) -> float:
        """Output scale that spreads an accumulator of fan_in products over ~40 levels."""
        w_scale = float(np.mean(self.tensors[w].quantization.scale))
        spread = _INT8_STD * _INT8_STD * math.sqrt(fan_in) * self.quant[x][0] * w_scale
        return spread / 40.0 * scale_factor

    def _window_output(
        self,
        x: int,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int],
        padding: str,
    ) -> tuple[int, int, int]:
        """Output rows and columns of a windowed op over NHWC tensor x, and x's channels."""
        _, h, w, c = self.shapes[x]
        oh = conv_output_size(h, kernel[0], stride[0], dilation[0], padding)
        return oh, conv_output_size(w, kernel[1], stride[1], dilation[1], padding), c

    # --- ops ---------------------------------------------------------------------------

    def conv2d(
        self,
        x: int,
        filters: int,
        kernel: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (1, 1),
        padding: str = "SAME",
        dilation: tuple[int, int] = (1, 1),
        activation: str = "NONE",
        per_channel: bool = True,
        scale_factor: float = 1.0,
        out_zero_point: int = 0,
        bias: bool = True,
    ) -> int:
        oh, ow, c = self._window_output(x, kernel, stride, dilation, padding)
        wt = self._weights([filters, kernel[0], kernel[1], c], 0, filters, per_channel)
        inputs = [x, wt, self._bias(x, wt, filters, kernel[0] * kernel[1] * c) if bias else -1]
        scale = self._acc_scale(x, wt, kernel[0] * kernel[1] * c, scale_factor)
        out = self._activation([1, oh, ow, filters], scale, out_zero_point)
        opt = schema.Conv2DOptionsT()
        opt.padding, opt.fusedActivationFunction = _PADDINGS[padding], _ACTIVATIONS[activation]
        opt.strideH, opt.strideW = stride
        opt.dilationHFactor, opt.dilationWFactor = dilation
        return self._op("CONV_2D", inputs, [out], opt, "Conv2DOptions")

    def depthwise_conv2d(
        self,
        x: int,
        multiplier: int = 1,
        kernel: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (1, 1),
        padding: str = "SAME",
        dilation: tuple[int, int] = (1, 1),
        activation: str = "NONE",
        per_channel: bool = True,
        scale_factor: float = 1.0,
        out_zero_point: int = 0,
    ) -> int:
        oh, ow, c = self._window_output(x, kernel, stride, dilation, padding)
        oc = c * multiplier
        wt = self._weights([1, kernel[0], kernel[1], oc], 3, oc, per_channel)
        inputs = [x, wt, self._bias(x, wt, oc, kernel[0] * kernel[1])]
        scale = self._acc_scale(x, wt, kernel[0] * kernel[1], scale_factor)
        out = self._activation([1, oh, ow, oc], scale, out_zero_point)
        opt = schema.DepthwiseConv2DOptionsT()
        opt.padding, opt.fusedActivationFunction = _PADDINGS[padding], _ACTIVATIONS[activation]
        opt.strideH, opt.strideW = stride
        opt.dilationHFactor, opt.dilationWFactor = dilation
        opt.depthMultiplier = multiplier
        return self._op("DEPTHWISE_CONV_2D", inputs, [out], opt, "DepthwiseConv2DOptions")

    def fully_connected(
        self,
        x: int,
        units: int,
        activation: str = "NONE",
        per_channel: bool = False,
        keep_num_dims: bool = False,
        bias: bool = True,
        scale_factor: float = 1.0,
        out_zero_point: int = 0,
    ) -> int:
        shape = self.shapes[x]
        depth = shape[-1]
        wt = self._weights([units, depth], 0, units, per_channel)
        inputs = [x, wt, self._bias(x, wt, units, depth) if bias else -1]
        batches = int(np.prod(shape[:-1]))
        out_shape = [*shape[:-1], units] if keep_num_dims else [batches, units]
        scale = self._acc_scale(x, wt, depth, scale_factor)
        out = self._activation(out_shape, scale, out_zero_point)
        opt = schema.FullyConnectedOptionsT()
        opt.fusedActivationFunction = _ACTIVATIONS[activation]
        opt.keepNumDims = keep_num_dims
        return self._op("FULLY_CONNECTED", inputs, [out], opt, "FullyConnectedOptions")

    def pool(
        self,
        kind: str,
        x: int,
        size: tuple[int, int] = (2, 2),
        stride: tuple[int, int] = (2, 2),
        padding: str = "VALID",
        activation: str = "NONE",
    ) -> int:
        """kind: "AVERAGE" or "MAX"; the output keeps the input's quantisation."""
        oh, ow, c = self._window_output(x, size, stride, (1, 1), padding)
        out = self._activation([1, oh, ow, c], *self.quant[x])
        opt = schema.Pool2DOptionsT()
        opt.padding, opt.fusedActivationFunction = _PADDINGS[padding], _ACTIVATIONS[activation]
        opt.strideH, opt.strideW = stride
        opt.filterHeight, opt.filterWidth = size
        return self._op(f"{kind}_POOL_2D", [x], [out], opt, "Pool2DOptions")

    def elementwise(
        self,
        kind: str,
        a: int,
        b: int,
        activation: str = "NONE",
        out_scale: float | None = None,
        out_zero_point: int = 0,
    ) -> int:
        """kind: "ADD" or "MUL", with numpy-style broadcasting of the two shapes."""
        shape = np.broadcast_shapes(self.shapes[a], self.shapes[b])
        (sa, _), (sb, _) = self.quant[a], self.quant[b]
        default = (sa + sb) * _INT8_STD / 40 if kind == "ADD" else sa * sb * _INT8_STD**2 / 40
        out = self._activation(shape, out_scale or default, out_zero_point)
        opt = getattr(schema, f"{kind.title()}OptionsT")()
        opt.fusedActivationFunction = _ACTIVATIONS[activation]
        return self._op(kind, [a, b], [out], opt, f"{kind.title()}Options")

    def constant(self, shape: Sequence[int], scale: float = 0.02, zero_point: int = 0) -> int:
        """A random int8 constant tensor (e.g. the second operand of ADD or MUL)."""
        data = self.rng.integers(-128, 128, size=shape, dtype=np.int8)
        return self._tensor(shape, scale, zero_point, data=data)

    def unary(self, kind: str, x: int, out_scale: float | None = None, out_zp: int = 0) -> int:
        """RELU, RELU6, HARD_SWISH (requantising), LOGISTIC (output 1/256, -128)."""
        if kind == "LOGISTIC":
            out_scale, out_zp = 1.0 / 256, -128
        out = self._activation(self.shapes[x], out_scale or self.quant[x][0], out_zp)
        return self._op(kind, [x], [out])

    def softmax(self, x: int, beta: float = 1.0) -> int:
        out = self._activation(self.shapes[x], 1.0 / 256, -128)
        opt = schema.SoftmaxOptionsT()
        opt.beta = beta
        return self._op("SOFTMAX", [x], [out], opt, "SoftmaxOptions")

    def pad(self, x: int, paddings: Sequence[tuple[int, int]]) -> int:
        shape = [d + lo + hi for d, (lo, hi) in zip(self.shapes[x], paddings, strict=True)]
        pads = self._int32([v for pair in paddings for v in pair], f"pad{len(self.tensors)}")
        self.tensors[pads].shape = [len(paddings), 2]
        out = self._activation(shape, *self.quant[x])
        return self._op("PAD", [x, pads], [out], schema.PadOptionsT(), "PadOptions")

    def concatenation(self, xs: Sequence[int], axis: int, activation: str = "NONE") -> int:
        """Inputs share the first input's quantisation (as the converter emits them)."""
        shape = list(self.shapes[xs[0]])
        shape[axis] = sum(self.shapes[i][axis] for i in xs)
        out = self._activation(shape, *self.quant[xs[0]])
        opt = schema.ConcatenationOptionsT()
        opt.axis, opt.fusedActivationFunction = axis, _ACTIVATIONS[activation]
        return self._op("CONCATENATION", list(xs), [out], opt, "ConcatenationOptions")

    def transpose(self, x: int, perm: Sequence[int]) -> int:
        shape = [self.shapes[x][p] for p in perm]
        out = self._activation(shape, *self.quant[x])
        p = self._int32(list(perm), f"perm{len(self.tensors)}")
        return self._op("TRANSPOSE", [x, p], [out], schema.TransposeOptionsT(), "TransposeOptions")

    def reshape(self, x: int, shape: Sequence[int]) -> int:
        out = self._activation(shape, *self.quant[x])
        s = self._int32(list(shape), f"shape{len(self.tensors)}")
        opt = schema.ReshapeOptionsT()
        opt.newShape = list(shape)
        return self._op("RESHAPE", [x, s], [out], opt, "ReshapeOptions")

    def mean(
        self, x: int, axes: Sequence[int], keep_dims: bool = True, scale_factor: float = 1.0
    ) -> int:
        shape = list(self.shapes[x])
        kept = [1 if i in axes else d for i, d in enumerate(shape)]
        out_shape = kept if keep_dims else [d for i, d in enumerate(shape) if i not in axes]
        scale, zp = self.quant[x]
        out = self._activation(out_shape, scale * scale_factor, zp)
        a = self._int32(list(axes), f"axes{len(self.tensors)}")
        opt = schema.ReducerOptionsT()
        opt.keepDims = keep_dims
        return self._op("MEAN", [x, a], [out], opt, "ReducerOptions")

    # --- output ------------------------------------------------------------------------

    def build(self, outputs: Sequence[int]) -> bytes:
        """The .tflite bytes, with `outputs` as the model outputs (buffers 16-byte aligned)."""
        sub = schema.SubGraphT()
        sub.tensors, sub.operators = self.tensors, self.operators
        sub.inputs, sub.outputs = list(self.inputs), list(outputs)
        sub.name = "main"
        model = schema.ModelT()
        model.version = 3
        model.description = self.description
        model.subgraphs, model.buffers = [sub], self.buffers
        model.operatorCodes = []
        for code in self.opcodes:
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            model.operatorCodes.append(oc)
        size = sum(len(b.data) for b in self.buffers if b.data is not None)
        return pack_model(model, size)
