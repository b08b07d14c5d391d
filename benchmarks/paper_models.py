"""The vMCU paper's single layers and inverted-bottleneck modules, as int8 .tflite models
built by the project's own generator (tflm_vmcu.synth; seeded random weights).

Shapes are the paper's (../shared/docs/VMCU.md, "The paper's figures"): H = W, channels,
kernel, and strides of (expand, depthwise, project). Modules use ReLU6 after the expansion
and the depthwise conv, no activation after the projection, and a residual ADD when the
block keeps its shape (stride 1 everywhere, Cin == Cout), as MCUNet's blocks do.

Where the paper's table is internally inconsistent, the module is built as written:
- B1 lists a stride-2 1x1 expansion of the 3-channel image (MCUNet's stem is a 3x3 conv).
- B12 (stride 2 from 11x11) gives 6x6, but B13-B15 are listed at 11x11.
- S1 and S2 are listed with the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tflm_vmcu.synth import ModelBuilder


@dataclass(frozen=True)
class Layer:
    """A single 1x1 CONV_2D (the paper's Fig. 7), with its RAM in KB on Cortex-M4."""

    name: str
    size: int
    cin: int
    cout: int
    paper_tinyengine_kb: float
    paper_vmcu_kb: float


@dataclass(frozen=True)
class Module:
    """An inverted-bottleneck module, with the paper's RAM figures in KB (None: not given)."""

    name: str
    size: int
    cin: int
    cmid: int
    cout: int
    kernel: int
    strides: tuple[int, int, int]  # expand, depthwise, project
    paper_vmcu_kb: float
    paper_tinyengine_kb: float | None = None
    paper_hmcos_kb: float | None = None

    @property
    def residual(self) -> bool:
        return self.strides == (1, 1, 1) and self.cin == self.cout


LAYERS = [
    Layer("L1", 80, 16, 16, 209.0, 105.7),
    Layer("L2", 56, 32, 32, 205.0, 104.5),
    Layer("L3", 28, 64, 64, 108.9, 57.7),
    Layer("L4", 80, 16, 8, 157.5, 105.4),
    Layer("L5", 40, 32, 16, 80.2, 54.8),
    Layer("L6", 20, 48, 24, 33.1, 23.4),
    Layer("L7", 24, 16, 32, 31.4, 21.9),
    Layer("L8", 12, 32, 64, 19.2, 14.8),
    Layer("L9", 6, 64, 128, 19.2, 16.9),
]

S1 = (1, 1, 1)
S2 = (1, 2, 1)
VWW_MODULES = [
    Module("S1", 20, 16, 48, 16, 3, S1, 13.9, 36.0, 48.8),
    Module("S2", 20, 16, 48, 16, 3, S1, 13.9, 36.0, 48.8),
    Module("S3", 10, 24, 144, 16, 3, S1, 11.8, 23.0, 35.0),
    Module("S4", 10, 24, 120, 24, 3, S1, 10.8, 20.5, 30.1),
    Module("S5", 5, 40, 240, 40, 3, S1, 10.6, 13.8, 18.8),
    Module("S6", 5, 48, 192, 48, 3, S1, 9.7, 12.6, 16.3),
    Module("S7", 3, 96, 480, 96, 3, S1, 11.5, 13.2, 16.7),
    Module("S8", 3, 96, 384, 96, 3, S1, 10.2, 11.7, 14.3),
]
IMAGENET_MODULES = [
    Module("B1", 176, 3, 16, 8, 3, (2, 1, 1), 102.6),
    Module("B2", 88, 8, 24, 16, 7, S2, 81.1),
    Module("B3", 44, 16, 80, 16, 3, S1, 48.4),
    Module("B4", 44, 16, 80, 16, 7, S1, 62.1),
    Module("B5", 44, 16, 64, 24, 5, S1, 51.0),
    Module("B6", 44, 16, 80, 24, 5, S2, 53.6),
    Module("B7", 22, 24, 120, 24, 5, S1, 30.8),
    Module("B8", 22, 24, 120, 24, 5, S1, 30.8),
    Module("B9", 22, 24, 120, 40, 3, S2, 23.9),
    Module("B10", 11, 40, 240, 40, 7, S1, 29.0),
    Module("B11", 11, 40, 160, 40, 5, S1, 18.7),
    Module("B12", 11, 40, 200, 48, 7, S2, 22.1),
    Module("B13", 11, 48, 240, 48, 7, S1, 30.3),
    Module("B14", 11, 48, 240, 48, 3, S1, 19.6),
    Module("B15", 11, 48, 288, 96, 3, S2, 20.0),
    Module("B16", 6, 96, 480, 96, 7, S1, 26.9),
    Module("B17", 6, 96, 384, 96, 3, S1, 15.7),
]


def build_layer(layer: Layer, seed: int = 0) -> bytes:
    b = ModelBuilder(seed=seed, description=f"vMCU paper layer {layer.name}")
    x = b.input([1, layer.size, layer.size, layer.cin], 0.02, -5)
    return b.build([b.conv2d(x, layer.cout, (1, 1), activation="RELU6")])


def build_module(m: Module, seed: int = 0) -> bytes:
    b = ModelBuilder(seed=seed, description=f"vMCU paper module {m.name}")
    a = b.input([1, m.size, m.size, m.cin], 0.02, -5)
    s_expand, s_dw, s_project = m.strides
    y = b.conv2d(a, m.cmid, (1, 1), (s_expand, s_expand), activation="RELU6")
    y = b.depthwise_conv2d(y, 1, (m.kernel, m.kernel), (s_dw, s_dw), activation="RELU6")
    y = b.conv2d(y, m.cout, (1, 1), (s_project, s_project), out_zero_point=3)
    if m.residual:
        y = b.elementwise("ADD", a, y, out_zero_point=-1)
    return b.build([y])
