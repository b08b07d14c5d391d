"""Structured-mutation campaign: malformed models and tampered memory plans, seeded.

Models. Every committed model (but the slow-to-plan mobilenetv2_small) and a few
tflm_vmcu.synth graphs are mutated family by family (empty weights, cycles, unwritten
outputs, bad scales, zero points, shapes, options, types, operands, external buffers,
...). Each mutant runs in our runtime and in the real TFLM runtime on seeded inputs, and
through `tflm-vmcu compile` and `tflm-vmcu inspect` (in process; a subset also in a
subprocess under a memory limit). The runtime must refuse it with a TflmVmcuError
message, or run it bit-exact with TFLM; the CLI must exit 0 or 1, never traceback; a
model that compiles must run its compiled form bit-exact with TFLM under the hazard
checker, and TFLM must compute the same on the compiled file as on the original.

Plans. Five or more compiled models (mobilenetv2_small with fused blocks, resnet8 with
residual adds, ...) get their 'tflm_vmcu.plan' entry tampered with (offsets zeroed,
swapped, moved, random; pool shrunk; segment, block table and op data edited;
truncated), keeping the graph digest. The runtime must refuse the plan at load, or run
it with outputs identical to the untampered plan's, 0 hazards under the hazard checker
and the memory guards intact. Anything else is a silent wrong result.

Every mutant runs in a worker process (under a memory limit and a time limit), so a
crash or a hang is counted rather than ending the campaign.

    python tests/mutation_campaign.py [--seed N] [--workers N] [--list]

prints one table per campaign (a row per family) and every failing case.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SEED = 12
# Address space of a worker and of the CLI subprocess runs, so that a runaway allocation
# is a MemoryError rather than a kill. Not under AddressSanitizer (it reserves terabytes of
# shadow memory): MUTATION_CAMPAIGN_MEMORY_LIMIT=0 or a preloaded libasan turns it off.
MEMORY_LIMIT = int(os.environ.get("MUTATION_CAMPAIGN_MEMORY_LIMIT", 3 << 30))
if "libasan" in os.environ.get("LD_PRELOAD", ""):
    MEMORY_LIMIT = 0
JOB_TIMEOUT = 60.0  # seconds per mutant
_REPLY = "mutation_campaign.reply "

# Model families: ("refused", "bit-exact") are the good outcomes.
MODEL_OUTCOMES = (
    "refused",
    "bit-exact",
    "divergence",
    "ours accepts, TFLM refuses",
    "refused without message",
    "guards broken",
    "traceback",
    "crash",
    "hang",
)
MODEL_BAD = set(MODEL_OUTCOMES) - {"refused", "bit-exact", "ours accepts, TFLM refuses"}
PLAN_OUTCOMES = (
    "refused at load",
    "accepted, identical",
    "silent wrong result",
    "refused at invoke",
    "refused without message",
    "traceback",
    "crash",
    "hang",
)
PLAN_BAD = set(PLAN_OUTCOMES) - {"refused at load", "accepted, identical"}
CLI_BAD = ("compile traceback", "inspect traceback", "cli killed", "compiled diverges")


@dataclass
class Mutant:
    campaign: str  # "model" or "plan"
    family: str
    base: str
    what: str
    data: bytes
    subprocess_cli: bool = False  # also run the CLI in a subprocess under a memory limit


@dataclass
class Outcome:
    mutant: Mutant
    outcome: str
    detail: str = ""
    cli: list[str] = field(default_factory=list)  # CLI problems (CLI_BAD and notes)


# --- flatbuffer object API helpers ----------------------------------------------------------

_OP_NAMES = {
    v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and k.isupper()
}


def load(data: bytes) -> schema.ModelT:
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(m: schema.ModelT) -> bytes:
    from tflm_vmcu.plan_format import pack_model

    return pack_model(m, 1 << 16)


def pack_raw(m: schema.ModelT) -> bytes:
    """Packed without re-alignment (for files with data after the flatbuffer)."""
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_name(m: schema.ModelT, op: schema.OperatorT) -> str:
    oc = m.operatorCodes[op.opcodeIndex]
    return _OP_NAMES.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "?")


def _sub(m: schema.ModelT) -> schema.SubGraphT:
    return m.subgraphs[0]


def is_constant(m: schema.ModelT, t: int) -> bool:
    tensor = _sub(m).tensors[t]
    buf = m.buffers[tensor.buffer] if 0 <= tensor.buffer < len(m.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def activations(m: schema.ModelT) -> list[int]:
    return [i for i in range(len(_sub(m).tensors)) if not is_constant(m, i)]


def ops_of(m: schema.ModelT, *names: str) -> list[int]:
    return [k for k, op in enumerate(_sub(m).operators) if op_name(m, op) in names]


def _has_scale(m: schema.ModelT, t: int) -> bool:
    q = _sub(m).tensors[t].quantization
    return q is not None and q.scale is not None and len(q.scale) > 0


def _ints(values: Any) -> list[int]:
    return [int(v) for v in (values if values is not None else [])]


def _set_buffer(m: schema.ModelT, t: int, values: np.ndarray) -> None:
    """Gives tensor t its own buffer holding `values` (constants may share buffers)."""
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
    m.buffers.append(buf)
    _sub(m).tensors[t].buffer = len(m.buffers) - 1


def _buffer_values(m: schema.ModelT, t: int, dtype: type) -> np.ndarray:
    return np.frombuffer(m.buffers[_sub(m).tensors[t].buffer].data.tobytes(), dtype).copy()


def _new_activation(m: schema.ModelT, like: int, name: str) -> int:
    src = _sub(m).tensors[like]
    t = schema.TensorT()
    t.shape, t.type, t.name = _ints(src.shape), src.type, name
    if src.quantization is not None and src.quantization.scale is not None:
        q = schema.QuantizationParametersT()
        q.scale = [float(s) for s in src.quantization.scale]
        q.zeroPoint = _ints(src.quantization.zeroPoint) or [0] * len(q.scale)
        t.quantization = q
    m.buffers.append(schema.BufferT())
    t.buffer = len(m.buffers) - 1
    _sub(m).tensors.append(t)
    return len(_sub(m).tensors) - 1


# --- base models -------------------------------------------------------------------------


def synth_models() -> dict[str, bytes]:
    """Small graphs covering ops and patterns the committed models leave out."""
    from tflm_vmcu.synth import ModelBuilder

    out = {}
    b = ModelBuilder(seed=1)
    x = b.conv2d(b.input([1, 6, 6, 3]), 8, (3, 3))
    y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 24, (1, 1)), 1), 8, (1, 1))
    out["synth_block"] = b.build([b.elementwise("ADD", x, y)])

    b = ModelBuilder(seed=2)
    x = b.conv2d(b.input([1, 9, 9, 3]), 6, (3, 3), (2, 2), dilation=(1, 1), activation="RELU")
    x = b.depthwise_conv2d(x, 2, (3, 3), padding="VALID", per_channel=False)
    x = b.pool("MAX", x, (2, 2), (1, 1))
    x = b.fully_connected(b.reshape(x, [1, int(np.prod(b.shapes[x]))]), 10)
    out["synth_chain"] = b.build([b.softmax(x)])

    b = ModelBuilder(seed=3)
    x = b.input([1, 4, 5, 3])
    p = b.pad(x, [(0, 0), (1, 0), (0, 2), (0, 0)])
    t = b.transpose(p, [0, 2, 1, 3])
    c = b.concatenation([t, b.unary("RELU", t)], 3)
    out["synth_data"] = b.build([b.mean(c, [1, 2], keep_dims=True)])

    b = ModelBuilder(seed=4)
    a = b.input([1, 4, 4, 8])
    m = b.elementwise("MUL", a, b.constant([1, 1, 1, 8]), "RELU6")
    h = b.unary("HARD_SWISH", b.elementwise("ADD", m, b.unary("RELU", a)))
    out["synth_elementwise"] = b.build([b.unary("LOGISTIC", h)])
    return out


def model_bases() -> dict[str, bytes]:
    bases = {
        p.name: p.read_bytes()
        for p in sorted(MODELS.glob("*.tflite"))
        if p.name != "mobilenetv2_small.tflite"  # 12 s to plan: its patterns are in synth_*
    }
    bases.update(synth_models())
    return bases


# --- model mutations -----------------------------------------------------------------------
# Each family maker takes the base's model object (a fresh copy per call) and a seeded
# random generator, and yields (what, mutate) pairs; mutate edits the object in place and
# returns the bytes to test (None to pack the object as it is).

Edit = Callable[[schema.ModelT], bytes | None]


def _weighted_ops(m: schema.ModelT) -> list[int]:
    return ops_of(m, "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def fam_empty_buffer(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    for k in rng.sample(_weighted_ops(m), min(2, len(_weighted_ops(m)))):
        op = _sub(m).operators[k]
        for slot, role in ((1, "weights"), (2, "bias")):
            if slot < len(op.inputs) and op.inputs[slot] >= 0:
                t = int(op.inputs[slot])

                def edit(mm: schema.ModelT, t: int = t) -> None:
                    buf = schema.BufferT()
                    mm.buffers.append(buf)
                    _sub(mm).tensors[t].buffer = len(mm.buffers) - 1

                yield f"op {k} {role} buffer empty", edit
    for t in rng.sample(activations(m), 1):

        def to_zero(mm: schema.ModelT, t: int = t) -> None:
            _sub(mm).tensors[t].buffer = len(mm.buffers) + 5  # buffer index out of range

        yield f"tensor {t} buffer index out of range", to_zero


def fam_cycle(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    ops = _sub(m).operators
    for k in rng.sample(range(len(ops)), min(2, len(ops))):

        def self_loop(mm: schema.ModelT, k: int = k) -> None:
            op = _sub(mm).operators[k]
            op.inputs = [int(op.outputs[0]), *_ints(op.inputs)[1:]]

        yield f"op {k} reads its own output", self_loop
        if k + 1 < len(ops):
            j = rng.randrange(k + 1, len(ops))

            def later(mm: schema.ModelT, k: int = k, j: int = j) -> None:
                op = _sub(mm).operators[k]
                op.inputs = [int(_sub(mm).operators[j].outputs[0]), *_ints(op.inputs)[1:]]

            yield f"op {k} reads op {j}'s output", later


def fam_output_unwritten(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    def replace(mm: schema.ModelT) -> None:
        sub = _sub(mm)
        sub.outputs = [_new_activation(mm, int(sub.outputs[0]), "orphan"), *_ints(sub.outputs)[1:]]

    def extra(mm: schema.ModelT) -> None:
        sub = _sub(mm)
        sub.outputs = [*_ints(sub.outputs), _new_activation(mm, int(sub.outputs[0]), "orphan")]

    def drop_last_op(mm: schema.ModelT) -> None:
        sub = _sub(mm)
        last = sub.operators.pop()
        sub.outputs = _ints(last.outputs)

    yield "output replaced by a tensor nothing writes", replace
    yield "extra output nothing writes", extra
    if len(_sub(m).operators) > 1:
        yield "last op removed, its output still the model output", drop_last_op


def fam_no_operators(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    def empty(mm: schema.ModelT) -> None:
        _sub(mm).operators = []

    def passthrough(mm: schema.ModelT) -> None:
        _sub(mm).operators = []
        _sub(mm).outputs = _ints(_sub(mm).inputs)

    yield "no operators", empty
    if rng.random() < 0.5:
        yield "no operators, outputs are the inputs", passthrough


def fam_constant_input(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    consts = [i for i in range(len(_sub(m).tensors)) if is_constant(m, i)]
    for t in rng.sample(consts, min(1, len(consts))):

        def add(mm: schema.ModelT, t: int = t) -> None:
            _sub(mm).inputs = [*_ints(_sub(mm).inputs), t]

        def replace(mm: schema.ModelT, t: int = t) -> None:
            _sub(mm).inputs = [t, *_ints(_sub(mm).inputs)[1:]]

        yield f"constant tensor {t} added as a model input", add
        yield f"model input replaced by constant tensor {t}", replace


_SCALES = (1e30, 1e-30, 0.0, -0.5, math.nan, math.inf, 1e10, 1e-10)


def fam_act_scale(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    acts = [t for t in activations(m) if _has_scale(m, t)]
    for t, s in zip(rng.sample(acts, min(4, len(acts))), rng.sample(_SCALES, 4), strict=False):

        def edit(mm: schema.ModelT, t: int = t, s: float = s) -> None:
            _sub(mm).tensors[t].quantization.scale = [s]

        yield f"activation {t} scale {s:g}", edit


def fam_filter_scale(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    ops = _weighted_ops(m)
    for k in rng.sample(ops, min(2, len(ops))):
        w = int(_sub(m).operators[k].inputs[1])
        scales = [float(s) for s in _sub(m).tensors[w].quantization.scale]
        choices = [
            ("channel 0 negative", lambda s: [-s[0], *s[1:]]),
            ("all negative", lambda s: [-v for v in s]),
            ("channel 0 huge (1e30)", lambda s: [1e30, *s[1:]]),
            ("all tiny (1e-30)", lambda s: [1e-30] * len(s)),
            ("channel 0 zero", lambda s: [0.0, *s[1:]]),
            ("channel 0 NaN", lambda s: [math.nan, *s[1:]]),
            ("one scale fewer", lambda s: s[:-1] if len(s) > 1 else [*s, *s]),
            ("channel 0 tiny (1e-12)", lambda s: [1e-12, *s[1:]]),
        ]
        for what, f in rng.sample(choices, 3):

            def edit(mm: schema.ModelT, w: int = w, f: Any = f, scales: Any = scales) -> None:
                q = _sub(mm).tensors[w].quantization
                q.scale = f(scales)
                q.zeroPoint = [0] * len(q.scale)

            yield f"op {k} filter scales {what}", edit


def fam_zero_point(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    acts = [t for t in activations(m) if _has_scale(m, t)]
    for t, zp in zip(
        rng.sample(acts, min(2, len(acts))), rng.sample([128, -129, 1000, -70000], 2), strict=False
    ):

        def edit(mm: schema.ModelT, t: int = t, zp: int = zp) -> None:
            _sub(mm).tensors[t].quantization.zeroPoint = [zp]

        yield f"activation {t} zero point {zp}", edit
    for k in rng.sample(_weighted_ops(m), min(1, len(_weighted_ops(m)))):
        w = int(_sub(m).operators[k].inputs[1])

        def filt(mm: schema.ModelT, w: int = w) -> None:
            q = _sub(mm).tensors[w].quantization
            q.zeroPoint = [5] * len(q.scale)

        yield f"op {k} filter zero point 5", filt

        def count(mm: schema.ModelT, w: int = w) -> None:
            q = _sub(mm).tensors[w].quantization
            q.zeroPoint = [0] * (len(q.scale) + 3)

        yield f"op {k} filter has more zero points than scales", count


_DIMS = (0, 1, 1 << 20, (1 << 31) - 1, -1, "+1")


def fam_shape(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    tensors = _sub(m).tensors
    picks = [t for t in range(len(tensors)) if len(tensors[t].shape)]
    for t in rng.sample(picks, min(4, len(picks))):
        rank = len(tensors[t].shape)
        axis, dim = rng.randrange(rank), rng.choice(_DIMS)

        def edit(mm: schema.ModelT, t: int = t, axis: int = axis, dim: Any = dim) -> None:
            shape = _ints(_sub(mm).tensors[t].shape)
            shape[axis] = shape[axis] + 1 if dim == "+1" else dim
            _sub(mm).tensors[t].shape = shape

        kind = "constant" if is_constant(m, t) else "activation"
        yield f"{kind} {t} dim {axis} -> {dim}", edit
    t = rng.choice(picks)

    def rank(mm: schema.ModelT, t: int = t) -> None:
        _sub(mm).tensors[t].shape = [*_ints(_sub(mm).tensors[t].shape), 1, 1]

    yield f"tensor {t} rank + 2", rank


def _option_edits(m: schema.ModelT, k: int) -> list[tuple[str, Callable[[Any], None]]]:
    """(what, edit of the options object) for op k's kind."""
    name = op_name(m, _sub(m).operators[k])

    def setter(**fields: Any) -> Callable[[Any], None]:
        def edit(options: Any) -> None:
            for f, v in fields.items():
                setattr(options, f, v)

        return edit

    window = [
        ("stride 0", setter(strideH=0)),
        ("stride 2", setter(strideW=2)),
        ("stride 100", setter(strideH=100)),
        ("padding flipped", lambda o: setattr(o, "padding", 1 - o.padding)),
        ("padding 7", setter(padding=7)),
        ("fused activation RELU_N1_TO_1", setter(fusedActivationFunction=2)),
        ("fused activation RELU6", setter(fusedActivationFunction=3)),
        ("fused activation 99", setter(fusedActivationFunction=99)),
    ]
    if name == "CONV_2D":
        return [
            *window,
            ("dilation 2", setter(dilationHFactor=2)),
            ("dilation 0", setter(dilationWFactor=0)),
        ]
    if name == "DEPTHWISE_CONV_2D":
        return [
            *window,
            ("dilation 3", setter(dilationWFactor=3)),
            ("depth multiplier 0", setter(depthMultiplier=0)),
            ("depth multiplier 2", setter(depthMultiplier=2)),
            ("depth multiplier -1", setter(depthMultiplier=-1)),
        ]
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return [
            *window,
            ("filter 0", setter(filterHeight=0)),
            ("filter 1x1", setter(filterHeight=1, filterWidth=1)),
            ("filter 1000", setter(filterWidth=1000)),
            ("filter +1", lambda o: setattr(o, "filterHeight", o.filterHeight + 1)),
        ]
    if name == "FULLY_CONNECTED":
        return [
            ("keep_num_dims flipped", lambda o: setattr(o, "keepNumDims", not o.keepNumDims)),
            ("weights format 1", setter(weightsFormat=1)),
            ("fused activation RELU", setter(fusedActivationFunction=1)),
            ("fused activation TANH", setter(fusedActivationFunction=4)),
        ]
    if name in ("ADD", "MUL"):
        return [
            ("fused activation RELU6", setter(fusedActivationFunction=3)),
            ("fused activation 99", setter(fusedActivationFunction=99)),
        ]
    if name == "CONCATENATION":
        return [
            ("axis -1", setter(axis=-1)),
            ("axis 9", setter(axis=9)),
            ("axis 0", setter(axis=0)),
            ("axis +1", lambda o: setattr(o, "axis", o.axis + 1)),
        ]
    if name == "SOFTMAX":
        return [
            ("beta 0", setter(beta=0.0)),
            ("beta -1", setter(beta=-1.0)),
            ("beta NaN", setter(beta=math.nan)),
            ("beta 1e30", setter(beta=1e30)),
        ]
    if name == "RESHAPE":
        return [
            ("new shape [-1]", setter(newShape=[-1])),
            ("new shape [7, 3]", setter(newShape=[7, 3])),
        ]
    if name == "MEAN":
        return [("keep_dims flipped", lambda o: setattr(o, "keepDims", not o.keepDims))]
    return []


