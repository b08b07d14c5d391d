"""Property tests: random op shapes, strides, paddings and quantisation parameters.

For every generated model (one to three ops of one family, built by tflm_vmcu.synth):
the compiled ring plan runs hazard-free under the hazard checker, bit-exact with the
tflite-micro runtime on two seeded inputs, inside its memory block, and its pool is never
larger than the tensor-level plan (TFLM's greedy plan, replicated and as TFLM reports it).

Profiles (HYPOTHESIS_PROFILE): "ci" (default) runs 500 derandomised cases per family;
"quick" 30 (sanitizer builds); "explore" 2,000 fresh random cases per family.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tflm_vmcu
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.fusion import find_blocks
from tflm_vmcu.plan_format import read_plan, write_plan
from tflm_vmcu.planner.fused import plan_with_blocks
from tflm_vmcu.planner.tflm_greedy import tflm_head_bytes
from tflm_vmcu.synth import ModelBuilder, conv_output_size
from tflm_vmcu.tflm_reference import TflmResult, TflmSession
from tflm_vmcu.validate import compare, make_inputs, run_ours

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "database": None}
settings.register_profile("ci", max_examples=500, derandomize=True, **_COMMON)
settings.register_profile("quick", max_examples=30, derandomize=True, **_COMMON)
settings.register_profile("explore", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ACTIVATIONS = st.sampled_from(["NONE", "RELU", "RELU6"])
PADDINGS = st.sampled_from(["SAME", "VALID"])
ZERO_POINTS = st.integers(-128, 127)
SCALES = st.floats(-9.0, -2.0).map(lambda e: 2.0**e)  # activation scales 0.002 .. 0.25
GAINS = st.floats(-3.0, 3.0).map(lambda e: 2.0**e)  # output scale / its estimate


@dataclass
class Case:
    model: bytes
    ops: list[str]
    blocks: int = 0  # inverted-bottleneck blocks the model holds


@pytest.fixture(scope="module")
def tflm() -> Iterator[TflmSession]:
    with TflmSession() as session:
        yield session


def check(case: Case, reference: Callable[[bytes, list[list[np.ndarray]]], TflmResult]) -> None:
    graph = tflm_vmcu.read_model(case.model)
    inputs = make_inputs(graph, 2, seed=len(case.model))
    ref = reference(case.model, inputs)
    result = compile_bytes(case.model)
    _run_and_compare(case, result.model, inputs, ref)
    assert result.plan.pool_bytes <= tflm_head_bytes(graph), case.ops
    assert result.plan.pool_bytes <= ref.head_bytes, case.ops
    if case.blocks:  # also every block fused (both modes), whether or not the compiler would
        blocks = find_blocks(graph)
        assert len(blocks) == case.blocks, case.ops
        for window in (False, True):
            mode = [dataclasses.replace(b, window=window) for b in blocks]
            fused = write_plan(case.model, plan_with_blocks(graph, mode))
            assert _run_and_compare(case, fused, inputs, ref).fused_blocks == case.blocks


def _run_and_compare(
    case: Case, model: bytes, inputs: list[list[np.ndarray]], ref: TflmResult
) -> tflm_vmcu.Interpreter:
    """Runs the compiled model under the hazard checker: no hazard, guard zones intact,
    outputs bit-exact with TFLM's, in the pool its plan gives."""
    interp = tflm_vmcu.Interpreter(model, check_hazards=True)
    ours = run_ours(interp, inputs)
    assert interp.hazards == 0, f"{case.ops}: {interp.first_hazard}"
    assert interp.memory_guards_intact()
    names = [d["name"] for d in interp.get_output_details()]
    bad = [d for d in compare(ours, ref.outputs, names) if not d.bit_exact]
    assert not bad, f"{case.ops}: {bad}"
    plan = read_plan(tflm_vmcu.read_model(model))
    assert plan is not None
    assert interp.activation_bytes == plan.pool_bytes
    return interp


def _image(draw: st.DrawFn, b: ModelBuilder, max_hw: int = 14, max_c: int = 12) -> int:
    shape = [1, draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))]
    return b.input([*shape, draw(st.integers(1, max_c))], draw(SCALES), draw(ZERO_POINTS))


