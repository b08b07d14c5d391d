"""Segment-level planning on a ring pool.

Walks the ops in order and places each op's output: behind a dying input by the
smallest displacement its kernel's access order allows (tflm_vmcu.access), or else in
free space of the ring. The pool size is found by bisection; the result is never
worse than a tensor-level (no-overlap) plan, which is itself a valid ring plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import access
from ..ir import Graph
from ..lifetimes import Lifetime, lifetimes
from .plan import Placement, Plan

SEGMENT_CHOICES = (4, 8, 16)


@dataclass(frozen=True)
class Overlap:
    """The output of an op may start `displacement` bytes behind this dying input."""

    tensor: int
    displacement: int


@dataclass(frozen=True)
class OpFacts:
    output: int
    overlaps: tuple[Overlap, ...]  # dying inputs the output may overlap, largest first
    alias: int | None  # RESHAPE: dying input whose bytes the output can take over


def _ceil(v: int, s: int) -> int:
    return -(-v // s) * s


def op_facts(graph: Graph, lts: dict[int, Lifetime]) -> list[OpFacts]:
    facts = []
    outputs = set(graph.outputs)
    for k, op in enumerate(graph.operators):
        out = op.outputs[0]
        dying = [
            (pos, t)
            for pos, t in enumerate(op.inputs)
            if t >= 0 and t in lts and lts[t].last == k and t not in outputs
        ]
        overlaps = []
        for pos, t in dying:
            d = access.min_displacement(graph, op, pos)
            if d is not None:
                overlaps.append(Overlap(t, d))
        overlaps.sort(key=lambda o: -lts[o.tensor].nbytes)
        alias = None
        if op.opcode == "RESHAPE" and dying and dying[0][0] == 0:
            alias = dying[0][1]
        facts.append(OpFacts(out, tuple(overlaps), alias))
    return facts


class _Ring:
    """Occupied intervals of a ring of `size` bytes."""

    def __init__(self, size: int):
        self.size = size

    def ranges(self, off: int, n: int) -> list[tuple[int, int]]:
        end = off + n
        if end <= self.size:
            return [(off, end)]
        return [(off, self.size), (0, end - self.size)]

    def disjoint(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        return all(x1 <= y0 or y1 <= x0 for x0, x1 in self.ranges(*a) for y0, y1 in self.ranges(*b))


def _try_place(
    graph: Graph,
    lts: dict[int, Lifetime],
    facts: list[OpFacts],
    pool: int,
    seg: int,
    gap_first: bool = False,
) -> dict[int, int] | None:
    """Offsets of every tensor for a ring of `pool` bytes, or None if this greedy walk
    cannot fit the model."""
    ring = _Ring(pool)
    size = {t: _ceil(lt.nbytes, seg) for t, lt in lts.items()}
    if any(s > pool for s in size.values()):
        return None
    flat = set(graph.inputs) | set(graph.outputs)  # callers use these as flat buffers
    offset: dict[int, int] = {}
    at = 0
    for t in graph.inputs:
        if t in offset or t not in lts:
            continue
        if at + size[t] > pool:
            return None
        offset[t] = at
        at += size[t]
    # Room the consumer of each tensor will want around it to overlap it: `lead` bytes
    # in front (its displacement) and `trail` bytes past its end (a larger output).
    lead: dict[int, int] = {}
    trail: dict[int, int] = {}
    for f in facts:
        if f.overlaps and f.output in size:
            ov = f.overlaps[0]
            lead[ov.tensor] = _ceil(ov.displacement, seg)
            trail[ov.tensor] = max(0, size[f.output] - lead[ov.tensor] - size[ov.tensor])
    resident: list[int] = [t for t in offset]
    for k, f in enumerate(facts):
        resident = [t for t in resident if lts[t].last >= k]
        o = f.output
        if o in offset or o not in lts:
            continue
        n = size[o]
        if f.alias is not None and f.alias in offset and size[f.alias] >= n:
            base = offset[f.alias]
            if not (o in flat and base + n > pool):
                offset[o] = base
                resident.append(o)
                continue
        allowed = {ov.tensor: ov.displacement for ov in f.overlaps}
        candidates = [
            (offset[ov.tensor] - _ceil(ov.displacement, seg)) % pool
            for ov in f.overlaps
            if ov.tensor in offset
        ]
        # Free-space candidates next to each resident tensor, first with the room the
        # output's own consumer will need, then tight.
        gaps = [(offset[t] + size[t] + lead.get(o, 0)) % pool for t in resident]
        gaps += [(offset[t] - n - trail.get(o, 0)) % pool for t in resident]
        gaps += [(offset[t] + size[t]) % pool for t in resident]
        gaps += [(offset[t] - n) % pool for t in resident]
        # Two orders of preference: overlap a dying input first (chains), or keep the
        # output clear of every input (graphs whose branches block the overlap).
        candidates = gaps + candidates if gap_first else candidates + gaps
        candidates.append(0)
        chosen = None
        for base in candidates:
            if o in flat and base + n > pool:
                continue
            ok = True
            for t in resident:
                if ring.disjoint((base, n), (offset[t], size[t])):
                    continue
                d = allowed.get(t)
                behind = (offset[t] - base) % pool
                if d is None or behind < d or behind > pool - size[t]:
                    ok = False
                    break
            if ok:
                chosen = base
                break
        if chosen is None:
            return None
        offset[o] = chosen
        resident.append(o)
    return offset


def _flat_plan(lts: dict[int, Lifetime], seg: int) -> tuple[int, dict[int, int]]:
    """Tensor-level first fit (no overlaps), largest first: the fallback and upper bound."""
    order = sorted(lts, key=lambda t: (-lts[t].nbytes, t))
    placed: list[tuple[int, int, int]] = []  # (offset, size, tensor)
    offsets: dict[int, int] = {}
    for t in order:
        n = _ceil(lts[t].nbytes, seg)
        cand = 0
        for off, sz, u in sorted(placed):
            if lts[u].last < lts[t].first or lts[t].last < lts[u].first:
                continue
            if cand + n <= off:
                break
            cand = max(cand, off + sz)
        offsets[t] = cand
        placed.append((cand, n, t))
    pool = max((off + sz for off, sz, _ in placed), default=0)
    return pool, offsets


def segment_lower_bound(graph: Graph) -> tuple[int, list[int]]:
    """Per op: bytes needed if this op alone were placed perfectly at segment level
    (other live tensors untouched, the output overlapping its best dying input by the
    modelled displacement). Independent of the planner; the max over ops is a lower
    bound of any plan that keeps the same op order and kernels."""
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    facts = op_facts(graph, lts)
    per_op = []
    for k, f in enumerate(facts):
        live = [t for t, lt in lts.items() if lt.first <= k <= lt.last]
        out = lts[f.output].nbytes if f.output in lts else 0
        others = sum(lts[t].nbytes for t in live if t != f.output)
        best = others + out
        if f.alias is not None:
            best = min(best, others + max(out - lts[f.alias].nbytes, 0))
        for ov in f.overlaps:
            rest = others - lts[ov.tensor].nbytes
            best = min(best, rest + max(ov.displacement + lts[ov.tensor].nbytes, out))
        per_op.append(best)
    return (max(per_op) if per_op else 0), per_op


def plan_ring(graph: Graph, segments: tuple[int, ...] = SEGMENT_CHOICES) -> Plan:
    """The smallest ring plan found over the segment sizes tried."""
    start = time.perf_counter()
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    facts = op_facts(graph, lts)
    bound, _ = segment_lower_bound(graph)
    best: Plan | None = None
    for seg in segments:
        flat_pool, flat_offsets = _flat_plan(lts, seg)
        lo, hi = max(_ceil(bound, seg), seg), flat_pool
        offsets, pool = flat_offsets, flat_pool
        method = "tensor"
        # Bisection on the pool size (the greedy walk is not strictly monotone in it,
        # so this finds a small feasible size, not always the smallest).
        for gap_first in (False, True):
            lo = max(_ceil(bound, seg), seg)
            while lo < hi:
                mid = _ceil((lo + hi) // 2, seg)
                if mid >= hi:
                    mid = hi - seg
                if mid < lo:
                    break
                found = _try_place(graph, lts, facts, mid, seg, gap_first)
                if found is not None:
                    offsets, pool, hi, method = found, mid, mid, "ring"
                else:
                    lo = mid + seg
        placements = {
            t: Placement(t, graph.tensors[t].name, offsets[t], lt.nbytes, lt.first, lt.last)
            for t, lt in lts.items()
        }
        plan = Plan(pool, seg, placements, method)
        if best is None or plan.pool_bytes < best.pool_bytes:
            best = plan
    assert best is not None
    best.notes["segment_bound_bytes"] = bound
    best.notes["planning_seconds"] = time.perf_counter() - start
    return best
