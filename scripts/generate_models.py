"""Generate the small int8 TensorFlow Lite models committed under ``models/``.

Every model is built with Keras from random (seeded) weights and converted to a fully
int8 ``.tflite`` file, then checked in the ``tflite-micro`` runtime. The project's tests run
each file through our runtime and through TFLM and compare the outputs bit for bit.

Two kinds of model are produced:

* ``op_<name>.tflite``: one TFLite builtin op kind in several configurations (shapes,
  SAME/VALID padding, strides, fused activations), usually as several branches from one
  input, each branch a separate model output.
* Whole networks: a small MobileNetV2 (the project's bundled default model), the MLPerf Tiny
  style DS-CNN keyword spotter, ResNet-8 and a fully connected autoencoder.

Converter settings (``convert``): ``TFLiteConverter.from_keras_model`` with
``optimizations=[Optimize.DEFAULT]``, a representative dataset of 20 seeded random samples,
``supported_ops=[TFLITE_BUILTINS_INT8]`` and int8 model input/output (float32 for
``op_quantize_dequantize``, so the converter adds QUANTIZE/DEQUANTIZE around the int8 body).
Weights are int8, per output channel for convolutions and (the TF 2.21 default) dense layers;
``op_fully_connected_per_tensor`` turns that off for dense layers. Activations are int8,
biases int32.

Two traps this script avoids:

1. Keras' default initialisation with untouched BatchNormalization layers makes activations
   shrink layer after layer (scales down to ~1e-8); TFLM's int8 SOFTMAX then abort()s the
   process. Biases and BatchNorm gamma/beta are therefore randomised and the BatchNorm
   moving statistics are set from one training-mode pass over random inputs (with momentum
   0, so the batch statistics are copied), which gives activation scales like those of a
   trained network (roughly 0.004 to 0.1).
2. A dynamic batch dimension turns every Flatten into SHAPE+STRIDED_SLICE+PACK+RESHAPE, so
   every input is declared with a fixed batch of 1 (``keras.Input(shape, batch_size=1)``).

Everything is seeded per model (from the model's name), and Keras' layer-name counters are
reset before each build, so the output is byte-identical across runs and independent of
``--only``.

After writing, every model is loaded in the tflite-micro runtime in a subprocess (a broken
model can abort() the interpreter), invoked on three seeded random inputs and checked for
degenerate outputs. ``models/README.md`` is rewritten from the files present.

Usage::

    python scripts/generate_models.py [--out models] [--only NAME ...] [--check-only]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Before TensorFlow is imported: quiet C++ logging, and no oneDNN kernels, whose float
# results can depend on the CPU (BatchNorm statistics must not).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402, RUF100
import numpy as np  # noqa: E402, RUF100
import tensorflow as tf  # noqa: E402, RUF100
from keras import layers  # noqa: E402, RUF100
from tflite_micro.tensorflow.lite.micro.python import (  # noqa: E402, RUF100
    schema_py_generated as schema,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_REPRESENTATIVE_SAMPLES = 20
NUM_BATCHNORM_SAMPLES = 32
CHECK_ARENA_SIZE = 1 << 20
CHECK_RUNS = 3

KerasTensor = keras.KerasTensor


# --------------------------------------------------------------------------------------
# Model registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One generated model: how to build it and what it must contain."""

    name: str
    build: Callable[[], keras.Model]
    covers: str
    required_ops: tuple[str, ...]
    input_range: tuple[float, float] = (-1.0, 1.0)
    float_io: bool = False
    per_tensor_dense: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.tflite"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode()) & 0x7FFFFFFF


def _input(shape: tuple[int, ...]) -> KerasTensor:
    return keras.Input(shape, batch_size=1, name="input")


def _model(name: str, inputs: KerasTensor, outputs: list[KerasTensor]) -> keras.Model:
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=name)


# --------------------------------------------------------------------------------------
# Per-op models
# --------------------------------------------------------------------------------------


def op_conv_2d() -> keras.Model:
    """CONV_2D: 1x1/3x3/5x5, stride 1/2, SAME/VALID, dilation 2, RELU/RELU6/none."""
    x = _input((15, 12, 8))
    b = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    outputs = [
        layers.Conv2D(8, 1)(x),
        b,
        layers.Conv2D(12, 3, strides=2, padding="valid", activation="relu6")(x),
        layers.Conv2D(8, 5, strides=2, padding="same")(x),
        layers.Conv2D(8, 5, padding="valid", activation="relu")(x),
        layers.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu6")(x),
        # A conv fed by a conv, stride 2 on an odd height, without bias.
        layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False)(b),
    ]
    return _model("op_conv_2d", x, outputs)


