"""`tflm-vmcu validate --runtime tflm-plugin`: a model compiled for the TFLM plug-in runs in
TFLM + plug-in and, without its plan, in stock TFLM, both built on the host from the same
TFLM tree (tflm_vmcu.tflm_host), on the same seeded inputs; outputs compared bit for bit,
each side in the smallest arena it accepts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TflmVmcuError
from .plan_format import PLAN_METADATA
from .plugin_target import op_counts, stock_model
from .reader import load_bytes, read_model
from .tflm_host import plugin_hazards, run_stock, smallest_arena
from .validate import make_inputs


@dataclass
class PluginReport:
    model: str
    runs: int
    seed: int
    bit_exact: bool
    arena_bytes: int  # TFLM + plug-in: arena_used_bytes() in its smallest arena
    stock_arena_bytes: int  # stock TFLM on the model without the plan
    # The smallest arenas AllocateTensors accepts (TFLM may need more than it then reports
    # as used, for temporary allocations while kernels prepare).
    smallest_arena_bytes: int
    stock_smallest_arena_bytes: int
    ops: dict[str, int]  # operators run by ring kernels, by TFLM kernels, fused blocks
    mismatches: list[str]  # "run R output K: N elements differ"
    # Under the hazard checker (check_hazards): hazards over all runs and the first; None
    # when it did not run.
    hazards: int | None = None
    first_hazard: str = ""

    @property
    def ok(self) -> bool:
        """Bit-exact, and hazard-free when the hazard checker ran."""
        return self.bit_exact and not self.hazards

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def validate_plugin(
    model: str | Path | bytes,
    tree: Path,
    runs: int = 5,
    seed: int = 0,
    cache_dir: Path | None = None,
    check_hazards: bool = False,
) -> PluginReport:
    if runs < 1:
        raise TflmVmcuError(f"--runs must be at least 1, not {runs}")
    compiled = load_bytes(model)
    graph = read_model(compiled)
    if PLAN_METADATA not in graph.metadata:
        raise TflmVmcuError(
            "the model carries no plan for the plug-in: compile it with "
            "`tflm-vmcu compile MODEL -o OUT --target tflm-plugin`"
        )
    stock = stock_model(compiled)
    inputs = make_inputs(graph, runs, seed)
    plugin_arena, plugin_used = smallest_arena(tree, compiled, inputs[0], cache_dir, plugin=True)
    stock_arena, stock_used = smallest_arena(tree, stock, inputs[0], cache_dir)
    mismatches = []
    hazards, first = (0, "") if check_hazards else (None, "")
    for r, arrays in enumerate(inputs):
        if hazards is not None:
            count, message = plugin_hazards(tree, compiled, arrays, plugin_arena, cache_dir)
            first = first or (f"run {r}: {message}" if count else "")
            hazards += count
        ours, _ = run_stock(tree, compiled, arrays, plugin_arena, cache_dir, plugin=True)
        theirs, _ = run_stock(tree, stock, arrays, stock_arena, cache_dir)
        for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if not np.array_equal(a, b):
                mismatches.append(f"run {r} output {k}: {int(np.sum(a != b))} elements differ")
    return PluginReport(
        model=str(model) if not isinstance(model, bytes) else "<bytes>",
        runs=runs,
        seed=seed,
        bit_exact=not mismatches,
        arena_bytes=plugin_used,
        stock_arena_bytes=stock_used,
        smallest_arena_bytes=plugin_arena,
        stock_smallest_arena_bytes=stock_arena,
        ops=op_counts(graph),
        mismatches=mismatches,
        hazards=hazards,
        first_hazard=first,
    )
