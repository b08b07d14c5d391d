"""Segment-level planning on a ring pool.

Walks the ops in order and places each op's output: behind a dying input by the
smallest displacement its kernel's access order allows (tflm_vmcu.access), or else in
free space of the ring. The pool size is found by bisection; the result is never
worse than a tensor-level (no-overlap) plan, which is itself a valid ring plan.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .. import access
from ..errors import UnsupportedError
from ..ir import Graph, Operator, check_graph
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


class _Residents:
    """Byte ranges of the tensors resident in a ring of `size` bytes, sorted by start, so
    that the tensors a candidate range touches are found by bisection."""

    def __init__(self, size: int, offset: dict[int, int], nbytes: dict[int, int]):
        self.size = size
        self.offset = offset
        self.nbytes = nbytes
        self.starts: list[int] = []
        self.items: list[tuple[int, int, int]] = []  # (start, end, tensor), sorted
        self.longest = 0
        self.owner: object = None  # the walk step the ranges were sorted for

    def ranges(self, off: int, n: int) -> tuple[tuple[int, int], ...]:
        end = off + n
        if end <= self.size:
            return ((off, end),)
        return ((off, self.size), (0, end - self.size))

    def reset(self, tensors: list[int]) -> None:
        items = [
            (lo, hi, t) for t in tensors for lo, hi in self.ranges(self.offset[t], self.nbytes[t])
        ]
        items.sort()
        self.items = items
        self.starts = [lo for lo, _, _ in items]
        self.longest = max((hi - lo for lo, hi, _ in items), default=0)

    def touching(self, off: int, n: int) -> list[int]:
        """Resident tensors that share a byte with the n bytes at ring offset `off`."""
        found: list[int] = []
        for lo, hi in self.ranges(off, n):
            j = bisect.bisect_left(self.starts, hi) - 1
            while j >= 0 and self.items[j][0] > lo - self.longest:
                s, e, t = self.items[j]
                if e > lo and s < hi and t not in found:
                    found.append(t)
                j -= 1
        return found


# Placement attempts one walk may make before giving up (backtracking budget).
SEARCH_BUDGET = 4000
# Candidate positions one walk may examine before giving up (at least CHECK_BUDGET, or
# CHECKS_PER_OP per op): bounds the time a failing walk spends on graphs with many
# tensors live at once, whose every op has many candidates. A successful walk on the
# committed and shared models examines at most a few hundred.
CHECK_BUDGET = 20_000
CHECKS_PER_OP = 16


@dataclass
class _Frame:
    """One op of the walk: its output, the residents it saw and the candidate offsets
    still to try (None for an op whose output needs no choice)."""

    k: int
    output: int
    resident: list[int]
    candidates: Iterator[int] | None
    placed: bool  # the output was placed by this frame (to undo on backtracking)


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
    preference, and backtracks (within SEARCH_BUDGET attempts and CHECK_BUDGET candidate
    checks) when a later op cannot be placed. The walk is a loop over an explicit stack,
    so the depth of the graph does not matter."""
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
    residents = _Residents(pool, offset, size)
    checks = [max(CHECK_BUDGET, CHECKS_PER_OP * len(facts))]

    def ordered(f: OpFacts, resident: list[int]) -> Iterator[int]:
        """Candidate offsets of f's output in order of preference, without repeats."""
        o, n = f.output, size[f.output]
        overlaps = (
            (offset[ov.tensor] - _ceil(ov.displacement, seg) - extra) % pool
            for extra in (0, lead.get(o, 0))
            for ov in f.overlaps
            if ov.tensor in offset and not (extra and ov.exact)
        )
        # Free-space candidates next to each resident tensor, first with the room the
        # output's own consumer will need, then tight.
        gaps = itertools.chain(
            ((offset[t] + size[t] + lead.get(o, 0)) % pool for t in resident),
            ((offset[t] - n - trail.get(o, 0)) % pool for t in resident),
            ((offset[t] + size[t]) % pool for t in resident),
            ((offset[t] - n) % pool for t in resident),
        )
        if linear:  # the two ends of a plain buffer keep the most room in between
            gaps = itertools.chain((0, pool - n), gaps)
        # Two orders of preference: overlap a dying input first (chains), or keep the
        # output clear of every input (graphs whose branches block the overlap).
        first, then = (gaps, overlaps) if gap_first else (overlaps, gaps)
        seen: set[int] = set()
        for base in itertools.chain(first, then, (0,)):
            if base not in seen:
                seen.add(base)
                yield base

    def feasible(f: OpFacts, resident: list[int]) -> Iterator[int]:
        """The candidates where f's output fits beside the resident tensors."""
        o, n = f.output, size[f.output]
        allowed = {ov.tensor: ov for ov in f.overlaps}
        token = object()
        for base in ordered(f, resident):
            if residents.owner is not token:  # a later op's walk sorted its own residents
                residents.reset(resident)
                residents.owner = token
                checks[0] -= len(resident)
            if checks[0] <= 0:
                return
            checks[0] -= 1
            if o in flat and base + n > pool:
                continue
            ok = True
            for t in residents.touching(base, n):
                rule = allowed.get(t)
                behind = offset[t] - base if linear else (offset[t] - base) % pool
                if rule is None or behind < rule.displacement or behind > pool - size[t]:
                    ok = False
                    break
                if rule.exact and behind != rule.displacement:
                    ok = False
                    break
            if ok:
                yield base

    budget = SEARCH_BUDGET
    stack: list[_Frame] = []
    k, resident = 0, list(offset)
    while True:
        # Descend: place outputs until one has no candidate left (or every op is placed).
        if k == len(facts):
            return offset
        f = facts[k]
        resident = [t for t in resident if lts[t].last >= k]
        o = f.output
        if o in offset or o not in lts:
            stack.append(_Frame(k, o, resident, None, False))
            k += 1
            continue
        if f.alias is not None and f.alias in offset and size[f.alias] >= size[o]:
            base = offset[f.alias]
            if not (o in flat and base + size[o] > pool):
                offset[o] = base
                stack.append(_Frame(k, o, resident, None, True))
                resident = [*resident, o]
                k += 1
                continue
        stack.append(_Frame(k, o, resident, feasible(f, resident), False))
        # Backtrack: the op on top of the stack takes its next candidate; an op without
        # one (or without a choice) fails, and so does the op before it.
        while True:
            if not stack:
                return None
            fr = stack[-1]
            if fr.placed:
                del offset[fr.output]
                fr.placed = False
            if fr.candidates is None:
                stack.pop()
                continue
            # The candidates depend only on tensors placed before this op, so they are
            # produced as they are tried.
            nxt = next(fr.candidates, None)
            if nxt is None:
                stack.pop()
                continue
            if budget <= 0:
                return None
            budget -= 1
            offset[fr.output] = nxt
            fr.placed = True
            k, resident = fr.k + 1, [*fr.resident, fr.output]
            break


