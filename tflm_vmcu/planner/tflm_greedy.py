"""A byte-exact replica of how TFLM plans the arena head (activations and scratch).

TFLM's head is the baseline every saving of ours is measured against, so it must be
computed from the model alone, without running TFLM, and agree with TFLM to the byte.
The rules below follow tflite-micro's micro_allocation_info.cc, micro_allocator.cc
(CreatePlan, CommitStaticMemoryPlan) and memory_planner/greedy_memory_planner.cc:

- Buffers are added in this order: every tensor of the subgraph, by index, that has no
  constant data and is not a variable (a variable is planned only when it carries an
  offline offset) and whose byte length is nonzero; then one buffer per scratch request,
  in request order (ops prepare in index order). Sizes are rounded up to 16 bytes.
- Time is counted in allocation scopes: scope 0 is the subgraph start, op k runs in
  scope k + 1, and lifetimes are inclusive [first, last]. Graph inputs and graph outputs
  are first marked created at scope 0; each op output is then re-marked created at the
  op's scope (which also resets its last use to that scope), each op input and output
  is marked used at the op's scope, and finally every graph output is marked used at the
  last scope. A tensor that nothing creates keeps first = -1; one that nothing touches
  keeps [-1, -1], and TFLM still plans it. A scratch buffer lives in its op's scope only.
- GreedyMemoryPlanner places buffers with an offline offset first, in add order, exactly
  where the offset says (overlaps allowed). It lists the online buffers in reverse add
  order and bubble-sorts them by size, descending; the sort is stable, so buffers of
  equal size keep reverse add order. Each online buffer then goes into the first gap,
  walking the placed buffers by increasing offset and skipping those whose lifetime
  does not overlap, that fits it; otherwise after the last overlapping one. Buffers at
  equal offsets keep placement order in that walk.
- The head TFLM reports (print_allocations) is the plan's end: max(offset + size).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, UnsupportedError
from ..ir import Graph, Operator

ALIGNMENT = 16  # MicroArenaBufferAlignment()
ONLINE = -1  # kOnlinePlannedBuffer: "plan this buffer online"
OFFLINE_METADATA = "OfflineMemoryAllocation"
UNCREATED = -1  # kUninitializedLifetime
_INT32_BYTES = 4
_CONTROL_FLOW = frozenset({"IF", "WHILE", "CALL_ONCE"})

# Ops whose reference TFLM kernels request no scratch buffer in Prepare (checked against
# the real runtime's head on every model in the tests).
NO_SCRATCH_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "LOGISTIC",
        "MAX_POOL_2D",
        "MUL",
        "PAD",
        "QUANTIZE",
        "RELU",
        "RELU6",
        "RESHAPE",
        "SOFTMAX",
        "TRANSPOSE",
    }
)


@dataclass(frozen=True)
class Buffer:
    """One GreedyMemoryPlanner.AddBuffer call: padded size and inclusive scope range."""

    size: int
    first: int
    last: int
    offline_offset: int = ONLINE
    tensor: int | None = None  # tensor index; None for a scratch buffer
    op: int | None = None  # the op that requested it, for a scratch buffer
    nbytes: int = 0  # unpadded byte length


@dataclass(frozen=True)
class TflmPlan:
    """TFLM's head plan: buffers in AddBuffer order and the offset given to each."""

    buffers: tuple[Buffer, ...]
    offsets: tuple[int, ...]
    head_bytes: int
    unmodelled_ops: tuple[str, ...]  # ops whose scratch requests are unknown (head may be low)

    def tensor_offsets(self) -> dict[int, int]:
        return {
            b.tensor: off
            for b, off in zip(self.buffers, self.offsets, strict=True)
            if b.tensor is not None
        }


