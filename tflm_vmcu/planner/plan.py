"""A memory plan: where every activation tensor lives in the ring-addressed pool."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Placement:
    tensor: int  # tensor index in subgraph 0
    name: str
    offset: int  # ring offset of byte 0, in [0, pool_bytes)
    nbytes: int
    first: int  # index of the op that produces it (0 for model inputs)
    last: int  # index of the last op that reads it (number of ops for model outputs)

    def byte_ranges(self, pool_bytes: int) -> list[tuple[int, int]]:
        """[lo, hi) address ranges it occupies: two when it wraps past the pool end."""
        end = self.offset + self.nbytes
        if end <= pool_bytes:
            return [(self.offset, end)]
        return [(self.offset, pool_bytes), (0, end - pool_bytes)]


@dataclass(frozen=True)
class FusedBlock:
    """Operators first..last run as one fused inverted-bottleneck kernel, with a workspace
    of workspace_bytes at workspace_offset in the pool (it never wraps), in window mode
    (recomputing each output pixel's window) or rows mode."""

    first: int
    last: int
    workspace_offset: int
    workspace_bytes: int
    window: bool = False


@dataclass
class Plan:
    pool_bytes: int
    segment_bytes: int
    placements: dict[int, Placement]  # by tensor index
    method: str = "ring"  # "ring" (segment level) or "tensor" (no overlaps)
    op_words: dict[int, np.ndarray] = field(default_factory=dict)  # per-op data for flash
    blocks: list[FusedBlock] = field(default_factory=list)  # fused inverted bottlenecks
    # Plans for the TFLM plug-in: operators whose builtin has a ring kernel but which TFLM's
    # own kernel runs (e.g. an int16 QUANTIZE).
    tflm_kernel_ops: set[int] = field(default_factory=set)
    notes: dict[str, object] = field(default_factory=dict)

    def workspaces(self) -> list[Placement]:
        """The fused blocks' workspaces, as placements of no tensor (index -1)."""
        return [
            Placement(-1, f"workspace of ops {b.first}-{b.last}", b.workspace_offset,
                      b.workspace_bytes, b.first, b.last)
            for b in self.blocks
        ]  # fmt: skip

    def live_at(self, op_index: int) -> list[Placement]:
        """Tensors and workspaces that hold pool bytes while op `op_index` runs."""
        areas = [*self.placements.values(), *self.workspaces()]
        return [p for p in areas if p.first <= op_index <= p.last]