def op_depthwise_conv_2d() -> keras.Model:
    """DEPTHWISE_CONV_2D: 3x3/5x5, stride 1/2, SAME/VALID, multiplier 1/2, dilation 2."""
    x = _input((16, 14, 8))
    dw = layers.DepthwiseConv2D
    outputs = [
        dw(3, padding="same", activation="relu")(x),
        dw(3, strides=2, padding="same", activation="relu6")(x),
        dw(5, padding="valid", depth_multiplier=2)(x),
        dw(3, dilation_rate=2, padding="same")(x),
        dw(5, strides=2, padding="valid", activation="relu")(x),
        dw(3, padding="valid", depth_multiplier=2, activation="relu6")(x),
        dw(3, strides=2, padding="same", depth_multiplier=2, use_bias=False)(x),
    ]
    return _model("op_depthwise_conv_2d", x, outputs)


def _fully_connected_branches(name: str) -> keras.Model:
    x = _input((4, 4, 8))
    flat = layers.Flatten()(x)
    hidden = layers.Dense(32, activation="relu")(flat)
    outputs = [
        layers.Dense(10)(hidden),
        layers.Dense(8)(x),  # 4D input: FULLY_CONNECTED with keep_num_dims
        layers.Dense(16, activation="relu6", use_bias=False)(flat),
    ]
    return _model(name, x, outputs)


def op_fully_connected() -> keras.Model:
    """FULLY_CONNECTED: after a flatten (RESHAPE), on a 4D input, RELU/RELU6/none, no bias.

    The converter quantises dense weights per output channel by default.
    """
    return _fully_connected_branches("op_fully_connected")


def op_fully_connected_per_tensor() -> keras.Model:
    """As ``op_fully_connected`` but converted with per-tensor weights (as older models)."""
    return _fully_connected_branches("op_fully_connected_per_tensor")


def op_add() -> keras.Model:
    """ADD: same-shape inputs with different scales, fused RELU/RELU6/none."""
    x = _input((12, 12, 8))
    a = layers.Conv2D(8, 1)(x)
    b = layers.Conv2D(8, 3, padding="same")(x)
    outputs = [
        layers.Add()([a, b]),
        layers.ReLU()(layers.Add()([x, a])),
        layers.ReLU(6.0)(layers.Add()([b, x])),
    ]
    return _model("op_add", x, outputs)


def op_mul() -> keras.Model:
    """MUL: same shape, broadcast (1,H,W,C)*(1,1,1,C) as in squeeze-excite, fused RELU."""
    x = _input((10, 10, 8))
    a = layers.Conv2D(8, 1)(x)
    channel_means = layers.GlobalAveragePooling2D(keepdims=True)(x)
    outputs = [
        layers.Multiply()([x, a]),
        layers.Multiply()([x, channel_means]),
        layers.ReLU()(layers.Multiply()([a, a])),
    ]
    return _model("op_mul", x, outputs)


def _pool_branches(pool: type[layers.Layer], x: KerasTensor) -> list[KerasTensor]:
    return [
        pool(2, strides=2, padding="valid")(x),
        pool(3, strides=1, padding="same")(x),
        pool(3, strides=2, padding="same")(x),
        pool(3, strides=2, padding="valid")(x),
        pool(2, strides=1, padding="valid")(x),
        pool((3, 2), strides=(1, 2), padding="same")(x),
    ]


def op_average_pool_2d() -> keras.Model:
    """AVERAGE_POOL_2D: 2x2/3x3/3x2, stride 1/2, SAME/VALID."""
    x = _input((16, 13, 8))
    return _model("op_average_pool_2d", x, _pool_branches(layers.AveragePooling2D, x))


def op_max_pool_2d() -> keras.Model:
    """MAX_POOL_2D: 2x2/3x3/3x2, stride 1/2, SAME/VALID."""
    x = _input((16, 13, 8))
    return _model("op_max_pool_2d", x, _pool_branches(layers.MaxPooling2D, x))


