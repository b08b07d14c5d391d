"""Ring planning with fused inverted bottlenecks: which blocks to fuse, and the plan."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from ..fusion import Block, find_blocks, planning_graph
from ..ir import Graph, check_graph
from .plan import FusedBlock, Plan
from .ring import plan_ring

# Plans the graph the planner sees with blocks fused (fusion.planning_graph), given the span
# of original operators each of its operators stands for.
VirtualPlanner = Callable[[Graph, list[tuple[int, int]]], Plan]


def _runtime_planner(virtual: Graph, spans: list[tuple[int, int]]) -> Plan:
    return plan_ring(virtual)


def plan_with_blocks(
    graph: Graph, blocks: Sequence[Block], planner: VirtualPlanner = _runtime_planner
) -> Plan:
    """The ring plan with `blocks` fused, in terms of the original graph's operators."""
    virtual, spans = planning_graph(graph, blocks)
    vplan = planner(virtual, spans)
    num_ops = len(graph.operators)

    def first(k: int) -> int:
        return spans[k][0] if k < len(spans) else num_ops

    def last(k: int) -> int:
        return spans[k][1] if k < len(spans) else num_ops

    real = len(graph.tensors)
    placements = {
        t: dataclasses.replace(p, first=first(p.first), last=last(p.last))
        for t, p in vplan.placements.items()
        if t < real
    }
    fused = [
        FusedBlock(
            b.ops[0], b.ops[-1], vplan.placements[real + j].offset, b.workspace_bytes, b.window
        )
        for j, b in enumerate(blocks)
    ]
    return Plan(
        vplan.pool_bytes,
        vplan.segment_bytes,
        placements,
        vplan.method,
        blocks=fused,
        notes=dict(vplan.notes),
    )


FUSION_MODES = ("rows", "window", "off")


def plan_model(
    graph: Graph, fusion: str = "rows", planner: VirtualPlanner = _runtime_planner
) -> Plan:
    """The ring plan of the runtime. With fusion "rows", every inverted-bottleneck block is
    fused where that lowers the pool (a block that does not is left to the unfused
    kernels), in rows mode: as fast as the unfused ops. With "window", blocks also run in
    window mode where that lowers the pool further (less memory, several times more work
    in those blocks). "off" fuses nothing. The notes record, per fused block, the pool
    bytes fusing it saves. `planner` plans each candidate (the TFLM plug-in's keeps the
    tensors of TFLM's kernels flat)."""
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion must be one of {', '.join(FUSION_MODES)}, not '{fusion}'")
    check_graph(graph)
    start = time.perf_counter()
    plans: dict[tuple[Block, ...], Plan] = {}

    def plan_for(blocks: list[Block]) -> Plan:  # each set of fused blocks planned once
        key = tuple(blocks)
        if key not in plans:
            plans[key] = plan_with_blocks(graph, blocks, planner)
        return plans[key]

    candidates = find_blocks(graph) if fusion != "off" else []
    kept = list(candidates)
    best = plan_for(kept)
    for b in candidates:
        trial = [x for x in kept if x is not b]
        plan = plan_for(trial)
        if plan.pool_bytes <= best.pool_bytes:
            kept, best = trial, plan
    for j, b in enumerate(kept if fusion == "window" else []):  # only where it pays
        trial = [*kept[:j], dataclasses.replace(b, window=True), *kept[j + 1 :]]
        plan = plan_for(trial)
        if plan.pool_bytes < best.pool_bytes:
            kept, best = trial, plan
    report = []
    for b in kept:
        without = plan_for([x for x in kept if x is not b])
        report.append(
            {
                "ops": [b.ops[0], b.ops[-1]],
                "pattern": " > ".join(b.names),
                "mode": "window" if b.window else "rows",
                "workspace_bytes": b.workspace_bytes,
                "unfused_pool_bytes": without.pool_bytes,
                "saved_bytes": without.pool_bytes - best.pool_bytes,
            }
        )
    best.notes["fusion_candidates"] = len(candidates)
    best.notes["fused_blocks"] = report
    best.notes["planning_seconds"] = time.perf_counter() - start
    return best
