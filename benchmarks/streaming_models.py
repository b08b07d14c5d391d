"""Whole networks for the streaming benchmark, built by the project's own generator
(tflm_vmcu.synth; seeded random weights, int8 input): MobileNetV2 1.0 at 224x224 (3.4 M
weights, too large to commit) and an MCUNet-class network (MCUNet-VWW's layer shapes at
a smaller resolution, squeeze-free). Memory depends only on the shapes; the arithmetic is
checked bit for bit against TFLM like any model.
"""

from __future__ import annotations

import numpy as np

from tflm_vmcu.synth import ModelBuilder

# MobileNetV2's inverted residual settings: expansion t, channels c, repeats n, stride s.
MOBILENETV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
MOBILENETV2 += [(6, 160, 3, 2), (6, 320, 1, 1)]
# MCUNet-style: (expansion, channels, kernel, stride) per block.
MCUNET = [(1, 8, 3, 1), (4, 16, 7, 2), (3, 16, 3, 1), (4, 24, 7, 2), (3, 24, 5, 1)]
MCUNET += [(4, 40, 5, 2), (3, 40, 5, 1), (5, 48, 3, 1), (4, 96, 7, 2), (4, 96, 5, 1)]
MCUNET += [(5, 160, 7, 1)]


def _same_scale(b: ModelBuilder, out: int) -> int:
    """Rescales the weights of the op that wrote `out` so that its accumulator spreads over
    about as many levels as its input, and gives `out` its input's scale: 50 layers deep,
    the generator's scales would otherwise grow past float32 (or saturate every value)."""
    op = b.operators[-1]
    x, w = op.inputs[0], op.inputs[1]
    shape = b.shapes[w]  # [out, kh, kw, in], depthwise [1, kh, kw, channels]
    fan_in = int(np.prod(shape[1:] if shape[0] != 1 else shape[1:3]))
    q = b.tensors[w].quantization
    scales = np.asarray(q.scale, dtype=np.float64)
    q.scale = list(scales * (40.0 / (73.9 * 73.9 * np.sqrt(fan_in)) / scales.mean()))
    b.tensors[out].quantization.scale = [b.quant[x][0]]
    b.quant[out] = (b.quant[x][0], b.quant[out][1])
    return out


def _block(b: ModelBuilder, x: int, t: int, c: int, k: int, s: int) -> int:
    cin = b.shapes[x][3]
    y = _same_scale(b, b.conv2d(x, cin * t, (1, 1), activation="RELU6")) if t != 1 else x
    y = _same_scale(b, b.depthwise_conv2d(y, 1, (k, k), (s, s), activation="RELU6"))
    y = _same_scale(b, b.conv2d(y, c, (1, 1)))
    return b.elementwise("ADD", x, y) if s == 1 and cin == c else y


def _network(
    size: int, stem: int, blocks: list[tuple[int, int, int, int]], head: int, classes: int
) -> bytes:
    b = ModelBuilder(seed=0, description="tflm_vmcu benchmark network")
    x = b.input([1, size, size, 3], 0.02, 0)
    x = _same_scale(b, b.conv2d(x, stem, (3, 3), (2, 2), activation="RELU6"))
    for t, c, k, s in blocks:
        x = _block(b, x, t, c, k, s)
    x = _same_scale(b, b.conv2d(x, head, (1, 1), activation="RELU6"))
    x = b.mean(x, [1, 2], keep_dims=False)
    return b.build([b.fully_connected(x, classes)])


def mobilenetv2_224(classes: int = 1000) -> bytes:
    """MobileNetV2 1.0 at 224x224 (with 100 classes its weights fit the QEMU boards'
    4 MB of flash; the pool is the same)."""
    blocks = [(t, c, 3, s if i == 0 else 1) for t, c, n, s in MOBILENETV2 for i in range(n)]
    return _network(224, 32, blocks, 1280, classes)


def mcunet_class(size: int = 128) -> bytes:
    return _network(size, 16, [(t, c, k, s) for t, c, k, s in MCUNET], 320, 2)


def deep_163(size: int = 48) -> bytes:
    """A 163-operator network (the planning-time goal's size): a stem, 40 residual blocks of
    four operators, MEAN and FULLY_CONNECTED."""
    b = ModelBuilder(seed=0, description="tflm_vmcu benchmark network")
    x = _same_scale(b, b.conv2d(b.input([1, size, size, 3], 0.02, 0), 16, (3, 3), (2, 2)))
    for _ in range(40):
        x = _block(b, x, 4, 16, 3, 1)
    x = b.mean(x, [1, 2], keep_dims=False)
    return b.build([b.fully_connected(x, 10)])