def op_reshape() -> keras.Model:
    """RESHAPE: 4D to 2D, 3D and another 4D shape."""
    x = _input((8, 8, 4))
    outputs = [
        layers.Flatten()(x),
        layers.Reshape((16, 16))(x),
        layers.Reshape((4, 4, 16))(x),
    ]
    return _model("op_reshape", x, outputs)


def op_softmax() -> keras.Model:
    """SOFTMAX on the last axis of a 4D tensor, of a 3D tensor and of a 2D classifier head."""
    x = _input((4, 4, 10))
    logits = layers.Dense(10)(layers.Flatten()(x))
    outputs = [
        layers.Softmax()(x),
        layers.Softmax()(layers.Reshape((16, 10))(x)),
        layers.Softmax()(logits),
    ]
    return _model("op_softmax", x, outputs)


def op_pad() -> keras.Model:
    """PAD: symmetric and asymmetric ZeroPadding2D, input with a non-zero zero point."""
    x = _input((8, 8, 4))
    outputs = [
        layers.ZeroPadding2D(1)(x),
        layers.ZeroPadding2D(((1, 2), (0, 3)))(x),
        layers.ZeroPadding2D(((0, 1), (0, 1)))(x),
    ]
    return _model("op_pad", x, outputs)


def op_mean() -> keras.Model:
    """MEAN over H and W (global average pooling), keepdims False and True."""
    x = _input((8, 8, 16))
    conv = layers.Conv2D(12, 3, padding="same", activation="relu")(x)
    outputs = [
        layers.GlobalAveragePooling2D()(x),
        layers.GlobalAveragePooling2D(keepdims=True)(x),
        layers.GlobalAveragePooling2D()(conv),
    ]
    return _model("op_mean", x, outputs)


def op_quantize_dequantize() -> keras.Model:
    """QUANTIZE/DEQUANTIZE: float32 input and output around an int8 body."""
    x = _input((8, 8, 3))
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = layers.Conv2D(4, 1)(y)
    return _model("op_quantize_dequantize", x, [y])


def op_concatenation() -> keras.Model:
    """CONCATENATION on the channel axis, 2 and 3 inputs of different scales."""
    x = _input((8, 8, 4))
    a = layers.Conv2D(8, 1)(x)
    b = layers.Conv2D(4, 3, padding="same", activation="relu6")(x)
    c = layers.Conv2D(6, 3, padding="same")(x)
    outputs = [
        layers.Concatenate()([a, b]),
        layers.Concatenate()([x, c, b]),
    ]
    return _model("op_concatenation", x, outputs)


def op_transpose() -> keras.Model:
    """TRANSPOSE (Keras Permute) with three permutations of a 4D tensor."""
    x = _input((4, 6, 8))
    outputs = [
        layers.Permute((2, 1, 3))(x),
        layers.Permute((3, 1, 2))(x),
        layers.Permute((1, 3, 2))(x),
    ]
    return _model("op_transpose", x, outputs)


def op_logistic() -> keras.Model:
    """LOGISTIC: sigmoid as its own layer, on the input and after a convolution."""
    x = _input((8, 8, 8))
    conv = layers.Conv2D(8, 1)(x)
    outputs = [
        layers.Activation("sigmoid")(x),
        layers.Activation("sigmoid")(conv),
    ]
    return _model("op_logistic", x, outputs)


def op_hard_swish() -> keras.Model:
    """HARD_SWISH (x * relu6(x + 3) / 6) on the input and after a convolution."""
    x = _input((8, 8, 8))
    conv = layers.Conv2D(8, 1)(x)
    outputs = [
        layers.Activation("hard_swish")(x),
        layers.Activation("hard_swish")(conv),
    ]
    return _model("op_hard_swish", x, outputs)


def op_relu() -> keras.Model:
    """RELU as a standalone op: on the input and after a concatenation (nothing to fuse)."""
    x = _input((8, 8, 8))
    conv = layers.Conv2D(4, 1)(x)
    outputs = [
        layers.ReLU()(x),
        layers.ReLU()(layers.Concatenate()([x, conv])),
    ]
    return _model("op_relu", x, outputs)


def op_relu6() -> keras.Model:
    """RELU6 as a standalone op: on the input and after a concatenation (nothing to fuse)."""
    x = _input((8, 8, 8))
    conv = layers.Conv2D(4, 1)(x)
    outputs = [
        layers.ReLU(6.0)(x),
        layers.ReLU(6.0)(layers.Concatenate()([x, conv])),
    ]
    return _model("op_relu6", x, outputs)