def align_up(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return -(-nbytes // alignment) * alignment


# ---------------------------------------------------------------------------------------
# Lifetimes
# ---------------------------------------------------------------------------------------


def _check_single_subgraph(graph: Graph) -> None:
    """TFLM plans the tensors of every subgraph together; the IR holds only subgraph 0."""
    if graph.num_subgraphs != 1:
        raise UnsupportedError(
            f"TFLM head replica handles one subgraph; the model has {graph.num_subgraphs}"
        )
    for op in graph.operators:
        if op.opcode in _CONTROL_FLOW:
            raise UnsupportedError(f"operator {op.index}: {op.opcode} (control flow) not modelled")


def allocation_scopes(graph: Graph) -> list[tuple[int, int]]:
    """(first, last) allocation scope of every tensor, as AllocationInfoBuilder marks them.

    Constant tensors get ranges too (TFLM marks them but never plans them); untouched
    tensors keep (-1, -1).
    """
    _check_single_subgraph(graph)
    first = [UNCREATED] * len(graph.tensors)
    last = [UNCREATED] * len(graph.tensors)

    def created(t: int, scope: int) -> None:
        first[t] = scope
        last[t] = scope

    def used(t: int, scope: int) -> None:
        last[t] = scope

    for t in (*graph.inputs, *graph.outputs):
        if t >= 0:
            created(t, 0)
    scope = 0
    for op in graph.operators:
        scope += 1
        for t in op.outputs:
            if t >= 0:
                created(t, scope)
        for t in (*op.inputs, *op.outputs):
            if t >= 0:
                used(t, scope)
    for t in graph.outputs:
        if t >= 0:
            used(t, scope)
    return list(zip(first, last, strict=True))


def tensor_bytes(graph: Graph, index: int) -> int:
    """TfLiteEvalTensorByteLength: element count times element size."""
    t = graph.tensors[index]
    if t.np_dtype is None:
        raise UnsupportedError(f"tensor {index} '{t.name}': type {t.dtype_name} has no byte size")
    return t.nbytes


# ---------------------------------------------------------------------------------------
# Scratch requests of the reference kernels
# ---------------------------------------------------------------------------------------


def _elements(graph: Graph, index: int) -> int:
    return int(np.prod(graph.tensors[index].shape, dtype=np.int64))


def _reduce_index_scratch(graph: Graph, op: Operator) -> list[int]:
    """An int per input dimension and one per axis entry (reduce_common.cc; MEAN and SUM
    moved these from stack arrays to scratch in tflite-micro PR #3281)."""
    rank = len(graph.tensors[op.inputs[0]].shape)
    return [rank * _INT32_BYTES, _elements(graph, op.inputs[1]) * _INT32_BYTES]


def _mean_or_sum_scratch(graph: Graph, op: Operator) -> list[int]:
    """PrepareMeanOrSumHelper: int32 sums per output element for integer input, plus
    the index buffers.

    Sizes match the runtime for input ranks 3 to 8 and 1 to 6 axes. The order of the
    three requests cannot change any offset of a tensor or the head (they share one
    scope, so swapping two of them only swaps their places).
    """
    sums = []
    if graph.tensors[op.inputs[0]].dtype_name in ("int8", "uint8", "int16"):
        sums = [_elements(graph, op.outputs[0]) * _INT32_BYTES]
    return sums + _reduce_index_scratch(graph, op)


def _svdf_scratch(graph: Graph, op: Operator) -> list[int]:
    """svdf_common.cc PrepareSvdf: int32 per filter (and per unit when int8)."""
    batch = graph.tensors[op.inputs[0]].shape[0]
    num_filters = graph.tensors[op.inputs[1]].shape[0]
    if graph.tensors[op.inputs[0]].dtype_name == "int8":
        num_units = num_filters // int(op.options.get("rank", 1) or 1)
        return [batch * num_filters * _INT32_BYTES, batch * num_units * _INT32_BYTES]
    return [batch * num_filters * _INT32_BYTES]


_SCRATCH_RULES: dict[str, Callable[[Graph, Operator], list[int]]] = {
    "MEAN": _mean_or_sum_scratch,
    "SUM": _mean_or_sum_scratch,
    "REDUCE_MAX": _reduce_index_scratch,
    "REDUCE_MIN": _reduce_index_scratch,
    "SVDF": _svdf_scratch,
}


def scratch_requests(graph: Graph, op: Operator) -> list[int] | None:
    """Bytes of each RequestScratchBufferInArena call the op's Prepare makes, in order.

    None when the op is in no table: its requests are unknown, so a head computed
    without them may be too small.
    """
    rule = _SCRATCH_RULES.get(op.opcode)
    if rule is not None:
        return rule(graph, op)
    return [] if op.opcode in NO_SCRATCH_OPS else None


# ---------------------------------------------------------------------------------------
# Buffers TFLM adds to the planner
# ---------------------------------------------------------------------------------------


def offline_offsets(graph: Graph) -> list[int] | None:
    """Per-tensor offsets from "OfflineMemoryAllocation" metadata (-1 = online), or None.

    Layout: int32 words [version, subgraphs, n, offset_0 .. offset_{n-1}]; TFLM refuses
    the model unless n equals the tensor count.
    """
    data = graph.metadata.get(OFFLINE_METADATA)
    if data is None:
        return None
    words = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i4")
    if len(words) < 3 or len(words) < 3 + int(words[2]):
        raise ModelError(f"'{OFFLINE_METADATA}' metadata is truncated")
    n = int(words[2])
    if n != len(graph.tensors):
        raise ModelError(f"'{OFFLINE_METADATA}' gives {n} offsets for {len(graph.tensors)} tensors")
    return [int(x) for x in words[3 : 3 + n]]


def _needs_allocating(graph: Graph, index: int, offline: int) -> bool:
    t = graph.tensors[index]
    if t.is_constant:
        return False
    if t.is_variable:
        return offline != ONLINE  # online variables live in the persistent tail
    return tensor_bytes(graph, index) != 0


def tflm_buffers(graph: Graph) -> tuple[list[Buffer], list[str]]:
    """The AddBuffer calls TFLM makes for this model, in order, and unmodelled op names."""
    scopes = allocation_scopes(graph)
    pinned = offline_offsets(graph) or [ONLINE] * len(graph.tensors)
    buffers = []
    for i, (first, last) in enumerate(scopes):
        if _needs_allocating(graph, i, pinned[i]):
            nbytes = tensor_bytes(graph, i)
            buffers.append(Buffer(align_up(nbytes), first, last, pinned[i], i, None, nbytes))
    unmodelled: list[str] = []
    for op in graph.operators:
        requests = scratch_requests(graph, op)
        if requests is None:
            unmodelled.append(op.opcode)
            continue
        scope = op.index + 1
        for nbytes in requests:
            buffers.append(Buffer(align_up(nbytes), scope, scope, ONLINE, None, op.index, nbytes))
    return buffers, sorted(set(unmodelled))


# ---------------------------------------------------------------------------------------
# GreedyMemoryPlanner
# ---------------------------------------------------------------------------------------


def _overlap_in_time(a: Buffer, b: Buffer) -> bool:
    return not (a.first > b.last or b.first > a.last)


def _placement_order(buffers: Sequence[Buffer]) -> list[int]:
    """Offline buffers in add order, then online ones by size descending (stable sort of
    the reverse add order, as ReverseSortInPlace leaves them)."""
    pinned = [i for i, b in enumerate(buffers) if b.offline_offset != ONLINE]
    online = [i for i in reversed(range(len(buffers))) if buffers[i].offline_offset == ONLINE]
    online.sort(key=lambda i: -buffers[i].size)
    return pinned + online


def _first_gap(
    buffers: Sequence[Buffer], offsets: list[int], by_offset: list[int], b: Buffer
) -> int:
    """Lowest offset, walking placed buffers by offset, where b fits before the next
    buffer that is live at the same time as b."""
    candidate = 0
    for j in by_offset:
        other = buffers[j]
        if not _overlap_in_time(other, b):
            continue
        if offsets[j] - candidate >= b.size:
            return candidate
        candidate = max(candidate, offsets[j] + other.size)
    return candidate


def greedy_offsets(buffers: Sequence[Buffer]) -> list[int]:
    """GreedyMemoryPlanner's offset for each buffer (same order as given)."""
    offsets = [ONLINE] * len(buffers)
    by_offset: list[int] = []  # placed buffer ids, by offset; ties in placement order
    placed_offsets: list[int] = []
    for i in _placement_order(buffers):
        b = buffers[i]
        if b.offline_offset != ONLINE:
            offset = b.offline_offset
        else:
            offset = _first_gap(buffers, offsets, by_offset, b)
        offsets[i] = offset
        pos = bisect.bisect_right(placed_offsets, offset)
        placed_offsets.insert(pos, offset)
        by_offset.insert(pos, i)
    return offsets


def plan_end(buffers: Sequence[Buffer], offsets: Sequence[int]) -> int:
    """GetMaximumMemorySize: the highest byte any buffer reaches (0 with no buffers)."""
    return max((off + b.size for b, off in zip(buffers, offsets, strict=True)), default=0)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def tflm_plan(graph: Graph) -> TflmPlan:
    """TFLM's complete head plan for subgraph 0 (tensors and scratch buffers)."""
    buffers, unmodelled = tflm_buffers(graph)
    offsets = greedy_offsets(buffers)
    return TflmPlan(tuple(buffers), tuple(offsets), plan_end(buffers, offsets), tuple(unmodelled))


def tflm_head_bytes(graph: Graph) -> int:
    """The head TFLM's RecordingMicroAllocator reports for this model, in bytes."""
    return tflm_plan(graph).head_bytes


def tflm_greedy_offsets(graph: Graph) -> dict[int, int]:
    """Byte offset from the head start that TFLM gives each planned tensor, by index."""
    return tflm_plan(graph).tensor_offsets()


def live_bytes_per_scope(graph: Graph) -> list[int]:
    """Unpadded bytes of the tensors TFLM plans in the head that are live in each scope
    0 .. number of ops (TFLM's lifetimes; scratch buffers not counted)."""
    scopes = allocation_scopes(graph)
    pinned = offline_offsets(graph) or [ONLINE] * len(graph.tensors)
    live = [0] * (len(graph.operators) + 1)
    for i, (first, last) in enumerate(scopes):
        if not _needs_allocating(graph, i, pinned[i]):
            continue
        nbytes = tensor_bytes(graph, i)
        for s in range(max(first, 0), min(last, len(live) - 1) + 1):
            live[s] += nbytes
    return live


def peak_live_bytes(graph: Graph) -> int:
    """Tensor-level lower bound of the head: the most activation bytes live at once.

    Raw (unpadded) tensor bytes, scratch buffers excluded, using TFLM's lifetimes.
    No plan that gives each tensor its own bytes for its whole lifetime can use less,
    so it is <= TFLM's head, and the gap is what a better tensor-level layout could save.
    """
    return max(live_bytes_per_scope(graph))
