"""Access-order models of the data-movement kernels: RESHAPE, PAD, CONCATENATION,
TRANSPOSE (cpp/src/kernels/{reshape,pad,concatenation,transpose}.cc)."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Operator
from . import NO_READ, Steps, register, units

RESHAPE_CHUNK = 64  # kReshapeChunk in cpp/src/kernels/kernel.h


@register("RESHAPE")
def reshape(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    n = graph.tensors[op.outputs[0]].nbytes
    lo = np.arange(0, n, RESHAPE_CHUNK, dtype=np.int64)
    return units(np.minimum(lo + RESHAPE_CHUNK, n), lo)


@register("PAD")
def pad(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    src, dst = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    paddings: np.ndarray = np.frombuffer(
        graph.tensors[op.inputs[1]].data or b"", dtype=_pad_dtype(graph, op)
    )
    before = paddings.reshape(-1, 2)[:, 0].astype(np.int64)
    lead = 5 - len(src.shape)
    in_dims = np.array((1,) * lead + src.shape, dtype=np.int64)
    out_dims = np.array((1,) * lead + dst.shape, dtype=np.int64)
    before = np.concatenate([np.zeros(lead, dtype=np.int64), before])
    # One unit per innermost output row, in row-major order of the four outer dims.
    idx = np.indices(tuple(int(v) for v in out_dims[:4])).reshape(4, -1)
    inside = np.all((idx >= before[:4, None]) & (idx < (before + in_dims)[:4, None]), axis=0)
    copies = np.where(inside, in_dims[4], 0)
    in_at = np.concatenate([[0], np.cumsum(copies)[:-1]])
    read_lo = np.where(inside, in_at, NO_READ)
    write_hi = (np.arange(idx.shape[1], dtype=np.int64) + 1) * out_dims[4]
    return units(write_hi, read_lo)


def _pad_dtype(graph: Graph, op: Operator) -> type:
    return np.int64 if graph.tensors[op.inputs[1]].dtype_name == "int64" else np.int32


CONCAT_CHUNK = 64  # kConcatChunk


@register("CONCATENATION")
def concatenation(graph: Graph, op: Operator, pos: int) -> Steps | None:
    out = graph.tensors[op.outputs[0]]
    rank = len(out.shape)
    axis = op.options.get("axis", 0)
    axis = axis + rank if axis < 0 else axis
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    slices = [
        int(np.prod(graph.tensors[t].shape[axis:], dtype=np.int64)) * graph.tensors[t].itemsize
        for t in op.inputs
    ]
    read_lo: list[np.ndarray] = []
    write_hi: list[np.ndarray] = []
    at = 0
    for o in range(outer):
        for i, size in enumerate(slices):
            k = np.arange(0, size, CONCAT_CHUNK, dtype=np.int64)
            write_hi.append(at + np.minimum(k + CONCAT_CHUNK, size))
            read_lo.append(o * size + k if i == pos else np.full(len(k), NO_READ))
            at += size
    if not read_lo:
        return units(np.zeros(0), np.zeros(0))
    lo = np.concatenate(read_lo)
    return units(np.concatenate(write_hi), lo, np.ones(len(lo), dtype=bool))


@register("TRANSPOSE")
def transpose(graph: Graph, op: Operator, pos: int) -> Steps | None:
    if pos != 0:
        return None
    src = graph.tensors[op.inputs[0]]
    perm = np.frombuffer(graph.tensors[op.inputs[1]].data or b"", dtype=np.int32)
    rank = len(src.shape)
    if rank == 0:
        return units(np.array([1]), np.array([0]))
    perm = np.where(perm < 0, perm + rank, perm)
    in_strides = np.cumprod((1, *src.shape[::-1]))[:-1][::-1].astype(np.int64)
    out_dims = np.array([src.shape[p] for p in perm], dtype=np.int64)
    # One unit per innermost output row; it reads from the input element at the row's
    # first index (its lowest byte: the row then steps forward through the input).
    idx = (
        np.indices(tuple(int(v) for v in out_dims[:-1])).reshape(rank - 1, -1)
        if rank > 1
        else np.zeros((0, 1))
    )
    row_src = (idx * in_strides[perm][:-1, None]).sum(axis=0).astype(np.int64)
    row = int(out_dims[-1])
    write_hi = (np.arange(len(row_src), dtype=np.int64) + 1) * row
    return units(write_hi, row_src)