# --------------------------------------------------------------------------------------
# Whole networks
# --------------------------------------------------------------------------------------


def _conv_bn(
    x: KerasTensor,
    filters: int,
    kernel: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    activation: str | None = "relu",
) -> KerasTensor:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if activation == "relu6":
        return layers.ReLU(6.0)(x)
    if activation == "relu":
        return layers.ReLU()(x)
    return x


def _depthwise_bn(x: KerasTensor, strides: int = 1, activation: str = "relu") -> KerasTensor:
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU(6.0 if activation == "relu6" else None)(x)


def _inverted_residual(x: KerasTensor, expansion: int, filters: int, stride: int) -> KerasTensor:
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = _conv_bn(y, in_channels * expansion, 1, activation="relu6")
    y = _depthwise_bn(y, strides=stride, activation="relu6")
    y = _conv_bn(y, filters, 1, activation=None)
    if stride == 1 and in_channels == filters:
        y = layers.Add()([x, y])
    return y


def mobilenetv2_small() -> keras.Model:
    """MobileNetV2 (alpha ~0.35) on 96x96x3 with 11 inverted-residual blocks, 10 classes."""
    x = _input((96, 96, 3))
    y = _conv_bn(x, 16, 3, strides=2, activation="relu6")
    # (expansion, output channels, repeats, first stride)
    blocks = [
        (1, 8, 1, 1),
        (6, 16, 2, 2),
        (6, 16, 3, 2),
        (6, 24, 2, 2),
        (6, 32, 2, 1),
        (6, 48, 1, 2),
    ]
    for expansion, filters, repeats, stride in blocks:
        for i in range(repeats):
            y = _inverted_residual(y, expansion, filters, stride if i == 0 else 1)
    y = _conv_bn(y, 160, 1, activation="relu6")
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(10)(y)
    y = layers.Softmax()(y)
    return _model("mobilenetv2_small", x, [y])


