"""Tensor lifetimes over the op sequence, and the bytes live at each op."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .ir import Graph


@dataclass(frozen=True)
class Lifetime:
    tensor: int
    first: int  # op index that produces it (0 for graph inputs)
    last: int  # last op index that reads it (len(ops) for graph outputs)
    nbytes: int


def lifetimes(graph: Graph) -> list[Lifetime]:
    """Lifetimes of every activation tensor that some op or the graph uses."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in graph.inputs:
        first[t] = 0
        last[t] = 0
    for k, op in enumerate(graph.operators):
        for t in (*op.inputs, *op.outputs):
            if t < 0 or graph.tensors[t].is_constant:
                continue
            first.setdefault(t, k)
            last[t] = max(last.get(t, k), k)
    for t in graph.outputs:
        first.setdefault(t, 0)
        last[t] = len(graph.operators)
    return [
        Lifetime(t, first[t], last[t], graph.tensors[t].nbytes)
        for t in sorted(first)
        if not graph.tensors[t].is_constant
    ]


def live_bytes_per_op(graph: Graph) -> list[int]:
    """Sum of activation bytes live while each op runs (the tensor-level lower bound)."""
    n = max(len(graph.operators), 1)
    change = [0] * (n + 1)  # bytes that become live (or stop being live) at each op
    for lt in lifetimes(graph):
        end = min(lt.last, len(graph.operators) - 1) + 1
        if lt.first < end:
            change[lt.first] += lt.nbytes
            change[end] -= lt.nbytes
    return list(itertools.accumulate(change[:n]))
