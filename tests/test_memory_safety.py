"""Regression tests for ways the runtime could be made to write outside its memory block:
each reproduces one defect and requires a clean refusal or correct bytes, with the guard
zones around the block intact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import MODELS

import tflm_vmcu
from tflm_vmcu import ModelError, OutOfMemoryError, TflmVmcuError
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.plan_format import write_plan
from tflm_vmcu.synth import ModelBuilder


@pytest.fixture(scope="module")
def fused_model() -> bytes:
    result = compile_bytes((MODELS / "mobilenetv2_small.tflite").read_bytes())
    assert result.plan.blocks, "the default model must compile with fused blocks"
    return result.model


def test_fused_blocks_never_share_the_pool_with_runtime_state(fused_model: bytes) -> None:
    """Every block of memory smaller than the model needs is refused; the blocks' runtime
    state is counted before the pool is checked against the tail."""
    fit = tflm_vmcu.Interpreter(fused_model)
    need = fit.total_bytes
    for short in (1, 16, 100, 200, 400, 700):
        with pytest.raises(OutOfMemoryError):
            tflm_vmcu.Interpreter(fused_model, memory_bytes=need - short)
    # The smallest block that is accepted runs bit-exact with a roomy one, guards intact.
    rng = np.random.default_rng(3)
    detail = fit.get_input_details()[0]
    x = rng.integers(-128, 128, size=tuple(detail["shape"]), dtype=np.int8)
    outputs = []
    for memory in (need + 64, need + 64 * 1024):
        interp = tflm_vmcu.Interpreter(fused_model, memory_bytes=memory)
        interp.set_tensor(detail["index"], x)
        interp.invoke()
        outputs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
        assert interp.memory_guards_intact()
    np.testing.assert_array_equal(outputs[0], outputs[1])


def _wrapped_tensor(interp: tflm_vmcu.Interpreter) -> int:
    for i in range(interp._rt.num_tensors()):
        d = interp._rt.tensor_details(i)
        if d["ring_offset"] >= 0 and d["ring_offset"] + d["bytes"] > interp.activation_bytes:
            return i
    raise AssertionError("no intermediate tensor wraps the pool end")


def test_tensor_access_follows_the_ring() -> None:
    """set_tensor / get_tensor of an intermediate the plan wraps around the pool end copy
    through the ring: the bytes round-trip and nothing outside the pool is touched."""
    compiled = None
    for path in sorted(MODELS.glob("*.tflite")):
        model = compile_bytes(path.read_bytes()).model
        interp = tflm_vmcu.Interpreter(model, memory_bytes=1 << 20)
        try:
            index = _wrapped_tensor(interp)
        except AssertionError:
            continue
        compiled = (interp, index)
        break
    assert compiled is not None, "some committed model must wrap an intermediate"
    interp, index = compiled
    d = interp._details(index)
    value = np.random.default_rng(5).integers(-128, 128, size=d["shape_tuple"], dtype=np.int8)
    interp.set_tensor(index, value.astype(d["dtype"]))
    np.testing.assert_array_equal(interp.get_tensor(index), value.astype(d["dtype"]))
    assert interp.memory_guards_intact()


def test_tensor_inside_a_fused_block_is_refused(fused_model: bytes) -> None:
    interp = tflm_vmcu.Interpreter(fused_model)
    inner = [
        i
        for i in range(interp._rt.num_tensors())
        if interp._rt.tensor_details(i)["offset"] < 0
        and not interp._rt.tensor_details(i)["is_const"]
        and interp._rt.tensor_details(i)["bytes"] > 0
    ]
    assert inner, "a fused block's inner tensors have no bytes"
    with pytest.raises(TflmVmcuError, match="inside a fused block"):
        interp.get_tensor(inner[0])
    d = interp._details(inner[0])
    with pytest.raises(TflmVmcuError, match="inside a fused block"):
        interp.set_tensor(inner[0], np.zeros(d["shape_tuple"], dtype=d["dtype"]))
    assert interp.memory_guards_intact()


def test_tensor_just_under_2gib_is_not_placed_in_a_small_block() -> None:
    """RELU on a [1,126,341,49981] int8 tensor (2,147,483,646 bytes): aligning it to 16 must
    not overflow, so a 4 KB block is refused instead of leaving the tensor unplaced."""
    b = ModelBuilder(seed=1)
    x = b.input([1, 126, 341, 49981])
    data = b.build([b.unary("RELU", x)])
    for memory in (4096, 1 << 20):
        with pytest.raises(TflmVmcuError, match="need 4096 MiB at once"):
            tflm_vmcu.Interpreter(data, memory_bytes=memory)
    with pytest.raises(TflmVmcuError, match="need 4096 MiB at once"):
        tflm_vmcu.Interpreter(data)


def test_overwritten_model_output_is_refused_and_seen_by_the_hazard_checker() -> None:
    """A plan that lets a later operator write over a model output already computed: the
    verifier refuses it; trusted, the hazard checker sees the caller read a stale output."""
    b = ModelBuilder(seed=21)
    x = b.input([1, 8, 8, 4])
    data = b.build([b.unary("RELU", x), b.unary("RELU6", x)])
    plan = compile_bytes(data).plan
    graph = tflm_vmcu.read_model(data)
    first, second = graph.outputs
    moved = dataclasses.replace(plan.placements[second], offset=plan.placements[first].offset)
    bad = write_plan(data, dataclasses.replace(plan, placements={**plan.placements, second: moved}))
    with pytest.raises(ModelError, match="unsafe memory plan at operator 1 "):
        tflm_vmcu.Interpreter(bad)
    interp = tflm_vmcu.Interpreter(bad, check_hazards=True, verify_plan=False)
    d = interp.get_input_details()[0]
    interp.set_tensor(d["index"], np.ones(tuple(d["shape"]), dtype=np.int8))
    interp.invoke()
    assert interp.hazards > 0
    assert interp.first_hazard.startswith("the caller (after the last operator) read byte 0")