def _window(draw: st.DrawFn, b: ModelBuilder, x: int, dilate: bool) -> dict[str, object]:
    """Kernel, stride, dilation and padding for which the window fits the input."""
    _, h, w, _ = b.shapes[x]
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilate else (1, 1)
    padding = draw(PADDINGS)
    for size, k, s, d in zip((h, w), kernel, stride, dilation, strict=True):
        assume(conv_output_size(size, k, s, d, padding) > 0)
    return {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": padding}


def _chain(draw: st.DrawFn, step: Callable[[ModelBuilder, int], tuple[int, str]]) -> Case:
    """One to three ops of a family in a row (so outputs overlap dying inputs)."""
    b = ModelBuilder(seed=draw(st.integers(0, 2**16)))
    x = _image(draw, b)
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        x, name = step(b, x)
        ops.append(name)
    return Case(b.build([x]), ops)


@st.composite
def conv_models(draw: st.DrawFn) -> Case:
    def step(b: ModelBuilder, x: int) -> tuple[int, str]:
        win = _window(draw, b, x, dilate=True)
        filters = draw(st.integers(1, 12))
        per_channel, act, gain = draw(st.booleans()), draw(ACTIVATIONS), draw(GAINS)
        y = b.conv2d(
            x, filters, **win, activation=act, per_channel=per_channel, scale_factor=gain,
            out_zero_point=draw(ZERO_POINTS), bias=draw(st.booleans()),
        )  # fmt: skip
        return y, f"CONV_2D {b.shapes[x]}->{b.shapes[y]} {win} {act}"

    return _chain(draw, step)


@st.composite
def depthwise_models(draw: st.DrawFn) -> Case:
    def step(b: ModelBuilder, x: int) -> tuple[int, str]:
        win = _window(draw, b, x, dilate=True)
        mult, act = draw(st.integers(1, 3)), draw(ACTIVATIONS)
        y = b.depthwise_conv2d(
            x, mult, **win, activation=act, per_channel=draw(st.booleans()),
            scale_factor=draw(GAINS), out_zero_point=draw(ZERO_POINTS),
        )  # fmt: skip
        return y, f"DEPTHWISE_CONV_2D {b.shapes[x]}->{b.shapes[y]} {win} {act}"

    return _chain(draw, step)


@st.composite
def pool_models(draw: st.DrawFn) -> Case:
    def step(b: ModelBuilder, x: int) -> tuple[int, str]:
        win = _window(draw, b, x, dilate=False)
        kind, act = draw(st.sampled_from(["AVERAGE", "MAX"])), draw(ACTIVATIONS)
        y = b.pool(kind, x, win["kernel"], win["stride"], win["padding"], act)  # type: ignore[arg-type]
        return y, f"{kind}_POOL_2D {b.shapes[x]}->{b.shapes[y]} {win} {act}"

    return _chain(draw, step)


@st.composite
def fully_connected_models(draw: st.DrawFn) -> Case:
    b = ModelBuilder(seed=draw(st.integers(0, 2**16)))
    shape = [*draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)), draw(st.integers(1, 64))]
    x = b.input(shape, draw(SCALES), draw(ZERO_POINTS))
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        keep = draw(st.booleans())
        y = b.fully_connected(
            x, draw(st.integers(1, 40)), draw(ACTIVATIONS), per_channel=draw(st.booleans()),
            keep_num_dims=keep, bias=draw(st.booleans()), scale_factor=draw(GAINS),
            out_zero_point=draw(ZERO_POINTS),
        )  # fmt: skip
        ops.append(f"FULLY_CONNECTED {b.shapes[x]}->{b.shapes[y]}")
        x = y
    return Case(b.build([x]), ops)


@st.composite
def elementwise_models(draw: st.DrawFn) -> Case:
    """ADD/MUL with broadcasting; the second operand is a second input, a constant, or
    the first operand itself after a RELU (so one input dies at the op)."""
    b = ModelBuilder(seed=draw(st.integers(0, 2**16)))
    shape = draw(st.lists(st.integers(1, 8), min_size=1, max_size=4))
    other = [d if draw(st.booleans()) else 1 for d in shape][draw(st.integers(0, len(shape))) :]
    a = b.input(shape, draw(SCALES), draw(ZERO_POINTS))
    source = draw(st.sampled_from(["input", "constant", "branch"]))
    if source == "input":
        c = b.input(other, draw(SCALES), draw(ZERO_POINTS))
    elif source == "constant":
        c = b.constant(other, draw(SCALES), draw(ZERO_POINTS))
    else:
        c = b.unary("RELU", a, draw(SCALES), draw(ZERO_POINTS))
    if draw(st.booleans()):
        a, c = c, a
    kind, act = draw(st.sampled_from(["ADD", "MUL"])), draw(ACTIVATIONS)
    y = b.elementwise(kind, a, c, act, None, draw(ZERO_POINTS))
    scale = b.quant[y][0] * draw(GAINS)
    b.quant[y] = (scale, b.quant[y][1])
    b.tensors[y].quantization.scale = [scale]
    return Case(b.build([y]), [f"{kind} {b.shapes[a]} {b.shapes[c]} {source} {act}"])


