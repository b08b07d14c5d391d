"""`compile --io int8`: the float input QUANTIZE and output DEQUANTIZE removed, the int8
edges' scale and zero point given to the caller, the same results as the float model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, SHARED_MODELS

import tflm_vmcu
from tflm_vmcu.cli import main
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.int8_io import int8_io
from tflm_vmcu.synth import ModelBuilder
from tflm_vmcu.tflm_reference import TflmSession
from tflm_vmcu.validate import make_inputs, run_ours

FLOAT_EDGES = MODELS / "op_quantize_dequantize.tflite"


@pytest.fixture(scope="module")
def tflm() -> Iterator[TflmSession]:
    with TflmSession() as session:
        yield session


def test_float_edges_are_removed_and_results_unchanged(tflm: TflmSession) -> None:
    """The int8 model, fed the quantised input, gives the int8 output whose dequantised
    value is the float model's output, bit for bit; in this runtime and in TFLM."""
    data = FLOAT_EDGES.read_bytes()
    graph = tflm_vmcu.read_model(data)
    int8_model, edges = int8_io(data)
    g8 = tflm_vmcu.read_model(int8_model)
    assert [op.opcode for op in g8.operators] == ["CONV_2D", "CONV_2D"]
    assert [e.removed_op for e in edges] == ["QUANTIZE", "DEQUANTIZE"]
    assert len(g8.tensors) == len(graph.tensors) - 2
    inp, out = edges
    interp = tflm_vmcu.Interpreter(compile_bytes(int8_model).model, check_hazards=True)
    (i_detail,), (o_detail,) = interp.get_input_details(), interp.get_output_details()
    assert i_detail["dtype"] == o_detail["dtype"] == np.int8
    assert i_detail["quantization"] == pytest.approx((inp.scale, inp.zero_point), rel=1e-7)
    assert o_detail["quantization"] == pytest.approx((out.scale, out.zero_point), rel=1e-7)
    floats = make_inputs(graph, 4, seed=2)
    # make_inputs draws floats within 0.45 of a quantisation level: rounding is unambiguous
    q_in = [
        [np.clip(np.round(x / inp.scale) + inp.zero_point, -128, 127).astype(np.int8)]
        for (x,) in floats
    ]
    expected = tflm.run(data, floats).outputs
    for q_out in (run_ours(interp, q_in), tflm.run(int8_model, q_in).outputs):
        for (y,), (q,) in zip(expected, q_out, strict=True):
            real = np.float32(out.scale) * (q.astype(np.float32) - np.float32(out.zero_point))
            assert np.array_equal(real, y)
    assert interp.hazards == 0
    # The float input's 768 bytes are gone from the pool.
    assert compile_bytes(int8_model).plan.pool_bytes < compile_bytes(data).plan.pool_bytes


def test_edges_with_other_readers_stay() -> None:
    """A float input read by more than its QUANTIZE, or a model without float edges,
    comes back unchanged."""
    b = ModelBuilder(seed=1)
    x = b.input([1, 4, 4, 8])
    data = b.build([b.conv2d(x, 4, (1, 1))])
    assert int8_io(data) == (data, [])


def test_cli_prints_the_scale_and_zero_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "int8.tflite"
    assert main(["compile", str(FLOAT_EDGES), "-o", str(out), "--io", "int8"]) == 0
    printed = capsys.readouterr().out
    _, edges = int8_io(FLOAT_EDGES.read_bytes())
    for e in edges:
        assert f"{e.kind} {e.position} '{e.name}' is int8, real = {e.scale:.9g} * (q - " in printed
    details = tflm_vmcu.Interpreter(out.read_bytes()).get_input_details()
    assert details[0]["dtype"] == np.int8
    assert main(["compile", str(MODELS / "op_conv_2d.tflite"), "-o", str(out), "--io", "int8"]) == 0
    assert "no float input QUANTIZE" in capsys.readouterr().out


def test_tinyengine_vww_loses_its_float_input(tflm: TflmSession) -> None:
    path = SHARED_MODELS / "tinyengine_vww.tflite"
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/models)")
    data, edges = int8_io(path.read_bytes())
    assert edges[0].float_bytes == 76_800
    compiled = compile_bytes(data)
    assert compiled.plan.pool_bytes < 76_800 // 2
    interp = tflm_vmcu.Interpreter(compiled.model, check_hazards=True)
    graph = tflm_vmcu.read_model(data)
    inputs = make_inputs(graph, 2, seed=3)
    ours = run_ours(interp, inputs)
    assert interp.hazards == 0
    theirs = tflm.run(data, inputs).outputs
    assert all(
        np.array_equal(a, b)
        for x, y in zip(ours, theirs, strict=True)
        for a, b in zip(x, y, strict=True)
    )
