"""Every kind of bad input tried against the runtime, and what the user sees.

Each case builds one bad input (a file, a plan, a memory block or a tensor) and feeds it
to the runtime through the Python API. `python tests/bad_input_catalogue.py` prints the
table in docs/BAD_INPUT.md; tests/test_bad_input.py checks that the table is what the
runtime really says.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import tflm_vmcu
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.fusion import find_blocks
from tflm_vmcu.plan_format import PLAN_METADATA, write_metadata, write_plan
from tflm_vmcu.planner.fused import plan_with_blocks
from tflm_vmcu.planner.plan import FusedBlock, Plan
from tflm_vmcu.synth import ModelBuilder

MODELS = Path(__file__).resolve().parent.parent / "models"


def _conv(**changes: object) -> bytes:
    """A 1x8x8x4 -> CONV_2D 3x3 (6 filters) -> RELU model; `changes` edits tensors after
    building the graph (key: "<tensor index>.<field>")."""
    b = ModelBuilder(seed=11)
    y = b.unary("RELU", b.conv2d(b.input([1, 8, 8, 4]), 6))
    for key, value in changes.items():
        index, field = key.split(".")
        setattr(b.tensors[int(index)], field, value)
    return b.build([y])


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _with_op(name: str, options: object = None, kind: str | None = None) -> bytes:
    b = ModelBuilder(seed=12)
    x = b.input([1, 4, 4, 2])
    out = b._activation([1, 4, 4, 2], 0.02, 0)
    b._op(name, [x], [out], options, kind)
    return b.build([out])


def _quant(scale: list[float], zero_point: list[int]) -> schema.QuantizationParametersT:
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint = scale, zero_point
    return q


def _edit_op(data: bytes, edit: Callable[[schema.OperatorT], None]) -> bytes:
    from tflm_vmcu.plan_format import pack_model

    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m.subgraphs[0].operators[0])
    return pack_model(m, len(data))


def _edit_model(data: bytes, edit: Callable[[schema.ModelT], object]) -> bytes:
    from tflm_vmcu.plan_format import pack_model

    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    return pack_model(m, len(data))


def _graph(data: bytes, edit: Callable[[schema.SubGraphT], object]) -> bytes:
    return _edit_model(data, lambda m: edit(m.subgraphs[0]))


def _swap_ops(g: schema.SubGraphT) -> None:
    g.operators.reverse()


def _drop_first_op(g: schema.SubGraphT) -> None:
    del g.operators[0]


def _constant_input(g: schema.SubGraphT) -> None:
    g.inputs = [*g.inputs, 1]


def _unwritten_output() -> bytes:
    b = ModelBuilder(seed=11)
    y = b.unary("RELU", b.input([1, 4, 4, 2]))
    return b.build([y, b._activation([1, 4, 4, 2], 0.02, 0)])


def _no_operators() -> bytes:
    b = ModelBuilder(seed=11)
    return b.build([b.input([1, 4, 4, 2])])


def _without_data(make: Callable[[ModelBuilder, int], int], operand: int) -> bytes:
    """`make(builder, x)` adds one op reading input x; its operand `operand` (1: weights, 2:
    bias) loses its buffer."""
    b = ModelBuilder(seed=15)
    x = b.input([1, 4, 4, 8])
    make(b, x)
    b.tensors[b.operators[-1].inputs[operand]].buffer = 0
    return b.build([b.operators[-1].outputs[0]])


def _computed_weights() -> bytes:
    """FULLY_CONNECTED whose weights are the output of a RELU over a constant."""
    b = ModelBuilder(seed=16)
    w = b.unary("RELU", b.constant([5, 8]))
    y = b.fully_connected(b.input([1, 8]), 5)
    b.operators[-1].inputs[1] = w
    return b.build([y])


def _external_buffer(m: schema.ModelT) -> None:
    weights = m.buffers[m.subgraphs[0].tensors[1].buffer]
    weights.offset, weights.size = 64, len(weights.data)
    weights.data = None


def _concat_rescaling() -> bytes:
    b = ModelBuilder(seed=17)
    x = b.input([1, 4, 4, 2])
    y = b.concatenation([x, x], 3)
    b.tensors[y].quantization = _quant([0.05], [0])
    return b.build([y])


def _empty_concat() -> bytes:
    """CONCATENATION of two empty [65536, 65536, 0] tensors along axis 2: the dimensions
    before the axis multiply to 2^32 (an int32 overflow in Prepare without the check)."""
    b = ModelBuilder(seed=18)
    x = b.input([65536, 65536, 0])
    return b.build([b.concatenation([x, x], 2)])


def _channel_scale(value: float) -> dict[str, object]:
    """Filter quantisation of _conv() with channel 2's scale replaced by `value`."""
    scales = [0.01] * 6
    scales[2] = value
    return {"1.quantization": _quant(scales, [0] * 6)}


