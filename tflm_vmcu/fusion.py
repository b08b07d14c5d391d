"""Inverted-bottleneck blocks: finding them in a graph, and the graph the planner sees when
they run fused.

A block is consecutive operators

    A [-> PAD] -> [CONV_2D (expand)] -> B [-> PAD (rows, columns)] -> DEPTHWISE_CONV_2D KxK
      -> C -> CONV_2D 1x1 -> D [-> ADD(A, D) -> E]

whose inner tensors (the padded A, B, the padded B, C, D) nothing else reads. The expansion
is usually 1x1; a KxK one (a network's stem convolution) streams the stem's output too.
The runtime's fused kernel (cpp/src/kernels/inverted_bottleneck.cc) computes it from a
workspace of K rows of B plus a few pixels, so B, C and D never exist; the graph itself
stays as it was.

For planning, each fused block becomes two virtual operators: WORKSPACE, which produces
the block's workspace (a tensor that must not wrap), and INVERTED_BOTTLENECK (A,
workspace) -> E, whose access-order model is cpp/src/access_order.cc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import access
from .ir import Graph, Operator, Tensor

BLOCK_OP = "INVERTED_BOTTLENECK"
WORKSPACE_OP = "WORKSPACE"
MAX_KERNEL = 16  # kMaxBlockKernel in cpp/src/kernels/inverted_bottleneck.h
MAX_PAD = 64  # kMaxWindowParameter in cpp/src/kernels/kernel_util.h
MAX_EXPAND_PATCH = 1024  # kMaxExpandPatch in cpp/src/kernels/inverted_bottleneck.h
_INT8 = 9  # tflite TensorType.INT8


@dataclass(frozen=True)
class Block:
    ops: tuple[int, ...]  # consecutive operator indices
    input: int  # A
    output: int  # E (D without the residual ADD)
    inner: tuple[int, ...]  # tensors that never exist when the block runs fused
    has_expand: bool
    has_residual: bool
    in_shape: tuple[int, int, int]  # A: rows, columns, channels
    expand_stride: tuple[int, int]
    mid_shape: tuple[int, int, int]  # B
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]  # top, left padding of the depthwise conv
    out_shape: tuple[int, int, int]  # E
    names: tuple[str, ...] = field(default=(), compare=False)  # op names, for reports
    # Window mode: each output pixel's K x K window of B is recomputed (less memory, more
    # work); else rows mode: a ring of K rows of B, each row computed once.
    window: bool = False
    expand_kernel: tuple[int, int] = (1, 1)
    expand_pad: tuple[int, int] = (0, 0)  # top, left padding of the expansion (with a PAD's)

    @property
    def stages(self) -> tuple[Block, ...]:
        return (self,)

    @property
    def pattern(self) -> str:
        return " > ".join(self.names)

    @property
    def workspace_bytes(self) -> int:
        """The fused kernel's (BottleneckWorkspaceBytes): K rows (or one window) of B, a C
        pixel, a D pixel and an A pixel (and a KxK expansion's input patch)."""
        return access.workspace_bytes(self)


MAX_CHAIN = 4  # kMaxChainStages in cpp/src/kernels/block_schedule.h


@dataclass(frozen=True)
class Chain:
    """Consecutive blocks, each one's output the next one's input, fused into one kernel:
    the tensors between them never exist either (each block produces its output rows on
    demand into a ring of rows the next one reads; cpp/src/kernels/block_schedule.h)."""

    stages: tuple[Block, ...]
    window: bool = False  # every stage in window mode

    @property
    def ops(self) -> tuple[int, ...]:
        return tuple(k for b in self.stages for k in b.ops)

    @property
    def input(self) -> int:
        return self.stages[0].input

    @property
    def output(self) -> int:
        return self.stages[-1].output

    @property
    def inner(self) -> tuple[int, ...]:
        between = tuple(b.output for b in self.stages[:-1])
        return tuple(t for b in self.stages for t in b.inner) + between

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for b in self.stages for n in b.names)

    @property
    def pattern(self) -> str:
        return " | ".join(b.pattern for b in self.stages)

    @property
    def workspace_bytes(self) -> int:
        """The blocks' workspaces and the rings of rows between them."""
        return access.workspace_bytes(self)


Fused = Block | Chain


def _pad(size: int, kernel: int, stride: int, out: int) -> int:
    """TFLM's ComputePadding (no dilation): 0 for VALID, whose window always fits."""
    return max((out - 1) * stride + kernel - size, 0) // 2


def _hwc(graph: Graph, t: int) -> tuple[int, int, int] | None:
    shape = graph.tensors[t].shape
    if len(shape) != 4 or shape[0] != 1:
        return None
    return shape[1], shape[2], shape[3]


def _pointwise(graph: Graph, op: Operator, src: int) -> bool:
    """A 1x1 CONV_2D reading src."""
    if op.opcode != "CONV_2D" or len(op.inputs) < 2 or op.inputs[0] != src or op.inputs[1] < 0:
        return False
    f = graph.tensors[op.inputs[1]].shape
    x = _hwc(graph, src)
    return x is not None and len(f) == 4 and f[1:3] == (1, 1) and f[3] == x[2]