def flat_offsets(lts: dict[int, Lifetime], seg: int) -> tuple[int, dict[int, int]]:
    """Tensor-level first fit (no overlaps), largest first: the fallback and upper bound."""
    order = sorted(lts, key=lambda t: (-lts[t].nbytes, t))
    placed: list[tuple[int, int, int]] = []  # (offset, size, tensor), kept sorted
    offsets: dict[int, int] = {}
    for t in order:
        n = _ceil(lts[t].nbytes, seg)
        first, last = lts[t].first, lts[t].last
        cand = 0
        for off, sz, u in placed:
            if lts[u].last < first or last < lts[u].first:
                continue
            if cand + n <= off:
                break
            cand = max(cand, off + sz)
        offsets[t] = cand
        bisect.insort(placed, (cand, n, t))
    pool = max((off + sz for off, sz, _ in placed), default=0)
    return pool, offsets


def segment_lower_bound(graph: Graph, rule: OverlapRule = runtime_rule) -> tuple[int, list[int]]:
    """Per op: bytes needed if this op alone were placed perfectly at segment level
    (other live tensors untouched, the output overlapping its best dying input by the
    modelled displacement). Independent of the planner; the max over ops is a lower
    bound of any plan that keeps the same op order and kernels."""
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    facts = op_facts(graph, lts, rule)
    # Bytes live at each op, from the changes at each lifetime's ends.
    change = [0] * (len(facts) + 2)
    for lt in lts.values():
        if 0 <= lt.first <= lt.last:
            change[min(lt.first, len(facts) + 1)] += lt.nbytes
            change[min(lt.last + 1, len(facts) + 1)] -= lt.nbytes
    live_bytes = list(itertools.accumulate(change))
    per_op = []
    for k, f in enumerate(facts):
        out = lts[f.output].nbytes if f.output in lts else 0
        live_out = f.output in lts and lts[f.output].first <= k <= lts[f.output].last
        others = live_bytes[k] - (out if live_out else 0)
        best = others + out
        if f.alias is not None:
            best = min(best, others + max(out - lts[f.alias].nbytes, 0))
        for ov in f.overlaps:
            rest = others - lts[ov.tensor].nbytes
            best = min(best, rest + max(ov.displacement + lts[ov.tensor].nbytes, out))
        per_op.append(best)
    return (max(per_op) if per_op else 0), per_op


# The largest pool the runtime addresses (ApplyPlan in cpp/src/interpreter.cc).
MAX_POOL_BYTES = 0x7FFFFFFF


def _too_large(nbytes: int, what: str) -> str:
    return (
        f"the model needs {what} {nbytes:,} bytes of activation memory; the runtime "
        f"addresses at most {MAX_POOL_BYTES:,}"
    )


def plan_ring(
    graph: Graph,
    segments: tuple[int, ...] = SEGMENT_CHOICES,
    rule: OverlapRule = runtime_rule,
    linear: bool = False,
) -> Plan:
    """The smallest ring plan found over the segment sizes tried. With `linear`, a plan
    for a plain buffer (nothing wraps), e.g. for stock TFLM's offline offsets."""
    start = time.perf_counter()
    check_graph(graph)
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    facts = op_facts(graph, lts, rule)
    bound, _ = segment_lower_bound(graph, rule)
    if bound > MAX_POOL_BYTES:
        raise UnsupportedError(_too_large(bound, "at least"))
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
    if best.pool_bytes > MAX_POOL_BYTES:
        raise UnsupportedError(_too_large(best.pool_bytes, "a pool of"))
    best.notes["segment_bound_bytes"] = bound
    best.notes["planning_seconds"] = time.perf_counter() - start
    return best
