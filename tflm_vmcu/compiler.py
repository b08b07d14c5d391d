"""The compiler pipeline: read model -> find inverted-bottleneck blocks -> plan the pool
(fusing blocks where that lowers it) -> write the plan into the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .lifetimes import live_bytes_per_op
from .plan_format import write_plan
from .planner.fused import plan_model
from .planner.plan import Plan
from .quant import channel_params
from .reader import load_bytes, read_model


@dataclass
class CompileResult:
    plan: Plan
    model: bytes  # the compiled .tflite
    peak_live_bytes: int  # tensor-level lower bound
    segment_bound_bytes: int  # segment-level lower bound


def compile_bytes(data: bytes, fusion: str = "rows") -> CompileResult:
    """Plans the pool (fusion: "rows", "window" or "off"; see planner.fused.plan_model) and
    returns the model with its plan."""
    graph = read_model(data)
    plan = plan_model(graph, fusion)
    for op in graph.operators:
        words = channel_params(graph, op)
        if words is not None:
            plan.op_words[op.index] = words
    live = live_bytes_per_op(graph)
    return CompileResult(
        plan=plan,
        model=write_plan(data, plan),
        peak_live_bytes=max(live) if live else 0,
        segment_bound_bytes=int(plan.notes["segment_bound_bytes"]),  # type: ignore[call-overload]
    )


def compile_model(model: str | Path, output: str | Path, fusion: str = "rows") -> CompileResult:
    result = compile_bytes(load_bytes(model), fusion)
    Path(output).write_bytes(result.model)
    return result
