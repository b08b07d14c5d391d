"""The compiler pipeline: check the model as the runtime does -> read it -> find
inverted-bottleneck blocks -> plan the pool (fusing blocks where that lowers it) -> write
the plan into the model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from . import _runtime
from .errors import TflmVmcuError, UnsupportedError
from .ir import Graph, Operator, check_graph, check_shapes
from .lifetimes import live_bytes_per_op
from .plan_format import PLAN_METADATA, write_plan
from .planner.fused import plan_model
from .planner.plan import Plan
from .quant import CHANNEL_DIM, channel_params
from .reader import load_bytes, read_model


@dataclass
class CompileResult:
    plan: Plan
    model: bytes  # the compiled .tflite
    peak_live_bytes: int  # tensor-level lower bound
    segment_bound_bytes: int  # segment-level lower bound
    plan_bytes: int = 0  # the stored plan (flash)


def runtime_refusal(data: bytes) -> str:
    """'' if the runtime accepts the model's structure, types, ops and quantisation
    (everything it checks at AllocateTensors but the size of the memory block), else its
    one-line message."""
    return str(_runtime.check_model(data))


def check_model(data: bytes) -> Graph:
    """The model's graph, if the runtime and the planner accept it; else UnsupportedError
    or ModelError with one line saying why. Nothing is planned before this passes."""
    refusal = runtime_refusal(data)
    if refusal:
        raise UnsupportedError(refusal)
    graph = read_model(data)
    if graph.external_buffers:
        # Rewriting the model (to add the plan) would lose data stored after the flatbuffer.
        raise UnsupportedError(
            f"buffer {graph.external_buffers[0]} stores its data outside the flatbuffer "
            "(buffer offset/size): unsupported"
        )
    check_shapes(graph)
    check_graph(graph)
    return graph


def _words_defined(graph: Graph, op: Operator) -> bool:
    """Whether the per-channel multipliers of a conv/depthwise op are plain numbers (the
    runtime refuses the others; it computes them itself if the plan carries none)."""
    if op.opcode not in CHANNEL_DIM or len(op.inputs) < 2 or not op.outputs:
        return False
    scales: list[float] = []
    for t in (op.inputs[0], op.inputs[1], op.outputs[0]):
        q = graph.tensors[t].quant if t >= 0 else None
        if q is None:
            return False
        scales += q.scales
    return all(math.isfinite(s) and s != 0.0 for s in scales)


def compile_bytes(data: bytes, fusion: str = "rows") -> CompileResult:
    """Plans the pool (fusion: "rows", "window" or "off"; see planner.fused.plan_model) and
    returns the model with its plan."""
    graph = check_model(data)
    plan = plan_model(graph, fusion)
    for op in graph.operators:
        words = channel_params(graph, op) if _words_defined(graph, op) else None
        if words is not None:
            plan.op_words[op.index] = words
    live = live_bytes_per_op(graph)
    model = write_plan(data, plan)
    return CompileResult(
        plan=plan,
        model=model,
        plan_bytes=len(read_model(model).metadata[PLAN_METADATA]),
        peak_live_bytes=max(live) if live else 0,
        segment_bound_bytes=int(plan.notes["segment_bound_bytes"]),  # type: ignore[call-overload]
    )


def compile_model(model: str | Path, output: str | Path, fusion: str = "rows") -> CompileResult:
    result = compile_bytes(load_bytes(model), fusion)
    Path(output).write_bytes(result.model)
    return result


def unplanned_saving(data: bytes) -> tuple[int, int] | None:
    """For a model without this runtime's plan: (pool the runtime gives it without one,
    pool `tflm-vmcu compile` would plan), when compiling lowers it; else None."""
    from .interpreter import Interpreter

    if PLAN_METADATA in read_model(data).metadata:
        return None
    try:
        unplanned = Interpreter(data).activation_bytes
        planned = compile_bytes(data).plan.pool_bytes
    except TflmVmcuError:
        return None  # the caller reports why the model does not run
    return (unplanned, planned) if planned < unplanned else None


def unplanned_note(data: bytes) -> str | None:
    """One line saying what compiling the model would save, if anything."""
    saving = unplanned_saving(data)
    if saving is None:
        return None
    unplanned, planned = saving
    return (
        f"note: this model has no memory plan; `tflm-vmcu compile` would bring its pool from "
        f"{unplanned:,} to {planned:,} bytes (saves {unplanned - planned:,})"
    )