def _set_options(op: schema.OperatorT, **fields: int) -> None:
    for k, v in fields.items():
        setattr(op.builtinOptions, k, v)


def _foreign_plan() -> bytes:
    donor = compile_bytes((MODELS / "op_relu.tflite").read_bytes()).model
    payload = tflm_vmcu.read_model(donor).metadata[PLAN_METADATA]
    return write_metadata((MODELS / "op_relu6.tflite").read_bytes(), PLAN_METADATA, payload)


def _plan_edit(edit: Callable[[Plan], object]) -> bytes:
    data = _conv()
    plan = compile_bytes(data).plan
    return write_plan(data, edit(plan))  # type: ignore[arg-type]


def _bad_plan_version() -> bytes:
    data = compile_bytes(_conv()).model
    payload = bytearray(tflm_vmcu.read_model(data).metadata[PLAN_METADATA])
    payload[4:8] = struct.pack("<I", 99)
    return write_metadata(data, PLAN_METADATA, bytes(payload))


def _placement_outside_pool(plan: Plan) -> object:
    t, p = next(iter(plan.placements.items()))
    moved = dataclasses.replace(p, offset=plan.pool_bytes * 4)
    return dataclasses.replace(plan, placements={**plan.placements, t: moved})


def _pad_zero_point() -> bytes:
    """PAD whose output zero point (the padding value) lies outside int8."""
    b = ModelBuilder(seed=16)
    y = b.pad(b.input([1, 4, 4, 2]), [(0, 0), (1, 1), (1, 1), (0, 0)])
    b.tensors[y].quantization = _quant([0.02], [-129])
    return b.build([y])


def _unknown_type(m: schema.ModelT) -> None:
    m.subgraphs[0].tensors[1].type = 99


def _truncated_plan() -> bytes:
    data = compile_bytes(_conv()).model
    payload = tflm_vmcu.read_model(data).metadata[PLAN_METADATA]
    return write_metadata(data, PLAN_METADATA, payload[:40])


def _all_offsets_zero(plan: Plan) -> object:
    zero = {t: dataclasses.replace(p, offset=0) for t, p in plan.placements.items()}
    return dataclasses.replace(plan, placements=zero)


def _other_dilation() -> bytes:
    """A compiled conv model whose convolution then gets dilation 2 (same graph shapes)."""
    b = ModelBuilder(seed=11)
    y = b.conv2d(b.input([1, 8, 8, 4]), 6, (3, 3), padding="SAME")
    compiled = compile_bytes(b.build([y])).model
    return _edit_op(compiled, lambda op: _set_options(op, dilationHFactor=2))


def _other_permutation() -> bytes:
    """A compiled TRANSPOSE model whose permutation then changes (same shapes)."""
    b = ModelBuilder(seed=15)
    y = b.transpose(b.input([1, 4, 4, 4]), [0, 2, 1, 3])
    compiled = compile_bytes(b.build([b.unary("RELU", y)])).model

    def swap(m: schema.ModelT) -> None:
        perm = m.subgraphs[0].tensors[m.subgraphs[0].operators[0].inputs[1]]
        m.buffers[perm.buffer].data = np.array([0, 1, 2, 3], "<i4").view(np.uint8)

    return _edit_model(compiled, swap)


