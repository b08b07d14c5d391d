"""The access-order models (tflm_vmcu.access) are exact for the C++ kernels.

For every op of every committed model whose output may overlap an input, the output
is placed exactly the modelled minimal displacement behind that input: the runtime's plan
verifier must accept it, the hazard checker must report nothing and the outputs must stay
bit-exact. One byte closer, the verifier must refuse the plan and, with the plan trusted,
the checker must catch the hazard. The same probe also runs with the pair wrapped around
the end of the ring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import committed_models, model_params

import tflm_vmcu
from tflm_vmcu import access
from tflm_vmcu.ir import Graph
from tflm_vmcu.lifetimes import lifetimes
from tflm_vmcu.plan_format import write_plan
from tflm_vmcu.planner.plan import Placement, Plan
from tflm_vmcu.validate import make_inputs, run_ours

ALIGN = 4  # keeps float32 tensors aligned


def _align(v: int) -> int:
    return -(-v // ALIGN) * ALIGN


def probe_plan(graph: Graph, out: int, inp: int, d: int, rotate: bool) -> Plan:
    """Every tensor in its own bytes, except `out`, which starts d bytes before `inp`
    (the two share a region at the end of the pool). With `rotate`, the pool is cut so
    that this region wraps around the pool end."""
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    offsets: dict[int, int] = {}
    at = 0
    for t in lts:
        if t not in (out, inp):
            offsets[t] = at
            at += _align(lts[t].nbytes)
    region = at
    offsets[out] = region
    offsets[inp] = region + d
    length = _align(max(d + lts[inp].nbytes, lts[out].nbytes))
    pool = region + length
    if rotate:
        # Shift every offset so the shared region straddles the pool end while the
        # other tensors (model inputs and outputs among them) stay flat.
        shift = _align(length // 2)
        offsets = {t: (o + shift) % pool for t, o in offsets.items()}
    placements = {
        t: Placement(t, graph.tensors[t].name, offsets[t], lt.nbytes, lt.first, lt.last)
        for t, lt in lts.items()
    }
    return Plan(pool, 1, placements, "probe")


def run_probe(
    data: bytes, graph: Graph, plan: Plan, verify: bool = True
) -> tuple[int, str, list[np.ndarray]]:
    interp = tflm_vmcu.Interpreter(write_plan(data, plan), check_hazards=True, verify_plan=verify)
    assert interp.has_plan
    outputs = run_ours(interp, make_inputs(graph, 1, 0))[0]
    return interp.hazards, interp.first_hazard, outputs


def overlap_cases(graph: Graph) -> list[tuple[int, int, int]]:
    """(op index, input position, displacement) of every modelled overlap with an
    input that dies at that op."""
    last = {lt.tensor: lt.last for lt in lifetimes(graph)}
    cases = []
    for op in graph.operators:
        for pos, t in enumerate(op.inputs):
            if t < 0 or graph.tensors[t].is_constant or last.get(t) != op.index:
                continue
            d = access.min_displacement(graph, op, pos)
            if d is not None:
                cases.append((op.index, pos, d))
    return cases


@pytest.mark.parametrize("path", model_params(committed_models()))
def test_min_displacement_is_safe_and_tight(path: Path) -> None:
    data = path.read_bytes()
    graph = tflm_vmcu.read_model(data)
    reference = run_ours(tflm_vmcu.Interpreter(data), make_inputs(graph, 1, 0))[0]
    flat = set(graph.inputs) | set(graph.outputs)  # must not wrap: no rotated probe
    for k, pos, d in overlap_cases(graph):
        op = graph.operators[k]
        out, inp = op.outputs[0], op.inputs[pos]
        for rotate in (False, True) if not {out, inp} & flat else (False,):
            hazards, first, outputs = run_probe(data, graph, probe_plan(graph, out, inp, d, rotate))
            where = f"op {k} {op.opcode} input {pos}, d={d}, wrapped={rotate}"
            assert hazards == 0, f"{where}: {first}"
            for a, b in zip(outputs, reference, strict=True):
                assert np.array_equal(a, b), f"{where}: outputs changed"
        if d > 0:
            closer = probe_plan(graph, out, inp, d - 1, False)
            with pytest.raises(tflm_vmcu.ModelError, match=f"unsafe memory plan at operator {k} "):
                run_probe(data, graph, closer)
            hazards, _, _ = run_probe(data, graph, closer, verify=False)
            assert hazards > 0, f"op {k} {op.opcode} input {pos}: d={d - 1} not caught"


def test_every_supported_op_has_a_model() -> None:
    """Each op the runtime supports lets its output overlap some input in the committed
    models (the C++ access-order model exists), so the planner can place it in place."""
    from tflm_vmcu import ops

    overlapping = {
        graph.operators[k].opcode
        for path in committed_models()
        for graph in [tflm_vmcu.read_model(path)]
        for k, _, _ in overlap_cases(graph)
    }
    assert {op.name for op in ops.SUPPORTED_OPS} <= overlapping
