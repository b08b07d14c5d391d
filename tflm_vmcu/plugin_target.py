"""Plans for the TFLM plug-in (cpp/tflm_plugin): TFLM runs the model, this runtime's ring
kernels run the ops they support, TFLM's own kernels the rest.

The plan is the ring plan of tflm_vmcu.plan_format, with two constraints for the ops a TFLM
kernel runs: their tensors stay flat (a TFLM kernel sees one flat pointer), and an output
overlaps an input only as `kernels` (the TFLM kernel library, "portable" by default: safe
for any implementation, CMSIS-NN included) allows. Offsets are multiples of 16, TFLM's
buffer alignment.
"""

from __future__ import annotations

import dataclasses

from . import ops
from .errors import TflmVmcuError
from .ir import Graph, Operator
from .plan_format import write_plan
from .planner.plan import Plan
from .planner.ring import plan_ring, runtime_rule
from .quant import channel_params
from .reader import read_model
from .tflm_target import RULES

PLUGIN_SEGMENTS = (16,)


def ring_ops(graph: Graph) -> set[int]:
    """Operators the plug-in's ring kernels run: those whose builtin this runtime has."""
    return {op.index for op in graph.operators if ops.is_supported(op.opcode)}


def plan_for_plugin(graph: Graph, kernels: str = "portable") -> Plan:
    if kernels not in RULES:
        raise TflmVmcuError(f"unknown kernel library '{kernels}' (use one of {sorted(RULES)})")
    if graph.num_subgraphs != 1:
        raise TflmVmcuError("the plug-in plans single-subgraph models only")
    ours = ring_ops(graph)
    flat = {
        t
        for op in graph.operators
        if op.index not in ours
        for t in (*op.inputs, *op.outputs)
        if t >= 0 and not graph.tensors[t].is_constant
    }
    tflm_rule = RULES[kernels]

    def rule(g: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
        return runtime_rule(g, op, pos) if op.index in ours else tflm_rule(g, op, pos)

    planned = dataclasses.replace(graph, contiguous=tuple(sorted(flat)))
    plan = plan_ring(planned, segments=PLUGIN_SEGMENTS, rule=rule)
    for op in graph.operators:
        words = channel_params(graph, op) if op.index in ours else None
        if words is not None:
            plan.op_words[op.index] = words
    return plan


def compile_for_plugin(data: bytes, kernels: str = "portable") -> tuple[bytes, Plan]:
    """The model with a plan for TFLM + the plug-in, and the plan."""
    plan = plan_for_plugin(read_model(data), kernels)
    return write_plan(data, plan), plan