def _block(edit: Callable[[Plan, Any], object] | None = None, **changes: Any) -> bytes:
    """A model with one inverted-bottleneck block (3x3 conv, 1x1 expand, depthwise, 1x1
    project, residual ADD, 1x1 conv), compiled with the block fused; `changes` edits the
    plan's fused-block entry, `edit(plan, block)` the plan."""
    b = ModelBuilder(seed=13)
    x = b.conv2d(b.input([1, 6, 6, 3]), 8, (3, 3))
    y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 24, (1, 1)), 1), 8, (1, 1))
    data = b.build([b.conv2d(b.elementwise("ADD", x, y), 4, (1, 1))])
    graph = tflm_vmcu.read_model(data)
    plan = plan_with_blocks(graph, find_blocks(graph))
    plan.blocks = [dataclasses.replace(plan.blocks[0], **changes)]
    if edit is not None:
        edit(plan, find_blocks(graph)[0])
    return write_plan(data, plan)


def _workspace_on_input(plan: Plan, block: Any) -> None:
    on_input = plan.placements[block.input].offset
    plan.blocks = [dataclasses.replace(plan.blocks[0], workspace_offset=on_input)]
    plan.pool_bytes = max(plan.pool_bytes, on_input + plan.blocks[0].workspace_bytes)


def _block_on_constant() -> bytes:
    """A plan that fuses 1x1 conv -> depthwise -> 1x1 conv whose input is a constant."""
    b = ModelBuilder(seed=14)
    x = b.unary("RELU", b.input([1, 4, 4, 8]))
    y = b.conv2d(b.depthwise_conv2d(b.conv2d(b.constant([1, 4, 4, 8]), 16, (1, 1)), 1), 8, (1, 1))
    data = b.build([x, y])
    plan = plan_with_blocks(tflm_vmcu.read_model(data), [])
    plan.blocks = [FusedBlock(1, 3, 0, 4096)]
    return write_plan(data, plan)


def _run_with(memory: int | None = None, inputs: list[np.ndarray] | None = None) -> object:
    interp = tflm_vmcu.Interpreter(_conv(), memory_bytes=memory)
    for d, a in zip(interp.get_input_details(), inputs or [], strict=False):
        interp.set_tensor(d["index"], a)
    return interp


