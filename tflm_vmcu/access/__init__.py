"""Access-order models of the runtime's kernels: the one source of truth for where an
op's output may overlap its inputs, used by the planner and checked against the C++
kernels under the hazard checker (tests/test_access_model.py).

Every kernel works in units (cpp/src/ring.h): a unit first reads input bytes, then
writes output bytes. For one (input, output) pair a model lists, per unit in execution
order, the lowest input byte it reads and one past the highest output byte it writes.
With the output placed d bytes before the input (out_base = in_base - d), unit j's
writes must stay below every input byte that unit j or a later unit still reads:

    d >= write_hi[j] - min(read_lo[j:])     for every unit j

so the smallest safe displacement is the maximum of the right-hand side. A unit that
reads nothing cannot be told apart from the end of the unit before it (the hazard
checker sees only reads and writes), so it counts as part of that unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Operator

NO_READ = np.iinfo(np.int64).max // 4  # read_lo of a unit that reads nothing
NO_WRITE = -NO_READ  # write_hi of a unit that writes nothing


@dataclass(frozen=True)
class Steps:
    """Units of one kernel run, for one (input, output) pair, in execution order."""

    read_lo: np.ndarray  # int64[units]: lowest input byte read (NO_READ if none)
    write_hi: np.ndarray  # int64[units]: one past the highest output byte written
    # bool[units]: the unit reads some tensor (maybe another input); None = read_lo says
    reads_any: np.ndarray | None = None

    def min_displacement(self) -> int:
        """Smallest d = in_base - out_base (bytes) that keeps every unit's writes off
        input bytes still to be read. 0 means the output may start where the input does."""
        if len(self.read_lo) == 0:
            return 0
        # Write-only units belong to the unit before them: forward-fill its read_lo.
        reads = self.read_lo != NO_READ if self.reads_any is None else self.reads_any
        last_read = np.maximum.accumulate(np.where(reads, np.arange(len(reads)), -1))
        inherited = self.read_lo[np.maximum(last_read, 0)]
        read_lo = np.where(reads | (last_read < 0), self.read_lo, inherited)
        suffix_min = np.minimum.accumulate(read_lo[::-1])[::-1]
        return max(0, int(np.max(self.write_hi - suffix_min)))


# A model: (graph, op, input position) -> Steps, or None when the output must never
# overlap that input (e.g. an operand that is re-read for every output unit).
Model = Callable[[Graph, Operator, int], "Steps | None"]

_MODELS: dict[str, Model] = {}


def register(*opcodes: str) -> Callable[[Model], Model]:
    def wrap(fn: Model) -> Model:
        for name in opcodes:
            _MODELS[name] = fn
        return fn

    return wrap


def steps(graph: Graph, op: Operator, input_pos: int) -> Steps | None:
    """The access-order model of `op` for its input at `input_pos` and output 0."""
    _load_models()
    fn = _MODELS.get(op.opcode)
    t = op.inputs[input_pos] if input_pos < len(op.inputs) else -1
    if fn is None or t < 0 or graph.tensors[t].is_constant:
        return None
    return fn(graph, op, input_pos)


def min_displacement(graph: Graph, op: Operator, input_pos: int) -> int | None:
    """Smallest safe displacement of op's output behind its input, None if no overlap."""
    s = steps(graph, op, input_pos)
    return None if s is None else s.min_displacement()


def modelled_ops() -> set[str]:
    _load_models()
    return set(_MODELS)


def _load_models() -> None:
    # Importing the family modules registers their models.
    from . import (
        conv_ops,  # noqa: F401
        copy_ops,  # noqa: F401
        elementwise_ops,  # noqa: F401
        fused_ops,  # noqa: F401
    )


def units(write_hi: np.ndarray, read_lo: np.ndarray, reads_any: np.ndarray | None = None) -> Steps:
    return Steps(
        np.asarray(read_lo, dtype=np.int64),
        np.asarray(write_hi, dtype=np.int64),
        None if reads_any is None else np.asarray(reads_any, dtype=bool),
    )
