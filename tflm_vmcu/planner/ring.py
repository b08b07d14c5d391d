"""Segment-level planning on a ring pool.

Walks the ops in order and places each op's output: behind a dying input by the
smallest displacement its kernel's access order allows (tflm_vmcu.access), or else in
free space of the ring. The pool size is found by bisection; the result is never
worse than a tensor-level (no-overlap) plan, which is itself a valid ring plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import access
from ..ir import Graph, Operator
from ..lifetimes import Lifetime, lifetimes
from .plan import Placement, Plan

SEGMENT_CHOICES = (4, 8, 16)


@dataclass(frozen=True)
class Overlap:
    """The output of an op may start `displacement` bytes behind this dying input
    (exactly that many when `exact`: an in-place-only kernel)."""

    tensor: int
    displacement: int
    exact: bool = False


# Overlap rule of a kernel library: (graph, op, input position) -> (displacement, exact)
# or None when the output must not overlap that input.
OverlapRule = Callable[[Graph, Operator, int], "tuple[int, bool] | None"]


def runtime_rule(graph: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
    """This runtime's kernels: the access-order models."""
    d = access.min_displacement(graph, op, pos)
    return None if d is None else (d, False)


@dataclass(frozen=True)
class OpFacts:
    output: int
    overlaps: tuple[Overlap, ...]  # dying inputs the output may overlap, largest first
    alias: int | None  # RESHAPE: dying input whose bytes the output can take over


def _ceil(v: int, s: int) -> int:
    return -(-v // s) * s


def op_facts(
    graph: Graph, lts: dict[int, Lifetime], rule: OverlapRule = runtime_rule
) -> list[OpFacts]:
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
            allowed = rule(graph, op, pos) if op.opcode != "RESHAPE" else None
            if allowed is not None:
                overlaps.append(Overlap(t, allowed[0], allowed[1]))
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


# Placement attempts one walk may make before giving up (backtracking budget).
SEARCH_BUDGET = 4000


def _try_place(
    graph: Graph,
    lts: dict[int, Lifetime],
    facts: list[OpFacts],
    pool: int,
    seg: int,
    gap_first: bool = False,
    linear: bool = False,
    inputs_at_end: bool = False,
) -> dict[int, int] | None:
    """Offsets of every tensor for a ring of `pool` bytes (a plain buffer when
    `linear`: nothing wraps), or None if the search cannot fit the model.

    Walks the ops in order, trying for each output the candidate positions in order of
    preference, and backtracks (within SEARCH_BUDGET attempts) when a later op cannot
    be placed."""
    ring = _Ring(pool)
    size = {t: _ceil(lt.nbytes, seg) for t, lt in lts.items()}
    if any(s > pool for s in size.values()):
        return None
    # Callers use model inputs and outputs as flat buffers; linear plans wrap nothing.
    flat = set(lts) if linear else set(graph.inputs) | set(graph.outputs) | set(graph.contiguous)
    offset: dict[int, int] = {}
    # Model inputs go at the start, or at the end, so that a chain of outputs can step
    # down behind them.
    at = 0
    for t in graph.inputs:
        if t in offset or t not in lts:
            continue
        if at + size[t] > pool:
            return None
        offset[t] = pool - at - size[t] if inputs_at_end else at
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
    budget = [SEARCH_BUDGET]

    def feasible(k: int, f: OpFacts, resident: list[int]) -> list[int]:
        o, n = f.output, size[f.output]
        allowed = {ov.tensor: ov for ov in f.overlaps}
        overlaps = [
            (offset[ov.tensor] - _ceil(ov.displacement, seg) - extra) % pool
            for extra in (0, lead.get(o, 0))
            for ov in f.overlaps
            if ov.tensor in offset and not (extra and ov.exact)
        ]
        # Free-space candidates next to each resident tensor, first with the room the
        # output's own consumer will need, then tight.
        gaps = [(offset[t] + size[t] + lead.get(o, 0)) % pool for t in resident]
        gaps += [(offset[t] - n - trail.get(o, 0)) % pool for t in resident]
        gaps += [(offset[t] + size[t]) % pool for t in resident]
        gaps += [(offset[t] - n) % pool for t in resident]
        if linear:  # the two ends of a plain buffer keep the most room in between
            gaps = [0, pool - n, *gaps]
        # Two orders of preference: overlap a dying input first (chains), or keep the
        # output clear of every input (graphs whose branches block the overlap).
        ordered = gaps + overlaps if gap_first else overlaps + gaps
        out: list[int] = []
        for base in dict.fromkeys([*ordered, 0]):
            if o in flat and base + n > pool:
                continue
            ok = True
            for t in resident:
                if ring.disjoint((base, n), (offset[t], size[t])):
                    continue
                rule = allowed.get(t)
                behind = offset[t] - base if linear else (offset[t] - base) % pool
                if rule is None or behind < rule.displacement or behind > pool - size[t]:
                    ok = False
                    break
                if rule.exact and behind != rule.displacement:
                    ok = False
                    break
            if ok:
                out.append(base)
        return out

    def place(k: int, resident: list[int]) -> bool:
        if k == len(facts):
            return True
        f = facts[k]
        resident = [t for t in resident if lts[t].last >= k]
        o = f.output
        if o in offset or o not in lts:
            return place(k + 1, resident)
        if f.alias is not None and f.alias in offset and size[f.alias] >= size[o]:
            base = offset[f.alias]
            if not (o in flat and base + size[o] > pool):
                offset[o] = base
                if place(k + 1, [*resident, o]):
                    return True
                del offset[o]
                return False
        for base in feasible(k, f, resident):
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            offset[o] = base
            if place(k + 1, [*resident, o]):
                return True
            del offset[o]
        return False

    return offset if place(0, list(offset)) else None


def flat_offsets(lts: dict[int, Lifetime], seg: int) -> tuple[int, dict[int, int]]:
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


def plan_ring(
    graph: Graph,
    segments: tuple[int, ...] = SEGMENT_CHOICES,
    rule: OverlapRule = runtime_rule,
    linear: bool = False,
) -> Plan:
    """The smallest ring plan found over the segment sizes tried. With `linear`, a plan
    for a plain buffer (nothing wraps), e.g. for stock TFLM's offline offsets."""
    start = time.perf_counter()
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    facts = op_facts(graph, lts, rule)
    bound, _ = segment_lower_bound(graph)
    best: Plan | None = None
    for seg in segments:
        flat_pool, offsets = flat_offsets(lts, seg)
        lo, hi = max(_ceil(bound, seg), seg), flat_pool
        pool = flat_pool
        method = "tensor"
        # Bisection on the pool size (the greedy walk is not strictly monotone in it,
        # so this finds a small feasible size, not always the smallest).
        # Model inputs first or last in the pool: last lets a chain of outputs step down
        # behind them without wrapping (model inputs and outputs must stay flat).
        strategies = [(g, e) for g in (False, True) for e in (False, True)]
        for gap_first, at_end in strategies:
            lo = max(_ceil(bound, seg), seg)
            while lo < hi:
                mid = _ceil((lo + hi) // 2, seg)
                if mid >= hi:
                    mid = hi - seg
                if mid < lo:
                    break
                found = _try_place(graph, lts, facts, mid, seg, gap_first, linear, at_end)
                if found is not None:
                    offsets, pool, hi, method = found, mid, mid, "linear" if linear else "ring"
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
