"""Plans for the TFLM plug-in (cpp/tflm_plugin): TFLM runs the model, this runtime's ring
kernels run the ops they support, TFLM's own kernels the rest.

The plan is the ring plan of tflm_vmcu.plan_format, with two constraints for the ops a TFLM
kernel runs: their tensors stay flat (a TFLM kernel sees one flat pointer), and their output
overlaps none of their inputs (safe for any kernel library, CMSIS-NN included; the plug-in's
plan verifier holds it to that). Offsets are multiples of 16, TFLM's buffer alignment.

Inverted-bottleneck blocks are fused where that lowers the pool, with the same choice as
the runtime's plan (planner.fused.plan_model) but without chains of blocks, and each fused
block becomes one custom operator (tflm_vmcu.plugin_blocks), so TFLM never allocates its
inner tensors.
"""

from __future__ import annotations

import dataclasses

from . import ops
from .errors import TflmVmcuError
from .fusion import BLOCK_OP, WORKSPACE_OP
from .ir import Graph, Operator
from .plan_format import PLAN_METADATA, read_plan, write_metadata, write_plan
from .planner.fused import plan_model
from .planner.plan import Plan
from .planner.ring import plan_ring, runtime_rule
from .plugin_blocks import BLOCK_CUSTOM_CODE, fuse_blocks, unfuse
from .quant import channel_params
from .reader import read_model

PLUGIN_SEGMENTS = (16,)


# Activation types the ring kernels take: int8 throughout, float32 on the float side of
# QUANTIZE and DEQUANTIZE.
_FLOAT_SIDE = {"QUANTIZE": 0, "DEQUANTIZE": 1}  # op -> position of its float tensor (in, out)


def _ring_types(graph: Graph, op: Operator) -> bool:
    acts = [t for t in (*op.inputs, *op.outputs) if t >= 0 and not graph.tensors[t].is_constant]
    float_pos = _FLOAT_SIDE.get(op.opcode)
    for k, t in enumerate(acts):
        name = graph.tensors[t].dtype_name
        if name != "int8" and not (name == "float32" and float_pos == min(k, 1)):
            return False
    return True


def ring_ops(graph: Graph) -> set[int]:
    """Operators the plug-in's ring kernels run: every op whose builtin this runtime has, on
    the activation types its kernel takes. TFLM's kernels run the rest: ops this runtime
    lacks, and ops of its builtins on other types (an int16 QUANTIZE, say), which the plan
    marks so that the plug-in hands them to TFLM's kernel (Fallback::kTflmKernels)."""
    return {
        op.index for op in graph.operators if ops.is_supported(op.opcode) and _ring_types(graph, op)
    }


def op_counts(graph: Graph) -> dict[str, int]:
    """Operators of a model compiled for the plug-in by what runs them: ring kernels, TFLM's
    kernels (of them, `tflm_fallback` of builtins the plug-in registers: they need
    Fallback::kTflmKernels), and the fused blocks (each one custom operator)."""
    plan = read_plan(graph)
    fallback = len(plan.tflm_kernel_ops) if plan is not None else 0
    blocks = sum(op.opcode == f"CUSTOM:{BLOCK_CUSTOM_CODE}" for op in graph.operators)
    ring = sum(ops.is_supported(op.opcode) for op in graph.operators) - fallback
    return {
        "ring": ring,
        "tflm": len(graph.operators) - ring - blocks,
        "tflm_fallback": fallback,
        "fused_blocks": blocks,
    }


def plan_for_plugin(graph: Graph, fusion: str = "rows") -> Plan:
    """The plan in terms of `graph`'s operators (fused blocks included, as the runtime's)."""
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

    def planner(virtual: Graph, spans: list[tuple[int, int]]) -> Plan:
        ring = {
            k
            for k, op in enumerate(virtual.operators)
            if op.opcode in (BLOCK_OP, WORKSPACE_OP) or spans[k][0] in ours
        }

        def rule(g: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
            return runtime_rule(g, op, pos) if op.index in ring else None  # TFLM: no overlap

        contiguous = tuple(sorted({*virtual.contiguous, *flat}))
        planned = dataclasses.replace(virtual, contiguous=contiguous)
        return plan_ring(planned, segments=PLUGIN_SEGMENTS, rule=rule)

    def original_rule(g: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
        return runtime_rule(g, op, pos) if op.index in ours else None

    # Single blocks only: the plug-in's Prepare holds every operand of a fused operator.
    plan = plan_model(graph, fusion, planner, original_rule, chains=False)
    plan.tflm_kernel_ops = {
        op.index for op in graph.operators if ops.is_supported(op.opcode) and op.index not in ours
    }
    for op in graph.operators:
        words = channel_params(graph, op) if op.index in ours else None
        if words is not None:
            plan.op_words[op.index] = words
    return plan


def compile_for_plugin(data: bytes, fusion: str = "rows") -> tuple[bytes, Plan]:
    """The model for TFLM + the plug-in (fused blocks rewritten into custom operators) with
    its plan, and the plan (in terms of the rewritten model's operators)."""
    plan = plan_for_plugin(read_model(data), fusion)
    if plan.blocks:
        data, plan = fuse_blocks(data, plan)
    return write_plan(data, plan), plan


def stock_model(data: bytes) -> bytes:
    """The model that stock TFLM runs for a model compiled for the plug-in: fused blocks
    back as their operators, without the plan. (The model stock TFLM and the plug-in are
    compared on.)"""
    return write_metadata(unfuse(data), PLAN_METADATA, None)