# (what is wrong, how to make it)
CASES: list[tuple[str, Callable[[], object]]] = [
    ("Empty file", lambda: tflm_vmcu.Interpreter(b"")),
    ("Text, not a flatbuffer", lambda: tflm_vmcu.Interpreter(b"this is not a model" * 4)),
    ("Missing file", lambda: tflm_vmcu.Interpreter("/nonexistent/model.tflite")),
    ("File cut to half its length", lambda: tflm_vmcu.Interpreter(_half(_conv()))),
    (
        "Root offset points past the end",
        lambda: tflm_vmcu.Interpreter(struct.pack("<I", 1 << 30) + _conv()[4:]),
    ),
    ("Unsupported builtin op (TANH)", lambda: tflm_vmcu.Interpreter(_with_op("TANH"))),
    (
        "Float32 activation in an int8 kernel",
        lambda: tflm_vmcu.Interpreter(_conv(**{"0.type": schema.TensorType.FLOAT32})),
    ),
    (
        "Activation without quantisation parameters",
        lambda: tflm_vmcu.Interpreter(_conv(**{"0.quantization": None})),
    ),
    (
        "Zero point outside int8",
        lambda: tflm_vmcu.Interpreter(_conv(**{"3.quantization": _quant([0.1], [300])})),
    ),
    (
        "PAD value (output zero point) outside int8",
        lambda: tflm_vmcu.Interpreter(_pad_zero_point()),
    ),
    (
        "Tensor type code the schema does not define",
        lambda: tflm_vmcu.Interpreter(_edit_model(_conv(), _unknown_type)),
    ),
    (
        "Weights shape larger than their buffer",
        lambda: tflm_vmcu.Interpreter(_conv(**{"1.shape": [6, 30, 30, 4]})),
    ),
    (
        "Bias with the wrong element count",
        lambda: tflm_vmcu.Interpreter(
            _conv(**{"2.shape": [5], "2.quantization": _quant([1e-4] * 5, [0] * 5)})
        ),
    ),
    (
        "Output shape that does not follow from the op",
        lambda: tflm_vmcu.Interpreter(_conv(**{"3.shape": [1, 8, 7, 6]})),
    ),
    (
        "Tensor of more than 2 GiB",
        lambda: tflm_vmcu.Interpreter(_conv(**{"4.shape": [1, 65536, 65536, 6]})),
    ),
    (
        "Empty tensor whose other dimensions span more than 2 GiB",
        lambda: tflm_vmcu.Interpreter(_empty_concat()),
    ),
    (
        "Operand index outside the tensor list",
        lambda: tflm_vmcu.Interpreter(_edit_op(_conv(), lambda op: op.inputs.__setitem__(0, 99))),
    ),
    (
        "Operator writes a constant tensor",
        lambda: tflm_vmcu.Interpreter(_edit_op(_conv(), lambda op: op.outputs.__setitem__(0, 1))),
    ),
    (
        "Stride of 0",
        lambda: tflm_vmcu.Interpreter(_edit_op(_conv(), lambda op: _set_options(op, strideH=0))),
    ),
    (
        "Dilation of 1000",
        lambda: tflm_vmcu.Interpreter(
            _edit_op(_conv(), lambda op: _set_options(op, dilationWFactor=1000))
        ),
    ),
    (
        "Unsupported fused activation (TANH)",
        lambda: tflm_vmcu.Interpreter(
            _edit_op(_conv(), lambda op: _set_options(op, fusedActivationFunction=4))
        ),
    ),
    (
        "Operator reads a tensor a later operator writes (cycle)",
        lambda: tflm_vmcu.Interpreter(_graph(_conv(), _swap_ops)),
    ),
    (
        "Operator reads a tensor no operator writes",
        lambda: tflm_vmcu.Interpreter(_graph(_conv(), _drop_first_op)),
    ),
    ("Model output no operator writes", lambda: tflm_vmcu.Interpreter(_unwritten_output())),
    ("Model without operators", lambda: tflm_vmcu.Interpreter(_no_operators())),
    (
        "Constant tensor listed as a model input",
        lambda: tflm_vmcu.Interpreter(_graph(_conv(), _constant_input)),
    ),
    (
        "CONV_2D weights with an empty buffer",
        lambda: tflm_vmcu.Interpreter(_without_data(lambda b, x: b.conv2d(x, 6), 1)),
    ),
    (
        "CONV_2D bias with an empty buffer",
        lambda: tflm_vmcu.Interpreter(_without_data(lambda b, x: b.conv2d(x, 6), 2)),
    ),
    (
        "DEPTHWISE_CONV_2D weights with an empty buffer",
        lambda: tflm_vmcu.Interpreter(_without_data(lambda b, x: b.depthwise_conv2d(x), 1)),
    ),
    (
        "FULLY_CONNECTED bias with an empty buffer",
        lambda: tflm_vmcu.Interpreter(_without_data(lambda b, x: b.fully_connected(x, 5), 2)),
    ),
    (
        "FULLY_CONNECTED weights computed by another operator",
        lambda: tflm_vmcu.Interpreter(_computed_weights()),
    ),
    (
        "Weights stored outside the flatbuffer (buffer offset/size)",
        lambda: tflm_vmcu.Interpreter(_edit_model(_conv(), _external_buffer)),
    ),
    (
        "Activation scale of infinity",
        lambda: tflm_vmcu.Interpreter(_conv(**{"0.quantization": _quant([math.inf], [0])})),
    ),
    (
        "Activation scale of 1e30 (requantisation beyond 2^31)",
        lambda: tflm_vmcu.Interpreter(_conv(**{"0.quantization": _quant([1e30], [0])})),
    ),
    (
        "Tiny output scale (1e-30)",
        lambda: tflm_vmcu.Interpreter(_conv(**{"3.quantization": _quant([1e-30], [0])})),
    ),
    (
        "Per-channel filter scale NaN",
        lambda: tflm_vmcu.Interpreter(_conv(**_channel_scale(math.nan))),
    ),
    (
        "Per-channel filter scale 1e30",
        lambda: tflm_vmcu.Interpreter(_conv(**_channel_scale(1e30))),
    ),
    (
        "CONCATENATION input and output quantisation differ",
        lambda: tflm_vmcu.Interpreter(_concat_rescaling()),
    ),
    ("Plan compiled for another model", lambda: tflm_vmcu.Interpreter(_foreign_plan())),
    ("Plan of an unknown format version", lambda: tflm_vmcu.Interpreter(_bad_plan_version())),
    (
        "Plan that places a tensor outside the pool",
        lambda: tflm_vmcu.Interpreter(_plan_edit(_placement_outside_pool)),
    ),
    (
        "Plan with a pool too small for its tensors",
        lambda: tflm_vmcu.Interpreter(_plan_edit(lambda p: dataclasses.replace(p, pool_bytes=64))),
    ),
    ("Plan cut short inside its tensor table", lambda: tflm_vmcu.Interpreter(_truncated_plan())),
    (
        "Plan that puts every tensor at offset 0",
        lambda: tflm_vmcu.Interpreter(_plan_edit(_all_offsets_zero)),
    ),
    (
        "Plan whose fused block's workspace lies on the block input",
        lambda: tflm_vmcu.Interpreter(_block(_workspace_on_input)),
    ),
    (
        "Plan for the same graph with another dilation",
        lambda: tflm_vmcu.Interpreter(_other_dilation()),
    ),
    (
        "Plan for the same graph with another TRANSPOSE permutation",
        lambda: tflm_vmcu.Interpreter(_other_permutation()),
    ),
    (
        "Plan fuses operators that are not an inverted bottleneck",
        lambda: tflm_vmcu.Interpreter(_block(first=0, last=2)),
    ),
    (
        "Plan fuses a block that starts from a constant",
        lambda: tflm_vmcu.Interpreter(_block_on_constant()),
    ),
    (
        "Plan fuses a block but omits its last operator",
        lambda: tflm_vmcu.Interpreter(_block(last=3)),
    ),
    (
        "Plan gives a fused block a workspace outside the pool",
        lambda: tflm_vmcu.Interpreter(_block(workspace_offset=1 << 20)),
    ),
    (
        "Plan gives a fused block too small a workspace",
        lambda: tflm_vmcu.Interpreter(_block(workspace_bytes=16)),
    ),
    ("Memory block too small", lambda: _run_with(memory=1000)),
    (
        "Input of the wrong dtype",
        lambda: _run_with(inputs=[np.zeros((1, 8, 8, 4), np.float32)]),
    ),
    ("Input of the wrong shape", lambda: _run_with(inputs=[np.zeros((1, 8, 4), np.int8)])),
]


def outcome(make: Callable[[], object]) -> tuple[str, str]:
    """(exception type, message), or ("accepted", "") when nothing was refused."""
    try:
        make()
    except tflm_vmcu.TflmVmcuError as exc:
        return type(exc).__name__, str(exc)
    return "accepted", ""


def table() -> str:
    rows = ["| Bad input | Exception | Message |", "|---|---|---|"]
    for what, make in CASES:
        kind, message = outcome(make)
        rows.append(f"| {what} | `{kind}` | {message.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