@st.composite
def activation_models(draw: st.DrawFn) -> Case:
    def step(b: ModelBuilder, x: int) -> tuple[int, str]:
        kind = draw(st.sampled_from(["RELU", "RELU6", "HARD_SWISH", "LOGISTIC", "SOFTMAX"]))
        if kind == "SOFTMAX":
            return b.softmax(x, draw(st.sampled_from([1.0, 0.5, 2.0]))), kind
        return b.unary(kind, x, draw(SCALES), draw(ZERO_POINTS)), kind

    return _chain(draw, step)


@st.composite
def data_movement_models(draw: st.DrawFn) -> Case:
    def step(b: ModelBuilder, x: int) -> tuple[int, str]:
        kind = draw(st.sampled_from(["PAD", "TRANSPOSE", "RESHAPE", "CONCATENATION"]))
        shape = b.shapes[x]
        if kind == "PAD":
            pads = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in shape]
            pads[0] = (0, 0)
            return b.pad(x, pads), f"PAD {shape} {pads}"
        if kind == "TRANSPOSE":
            perm = [0, *draw(st.permutations(range(1, len(shape))))]
            return b.transpose(x, perm), f"TRANSPOSE {shape} {perm}"
        if kind == "RESHAPE":
            flat = math.prod(shape)
            rows = draw(st.sampled_from([d for d in range(1, flat + 1) if flat % d == 0]))
            return b.reshape(x, [1, rows, flat // rows, 1]), f"RESHAPE {shape}"
        axis = draw(st.integers(1, len(shape) - 1))
        branch = b.unary("RELU", x, *b.quant[x])
        parts = [x, branch] if draw(st.booleans()) else [branch, x]
        return b.concatenation(parts, axis), f"CONCATENATION {shape} axis {axis}"

    return _chain(draw, step)


@st.composite
def mean_models(draw: st.DrawFn) -> Case:
    b = ModelBuilder(seed=draw(st.integers(0, 2**16)))
    x = _image(draw, b)
    axes = draw(st.sampled_from([[1, 2], [1], [2], [3], [1, 2, 3]]))
    y = b.mean(x, axes, keep_dims=draw(st.booleans()), scale_factor=draw(GAINS))
    return Case(b.build([y]), [f"MEAN {b.shapes[x]} axes {axes}"])


@st.composite
def inverted_bottleneck_models(draw: st.DrawFn) -> Case:
    """One or two blocks: [1x1 expand (stride 1 or 2)] -> [PAD] -> KxK depthwise (stride 1
    or 2) -> 1x1 project [-> ADD with the block input], after a 3x3 stem conv."""
    b = ModelBuilder(seed=draw(st.integers(0, 2**16)))
    x = _image(draw, b, max_hw=12, max_c=4)
    x = b.conv2d(x, draw(st.integers(1, 16)), (3, 3), scale_factor=draw(GAINS))
    ops, blocks = [], 0
    for _ in range(draw(st.integers(1, 2))):
        a, (h, w, c) = x, b.shapes[x][1:]
        expand = draw(st.sampled_from([None, 1, 2, 4])) if h * w > 1 else None
        e_stride = draw(st.sampled_from([1, 1, 2])) if expand else 1
        k, stride = draw(st.sampled_from([1, 3, 5, 7])), draw(st.integers(1, 2))
        padding, act = draw(PADDINGS), draw(ACTIVATIONS)
        y = x
        if expand:
            y = b.conv2d(
                y, c * expand, (1, 1), (e_stride, e_stride), activation=act,
                scale_factor=draw(GAINS), out_zero_point=draw(ZERO_POINTS),
            )  # fmt: skip
        if draw(st.booleans()):  # an explicit PAD of rows and columns, as converters emit
            pads = [(0, 0), *((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in "hw")]
            y = b.pad(y, [*pads, (0, 0)])
        mid = b.shapes[y][1:3]
        assume(all(conv_output_size(n, k, stride, 1, padding) > 0 for n in mid))
        y = b.depthwise_conv2d(
            y, 1, (k, k), (stride, stride), padding, activation=act,
            scale_factor=draw(GAINS), out_zero_point=draw(ZERO_POINTS),
        )  # fmt: skip
        cout = c if draw(st.booleans()) else draw(st.integers(1, 16))
        y = b.conv2d(
            y, cout, (1, 1), activation=draw(ACTIVATIONS), scale_factor=draw(GAINS),
            out_zero_point=draw(ZERO_POINTS),
        )  # fmt: skip
        residual = b.shapes[y] == b.shapes[a] and draw(st.booleans())
        x = b.elementwise("ADD", a, y, out_zero_point=draw(ZERO_POINTS)) if residual else y
        ops.append(f"block {h}x{w}x{c} e{expand}/s{e_stride} k{k}/s{stride} {padding} -> {cout}")
        blocks += 1
    return Case(b.build([b.conv2d(x, 3, (1, 1))]), ops, blocks)


FAMILIES = {
    "conv": conv_models(),
    "depthwise": depthwise_models(),
    "pool": pool_models(),
    "fully_connected": fully_connected_models(),
    "elementwise": elementwise_models(),
    "activation": activation_models(),
    "data_movement": data_movement_models(),
    "mean": mean_models(),
    "inverted_bottleneck": inverted_bottleneck_models(),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_ring_plan_is_hazard_free_bit_exact_and_no_larger(family: str, tflm: TflmSession) -> None:
    @given(FAMILIES[family])
    def run(case: Case) -> None:
        check(case, tflm.run)

    run()


def test_a_wrong_result_is_caught(tflm: TflmSession) -> None:
    """The property check compares real outputs: a model whose bytes differ from what
    TFLM runs (one weight changed) fails it."""
    b = ModelBuilder(seed=3)
    y = b.conv2d(b.input([1, 6, 6, 4]), 5)
    model = b.build([y])
    weights = np.frombuffer(b.buffers[b.tensors[y - 2].buffer].data, np.int8)
    changed = bytearray(model)
    at = bytes(model).index(weights.tobytes())
    changed[at] = (changed[at] + 1) % 256

    check(Case(model, ["CONV_2D"]), tflm.run)
    with pytest.raises(AssertionError, match="CONV_2D"):
        check(Case(model, ["CONV_2D"]), lambda _, inputs: tflm.run(bytes(changed), inputs))


def test_session_reports_a_failing_model_and_recovers(tflm: TflmSession) -> None:
    b = ModelBuilder(seed=4)
    model = b.build([b.unary("RELU", b.input([1, 4]))])
    inputs = [[np.arange(-2, 2, dtype=np.int8).reshape(1, 4)]]
    with pytest.raises(TflmVmcuError, match="tflite-micro runtime failed"):
        tflm.run(b"not a model" * 10, inputs)
    assert tflm.run(model, inputs).outputs[0][0].tolist() == [[0, 0, 0, 1]]


def test_fully_connected_multiplier_uses_the_double_product(tflm: TflmSession) -> None:
    """Found by the property tests: TFLM multiplies input and filter scales in double; the
    float product rounds this accumulator (-6565) to -15 instead of TFLM's -14."""
    b = ModelBuilder(seed=5)
    y = b.fully_connected(b.input([1, 1], scale=1.06989586353302), 1)
    b.tensors[y].quantization.scale = [5.552349090576172]
    b.tensors[y - 2].quantization.scale = [0.01146067027002573]
    b.buffers[b.tensors[y - 1].buffer].data = np.frombuffer(np.int32(-6565).tobytes(), np.uint8)
    b.tensors[y - 1].quantization.scale = [1.06989586353302 * 0.01146067027002573]
    model, zeros = b.build([y]), [[np.zeros((1, 1), np.int8)]]
    check(Case(model, ["FULLY_CONNECTED"]), tflm.run)
    assert tflm.run(model, zeros).outputs[0][0].item() == -14
    assert run_ours(tflm_vmcu.Interpreter(model), zeros)[0][0].item() == -14
