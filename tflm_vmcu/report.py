"""`tflm-vmcu report`: the ring plan of a model against TFLM, per op and in total, with
a picture of the pool over time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compiler import compile_bytes
from .interpreter import Interpreter
from .ir import Graph
from .lifetimes import lifetimes
from .planner.plan import Placement, Plan
from .planner.tflm_greedy import tflm_plan
from .pool_picture import draw_pool, pool_table, unlabelled_list
from .reader import load_bytes, read_model
from .tflm_check import smallest_arena
from .tflm_reference import run_tflm
from .validate import make_inputs


@dataclass
class Report:
    model: str
    ops: int
    plan: Plan
    tflm_plan: Plan  # the replica of TFLM's greedy tensor-level placement
    figures: dict[str, Any]  # every number of the summary, for --json and benchmarks

    def summary(self) -> str:
        f = self.figures
        rows = [
            ("tflm-vmcu pool (ring plan)", f["pool_bytes"]),
            ("tflm-vmcu runtime state", f["state_bytes"]),
            ("  the same on a Cortex-M", f["arm32_state_bytes"]),
            ("tflm-vmcu total RAM", f["total_bytes"]),
            ("TFLM head (measured)", f["tflm_head_bytes"]),
            ("TFLM tail (measured)", f["tflm_tail_bytes"]),
            ("TFLM total arena (reported)", f["tflm_total_bytes"]),
            ("TFLM smallest arena (searched)", f["tflm_min_arena_bytes"]),
            ("TFLM greedy replica head", f["tflm_greedy_bytes"]),
            ("tensor-level lower bound", f["tensor_bound_bytes"]),
            ("segment-level lower bound", f["segment_bound_bytes"]),
        ]
        lines = [f"{name:30}{value:>12,}" for name, value in rows]
        lines.append(f"{'pool / TFLM head':30}{f['pool_vs_tflm_head']:>12.3f}")
        lines.append(f"{'total / TFLM smallest arena':30}{f['total_vs_tflm_total']:>12.3f}")
        lines.append(
            f"segment {self.plan.segment_bytes} bytes, {self.plan.method} plan, "
            f"planned in {f['planning_seconds']:.3f} s"
        )
        return "\n".join(lines)


def as_plan(graph: Graph, offsets: dict[int, int], pool: int) -> Plan:
    """A tensor-level placement (e.g. TFLM's) in the Plan form the picture draws."""
    placements = {
        lt.tensor: Placement(
            lt.tensor,
            graph.tensors[lt.tensor].name,
            offsets[lt.tensor],
            lt.nbytes,
            lt.first,
            lt.last,
        )
        for lt in lifetimes(graph)
        if lt.tensor in offsets
    }
    return Plan(pool, 16, placements, "TFLM greedy")


def build_report(model: str | Path) -> Report:
    data = load_bytes(model)
    graph = read_model(data)
    compiled = compile_bytes(data)
    interp = Interpreter(compiled.model)
    tflm = run_tflm(data, make_inputs(graph, 1, 0))
    greedy = tflm_plan(graph)
    plan = compiled.plan
    figures: dict[str, Any] = {
        "model": str(model),
        "ops": len(graph.operators),
        "pool_bytes": interp.activation_bytes,
        "state_bytes": interp.state_bytes,
        "arm32_state_bytes": interp.arm32_state_bytes,  # 32-bit Arm layout
        "total_bytes": interp.total_bytes,
        "tflm_head_bytes": tflm.head_bytes,
        "tflm_tail_bytes": tflm.tail_bytes,
        "tflm_total_bytes": tflm.total_bytes,
        # What TFLM reports is not always enough: the smallest arena it runs in.
        "tflm_min_arena_bytes": (min_arena := smallest_arena(data)),
        "tflm_greedy_bytes": greedy.head_bytes,
        "tensor_bound_bytes": compiled.peak_live_bytes,
        "segment_bound_bytes": compiled.segment_bound_bytes,
        "segment_bytes": plan.segment_bytes,
        "planning_seconds": plan.notes["planning_seconds"],
        "pool_vs_tflm_head": interp.activation_bytes / max(tflm.head_bytes, 1),
        "total_vs_tflm_total": interp.total_bytes / max(min_arena, 1),
    }
    reference = as_plan(graph, greedy.tensor_offsets(), greedy.head_bytes)
    return Report(str(model), len(graph.operators), plan, reference, figures)


def write_report(report: Report, graph: Graph, out_dir: Path) -> tuple[list[Path], str]:
    """Writes <model>.png, <model>.svg and <model>.txt (table, summary and the boxes too
    small for a label in the pictures) into out_dir. Returns the paths and what a terminal
    shows of it: the table, the summary and how many boxes are listed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(report.model).stem
    names = [op.opcode for op in graph.operators]
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg", out_dir / f"{stem}.txt"]
    unlabelled = [
        draw_pool(report.plan, names, p, title=stem, compare=report.tflm_plan) for p in paths[:2]
    ]
    shown = pool_table(report.plan, names, graph) + "\n" + report.summary() + "\n"
    pictures = f"{paths[0].name} and {paths[1].name}"
    paths[2].write_text(shown + "\n" + unlabelled_list(unlabelled[0], pictures))
    if unlabelled[0]:
        n = len(unlabelled[0])
        shown += f"{n} boxes too small for a label in {pictures}: listed in {paths[2]}\n"
    return paths, shown
