"""Bad input gives one clear error of the package's own type, never a crash, and the
runtime never writes outside the memory block it was given."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bad_input_catalogue import CASES, outcome, table
from conftest import MODELS, ROOT, require_shared

import tflm_vmcu
from tflm_vmcu import ModelError, OutOfMemoryError, TflmVmcuError, UnsupportedError
from tflm_vmcu.cli import main
from tflm_vmcu.synth import ModelBuilder
from tflm_vmcu.tflm_reference import TflmSession
from tflm_vmcu.validate import run_ours

DEFAULT = MODELS / "mobilenetv2_small.tflite"


def _small_model() -> bytes:
    return (MODELS / "op_conv_2d.tflite").read_bytes()


def test_not_a_tflite_file() -> None:
    with pytest.raises(ModelError, match=r"not a \.tflite"):
        tflm_vmcu.Interpreter(b"this is plainly not a flatbuffer model at all")
    with pytest.raises(ModelError, match=r"not a \.tflite"):
        tflm_vmcu.read_model(b"\x00" * 64)


def test_missing_file() -> None:
    with pytest.raises(ModelError, match="cannot read model"):
        tflm_vmcu.Interpreter("/nonexistent/model.tflite")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(fraction: float) -> None:
    data = _small_model()
    with pytest.raises(TflmVmcuError):
        tflm_vmcu.Interpreter(data[: int(len(data) * fraction)])


def test_corrupted_files_never_crash() -> None:
    """Flipped bytes anywhere give either a clean error or a model that still runs;
    the guard zones around the memory block stay intact either way."""
    data = _small_model()
    rng = random.Random(7)
    messages: list[str] = []
    for _ in range(300):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(min(len(buf), 4096))] = rng.randrange(256)
        try:
            interp = tflm_vmcu.Interpreter(bytes(buf), memory_bytes=256 * 1024)
        except TflmVmcuError as exc:
            messages.append(str(exc))
            continue
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], np.zeros(tuple(d["shape"]), dtype=d["dtype"]))
        interp.invoke()
        assert interp.memory_guards_intact()
    assert messages, "no corruption was detected"
    assert all(messages), "an error without a message"


def test_unsupported_op_and_type() -> None:
    path = require_shared("tflm_keyword_scrambled_8bit.tflite")
    with pytest.raises(UnsupportedError, match="SVDF is not supported"):
        tflm_vmcu.Interpreter(path)


def test_memory_block_too_small_names_bytes_needed() -> None:
    interp = tflm_vmcu.Interpreter(DEFAULT)
    needed = interp.total_bytes
    with pytest.raises(OutOfMemoryError, match=rf"needs {needed} bytes"):
        tflm_vmcu.Interpreter(DEFAULT, memory_bytes=needed // 2)
    for size in (0, 16, 1000, needed // 2, needed - 200):
        try:
            tflm_vmcu.Interpreter(DEFAULT, memory_bytes=size)
        except OutOfMemoryError:
            continue
        pytest.fail(f"{size} bytes accepted, but the model needs {needed}")


def test_runs_in_exactly_the_memory_it_reports() -> None:
    interp = tflm_vmcu.Interpreter(DEFAULT)
    exact = tflm_vmcu.Interpreter(DEFAULT, memory_bytes=interp.total_bytes + 64)
    d = exact.get_input_details()[0]
    exact.set_tensor(d["index"], np.ones(tuple(d["shape"]), dtype=d["dtype"]))
    exact.invoke()
    assert exact.memory_guards_intact()


def test_wrong_input_dtype_and_shape() -> None:
    interp = tflm_vmcu.Interpreter(DEFAULT)
    d = interp.get_input_details()[0]
    with pytest.raises(TflmVmcuError, match="expects dtype"):
        interp.set_tensor(d["index"], np.zeros(tuple(d["shape"]), dtype=np.float64))
    with pytest.raises(TflmVmcuError, match="expects shape"):
        interp.set_tensor(d["index"], np.zeros((1, 2), dtype=d["dtype"]))


def test_cli_prints_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage" * 10)
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("tflm-vmcu: error: not a .tflite model")


def test_cli_subprocess_on_truncated_model(tmp_path: Path) -> None:
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(_small_model()[:500])
    proc = subprocess.run(
        [sys.executable, "-m", "tflm_vmcu.cli", "inspect", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # import the installed package, not the source tree
    )
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def test_plan_from_another_model_is_refused() -> None:
    from tflm_vmcu.compiler import compile_bytes
    from tflm_vmcu.plan_format import PLAN_METADATA, read_plan, write_metadata

    donor = compile_bytes((MODELS / "op_relu.tflite").read_bytes()).model
    payload = tflm_vmcu.read_model(donor).metadata[PLAN_METADATA]
    # Same shapes, different graph: op_relu6 is op_relu with RELU6 ops.
    target = write_metadata((MODELS / "op_relu6.tflite").read_bytes(), PLAN_METADATA, payload)
    with pytest.raises(ModelError, match="belongs to another model"):
        tflm_vmcu.Interpreter(target)
    # A graph of another size: the Python reader refuses it as well.
    other = write_metadata((MODELS / "op_conv_2d.tflite").read_bytes(), PLAN_METADATA, payload)
    with pytest.raises(ModelError, match="belongs to another model"):
        read_plan(tflm_vmcu.read_model(other))


@pytest.mark.parametrize(("what", "make"), CASES, ids=[c[0] for c in CASES])
def test_catalogued_bad_input_is_refused(what: str, make: object) -> None:
    kind, message = outcome(make)  # type: ignore[arg-type]
    assert kind != "accepted", f"{what}: accepted"
    assert message


def test_docs_table_is_what_the_runtime_says() -> None:
    doc = (ROOT / "docs" / "BAD_INPUT.md").read_text()
    assert table() in doc, "docs/BAD_INPUT.md is stale: python tests/bad_input_catalogue.py"


# --- quantisation TFLM computes with: the same bits, not a refusal ------------------------

_OPS = {
    "CONV_2D": lambda b, x: b.conv2d(x, 4, (3, 3)),
    "CONV_2D per-tensor": lambda b, x: b.conv2d(x, 4, (1, 1), per_channel=False),
    "DEPTHWISE_CONV_2D": lambda b, x: b.depthwise_conv2d(x),
    "FULLY_CONNECTED per-channel": lambda b, x: b.fully_connected(x, 5, per_channel=True),
    "MUL": lambda b, x: b.elementwise("MUL", x, b.constant([1, 4, 4, 4])),
    "MEAN": lambda b, x: b.mean(x, [1, 2]),
}


def _scaled_model(op: str, operand: str, value: float, channel: int | None = None) -> bytes:
    """input [1,4,4,4] -> op; the scale of `operand` ("input", "filter" or "output") becomes
    `value`: every scale, or only that of `channel`."""
    b = ModelBuilder(seed=5)
    y = _OPS[op](b, b.input([1, 4, 4, 4], 0.02, 1))
    node = b.operators[-1]
    t = {"input": node.inputs[0], "filter": node.inputs[1], "output": node.outputs[0]}[operand]
    q = b.tensors[t].quantization
    q.scale = [value if channel in (None, c) else s for c, s in enumerate(q.scale)]
    return b.build([y])


# (op, operand, value, channel): TFLM computes a defined result; ours must be the same bits.
TFLM_DEFINED = [
    ("CONV_2D", "filter", -0.02, None),  # negative multipliers
    ("CONV_2D", "filter", -0.005, 1),
    ("CONV_2D per-tensor", "filter", -0.02, None),
    ("DEPTHWISE_CONV_2D", "filter", -0.01, 2),
    ("FULLY_CONNECTED per-channel", "filter", -0.02, 0),
    ("CONV_2D", "filter", 1e5, 3),  # left shifts up to 31
    ("CONV_2D", "filter", 1e10, None),
    ("CONV_2D", "filter", 0.0, 0),  # a zero multiplier
    ("CONV_2D", "input", 1e-30, None),  # multipliers below 2^-31 flush to zero
    ("CONV_2D", "input", 1e-40, None),  # a subnormal scale
    ("CONV_2D", "output", 1e30, None),
    ("DEPTHWISE_CONV_2D", "filter", 1e-40, None),
    ("MUL", "input", 1e-40, None),
    ("MUL", "output", 1e30, None),
    ("MEAN", "output", 1e30, None),
    ("MEAN", "input", 1e-30, None),
]


@pytest.fixture(scope="module")
def tflm() -> Iterator[TflmSession]:
    with TflmSession() as session:
        yield session


@pytest.mark.parametrize(
    ("op", "operand", "value", "channel"),
    TFLM_DEFINED,
    ids=[f"{o}-{w}-{v:g}-{c}" for o, w, v, c in TFLM_DEFINED],
)
def test_scales_tflm_computes_with_are_bit_exact(
    op: str, operand: str, value: float, channel: int | None, tflm: TflmSession
) -> None:
    model = _scaled_model(op, operand, value, channel)
    interp = tflm_vmcu.Interpreter(model)
    rng = np.random.default_rng(3)
    inputs = [
        [rng.integers(-128, 128, size=tuple(d["shape"]), dtype=np.int8)]
        for d in interp.get_input_details() * 3
    ]
    ours = run_ours(interp, inputs)
    ref = tflm.run(model, inputs).outputs
    for got, want in zip(ours, ref, strict=True):
        assert got[0].tobytes() == want[0].tobytes()


@pytest.mark.parametrize(
    ("op", "operand", "value"),
    [
        ("CONV_2D", "input", 1e30),  # left shift beyond 31: undefined in TFLM
        ("CONV_2D", "output", 1e-30),
        ("CONV_2D", "filter", math.inf),
        ("CONV_2D", "filter", math.nan),
        ("FULLY_CONNECTED per-channel", "filter", 1e30),
        ("MUL", "input", 1e30),
        ("MEAN", "output", 1e-30),
        ("CONV_2D", "input", math.inf),
        ("CONV_2D", "input", -0.02),
    ],
)
def test_scales_outside_tflm_arithmetic_are_refused(op: str, operand: str, value: float) -> None:
    with pytest.raises(TflmVmcuError, match=r"scale"):
        tflm_vmcu.Interpreter(_scaled_model(op, operand, value))


def test_negative_channel_scales_in_fused_blocks_are_bit_exact(tflm: TflmSession) -> None:
    """Negative per-channel multipliers through an inverted-bottleneck block run fused (both
    modes) and unfused: TFLM's bits."""
    import dataclasses

    from tflm_vmcu.fusion import find_blocks
    from tflm_vmcu.plan_format import write_plan
    from tflm_vmcu.planner.fused import plan_with_blocks

    b = ModelBuilder(seed=13)
    x = b.conv2d(b.input([1, 6, 6, 3]), 8, (3, 3))
    y = b.conv2d(b.depthwise_conv2d(b.conv2d(x, 24, (1, 1)), 1), 8, (1, 1))
    out = b.conv2d(b.elementwise("ADD", x, y), 4, (1, 1))
    for op in b.operators[:-1]:
        if len(op.inputs) > 1 and b.tensors[op.inputs[1]].buffer:
            q = b.tensors[op.inputs[1]].quantization
            q.scale = [-s if c % 2 else s for c, s in enumerate(q.scale)]
    data = b.build([out])
    graph = tflm_vmcu.read_model(data)
    blocks = find_blocks(graph)
    assert len(blocks) == 1
    rng = np.random.default_rng(1)
    inputs = [[rng.integers(-128, 128, size=(1, 6, 6, 3), dtype=np.int8)] for _ in range(3)]
    ref = tflm.run(data, inputs).outputs
    for window in (False, True):
        mode = [dataclasses.replace(block, window=window) for block in blocks]
        fused = tflm_vmcu.Interpreter(write_plan(data, plan_with_blocks(graph, mode)))
        assert fused.fused_blocks == 1
        for got, want in zip(run_ours(fused, inputs), ref, strict=True):
            assert got[0].tobytes() == want[0].tobytes()
    for got, want in zip(run_ours(tflm_vmcu.Interpreter(data), inputs), ref, strict=True):
        assert got[0].tobytes() == want[0].tobytes()