def _const_edits(m: schema.ModelT, k: int) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """(what, new values) for op k's int32 constant operand (perm, axes, paddings, shape)."""
    op = _sub(m).operators[k]
    if len(op.inputs) < 2 or op.inputs[1] < 0 or not is_constant(m, int(op.inputs[1])):
        return []
    name = op_name(m, op)
    if name == "TRANSPOSE":
        return [
            ("perm swapped", lambda p: p[[0, *range(len(p) - 1, 0, -1)]]),
            ("perm duplicated", lambda p: np.array([0, *([1] * (len(p) - 1))])),
            ("perm out of range", lambda p: np.array([*p[:-1], 9])),
            ("perm negative", lambda p: np.array([*p[:-1], -1])),
        ]
    if name == "MEAN":
        return [
            ("axes [5]", lambda a: np.array([5])),
            ("axes [-1]", lambda a: np.array([-1])),
            ("axes [0]", lambda a: np.array([0])),
            ("axes repeated", lambda a: np.array([a[0], a[0]])),
            ("axes [3]", lambda a: np.array([3])),
        ]
    if name == "PAD":
        return [
            ("paddings negative", lambda p: np.where(p > 0, -p, -1)),
            ("paddings huge", lambda p: np.where(p > 0, 1 << 28, p)),
            ("paddings +1", lambda p: p + 1),
            ("paddings on the batch", lambda p: np.array([1, 1, *p[2:]])),
        ]
    if name == "RESHAPE":
        return [
            ("shape tensor [-1, -1]", lambda s: np.array([-1, -1])),
            ("shape tensor +1", lambda s: np.array([*s[:-1], s[-1] + 1])),
        ]
    return []