def _expansion(graph: Graph, op: Operator, src: int) -> tuple[int, int] | None:
    """Kernel (rows, columns) of a CONV_2D reading src that the fused kernel runs as a
    block's expansion (IsExpansion in cpp/src/kernels/inverted_bottleneck.cc)."""
    if op.opcode != "CONV_2D" or len(op.inputs) < 2 or op.inputs[0] != src or op.inputs[1] < 0:
        return None
    f, x = graph.tensors[op.inputs[1]].shape, _hwc(graph, src)
    if x is None or len(f) != 4 or f[3] != x[2] or _hwc(graph, op.outputs[0]) is None:
        return None
    dilation = (op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1))
    kh, kw = f[1], f[2]
    if dilation != (1, 1) or not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL):
        return None
    return (kh, kw) if kh * kw * x[2] <= MAX_EXPAND_PATCH else None


def _spatial_pad(graph: Graph, op: Operator, src: int) -> tuple[int, int] | None:
    """(top, left) of a PAD of src's rows and columns only (IsSpatialPad in
    cpp/src/kernels/inverted_bottleneck.cc): its pad value is its output zero point, which
    the depthwise conv's input offset cancels, so its taps add 0 like padding taps."""
    pads_t = graph.tensors[op.inputs[1]] if len(op.inputs) == 2 and op.inputs[1] >= 0 else None
    if op.inputs[0] != src or pads_t is None or pads_t.data is None:
        return None
    dtype = np.int64 if pads_t.itemsize == 8 else np.int32
    if len(pads_t.data) != 8 * np.dtype(dtype).itemsize:
        return None
    pads = [int(v) for v in np.frombuffer(pads_t.data, dtype=dtype)]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 6, 7)) or min(pads) < 0:
        return None
    if pads[2] > MAX_PAD or pads[4] > MAX_PAD or _hwc(graph, op.outputs[0]) is None:
        return None
    return pads[2], pads[4]


def _readers(graph: Graph) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for op in graph.operators:
        for t in op.inputs:
            if t >= 0:
                out.setdefault(t, []).append(op.index)
    return out


def _block_at(graph: Graph, k: int, readers: dict[int, list[int]]) -> Block | None:
    ops = graph.operators
    outputs = set(graph.outputs)

    def private(t: int, reader: int) -> bool:  # read only by `reader`, not a model output
        return readers.get(t, []) == [reader] and t not in outputs

    first = ops[k]
    a = first.inputs[0] if first.inputs else -1
    a_shape = _hwc(graph, a) if a >= 0 and not graph.tensors[a].is_constant else None
    if a_shape is None:
        return None
    i, x, in_pad = k, a, (0, 0)
    if first.opcode == "PAD" and k + 1 < len(ops) and ops[k + 1].opcode == "CONV_2D":
        spatial = _spatial_pad(graph, first, a)  # padding of A, before a KxK expansion
        if spatial is None or not private(first.outputs[0], k + 1):
            return None
        i, x, in_pad = k + 1, first.outputs[0], spatial
    expand = ops[i]
    expand_kernel = _expansion(graph, expand, x)
    has_expand = expand_kernel is not None
    if has_expand:
        i += 1
        if i >= len(ops) or not private(expand.outputs[0], i):
            return None
    elif i > k:
        return None
    b = expand.outputs[0] if has_expand else a
    dw_in, pad_before = b, (0, 0)
    if i < len(ops) and ops[i].opcode == "PAD":
        spatial = _spatial_pad(graph, ops[i], b)
        if spatial is None or i + 1 >= len(ops) or not private(ops[i].outputs[0], i + 1):
            return None
        dw_in, pad_before = ops[i].outputs[0], spatial
        i += 1
    dw = ops[i] if i < len(ops) else None
    if dw is None or dw.opcode != "DEPTHWISE_CONV_2D" or len(dw.inputs) < 2:
        return None
    if dw.inputs[0] != dw_in or dw.inputs[1] < 0 or len(graph.tensors[dw.inputs[1]].shape) != 4:
        return None
    mid, padded, c = _hwc(graph, b), _hwc(graph, dw_in), _hwc(graph, dw.outputs[0])
    kernel = graph.tensors[dw.inputs[1]].shape[1:3]
    dilation = (dw.options.get("dilation_h_factor", 1), dw.options.get("dilation_w_factor", 1))
    if mid is None or padded is None or c is None or c[2] != mid[2] or dilation != (1, 1):
        return None
    if not (1 <= kernel[0] <= MAX_KERNEL and 1 <= kernel[1] <= MAX_KERNEL):
        return None
    proj = ops[i + 1] if i + 1 < len(ops) else None
    if proj is None or not private(dw.outputs[0], proj.index):
        return None
    if not _pointwise(graph, proj, dw.outputs[0]):
        return None
    d = _hwc(graph, proj.outputs[0])
    if d is None or d[:2] != c[:2]:
        return None
    last, out = proj.index, proj.outputs[0]
    add = ops[i + 2] if i + 2 < len(ops) else None
    residual = (
        add is not None
        and add.opcode == "ADD"
        and sorted(add.inputs) == sorted((a, out))
        and a != out
        and private(out, add.index)
        and graph.tensors[a].shape
        == graph.tensors[out].shape
        == graph.tensors[add.outputs[0]].shape
    )
    if residual:
        assert add is not None
        last, out = add.index, add.outputs[0]
    span = tuple(range(k, last + 1))
    inner = tuple(ops[j].outputs[0] for j in span[:-1])
    stride = (int(dw.options.get("stride_h", 1)), int(dw.options.get("stride_w", 1)))
    e_stride = (
        (int(expand.options.get("stride_h", 1)), int(expand.options.get("stride_w", 1)))
        if has_expand
        else (1, 1)
    )
    e_kernel = expand_kernel or (1, 1)
    e_in = _hwc(graph, x)
    assert e_in is not None
    e_pad = (
        (
            in_pad[0] + _pad(e_in[0], e_kernel[0], e_stride[0], mid[0]),
            in_pad[1] + _pad(e_in[1], e_kernel[1], e_stride[1], mid[1]),
        )
        if has_expand
        else (0, 0)
    )
    return Block(
        ops=span,
        input=a,
        output=out,
        inner=inner,
        has_expand=has_expand,
        has_residual=residual,
        in_shape=a_shape,
        expand_stride=e_stride,
        mid_shape=mid,
        kernel=(kernel[0], kernel[1]),
        stride=stride,
        pad=(
            pad_before[0] + _pad(padded[0], kernel[0], stride[0], c[0]),
            pad_before[1] + _pad(padded[1], kernel[1], stride[1], c[1]),
        ),
        out_shape=d,
        names=tuple(ops[j].opcode for j in span),
        expand_kernel=e_kernel,
        expand_pad=e_pad,
    )


