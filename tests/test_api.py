"""The Python API behaves like tf.lite.Interpreter and reports memory figures."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS

import tflm_vmcu
from tflm_vmcu import _runtime, ops
from tflm_vmcu.lifetimes import live_bytes_per_op

DEFAULT = MODELS / "mobilenetv2_small.tflite"


def test_details_match_the_model() -> None:
    graph = tflm_vmcu.read_model(DEFAULT)
    interp = tflm_vmcu.Interpreter(DEFAULT)
    (inp,) = interp.get_input_details()
    t = graph.tensors[graph.inputs[0]]
    assert inp["index"] == t.index
    assert tuple(inp["shape"]) == t.shape
    assert inp["dtype"] == np.int8
    assert t.quant is not None
    assert inp["quantization"] == (np.float32(t.quant.scale), t.quant.zero_point)
    assert [d["index"] for d in interp.get_output_details()] == list(graph.outputs)


def test_same_input_same_output_and_inputs_matter() -> None:
    interp = tflm_vmcu.Interpreter(DEFAULT)
    d = interp.get_input_details()[0]
    out = interp.get_output_details()[0]["index"]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 127, size=tuple(d["shape"]), dtype=np.int8)
    interp.set_tensor(d["index"], x)
    interp.invoke()
    first = interp.get_tensor(out)
    interp.set_tensor(d["index"], x)
    interp.invoke()
    assert np.array_equal(first, interp.get_tensor(out))
    interp.set_tensor(d["index"], -x)
    interp.invoke()
    assert not np.array_equal(first, interp.get_tensor(out))


def test_pool_is_at_least_the_tensor_level_bound() -> None:
    graph = tflm_vmcu.read_model(DEFAULT)
    interp = tflm_vmcu.Interpreter(DEFAULT)
    peak = max(live_bytes_per_op(graph))
    assert peak <= interp.activation_bytes
    assert interp.state_bytes > 0
    assert interp.total_bytes == interp.activation_bytes + interp.state_bytes


def test_op_table_matches_the_cpp_registry() -> None:
    cpp = {code for code in range(256) if _runtime.is_op_supported(code)}
    assert cpp == {op.code for op in ops.SUPPORTED_OPS}


def test_reader_decodes_builtin_options() -> None:
    graph = tflm_vmcu.read_model(MODELS / "op_conv_2d.tflite")
    convs = [op for op in graph.operators if op.opcode == "CONV_2D"]
    assert convs
    assert all(op.options["stride_w"] >= 1 for op in convs)
    assert {op.options["padding"] for op in convs} == {0, 1}


def test_model_without_a_plan_gets_one_hint_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first model loaded without a plan says what compiling it would save; later ones
    and compiled ones say nothing."""
    import warnings

    from tflm_vmcu import interpreter
    from tflm_vmcu.compiler import compile_bytes

    monkeypatch.setattr(interpreter, "_hinted", [False])
    data = (MODELS / "mobilenetv2_small.tflite").read_bytes()
    unplanned = tflm_vmcu.Interpreter
    with pytest.warns(tflm_vmcu.PlanHint, match="would bring its pool from 147,456 to"):
        unplanned(data)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        unplanned(data)
        unplanned(compile_bytes(data).model)
    assert not [w for w in seen if issubclass(w.category, tflm_vmcu.PlanHint)]