def dscnn_kws() -> keras.Model:
    """DS-CNN keyword spotting as in MLPerf Tiny: 49x10 MFCC input, 12 classes."""
    x = _input((49, 10, 1))
    y = layers.Conv2D(64, (10, 4), strides=2, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    for _ in range(4):
        y = layers.DepthwiseConv2D(3, padding="same")(y)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(64, 1)(y)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
    y = layers.AveragePooling2D(pool_size=(y.shape[1], y.shape[2]))(y)
    y = layers.Flatten()(y)
    y = layers.Dense(12)(y)
    y = layers.Softmax()(y)
    return _model("dscnn_kws", x, [y])


def _resnet_stack(x: KerasTensor, filters: int, stride: int) -> KerasTensor:
    y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(filters, 3, padding="same")(y)
    y = layers.BatchNormalization()(y)
    if stride != 1:
        x = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
    y = layers.Add()([x, y])
    return layers.ReLU()(y)


def resnet8() -> keras.Model:
    """ResNet-8 as in MLPerf Tiny image classification: 32x32x3 input, 10 classes."""
    x = _input((32, 32, 3))
    y = layers.Conv2D(16, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = _resnet_stack(y, 16, 1)
    y = _resnet_stack(y, 32, 2)
    y = _resnet_stack(y, 64, 2)
    y = layers.AveragePooling2D(pool_size=y.shape[1])(y)
    y = layers.Flatten()(y)
    y = layers.Dense(10)(y)
    y = layers.Softmax()(y)
    return _model("resnet8", x, [y])


def fc_autoencoder() -> keras.Model:
    """Fully connected autoencoder like MLPerf Tiny anomaly detection, hidden layers halved.

    MLPerf uses 640-128x4-8-128x4-640; with 64 units the file stays well under 300 KB.
    """
    x = _input((640,))
    y = x
    for units in (64, 64, 64, 64, 8, 64, 64, 64, 64):
        y = layers.Dense(units)(y)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
    y = layers.Dense(640)(y)
    return _model("fc_autoencoder", x, [y])


SPECS: list[ModelSpec] = [
    ModelSpec(
        "op_conv_2d",
        op_conv_2d,
        "CONV_2D 1x1/3x3/5x5, stride 1/2, SAME/VALID, dilation 2, RELU/RELU6/none, "
        "no-bias conv fed by a conv; non-square 15x12 input",
        ("CONV_2D",),
    ),
    ModelSpec(
        "op_depthwise_conv_2d",
        op_depthwise_conv_2d,
        "DEPTHWISE_CONV_2D 3x3/5x5, stride 1/2, SAME/VALID, depth multiplier 1/2, "
        "dilation 2, RELU/RELU6/none, no bias",
        ("DEPTHWISE_CONV_2D",),
    ),
    ModelSpec(
        "op_fully_connected",
        op_fully_connected,
        "FULLY_CONNECTED after a flatten (RESHAPE), chained, on a 4D input (keep_num_dims), "
        "RELU/RELU6/none, no bias",
        ("FULLY_CONNECTED", "RESHAPE"),
    ),
    ModelSpec(
        "op_fully_connected_per_tensor",
        op_fully_connected_per_tensor,
        "as op_fully_connected, with per-tensor (not per-channel) weight quantisation",
        ("FULLY_CONNECTED", "RESHAPE"),
        per_tensor_dense=True,
    ),
    ModelSpec(
        "op_add",
        op_add,
        "ADD of same-shape tensors with different scales, fused RELU/RELU6/none",
        ("ADD",),
    ),
    ModelSpec(
        "op_mul",
        op_mul,
        "MUL same shape, broadcast (1,H,W,C)*(1,1,1,C), fused RELU",
        ("MUL", "MEAN"),
    ),
    ModelSpec(
        "op_average_pool_2d",
        op_average_pool_2d,
        "AVERAGE_POOL_2D 2x2/3x3/3x2, stride 1/2, SAME/VALID",
        ("AVERAGE_POOL_2D",),
    ),
    ModelSpec(
        "op_max_pool_2d",
        op_max_pool_2d,
        "MAX_POOL_2D 2x2/3x3/3x2, stride 1/2, SAME/VALID",
        ("MAX_POOL_2D",),
    ),
    ModelSpec("op_reshape", op_reshape, "RESHAPE 4D to 2D, 3D and 4D", ("RESHAPE",)),
    ModelSpec(
        "op_softmax",
        op_softmax,
        "SOFTMAX on the last axis of a 4D, a 3D and a 2D (FC classifier head) tensor",
        ("SOFTMAX",),
        input_range=(-4.0, 4.0),
    ),
    ModelSpec(
        "op_pad",
        op_pad,
        "PAD symmetric and asymmetric, input zero point != 0",
        ("PAD",),
        input_range=(-0.5, 1.5),
    ),
    ModelSpec(
        "op_mean",
        op_mean,
        "MEAN over H,W (GlobalAveragePooling2D), keepdims False/True, input zero point != 0",
        ("MEAN",),
        input_range=(-0.5, 1.5),
    ),
    ModelSpec(
        "op_quantize_dequantize",
        op_quantize_dequantize,
        "float32 I/O: QUANTIZE at the start, DEQUANTIZE at the end of an int8 body",
        ("QUANTIZE", "DEQUANTIZE"),
        float_io=True,
    ),
    ModelSpec(
        "op_concatenation",
        op_concatenation,
        "CONCATENATION on the channel axis, 2 and 3 inputs",
        ("CONCATENATION",),
    ),
    ModelSpec(
        "op_transpose",
        op_transpose,
        "TRANSPOSE with permutations (0,2,1,3), (0,3,1,2), (0,1,3,2)",
        ("TRANSPOSE",),
    ),
    ModelSpec(
        "op_logistic",
        op_logistic,
        "LOGISTIC on the input and after a conv",
        ("LOGISTIC",),
        input_range=(-4.0, 4.0),
    ),
    ModelSpec(
        "op_hard_swish",
        op_hard_swish,
        "HARD_SWISH on the input and after a conv",
        ("HARD_SWISH",),
        input_range=(-5.0, 5.0),
    ),
    ModelSpec(
        "op_relu", op_relu, "standalone RELU on the input and after a CONCATENATION", ("RELU",)
    ),
    ModelSpec(
        "op_relu6",
        op_relu6,
        "standalone RELU6 on the input and after a CONCATENATION",
        ("RELU6",),
        input_range=(-8.0, 8.0),
    ),
    ModelSpec(
        "mobilenetv2_small",
        mobilenetv2_small,
        "MobileNetV2 alpha~0.35 on 96x96x3, 11 inverted-residual blocks (expand/depthwise/project, "
        "residual ADD), GAP (MEAN), FC, SOFTMAX; the bundled default model",
        ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"),
    ),
    ModelSpec(
        "dscnn_kws",
        dscnn_kws,
        "DS-CNN keyword spotting (MLPerf Tiny): conv 10x4 s2, 4 depthwise-separable blocks, "
        "average pool, FC, SOFTMAX",
        ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"),
    ),
    ModelSpec(
        "resnet8",
        resnet8,
        "ResNet-8 (MLPerf Tiny IC): 3 residual stacks with ADD, two 1x1 conv shortcuts, "
        "average pool, FC, SOFTMAX",
        ("CONV_2D", "ADD", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"),
    ),
    ModelSpec(
        "fc_autoencoder",
        fc_autoencoder,
        "FC autoencoder like MLPerf Tiny AD, narrower: 640-64x4-8-64x4-640, fused RELU",
        ("FULLY_CONNECTED",),
    ),
]


# --------------------------------------------------------------------------------------
# Weights, BatchNorm calibration and conversion
# --------------------------------------------------------------------------------------


def _sample_inputs(
    spec: ModelSpec, shape: tuple[int, ...], count: int, rng: np.random.Generator
) -> np.ndarray:
    low, high = spec.input_range
    return rng.uniform(low, high, (count, *shape)).astype(np.float32)


def randomise_weights(model: keras.Model, rng: np.random.Generator) -> None:
    """Give biases and BatchNorm gamma/beta non-trivial values, as a trained net has."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
            layer.beta.assign(rng.uniform(-0.25, 0.25, shape).astype(np.float32))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.uniform(-0.2, 0.2, layer.bias.shape).astype(np.float32))


def calibrate_batchnorm(model: keras.Model, samples: np.ndarray) -> None:
    """Set BatchNorm moving statistics from one training-mode pass over ``samples``."""
    batchnorms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    if not batchnorms:
        return
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.momentum = 0.0
    model(samples, training=True)
    for bn, momentum in zip(batchnorms, momenta, strict=True):
        bn.momentum = momentum


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converter's prints and C++ logging; show them only if it fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            if failed:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace"))


def convert(
    model: keras.Model, samples: np.ndarray, float_io: bool = False, per_tensor_dense: bool = False
) -> bytes:
    """Convert to a fully int8 .tflite flatbuffer (float32 I/O if ``float_io``)."""

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for sample in samples:
            yield [sample[np.newaxis]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = tf.float32 if float_io else tf.int8
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    if per_tensor_dense:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    with _quiet():
        return bytes(converter.convert())


def build_tflite(spec: ModelSpec) -> bytes:
    keras.backend.clear_session()  # resets layer-name counters: names end up in the file
    keras.utils.set_random_seed(spec.seed)
    model = spec.build()
    rng = np.random.default_rng(spec.seed)
    input_shape = tuple(model.inputs[0].shape[1:])
    randomise_weights(model, rng)
    calibrate_batchnorm(model, _sample_inputs(spec, input_shape, NUM_BATCHNORM_SAMPLES, rng))
    samples = _sample_inputs(spec, input_shape, NUM_REPRESENTATIVE_SAMPLES, rng)
    return convert(model, samples, spec.float_io, spec.per_tensor_dense)


# --------------------------------------------------------------------------------------
# Inspection and checking
# --------------------------------------------------------------------------------------

_OP_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
_TYPE_NAMES = {
    value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")
}


@dataclass
class ModelInfo:
    ops: list[str]
    inputs: list[str]
    num_outputs: int
    activation_scales: list[float]


def inspect_tflite(data: bytes) -> ModelInfo:
    """List ops, describe inputs and collect the scales of int8 activation tensors."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    subgraph = model.subgraphs[0]
    ops = []
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        ops.append(_OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)])
    inputs = []
    for index in subgraph.inputs:
        tensor = subgraph.tensors[index]
        dims = "x".join(str(d) for d in tensor.shape)
        inputs.append(f"{_TYPE_NAMES[tensor.type].lower()} {dims}")
    scales = []
    for tensor in subgraph.tensors:
        is_constant = model.buffers[tensor.buffer].data is not None
        quant = tensor.quantization
        if (
            tensor.type == schema.TensorType.INT8
            and not is_constant
            and quant is not None
            and quant.scale is not None
            and len(quant.scale) == 1
        ):
            scales.append(float(quant.scale[0]))
    return ModelInfo(ops, inputs, len(subgraph.outputs), scales)


def op_counts(ops: list[str]) -> str:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return ", ".join(f"{op} {n}" if n > 1 else op for op, n in counts.items())


# Runs in a fresh interpreter: TFLM may abort() the process on a broken model.
_CHECK_CHILD = """
import json, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime

path, arena_size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
num_inputs, num_outputs = int(sys.argv[4]), int(sys.argv[5])
with open(path, "rb") as f:
    interpreter = runtime.Interpreter.from_bytes(f.read(), arena_size=arena_size)
rng = np.random.default_rng(20240601)
results = [[] for _ in range(num_outputs)]
for _ in range(runs):
    for i in range(num_inputs):
        details = interpreter.get_input_details(i)
        shape, dtype = tuple(details["shape"]), details["dtype"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
        else:
            data = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        interpreter.set_input(data, i)
    interpreter.invoke()
    for i in range(num_outputs):
        results[i].append(np.array(interpreter.get_output(i)))
report = []
for i, outs in enumerate(results):
    quant = interpreter.get_output_details(i)["quantization_parameters"]
    scales, zero_points = quant["scales"], quant["zero_points"]
    first = outs[0]
    saturated = 0.0
    if np.issubdtype(first.dtype, np.integer):
        limits = [np.iinfo(first.dtype).min, np.iinfo(first.dtype).max]
        saturated = float(np.mean([np.isin(o, limits).mean() for o in outs]))
    report.append({
        "size": int(first.size),
        "distinct_per_run": [int(np.unique(o).size) for o in outs],
        "runs_differ": any(not np.array_equal(first, o) for o in outs[1:]),
        "saturated_fraction": saturated,
        "probability_output": bool(len(scales) == 1 and abs(scales[0] - 1 / 256) < 1e-9
                                   and int(zero_points[0]) == -128),
    })
print("CHECK-RESULT " + json.dumps(report), flush=True)
interpreter.print_allocations()  # to stderr; the parent reads the arena figures
"""


@dataclass
class CheckResult:
    ok: bool
    message: str
    arena: dict[str, int]  # TFLM arena "head", "tail", "total" in bytes (host build)


def check_in_tflm(path: Path, info: ModelInfo) -> CheckResult:
    """Run the model in the tflite-micro runtime in a subprocess and look for degeneracy."""
    command = [
        sys.executable,
        "-c",
        _CHECK_CHILD,
        str(path),
        str(CHECK_ARENA_SIZE),
        str(CHECK_RUNS),
        str(len(info.inputs)),
        str(info.num_outputs),
    ]
    proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHECK-RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return CheckResult(
            False, f"tflite-micro failed (exit {proc.returncode}): {' | '.join(tail)}", {}
        )
    problems = []
    for index, output in enumerate(json.loads(lines[0][len("CHECK-RESULT ") :])):
        if output["size"] > 1 and min(output["distinct_per_run"]) < 2:
            problems.append(f"output {index} is constant")
        if not output["runs_differ"]:
            problems.append(f"output {index} does not depend on the input")
        if output["probability_output"] and output["saturated_fraction"] > 0.9:
            problems.append(f"output {index} is saturated")
    arena = {}
    for line in proc.stderr.splitlines():
        match = re.search(r"Arena allocation (head|tail|total) (\d+) bytes", line)
        if match:
            arena[match.group(1)] = int(match.group(2))
    return CheckResult(not problems, "; ".join(problems) or "ok", arena)


# --------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------

_README_HEAD = """\
# Generated test models

Small int8 TensorFlow Lite models built from seeded random weights by
`scripts/generate_models.py` with TensorFlow/Keras and full-integer post-training
quantisation, exactly as the converter produces it: int8 activations, int8 weights
quantised per output channel (convolutions and, by default in TF 2.21, fully connected
layers), int32 biases. BatchNorm layers are folded into the preceding layer. The tests run
each model through this project's runtime and through the tflite-micro runtime and compare
the outputs bit for bit.

`op_*.tflite` files each exercise one TFLite builtin op in several configurations, mostly
as separate model outputs of one input; the other files are small whole networks. All have
one input with batch 1 and int8 input/output, except `op_quantize_dequantize.tflite`
(float32 input and output). Each runs in the tflite-micro runtime: the generator checks it
on three random inputs for crashes and degenerate outputs.

Notes on what the converter makes of the Keras layers:
- CONCATENATION: the converter gives all inputs and the output of a concatenation one
  common scale. Where an input cannot take it (in `op_concatenation` one conv output feeds
  two concatenations of different scales) it inserts an int8-to-int8 QUANTIZE
  (requantisation) in front, so no concatenation here has inputs of different scales.
- Flatten before Dense becomes RESHAPE when the input has spatial size > 1; after a pool
  to 1x1 (dscnn_kws, resnet8) the converter drops it and FULLY_CONNECTED takes the 4D input.
- ReLU/ReLU6 after CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD and MUL is fused into
  the op; it stays a separate op only where nothing can take it (`op_relu`, `op_relu6`).

Regenerate (byte-identical output; needs `tensorflow-cpu` 2.21 and `tflite-micro`):

    python scripts/generate_models.py                        # all models, check, README
    python scripts/generate_models.py --only op_add resnet8  # just these two
    python scripts/generate_models.py --check-only           # check what is there

The TFLM column is the arena use reported by the PyPI `tflite-micro` runtime
(`print_allocations()`, reference kernels, x86-64 host): head (activations) / tail
(persistent data) / total, in bytes.

| file | covers | ops in the file | input | outputs | size (bytes) | TFLM head / tail / total |
|---|---|---|---|---|---|---|
"""


def write_readme(out_dir: Path, arenas: dict[str, dict[str, int]]) -> None:
    rows = []
    total = 0
    for spec in SPECS:
        path = out_dir / spec.filename
        if not path.exists():
            continue
        data = path.read_bytes()
        total += len(data)
        info = inspect_tflite(data)
        arena = arenas.get(spec.name, {})
        figures = " / ".join(
            f"{arena[k]:,}" if k in arena else "?" for k in ("head", "tail", "total")
        )
        rows.append(
            f"| {spec.filename} | {spec.covers} | {op_counts(info.ops)} | "
            f"{', '.join(info.inputs)} | {info.num_outputs} | {len(data):,} | {figures} |"
        )
    text = _README_HEAD + "\n".join(rows) + f"\n\nTotal size: {total:,} bytes.\n"
    (out_dir / "README.md").write_text(text)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def generate(spec: ModelSpec, out_dir: Path) -> bool:
    """Build, convert and write one model; False if the required ops are not all there."""
    data = build_tflite(spec)
    ops = inspect_tflite(data).ops
    missing = [op for op in spec.required_ops if op not in ops]
    if missing:
        print(f"{spec.filename}: NOT WRITTEN, ops {missing} missing; it has {op_counts(ops)}")
        return False
    (out_dir / spec.filename).write_bytes(data)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "models",
        help="output folder (default: models/ in the repository)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="regenerate only these models (names without .tflite); all present are checked",
    )
    parser.add_argument(
        "--check-only", action="store_true", help="do not regenerate; only check the files"
    )
    args = parser.parse_args(argv)

    known = [spec.name for spec in SPECS]
    unknown = sorted(set(args.only or []) - set(known))
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(known)}")

    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    if not args.check_only:
        for spec in SPECS:
            if (args.only is None or spec.name in args.only) and not generate(spec, out_dir):
                failures.append(spec.name)

    arenas = {}
    for spec in SPECS:
        path = out_dir / spec.filename
        if not path.exists():
            print(f"{spec.filename}: not present, not checked")
            continue
        data = path.read_bytes()
        info = inspect_tflite(data)
        result = check_in_tflm(path, info)
        arenas[spec.name] = result.arena
        if not result.ok:
            failures.append(spec.name)
        scales = info.activation_scales
        scale_range = f"{min(scales):.3g}..{max(scales):.3g}" if scales else "-"
        digest = hashlib.sha256(data).hexdigest()[:12]
        print(
            f"{spec.filename:37s}{len(data):>8,} B  sha256 {digest}  "
            f"act. scales {scale_range:16s} tflm: {result.message}"
        )
        print(f"    ops: {op_counts(info.ops)}")

    write_readme(out_dir, arenas)
    total = sum(path.stat().st_size for path in out_dir.glob("*.tflite"))
    print(f"total size of {out_dir}/*.tflite: {total:,} bytes")
    if failures:
        print(f"FAILED: {', '.join(dict.fromkeys(failures))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