def block_candidates(graph: Graph) -> list[Block]:
    """The inverted-bottleneck block starting at each operator where one does, in order.
    Candidates overlap: a pointwise conv is the projection of one block and the expansion
    of the next, so a choice of blocks to fuse is a set of non-overlapping candidates
    (planner.fused.choose_blocks)."""
    readers = _readers(graph)
    found = (_block_at(graph, k, readers) for k in range(len(graph.operators)))
    return [b for b in found if b is not None]


def chain_candidates(graph: Graph, blocks: Sequence[Block]) -> list[Chain]:
    """Every run of 2 to MAX_CHAIN candidate blocks, each reading the one before's output,
    which nothing else reads (it never exists)."""
    readers = _readers(graph)
    outputs = set(graph.outputs)
    at = {b.ops[0]: b for b in blocks}
    chains = []
    for first in blocks:
        run = [first]
        while len(run) < MAX_CHAIN:
            prev = run[-1]
            nxt = at.get(prev.ops[-1] + 1)
            if nxt is None or nxt.input != prev.output or prev.output in outputs:
                break
            if any(r not in nxt.ops for r in readers.get(prev.output, [])):
                break
            run.append(nxt)
            chains.append(Chain(tuple(run)))
    return chains


def find_blocks(graph: Graph) -> list[Block]:
    """The blocks a left-to-right match finds, in order, none overlapping."""
    blocks: list[Block] = []
    for b in block_candidates(graph):
        if not blocks or b.ops[0] > blocks[-1].ops[-1]:
            blocks.append(b)
    return blocks


def planning_graph(graph: Graph, blocks: Sequence[Fused]) -> tuple[Graph, list[tuple[int, int]]]:
    """The graph the planner sees with `blocks` fused, and for each of its operators the
    span (first, last) of original operators it stands for."""
    starts = {b.ops[0]: (j, b) for j, b in enumerate(blocks)}
    fused = {k for b in blocks for k in b.ops}
    tensors: list[Tensor] = list(graph.tensors)
    ops: list[Operator] = []
    spans: list[tuple[int, int]] = []
    for op in graph.operators:
        if op.index in starts:
            j, b = starts[op.index]
            ws = len(tensors)
            tensors.append(
                Tensor(ws, f"workspace of block {j}", (b.workspace_bytes,), _INT8, None, None)
            )
            ops.append(Operator(len(ops), WORKSPACE_OP, -1, (), (ws,)))
            spans.append((b.ops[0], b.ops[0]))
            ops.append(Operator(len(ops), BLOCK_OP, -1, (b.input, ws), (b.output,), {"block": b}))
            spans.append((b.ops[0], b.ops[-1]))
        elif op.index not in fused:
            ops.append(
                Operator(len(ops), op.opcode, op.builtin_code, op.inputs, op.outputs, op.options)
            )
            spans.append((op.index, op.index))
    virtual = Graph(
        tensors,
        ops,
        graph.inputs,
        graph.outputs,
        graph.num_subgraphs,
        graph.metadata,
        contiguous=tuple(range(len(graph.tensors), len(tensors))),
    )
    return virtual, spans
