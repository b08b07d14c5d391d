"""Access-order models of the element-wise and reduction kernels: ADD, MUL, QUANTIZE,
DEQUANTIZE, RELU, RELU6, LOGISTIC, HARD_SWISH (cpp/src/kernels/elementwise.h and the
ops' .cc files), SOFTMAX (softmax.cc) and MEAN (mean.cc)."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Operator
from . import Steps, register, units

ELEMENTWISE_CHUNK = 64  # kElementwiseChunk in cpp/src/kernels/elementwise.h
SOFTMAX_CHUNK = 64  # kSoftmaxChunk in cpp/src/kernels/softmax.cc
MEAN_BLOCK = 64  # kMeanBlock in cpp/src/kernels/mean.cc


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _rows(rows: int, length: int, chunk: int, in_bytes: int = 1, out_bytes: int = 1) -> Steps:
    """`rows` consecutive rows of `length` elements, each split into units of `chunk`
    elements; element e sits at byte e * in_bytes of the input and e * out_bytes of
    the output. A unit reads its elements, then writes theirs."""
    if rows <= 0 or length <= 0:
        return units(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    starts = np.arange(0, length, chunk, dtype=np.int64)
    ends = np.minimum(starts + chunk, length)
    base = np.arange(rows, dtype=np.int64)[:, None] * length
    lo = (base + starts[None, :]).ravel()
    hi = (base + ends[None, :]).ravel()
    return units(hi * out_bytes, lo * in_bytes)


@register("RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE")
def unary(graph: Graph, op: Operator, pos: int) -> Steps | None:
    """Flat chunks of ELEMENTWISE_CHUNK elements (QUANTIZE float32 -> int8 reads 4 bytes
    per element, DEQUANTIZE int8 -> float32 writes 4)."""
    if pos != 0:
        return None
    src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return _rows(1, _numel(dst.shape), ELEMENTWISE_CHUNK, src.itemsize, dst.itemsize)


def _extend(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + tuple(shape)


def _broadcast_inner(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> int:
    """Length of the innermost row of MakeBroadcastPlan (cpp/src/kernels/elementwise.h):
    output dims of extent 1 dropped, neighbours merged while contiguous in both inputs."""
    rank = len(out)
    a, b = _extend(a, rank), _extend(b, rank)
    sa, sb = [0] * rank, [0] * rank
    step_a = step_b = 1
    for i in range(rank - 1, -1, -1):
        sa[i] = 0 if a[i] == 1 else step_a
        sb[i] = 0 if b[i] == 1 else step_b
        step_a *= a[i]
        step_b *= b[i]
    dims: list[int] = []
    s1: list[int] = []
    s2: list[int] = []
    for i in range(rank):
        if out[i] == 1:
            continue
        if dims and s1[-1] == sa[i] * out[i] and s2[-1] == sb[i] * out[i]:
            dims[-1] *= out[i]
            s1[-1], s2[-1] = sa[i], sb[i]
            continue
        dims.append(out[i])
        s1.append(sa[i])
        s2.append(sb[i])
    return dims[-1] if dims else 1


@register("ADD", "MUL")
def binary(graph: Graph, op: Operator, pos: int) -> Steps | None:
    """Same shape: flat chunks of ELEMENTWISE_CHUNK, both inputs read per unit.
    Broadcast: the broadcast (re-read) input never overlaps the output; the full-size
    one is read as the output is written, one innermost plan row at a time in chunks."""
    if pos not in (0, 1):
        return None
    a = graph.tensors[op.inputs[0]].shape
    b = graph.tensors[op.inputs[1]].shape
    out = graph.tensors[op.outputs[0]].shape
    n = _numel(out)
    rank = max(len(a), len(b))
    if _extend(a, rank) == _extend(b, rank) or n == 0:
        return _rows(1, n, ELEMENTWISE_CHUNK)
    if _numel(a if pos == 0 else b) != n:
        return None  # re-read by many units
    inner = _broadcast_inner(a, b, out)
    return _rows(n // inner, inner, ELEMENTWISE_CHUNK)


@register("SOFTMAX")
def softmax(graph: Graph, op: Operator, pos: int) -> Steps | None:
    """Per row (last axis): the row's two statistics passes and its first chunk form one
    unit, each later chunk of SOFTMAX_CHUNK elements another (read, then write). The
    output is int8 or int16."""
    if pos != 0:
        return None
    src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if not src.shape:
        return None
    depth = int(src.shape[-1])
    n = _numel(src.shape)
    rows = n // depth if depth > 0 else 0
    return _rows(rows, depth, SOFTMAX_CHUNK, src.itemsize, dst.itemsize)


def _append(dims: list[int], strides: list[int], dim: int, stride: int) -> None:
    """DimList::Append in cpp/src/kernels/mean.cc: unit dims dropped, merged while
    contiguous."""
    if dim == 1:
        return
    if dims and strides[-1] == stride * dim:
        dims[-1] *= dim
        strides[-1] = stride
        return
    dims.append(dim)
    strides.append(stride)


def _offsets(dims: list[int], strides: list[int]) -> np.ndarray:
    """Input offsets of the positions of a dim list, in row-major order."""
    off = np.zeros(1, dtype=np.int64)
    for dim, stride in zip(dims, strides, strict=True):
        off = (off[:, None] + np.arange(dim, dtype=np.int64)[None, :] * stride).ravel()
    return off


@register("MEAN")
def mean(graph: Graph, op: Operator, pos: int) -> Steps | None:
    """Input's innermost dim kept: units of MEAN_BLOCK consecutive outputs along the
    innermost kept dim, each reading that run of the input for every reduced position.
    Otherwise one output per unit, reading all its elements."""
    if pos != 0:
        return None
    shape = graph.tensors[op.inputs[0]].shape
    rank = len(shape)
    axis_t = graph.tensors[op.inputs[1]]
    axes = np.frombuffer(axis_t.data or b"", dtype="<i4") if rank > 0 else np.zeros(0)
    reduced = {int(a) + rank if a < 0 else int(a) for a in axes}
    strides = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(rank)]
    kd: list[int] = []
    ks: list[int] = []
    rd: list[int] = []
    rs: list[int] = []
    for i in range(rank):
        if i in reduced:
            _append(rd, rs, int(shape[i]), strides[i])
        else:
            _append(kd, ks, int(shape[i]), strides[i])
    if kd and ks[-1] == 1:
        inner = kd[-1]
        outer = _offsets(kd[:-1], ks[:-1])
        starts = np.arange(0, inner, MEAN_BLOCK, dtype=np.int64)
        ends = np.minimum(starts + MEAN_BLOCK, inner)
        q = np.arange(len(outer), dtype=np.int64)[:, None] * inner
        read_lo = (outer[:, None] + starts[None, :]).ravel()
        return units((q + ends[None, :]).ravel(), read_lo)
    read_lo = _offsets(kd, ks)
    return units(np.arange(1, len(read_lo) + 1, dtype=np.int64), read_lo)