def fam_options(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    ops = _sub(m).operators
    with_options = [
        k for k in range(len(ops)) if ops[k].builtinOptions is not None and _option_edits(m, k)
    ]
    for k in rng.sample(with_options, min(2, len(with_options))):
        for what, f in rng.sample(_option_edits(m, k), min(3, len(_option_edits(m, k)))):

            def edit(mm: schema.ModelT, k: int = k, f: Any = f) -> None:
                f(_sub(mm).operators[k].builtinOptions)

            yield f"op {k} {op_name(m, ops[k])} {what}", edit
    with_consts = [k for k in range(len(ops)) if _const_edits(m, k)]
    for k in rng.sample(with_consts, min(2, len(with_consts))):
        for what, g in rng.sample(_const_edits(m, k), min(3, len(_const_edits(m, k)))):

            def cedit(mm: schema.ModelT, k: int = k, g: Any = g) -> None:
                t = int(_sub(mm).operators[k].inputs[1])
                values = _buffer_values(mm, t, np.int32)
                new = np.asarray(g(values), dtype=np.int32)
                _set_buffer(mm, t, new)
                if new.size != values.size:
                    shape = _ints(_sub(mm).tensors[t].shape)
                    _sub(mm).tensors[t].shape = [new.size] if len(shape) < 2 else [new.size // 2, 2]

            yield f"op {k} {op_name(m, ops[k])} {what}", cedit
    if with_options:
        k = rng.choice(with_options)

        def wrong_type(mm: schema.ModelT, k: int = k) -> None:
            op = _sub(mm).operators[k]
            op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
            op.builtinOptions = schema.ReshapeOptionsT()
            op.builtinOptions.newShape = [1, 2, 3]

        def none(mm: schema.ModelT, k: int = k) -> None:
            op = _sub(mm).operators[k]
            op.builtinOptionsType, op.builtinOptions = 0, None

        yield f"op {k} {op_name(m, ops[k])} options of another op's type", wrong_type
        yield f"op {k} {op_name(m, ops[k])} options missing", none


_TYPES = {
    "FLOAT32": schema.TensorType.FLOAT32,
    "INT16": schema.TensorType.INT16,
    "UINT8": schema.TensorType.UINT8,
    "INT32": schema.TensorType.INT32,
    "INT64": schema.TensorType.INT64,
    "BOOL": schema.TensorType.BOOL,
    "INT8": schema.TensorType.INT8,
    "type 99": 99,
}


def fam_dtype(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    tensors = _sub(m).tensors
    for t in rng.sample(range(len(tensors)), min(3, len(tensors))):
        choices = [n for n, v in _TYPES.items() if v != tensors[t].type]
        name = rng.choice(choices)

        def edit(mm: schema.ModelT, t: int = t, name: str = name) -> None:
            _sub(mm).tensors[t].type = _TYPES[name]

        kind = "constant" if is_constant(m, t) else "activation"
        yield f"{kind} {t} type {name}", edit


def fam_operands(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    ops = _sub(m).operators
    n = len(_sub(m).tensors)
    multi = [k for k in range(len(ops)) if len(ops[k].inputs) > 1]
    for k in rng.sample(multi, min(2, len(multi))):

        def swap(mm: schema.ModelT, k: int = k) -> None:
            op = _sub(mm).operators[k]
            ins = _ints(op.inputs)
            ins[0], ins[1] = ins[1], ins[0]
            op.inputs = ins

        yield f"op {k} inputs 0 and 1 swapped", swap
    for k in rng.sample(range(len(ops)), min(2, len(ops))):
        bad = rng.choice([n, n + 1000, -2, -1])
        slot = rng.randrange(len(ops[k].inputs))

        def out_of_range(mm: schema.ModelT, k: int = k, bad: int = bad, slot: int = slot) -> None:
            op = _sub(mm).operators[k]
            ins = _ints(op.inputs)
            ins[slot] = bad
            op.inputs = ins

        yield f"op {k} input {slot} -> tensor {bad}", out_of_range

        def in_out(mm: schema.ModelT, k: int = k) -> None:
            op = _sub(mm).operators[k]
            ins, outs = _ints(op.inputs), _ints(op.outputs)
            ins[0], outs[0] = outs[0], ins[0]
            op.inputs, op.outputs = ins, outs

        yield f"op {k} input 0 and output swapped", in_out
    k = rng.randrange(len(ops))
    choice = rng.choice(["no outputs", "writes a model input", "output -> 9999", "extra input"])

    def misc(mm: schema.ModelT, k: int = k, choice: str = choice) -> None:
        op = _sub(mm).operators[k]
        if choice == "no outputs":
            op.outputs = []
        elif choice == "writes a model input":
            op.outputs = [int(_sub(mm).inputs[0])]
        elif choice == "output -> 9999":
            op.outputs = [9999]
        else:
            op.inputs = [*_ints(op.inputs), int(op.inputs[0])]

    yield f"op {k} {choice}", misc
    bad_in = rng.choice([n, -1, 9999])

    def graph_io(mm: schema.ModelT, bad_in: int = bad_in) -> None:
        _sub(mm).inputs = [bad_in]

    yield f"model input -> tensor {bad_in}", graph_io


def fam_opcode(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    ops = _sub(m).operators
    k = rng.randrange(len(ops))
    other = rng.choice(
        ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RELU", "SOFTMAX", "RESHAPE", "MEAN"]
    )

    def replace(mm: schema.ModelT, k: int = k, other: str = other) -> None:
        oc = schema.OperatorCodeT()
        code = getattr(schema.BuiltinOperator, other)
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        mm.operatorCodes.append(oc)
        _sub(mm).operators[k].opcodeIndex = len(mm.operatorCodes) - 1

    def index(mm: schema.ModelT, k: int = k) -> None:
        _sub(mm).operators[k].opcodeIndex = len(mm.operatorCodes) + 3

    def custom(mm: schema.ModelT, k: int = k) -> None:
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.customCode = 32, 32, "Mystery"
        mm.operatorCodes.append(oc)
        _sub(mm).operators[k].opcodeIndex = len(mm.operatorCodes) - 1

    def two_subgraphs(mm: schema.ModelT) -> None:
        mm.subgraphs.append(mm.subgraphs[0])

    if op_name(m, ops[k]) != other:
        yield f"op {k} {op_name(m, ops[k])} -> {other}", replace
    yield f"op {k} opcode index out of range", index
    if rng.random() < 0.5:
        yield f"op {k} custom op", custom
    else:
        yield "two subgraphs", two_subgraphs


def fam_external_buffer(m: schema.ModelT, rng: random.Random) -> Iterator[tuple[str, Edit]]:
    """A constant's data moved after the flatbuffer (Buffer.offset/size), as converters
    write models over 2 GB; then the offset or size made wrong."""
    consts = [i for i in range(len(_sub(m).tensors)) if is_constant(m, i)]
    for t in rng.sample(consts, min(2, len(consts))):
        how = rng.choice(["valid", "offset past the end", "size too small", "offset 2^63"])

        def edit(mm: schema.ModelT, t: int = t, how: str = how) -> bytes:
            b = mm.buffers[_sub(mm).tensors[t].buffer]
            data = b.data.tobytes()
            b.data, b.offset, b.size = None, 1, len(data)
            head = pack_raw(mm)
            at = -(-len(head) // 16) * 16
            b.offset = at
            if how == "offset past the end":
                b.offset = at + (1 << 20)
            elif how == "size too small":
                b.size = max(len(data) // 2, 1)
            elif how == "offset 2^63":
                b.offset = 1 << 63
            head = pack_raw(mm)
            assert len(head) <= at
            return head + bytes(at - len(head)) + data

        yield f"constant {t} in an external buffer ({how})", edit


MODEL_FAMILIES: dict[str, Callable[[schema.ModelT, random.Random], Iterator[tuple[str, Edit]]]] = {
    "empty weight/bias buffer": fam_empty_buffer,
    "cycle": fam_cycle,
    "output never written": fam_output_unwritten,
    "no operators": fam_no_operators,
    "constant model input": fam_constant_input,
    "activation scale": fam_act_scale,
    "filter scales": fam_filter_scale,
    "zero point": fam_zero_point,
    "shape": fam_shape,
    "options": fam_options,
    "dtype": fam_dtype,
    "operands": fam_operands,
    "opcode": fam_opcode,
    "external buffer": fam_external_buffer,
}


MODELS_PER_FAMILY = 36


def spread(
    items: list[Any], base_of: Callable[[Any], str], cap: int, rng: random.Random
) -> list[Any]:
    """Up to `cap` items, taken in turn from each base (each base's own list shuffled), so
    that a family's sample covers every base before it takes a second case from one."""
    by_base: dict[str, list[Any]] = {}
    for item in items:
        by_base.setdefault(base_of(item), []).append(item)
    for group in by_base.values():
        rng.shuffle(group)
    picked: list[Any] = []
    while len(picked) < cap and any(by_base.values()):
        for group in by_base.values():
            if group and len(picked) < cap:
                picked.append(group.pop(0))
    return picked


def model_mutants(seed: int = SEED, per_family: int = MODELS_PER_FAMILY) -> list[Mutant]:
    """The model mutants, in a fixed order; the same seed gives the same bytes."""
    bases = model_bases()
    mutants = []
    for family, maker in MODEL_FAMILIES.items():
        candidates = [
            (base, what, edit)
            for base, data in bases.items()
            for what, edit in maker(load(data), random.Random(f"{seed}/{family}/{base}"))
        ]
        rng = random.Random(f"{seed}/{family}")
        for base, what, edit in spread(candidates, lambda c: c[0], per_family, rng):
            m = load(bases[base])
            try:
                out = edit(m)
                mutated = out if isinstance(out, bytes) else pack(m)
            except Exception as exc:  # the builder cannot express this one: a campaign bug
                raise RuntimeError(f"{family} {base} {what}: {exc!r}") from exc
            big = family == "shape" and ("1048576" in what or "2147483647" in what)
            mutants.append(Mutant("model", family, base, what, mutated, big))
    for i, m in enumerate(mutants):  # and every 25th in a subprocess, for kills
        m.subprocess_cli = m.subprocess_cli or i % 25 == 0
    return mutants


# --- plans -------------------------------------------------------------------------------


@dataclass
class RawPlan:
    """The words of a 'tflm_vmcu.plan' entry (layout in tflm_vmcu/plan_format.py)."""

    magic: int
    version: int
    pool: int
    segment: int
    digest: int
    offsets: list[int]
    starts: list[int]
    blocks: list[list[int]]  # first, last, mode, workspace offset, workspace bytes
    data: bytes

    @staticmethod
    def decode(payload: bytes) -> RawPlan:
        magic, version, pool, segment, digest, n = struct.unpack_from("<6I", payload)
        offsets = list(struct.unpack_from(f"<{n}i", payload, 24))
        at = 24 + 4 * n
        (m,) = struct.unpack_from("<I", payload, at)
        starts = list(struct.unpack_from(f"<{m}i", payload, at + 4))
        at += 4 + 4 * m
        (k,) = struct.unpack_from("<I", payload, at)
        blocks = [list(struct.unpack_from("<5I", payload, at + 4 + 20 * i)) for i in range(k)]
        at += 4 + 20 * k
        return RawPlan(magic, version, pool, segment, digest, offsets, starts, blocks, payload[at:])

    def encode(self) -> bytes:
        def u32(v: int) -> int:
            return v & 0xFFFFFFFF

        out = struct.pack(
            "<6I",
            *(u32(v) for v in (self.magic, self.version, self.pool, self.segment)),
            u32(self.digest),
            len(self.offsets),
        )
        out += struct.pack(f"<{len(self.offsets)}I", *map(u32, self.offsets))
        out += struct.pack(f"<I{len(self.starts)}I", len(self.starts), *map(u32, self.starts))
        out += struct.pack("<I", len(self.blocks))
        out += b"".join(struct.pack("<5I", *map(u32, b)) for b in self.blocks)
        return out + self.data


@dataclass
class PlanBase:
    name: str
    model: bytes  # compiled, untampered
    graph: Any  # tflm_vmcu.ir.Graph
    plan: RawPlan


def plan_bases() -> list[PlanBase]:
    import dataclasses as dc

    import tflm_vmcu
    from tflm_vmcu.compiler import compile_bytes
    from tflm_vmcu.fusion import find_blocks
    from tflm_vmcu.plan_format import PLAN_METADATA, write_plan
    from tflm_vmcu.planner.fused import plan_with_blocks

    compiled: dict[str, bytes] = {}
    for name in (
        "mobilenetv2_small.tflite",
        "resnet8.tflite",
        "dscnn_kws.tflite",
        "op_conv_2d.tflite",
        "op_depthwise_conv_2d.tflite",
        "op_concatenation.tflite",
        "op_add.tflite",
        "op_pad.tflite",
    ):
        compiled[name] = compile_bytes((MODELS / name).read_bytes()).model
    block = synth_models()["synth_block"]
    graph = tflm_vmcu.read_model(block)
    for window in (False, True):
        blocks = [dc.replace(b, window=window) for b in find_blocks(graph)]
        name = f"synth_block ({'window' if window else 'rows'})"
        compiled[name] = write_plan(block, plan_with_blocks(graph, blocks))
    bases = []
    for name, model in compiled.items():
        g = tflm_vmcu.read_model(model)
        bases.append(PlanBase(name, model, g, RawPlan.decode(g.metadata[PLAN_METADATA])))
    return bases


def _with_plan(base: PlanBase, payload: bytes) -> bytes:
    from tflm_vmcu.plan_format import PLAN_METADATA, write_metadata

    return write_metadata(base.model, PLAN_METADATA, payload)


PlanEdit = Callable[[RawPlan], bytes | None]


def _placed(p: RawPlan) -> list[int]:
    return [t for t, o in enumerate(p.offsets) if o >= 0]


def _op_pairs(base: PlanBase) -> list[tuple[int, int, int]]:
    """(op, activation input, output) with both placed."""
    placed = set(_placed(base.plan))
    pairs = []
    for op in base.graph.operators:
        for t in op.inputs:
            live = t in placed and op.outputs and op.outputs[0] in placed
            if live and not base.graph.tensors[t].is_constant:
                pairs.append((op.index, t, op.outputs[0]))
    return pairs


def plan_family_edits(base: PlanBase, rng: random.Random) -> Iterator[tuple[str, str, PlanEdit]]:
    """(family, what, edit) for one compiled model."""
    p = base.plan
    placed = _placed(p)
    pool = p.pool

    def zero(q: RawPlan) -> None:
        q.offsets = [0 if o >= 0 else o for o in q.offsets]

    yield "all offsets 0", "all offsets 0", zero
    for _ in range(5):
        a, b = rng.sample(placed, 2)

        def swap(q: RawPlan, a: int = a, b: int = b) -> None:
            q.offsets[a], q.offsets[b] = q.offsets[b], q.offsets[a]

        yield "two offsets swapped", f"tensors {a} and {b} swapped", swap
    for what, new in (
        ("pool - 16", pool - 16),
        ("pool - 64", pool - 64),
        ("pool / 2", pool // 2),
        ("pool - segment", pool - p.segment),
    ):

        def shrink(q: RawPlan, new: int = new) -> None:
            q.pool = max(new, 0)

        yield "pool shrunk", what, shrink
    pairs = _op_pairs(base)
    for k, t_in, t_out in rng.sample(pairs, min(5, len(pairs))):
        for step in (16, p.segment, 2 * p.segment):
            d = (p.offsets[t_in] - p.offsets[t_out]) % pool  # input sits d bytes after output
            new = (p.offsets[t_out] + step) % pool if d >= step else (p.offsets[t_in] - step) % pool

            def closer(q: RawPlan, t_out: int = t_out, new: int = new) -> None:
                q.offsets[t_out] = new

            yield "output closer to input", f"op {k} output {step} B closer", closer
    for i, blk in enumerate(p.blocks):
        first, last = blk[0], blk[1]
        block_in = base.graph.operators[first].inputs[0]
        block_out = base.graph.operators[last].outputs[0]
        for what, target in (
            ("onto the block input", block_in),
            ("onto the block output", block_out),
        ):

            def ws(q: RawPlan, i: int = i, target: int = target) -> None:
                q.blocks[i][3] = q.offsets[target]

            yield "workspace moved", f"block {i} workspace {what}", ws

        def ws_shift(q: RawPlan, i: int = i) -> None:
            q.blocks[i][3] = (q.blocks[i][3] + 16) % max(q.pool, 1)

        yield "workspace moved", f"block {i} workspace + 16", ws_shift
    for j in range(4):
        r = random.Random(rng.random())
        align = r.choice([1, 4, 16])

        def rand(q: RawPlan, r: random.Random = r, align: int = align) -> None:
            q.offsets = [
                (r.randrange(max(q.pool, 1)) // align) * align if o >= 0 else o for o in q.offsets
            ]

        yield "random offsets", f"random offsets #{j} (aligned {align})", rand
    for what, change in (
        ("segment 0", {"segment": 0}),
        ("segment 3", {"segment": 3}),
        ("segment 2^31", {"segment": 1 << 31}),
        ("pool 0", {"pool": 0}),
        ("pool 2^32-1", {"pool": 0xFFFFFFFF}),
        ("pool + 16", {"pool": pool + 16}),
        ("pool * 2", {"pool": pool * 2}),
        ("digest + 1", {"digest": p.digest + 1}),
        ("version 2", {"version": 2}),
    ):

        def field_edit(q: RawPlan, change: dict[str, int] = change) -> None:
            for k, v in change.items():
                setattr(q, k, v)

        yield "header fields", what, field_edit
    yield from _block_table_edits(base, rng)
    for what, cut in (("header", 12), ("offsets", 24 + 2 * len(p.offsets)), ("last word", -4)):
        payload = p.encode()

        def trunc(q: RawPlan, payload: bytes = payload, cut: int = cut) -> bytes:
            return payload[:cut]

        yield "truncated", f"cut in the {what}", trunc

    def extra(q: RawPlan) -> bytes:
        return q.encode() + b"\xff" * 12

    yield "truncated", "12 extra bytes", extra
    for t in rng.sample(placed, min(3, len(placed))):
        for what, value in (
            ("-1 (not placed)", -1),
            ("pool - 1", pool - 1),
            ("pool", pool),
            ("2^31 - 1", (1 << 31) - 1),
            ("+ 1 (misaligned)", p.offsets[t] + 1),
        ):

            def edge(q: RawPlan, t: int = t, value: int = value) -> None:
                q.offsets[t] = value

            yield "offset edges", f"tensor {t} offset {what}", edge
    with_data = [k for k, s in enumerate(p.starts) if s >= 0]
    for k in rng.sample(with_data, min(2, len(with_data))):

        def word(q: RawPlan, k: int = k) -> None:
            words = bytearray(q.data)
            at = 4 * q.starts[k]
            words[at : at + 4] = struct.pack("<i", struct.unpack_from("<i", words, at)[0] + 1)
            q.data = bytes(words)

        def start(q: RawPlan, k: int = k) -> None:
            q.starts[k] = len(q.data) // 4 + 10

        def no_data(q: RawPlan, k: int = k) -> None:
            q.starts[k] = -1

        yield "op data", f"op {k} multiplier + 1", word
        yield "op data", f"op {k} data start past the end", start
        yield "op data", f"op {k} data removed", no_data


def _block_table_edits(base: PlanBase, rng: random.Random) -> Iterator[tuple[str, str, PlanEdit]]:
    p = base.plan
    if not p.blocks:
        return
    for i in range(len(p.blocks)):
        for what, slot, delta in (
            ("first op - 1", 0, -1),
            ("first op + 1", 0, 1),
            ("last op + 1", 1, 1),
            ("last op - 1", 1, -1),
            ("workspace bytes / 2", 4, None),
            ("workspace bytes 0", 4, 0),
        ):

            def edit(q: RawPlan, i: int = i, slot: int = slot, delta: Any = delta) -> None:
                if slot == 4:
                    q.blocks[i][4] = 0 if delta == 0 else q.blocks[i][4] // 2
                else:
                    q.blocks[i][slot] += delta

            yield "block table", f"block {i} {what}", edit

        def mode(q: RawPlan, i: int = i) -> None:
            q.blocks[i][2] ^= 1

        def bad_mode(q: RawPlan, i: int = i) -> None:
            q.blocks[i][2] = 7

        yield "block table", f"block {i} mode flipped", mode
        yield "block table", f"block {i} mode 7", bad_mode

    def drop(q: RawPlan) -> None:
        q.blocks = q.blocks[1:]

    def dup(q: RawPlan) -> None:
        q.blocks = [q.blocks[0], *q.blocks]

    def count(q: RawPlan) -> bytes:
        out = q.encode()
        at = 24 + 4 * len(q.offsets) + 4 + 4 * len(q.starts)
        return out[:at] + struct.pack("<I", 0xFFFF) + out[at + 4 :]

    yield "block table", "first block dropped", drop
    yield "block table", "first block twice", dup
    yield "block table", "block count 65535", count


PLANS_PER_FAMILY = {
    "all offsets 0": 10,
    "two offsets swapped": 40,
    "pool shrunk": 30,
    "output closer to input": 50,
    "workspace moved": 15,
    "random offsets": 30,
    "header fields": 35,
    "block table": 40,
    "truncated": 20,
    "offset edges": 40,
    "op data": 30,
}


def plan_mutants(seed: int = SEED) -> tuple[list[Mutant], list[PlanBase]]:
    import copy

    bases = plan_bases()
    candidates: dict[str, list[tuple[PlanBase, str, bytes]]] = {f: [] for f in PLANS_PER_FAMILY}
    for base in bases:
        rng = random.Random(f"{seed}/plan/{base.name}")
        for family, what, edit in plan_family_edits(base, rng):
            q = copy.deepcopy(base.plan)
            out = edit(q)
            payload = out if isinstance(out, bytes) else q.encode()
            if payload != base.plan.encode():  # not e.g. a swap of equal offsets
                candidates[family].append((base, what, payload))
    mutants = []
    for family, cap in PLANS_PER_FAMILY.items():
        rng = random.Random(f"{seed}/plan/{family}")
        for base, what, payload in spread(candidates[family], lambda c: c[0].name, cap, rng):
            mutants.append(Mutant("plan", family, base.name, what, _with_plan(base, payload)))
    return mutants, bases


# --- running one mutant (in a worker) ------------------------------------------------------


def seeded_inputs(interp: Any, seed: int, runs: int = 2) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(runs):
        arrays = []
        for d in interp.get_input_details():
            shape, dtype = tuple(int(n) for n in d["shape"]), d["dtype"]
            if dtype is None:
                arrays.append(np.zeros(shape, np.int8))
            elif np.dtype(dtype).kind == "f":
                arrays.append(rng.uniform(-1, 1, size=shape).astype(dtype))
            else:
                info = np.iinfo(dtype)
                arrays.append(
                    rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
                )
        sets.append(arrays)
    return sets


def same_outputs(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> str:
    """ "" when equal bit for bit, else what differs."""
    if len(a) != len(b):
        return f"{len(a)} runs against {len(b)}"
    for r, (xa, xb) in enumerate(zip(a, b, strict=True)):
        if len(xa) != len(xb):
            return f"{len(xa)} outputs against {len(xb)}"
        for i, (u, v) in enumerate(zip(xa, xb, strict=True)):
            if u.dtype != v.dtype or u.size != v.size:
                return f"output {i}: {u.dtype}{u.shape} against {v.dtype}{v.shape}"
            if u.tobytes() != v.tobytes():
                diff = int(np.count_nonzero(u.ravel() != v.ravel()))
                return f"run {r} output {i}: {diff} of {u.size} elements differ"
    return ""


def run_ours(model: bytes, seed: int, hazards: bool = False) -> tuple[Any, list[list[np.ndarray]]]:
    """(interpreter, outputs) of our runtime; TflmVmcuError when it refuses. The error's
    `at` attribute says whether it came at load or at invoke."""
    import tflm_vmcu

    try:
        interp = tflm_vmcu.Interpreter(model, check_hazards=hazards)
    except tflm_vmcu.TflmVmcuError as exc:
        exc.at = "load"  # type: ignore[attr-defined]
        raise
    try:
        inputs = seeded_inputs(interp, seed)
        outputs = []
        for arrays in inputs:
            for d, a in zip(interp.get_input_details(), arrays, strict=True):
                interp.set_tensor(d["index"], a)
            interp.invoke()
            outputs.append([interp.get_tensor(d["index"]) for d in interp.get_output_details()])
    except tflm_vmcu.TflmVmcuError as exc:
        exc.at = "invoke"  # type: ignore[attr-defined]
        raise
    return interp, outputs


def cli(argv: list[str]) -> tuple[int | str, str]:
    """(exit code or 'traceback', stderr) of tflm-vmcu run in this process."""
    from tflm_vmcu.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code: int | str = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # exactly what the campaign looks for
            return "traceback", f"{type(exc).__name__}: {exc}"[:300]
    return code, err.getvalue().strip()


def cli_subprocess(argv: list[str], tmp: str) -> str:
    """'' or what went wrong with tflm-vmcu in a child under the memory limit: 'cli
    killed: ...' (a signal or a time-out) or '<command> traceback (subprocess): ...'."""

    def limit() -> None:
        import resource

        if MEMORY_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tflm_vmcu.cli", *argv],
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT / 2,
            cwd=tmp,
            preexec_fn=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"cli killed: {argv[0]} timed out"
    if proc.returncode < 0:
        return f"cli killed: {argv[0]} killed by signal {-proc.returncode}"
    if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        return f"{argv[0]} traceback (subprocess): exit {proc.returncode}: {last[:200]}"
    return ""


class Worker:
    """Runs mutants in this process: our runtime, TFLM (in its own child) and the CLI."""

    def __init__(self) -> None:
        from tflm_vmcu.tflm_reference import TflmSession

        self.tflm = TflmSession()
        self.tmp = tempfile.mkdtemp(prefix="mutation_campaign_")
        self._reference: dict[str, list[list[np.ndarray]]] = {}

    def model(self, m: Mutant) -> Outcome:
        import tflm_vmcu

        seed = zlib.crc32(m.data)
        outcome, detail = "", ""
        ours: list[list[np.ndarray]] | None = None
        tflm_out: list[list[np.ndarray]] | None = None
        try:
            interp, ours = run_ours(m.data, seed)
            if not interp.memory_guards_intact():
                outcome, detail = "guards broken", ""
        except tflm_vmcu.TflmVmcuError as exc:
            outcome = "refused" if str(exc) else "refused without message"
            detail = f"{type(exc).__name__} at {exc.at}: {exc}"[:300]  # type: ignore[attr-defined]
        except Exception as exc:
            outcome, detail = "traceback", f"{type(exc).__name__}: {exc}"[:300]
        if ours is not None:
            try:
                tflm_out = self.tflm.run(m.data, seeded_inputs(interp, seed)).outputs
            except tflm_vmcu.TflmVmcuError as exc:
                outcome = outcome or "ours accepts, TFLM refuses"
                detail = detail or str(exc)[-200:]
            if tflm_out is not None and not outcome:
                diff = same_outputs(ours, tflm_out)
                outcome, detail = ("divergence", diff) if diff else ("bit-exact", "")
        result = Outcome(m, outcome, detail)
        inputs = seeded_inputs(interp, seed) if ours is not None else []
        result.cli = self._cli(m, seed, inputs, tflm_out)
        return result

    def _cli(
        self,
        m: Mutant,
        seed: int,
        inputs: list[list[np.ndarray]],
        tflm_out: list[list[np.ndarray]] | None,
    ) -> list[str]:
        """CLI problems: tracebacks, kills, and compiled models that compute differently."""
        import tflm_vmcu

        problems = []
        src, dst = Path(self.tmp, "mutant.tflite"), Path(self.tmp, "compiled.tflite")
        src.write_bytes(m.data)
        dst.unlink(missing_ok=True)
        for cmd in ("inspect", "compile"):
            argv = [cmd, str(src)] + (["-o", str(dst)] if cmd == "compile" else [])
            code, err = cli(argv)
            if code not in (0, 1):
                problems.append(
                    f"{cmd} traceback: {err}"
                    if code == "traceback"
                    else f"{cmd} traceback: exit {code}: {err[-300:]}"
                )
            elif code == 1 and (not err.startswith("tflm-vmcu: error: ") or "\n" in err):
                problems.append(f"{cmd} traceback: exit 1 without a one-line error: {err[-300:]}")
            if m.subprocess_cli:
                problem = cli_subprocess(argv, self.tmp)
                if problem:
                    problems.append(problem)
        if dst.exists() and tflm_out is not None:
            compiled = dst.read_bytes()
            try:
                interp, ours = run_ours(compiled, seed, hazards=True)
                why = same_outputs(ours, tflm_out)
                if interp.hazards:
                    why = f"hazard: {interp.first_hazard}"
                elif not interp.memory_guards_intact():
                    why = "memory guards broken"
                if why:
                    problems.append(f"compiled diverges: ours on the compiled model: {why}")
            except tflm_vmcu.TflmVmcuError as exc:
                problems.append(f"note: compiled model refused by ours: {exc}"[:300])
            except Exception as exc:
                problems.append(f"compiled diverges: traceback {type(exc).__name__}: {exc}"[:300])
            try:
                again = self.tflm.run(compiled, inputs).outputs
                why = same_outputs(again, tflm_out)
                if why:
                    problems.append(f"compiled diverges: TFLM on the compiled file: {why}")
            except tflm_vmcu.TflmVmcuError as exc:
                problems.append(f"compiled diverges: TFLM refuses the compiled file: {exc}"[:300])
        return problems

    def plan(self, m: Mutant, reference: bytes) -> Outcome:
        import tflm_vmcu

        seed = zlib.crc32(reference)
        if m.base not in self._reference:
            interp, ref = run_ours(reference, seed, hazards=True)
            assert interp.hazards == 0, f"untampered {m.base}: {interp.first_hazard}"
            self._reference[m.base] = ref
        try:
            interp, ours = run_ours(m.data, seed, hazards=True)
        except tflm_vmcu.TflmVmcuError as exc:
            at = exc.at  # type: ignore[attr-defined]
            if not str(exc):
                return Outcome(m, "refused without message", f"at {at}")
            kind = "refused at load" if at == "load" else "refused at invoke"
            return Outcome(m, kind, f"{type(exc).__name__}: {exc}"[:300])
        except Exception as exc:
            return Outcome(m, "traceback", f"{type(exc).__name__}: {exc}"[:300])
        why = same_outputs(ours, self._reference[m.base])
        if interp.hazards:
            why = f"{why}; " * bool(why) + f"{interp.hazards} hazards: {interp.first_hazard}"
        if not interp.memory_guards_intact():
            why = f"{why}; " * bool(why) + "memory guards broken"
        return (
            Outcome(m, "silent wrong result", why[:400])
            if why
            else Outcome(m, "accepted, identical")
        )

    def close(self) -> None:
        self.tflm.close()


def _worker_main() -> None:
    """Answers one job per stdin line: {"kind", "path", "reference"?, ...}."""
    import resource

    if MEMORY_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints must not mix with replies
    worker = Worker()
    for line in sys.stdin:
        job = json.loads(line)
        m = Mutant(
            **{k: job[k] for k in ("campaign", "family", "base", "what", "subprocess_cli")},
            data=Path(job["path"]).read_bytes(),
        )
        if m.campaign == "model":
            r = worker.model(m)
        else:
            r = worker.plan(m, Path(job["reference"]).read_bytes())
        out.write(
            _REPLY + json.dumps({"outcome": r.outcome, "detail": r.detail, "cli": r.cli}) + "\n"
        )
        out.flush()
    worker.close()


# --- deep and wide graphs ----------------------------------------------------------------

# `tflm-vmcu compile` of each graph below must finish within this (3x under sanitizers).
SCALE_SECONDS = 10.0 * (3 if "libasan" in os.environ.get("LD_PRELOAD", "") else 1)


def chain_model(ops: int) -> bytes:
    """`ops` RELU and RELU6 ops in a chain on a 1x8x8x4 tensor."""
    from tflm_vmcu.synth import ModelBuilder

    b = ModelBuilder(seed=0, description="chain")
    x = b.input([1, 8, 8, 4])
    for k in range(ops):
        x = b.unary("RELU" if k % 2 == 0 else "RELU6", x)
    return b.build([x])


def fanout_model(branches: int) -> bytes:
    """One 1x4x4x4 input read by `branches` RELUs, summed back by a chain of ADDs (every
    branch output stays live until the ADD that takes it)."""
    from tflm_vmcu.synth import ModelBuilder

    b = ModelBuilder(seed=0, description="fanout")
    x = b.input([1, 4, 4, 4])
    outs = [b.unary("RELU", x) for _ in range(branches)]
    acc = outs[0]
    for y in outs[1:]:
        acc = b.elementwise("ADD", acc, y, out_scale=0.05)
    return b.build([acc])


def scale_checks(limit: float = SCALE_SECONDS) -> list[tuple[str, str, float, str]]:
    """(graph, command, seconds, problem or "") for `compile` and `inspect` of a 2,000-op
    chain and a 1,000-branch fan-out, each in a subprocess under the memory limit."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {
            "chain of 2,000 ops": chain_model(2000),
            "fan-out to 1,000 branches": fanout_model(1000),
        }
        for name, data in graphs.items():
            path = Path(tmp, "graph.tflite")
            path.write_bytes(data)
            compile_argv = ["compile", str(path), "-o", str(Path(tmp, "out.tflite"))]
            for argv in (compile_argv, ["inspect", str(path)]):
                start = time.monotonic()
                problem = cli_subprocess(argv, tmp)
                seconds = time.monotonic() - start
                if not problem and seconds > limit:
                    problem = f"took {seconds:.1f} s (limit {limit:.0f} s)"
                rows.append((name, argv[0], seconds, problem))
    return rows


# --- the campaign: workers, tables -----------------------------------------------------------


class _Proc:
    def __init__(self, tmp: str) -> None:
        self.stderr = tempfile.TemporaryFile(dir=tmp)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=tmp,
        )
        self.buf = b""

    def ask(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | str:
        """The reply, or 'crash: ...' / 'hang' (the worker is then dead)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(_REPLY):
                    return json.loads(text[len(_REPLY) :])  # type: ignore[no-any-return]
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                return "hang"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = self.proc.wait()
                    self.stderr.seek(0)
                    tail = self.stderr.read().decode(errors="replace").strip().splitlines()
                    why = f"signal {-code}" if code < 0 else f"exit {code}"
                    return f"crash: {why}: {' | '.join(tail[-3:])[:300]}"
                self.buf += chunk

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        """Ends the worker (stdin closed: it finishes its loop) and closes every pipe."""
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


def run_mutants(
    mutants: list[Mutant], references: dict[str, bytes], workers: int = 0
) -> list[Outcome]:
    """Runs every mutant in worker processes (restarted after a crash or a hang)."""
    import threading

    workers = workers or min(len(mutants), os.cpu_count() or 1)
    results: list[Outcome | None] = [None] * len(mutants)
    with tempfile.TemporaryDirectory() as tmp:
        ref_paths = {}
        for name, data in references.items():
            ref_paths[name] = Path(tmp, f"ref_{len(ref_paths)}.tflite")
            ref_paths[name].write_bytes(data)
        jobs = []
        for i, m in enumerate(mutants):
            path = Path(tmp, f"m{i}.tflite")
            path.write_bytes(m.data)
            job = {
                k: getattr(m, k) for k in ("campaign", "family", "base", "what", "subprocess_cli")
            }
            job["path"] = str(path)
            if m.campaign == "plan":
                job["reference"] = str(ref_paths[m.base])
            jobs.append(job)
        lock = threading.Lock()
        queue = list(range(len(mutants)))[::-1]

        def loop() -> None:
            proc = _Proc(tmp)
            while True:
                with lock:
                    if not queue:
                        break
                    i = queue.pop()
                reply = proc.ask(jobs[i], JOB_TIMEOUT)
                if isinstance(reply, str):  # the worker died: start another
                    kind = "hang" if reply == "hang" else "crash"
                    results[i] = Outcome(mutants[i], kind, reply)
                    proc.kill()
                    proc.close()
                    proc = _Proc(tmp)
                else:
                    results[i] = Outcome(
                        mutants[i], reply["outcome"], reply["detail"], reply["cli"]
                    )
            proc.close()

        threads = [threading.Thread(target=loop) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return [r for r in results if r is not None]


@dataclass
class Report:
    models: list[Outcome]
    plans: list[Outcome]
    plan_bases: list[str]
    seconds: float

    def model_failures(self) -> list[Outcome]:
        return [r for r in self.models if r.outcome in MODEL_BAD]

    def tflm_refuses(self) -> list[Outcome]:
        return [r for r in self.models if r.outcome == "ours accepts, TFLM refuses"]

    def cli_failures(self) -> list[tuple[Outcome, str]]:
        return [(r, c) for r in self.models for c in r.cli if c.startswith(CLI_BAD)]

    def plan_failures(self) -> list[Outcome]:
        return [r for r in self.plans if r.outcome in PLAN_BAD]

    def tables(self) -> str:
        return "\n\n".join(
            (
                _table("Model mutations", self.models, MODEL_OUTCOMES, with_cli=True),
                _table("Plan tampering", self.plans, PLAN_OUTCOMES, with_cli=False),
            )
        )

    def failures(self) -> str:
        lines = []
        for title, rows in (
            ("silent divergences and other model failures", self.model_failures()),
            ("ours accepts, TFLM refuses", self.tflm_refuses()),
            ("silent wrong results and other plan failures", self.plan_failures()),
        ):
            lines.append(f"{title}: {len(rows)}")
            lines += [
                f"  [{r.outcome}] {r.mutant.family} | {r.mutant.base} | {r.mutant.what}: {r.detail}"
                for r in rows
            ]
        cli = self.cli_failures()
        lines.append(f"CLI failures: {len(cli)}")
        lines += [f"  {r.mutant.family} | {r.mutant.base} | {r.mutant.what}: {c}" for r, c in cli]
        notes = [(r, c) for r in self.models for c in r.cli if c.startswith("note")]
        lines.append(f"compiled model refused by ours although compile succeeded: {len(notes)}")
        lines += [f"  {r.mutant.family} | {r.mutant.base} | {r.mutant.what}: {c}" for r, c in notes]
        return "\n".join(lines)


def _table(title: str, rows: list[Outcome], outcomes: tuple[str, ...], with_cli: bool) -> str:
    families = list(dict.fromkeys(r.mutant.family for r in rows))
    shown = [o for o in outcomes if any(r.outcome == o for r in rows) or o in outcomes[:4]]
    extra = list(CLI_BAD) if with_cli else []
    head = ["family", "count", *shown, *extra]
    body = []
    for fam in [*families, "total"]:
        sel = [r for r in rows if fam in ("total", r.mutant.family)]
        counts = Counter(r.outcome for r in sel)
        cli = Counter(c.split(":")[0] for r in sel for c in r.cli)
        body.append(
            [fam, str(len(sel)), *(str(counts[o]) for o in shown), *(str(cli[c]) for c in extra)]
        )
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [f"{title} ({len(rows)})"]
    for r in [head, *body]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if r is head:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def run_campaign(seed: int = SEED, workers: int = 0) -> Report:
    start = time.monotonic()
    models = model_mutants(seed)
    plans, bases = plan_mutants(seed)
    refs = {b.name: b.model for b in bases}
    results = run_mutants(models + plans, refs, workers)
    return Report(
        [r for r in results if r.mutant.campaign == "model"],
        [r for r in results if r.mutant.campaign == "plan"],
        [b.name for b in bases],
        time.monotonic() - start,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=0, help="default: one per core")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main()
        return 0
    if args.list:
        models = model_mutants(args.seed)
        plans, _ = plan_mutants(args.seed)
        for m in models + plans:
            print(f"{m.campaign} | {m.family} | {m.base} | {m.what}")
        print(f"{len(models)} model mutants, {len(plans)} tampered plans")
        return 0
    report = run_campaign(args.seed, args.workers)
    print(report.tables())
    print()
    print(report.failures())
    print(f"\n{len(report.models)} models, {len(report.plans)} plans", end=" ")
    print(f"over {len(report.plan_bases)} models, {report.seconds:.0f} s")
    scale = scale_checks()
    print()
    for name, cmd, seconds, problem in scale:
        print(f"{cmd} {name}: {seconds:.1f} s {problem or 'ok'}")
    bad = report.model_failures() or report.plan_failures() or report.cli_failures()
    return 1 if bad or any(p for *_, p in scale) else 0


if __name__ == "__main__":
    sys.exit(main())
