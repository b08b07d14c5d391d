"""Ring planning with fused inverted bottlenecks: which blocks to fuse, and the plan."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from ..fusion import Fused, block_candidates, chain_candidates, planning_graph
from ..ir import Graph, check_graph
from .plan import FusedBlock, Plan
from .ring import OverlapRule, plan_ring, runtime_rule, segment_lower_bound

# Plans the graph the planner sees with blocks fused (fusion.planning_graph), given the span
# of original operators each of its operators stands for.
VirtualPlanner = Callable[[Graph, list[tuple[int, int]]], Plan]


def _runtime_planner(virtual: Graph, spans: list[tuple[int, int]]) -> Plan:
    return plan_ring(virtual)


def plan_with_blocks(
    graph: Graph, blocks: Sequence[Fused], planner: VirtualPlanner = _runtime_planner
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


def _block_need(graph: Graph, block: Fused) -> int:
    """Segment-level bytes of the steps of `block` fused (its workspace, then the block):
    the same whatever else is fused, since the tensors live across a block are the same."""
    virtual, spans = planning_graph(graph, [block])
    _, per_op = segment_lower_bound(virtual)
    return max(n for n, span in zip(per_op, spans, strict=True) if span[0] == block.ops[0])


@dataclasses.dataclass
class BlockChoice:
    """The blocks and chains to fuse, the segment-level bound of the pool they give, and
    what each step needs (to price each choice)."""

    chosen: list[Fused]
    bound: int
    op_need: list[int]  # each operator run alone
    need: dict[Fused, int]  # each candidate fused

    def bound_without(self, fused: Fused) -> int:
        """The bound with `fused` left to the unfused kernels."""
        rest = [x for x in self.chosen if x != fused]
        covered = {k for x in rest for k in x.ops}
        steps = [self.need[x] for x in rest]
        steps += [n for k, n in enumerate(self.op_need) if k not in covered]
        return max(steps, default=0)


def choose_blocks(
    graph: Graph, candidates: Sequence[Fused], rule: OverlapRule = runtime_rule
) -> BlockChoice:
    """The non-overlapping candidates to fuse, and the segment-level bound of the pool they
    give: the smallest bound of any choice, exactly.

    Each operator runs either alone or inside one fused block, and a step's need
    (segment_lower_bound) depends only on how that step runs: a block's inner tensors live
    only inside it. So the bound of a choice is the max over its steps, and dynamic
    programming over the operators finds the least max. Of the choices that reach it, the
    one with the fewest blocks in window mode, then the fewest links between chained blocks,
    then the fewest fused kernels (the others cost time and save nothing)."""
    n = len(graph.operators)
    _, op_need = segment_lower_bound(graph, rule)
    needs = {b: _block_need(graph, b) for b in candidates}
    starts: dict[int, list[tuple[Fused, int]]] = {}
    for b in candidates:
        starts.setdefault(b.ops[0], []).append((b, needs[b]))
    least = [0] * (n + 1)  # least[i]: smallest max need over operators i..n-1
    for i in reversed(range(n)):
        least[i] = max(op_need[i], least[i + 1])
        for b, need in starts.get(i, []):
            least[i] = min(least[i], max(need, least[b.ops[-1] + 1]))
    bound = least[0]
    # Fewest (window blocks, chain links, fused kernels) that keep every step in the bound.
    cost: list[tuple[int, int, int] | None] = [None] * (n + 1)
    pick: list[Fused | None] = [None] * (n + 1)
    cost[n] = (0, 0, 0)
    for i in reversed(range(n)):
        alone = cost[i + 1]
        if op_need[i] <= bound and alone is not None:
            cost[i] = alone
        for b, need in starts.get(i, []):
            rest = cost[b.ops[-1] + 1]
            if need > bound or rest is None:
                continue
            stages = len(b.stages)
            mine = (rest[0] + stages * b.window, rest[1] + stages - 1, rest[2] + 1)
            now = cost[i]
            if now is None or mine < now:
                cost[i], pick[i] = mine, b
    chosen: list[Fused] = []
    i = 0
    while i < n:
        chosen_here = pick[i]
        if chosen_here is None:
            i += 1
        else:
            chosen.append(chosen_here)
            i = chosen_here.ops[-1] + 1
    return BlockChoice(chosen, bound, op_need, needs)


def plan_model(
    graph: Graph,
    fusion: str = "rows",
    planner: VirtualPlanner = _runtime_planner,
    rule: OverlapRule = runtime_rule,
    chains: bool = True,
) -> Plan:
    """The ring plan of the runtime. With fusion "rows", the inverted-bottleneck blocks
    and chains of blocks that give the smallest pool (choose_blocks), in rows mode: each
    value computed once, as by the unfused ops. With "window", blocks and chains may also
    run in window mode (less memory, several times more work in those blocks) where that
    lowers the pool. "off" fuses nothing. `planner` plans the chosen graph and `rule` is its
    kernels' overlap rule (the TFLM plug-in's keeps the tensors of TFLM's kernels flat).
    The notes record, per fused block or chain, the bytes of the pool's segment-level bound
    fusing it saves. `chains=False` fuses single blocks only (for comparison)."""
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion must be one of {', '.join(FUSION_MODES)}, not '{fusion}'")
    check_graph(graph)
    start = time.perf_counter()
    blocks = block_candidates(graph) if fusion != "off" else []
    candidates: list[Fused] = [*blocks, *(chain_candidates(graph, blocks) if chains else [])]
    options = candidates + (
        [dataclasses.replace(b, window=True) for b in candidates] if fusion == "window" else []
    )
    choice = choose_blocks(graph, options, rule)
    best = plan_with_blocks(graph, choice.chosen, planner)
    # What each choice saves, in segment-level bound (exact and cheap: replanning once per
    # choice would dominate the planning time of large models).
    report = [
        {
            "ops": [b.ops[0], b.ops[-1]],
            "pattern": b.pattern,
            "blocks": len(b.stages),
            "mode": "window" if b.window else "rows",
            "workspace_bytes": b.workspace_bytes,
            "unfused_bound_bytes": choice.bound_without(b),
            "saved_bytes": choice.bound_without(b) - choice.bound,
        }
        for b in choice.chosen
    ]
    best.notes["fusion_candidates"] = len(candidates)
    best.notes["fused_blocks"] = report
    best.notes["fusion_bound_bytes"] = choice.bound
    best.notes["planning_seconds"] = time.perf_counter() - start
    return best
