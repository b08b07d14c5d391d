"""The ring planner: every compiled model runs bit-exact with TFLM and hazard-free, the
pool never exceeds TFLM's, and a plan one segment too tight is caught."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import UNSUPPORTED_SHARED, committed_models, model_params, shared_models

import tflm_vmcu
from tflm_vmcu import access
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.plan_format import read_plan, write_plan
from tflm_vmcu.planner.plan import Plan
from tflm_vmcu.planner.ring import segment_lower_bound
from tflm_vmcu.planner.tflm_greedy import tflm_head_bytes
from tflm_vmcu.validate import make_inputs, run_ours, validate

ALL_MODELS = committed_models() + [p for p in shared_models() if p.name not in UNSUPPORTED_SHARED]


@pytest.mark.parametrize("path", model_params(ALL_MODELS))
def test_compiled_model_is_bit_exact_hazard_free_and_smaller(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    result = compile_bytes(data)
    graph = tflm_vmcu.read_model(result.model)
    plan = read_plan(graph)
    assert plan is not None
    assert plan.pool_bytes == result.plan.pool_bytes
    assert graph.operators == tflm_vmcu.read_model(data).operators, "the graph must not change"
    out = tmp_path / path.name
    out.write_bytes(result.model)
    report = validate(str(out), runs=5, seed=7, check_hazards=True)
    assert report.extra["planned"]
    assert report.extra["hazards"] == 0, report.extra["first_hazard"]
    assert report.bit_exact
    assert report.ours["pool_bytes"] == plan.pool_bytes
    assert plan.pool_bytes <= tflm_head_bytes(tflm_vmcu.read_model(data))
    # The bound of the graph the planner saw (fused blocks as single operators).
    assert plan.pool_bytes >= result.segment_bound_bytes - plan.segment_bytes
    if not plan.blocks:
        assert result.segment_bound_bytes == segment_lower_bound(graph)[0]


def _tightest_overlap(graph: tflm_vmcu.ir.Graph, plan: Plan) -> tuple[int, int] | None:
    """(output tensor, its displacement) of an op whose output sits exactly at the
    modelled minimal displacement (rounded to a segment) behind a dying input."""
    for op in graph.operators:
        if op.outputs[0] in graph.outputs:  # model outputs must stay flat
            continue
        out = plan.placements.get(op.outputs[0])
        for pos, t in enumerate(op.inputs):
            d = access.min_displacement(graph, op, pos)
            src = plan.placements.get(t)
            if d is None or d < plan.segment_bytes or out is None or src is None:
                continue
            seg_d = -(-d // plan.segment_bytes) * plan.segment_bytes
            if (src.offset - out.offset) % plan.pool_bytes == seg_d and src.last == op.index:
                return out.tensor, seg_d
    return None


@pytest.mark.parametrize("name", ["mobilenetv2_small.tflite", "dscnn_kws.tflite", "op_relu.tflite"])
def test_plan_one_segment_too_tight_is_caught(name: str) -> None:
    data = (committed_models()[0].parent / name).read_bytes()
    result = compile_bytes(data)
    graph = tflm_vmcu.read_model(data)
    found = _tightest_overlap(graph, result.plan)
    assert found is not None, "no op overlaps its input at the minimal displacement"
    tensor, _ = found
    plan = result.plan
    p = plan.placements[tensor]
    moved = dataclasses.replace(p, offset=(p.offset + plan.segment_bytes) % plan.pool_bytes)
    bad = dataclasses.replace(plan, placements={**plan.placements, tensor: moved})
    with pytest.raises(tflm_vmcu.ModelError, match="unsafe memory plan at operator"):
        tflm_vmcu.Interpreter(write_plan(data, bad))
    interp = tflm_vmcu.Interpreter(write_plan(data, bad), check_hazards=True, verify_plan=False)
    run_ours(interp, make_inputs(graph, 1, 0))
    assert interp.hazards > 0
    assert interp.first_hazard.startswith("operator ")
