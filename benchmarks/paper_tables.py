"""The vMCU paper's layer and module tables, reproduced (benchmarks/paper_models.py).

For each single pointwise layer and each inverted-bottleneck module, measured in one run:
- TFLM head: the activation arena the tflite-micro runtime reports for the model;
- in-place dw: a tensor-level plan in which only the depthwise conv runs in place (its
  output takes over its input's bytes, TinyEngine style), every other tensor its own bytes;
- our pool and our total RAM (pool + runtime state, x86-64 host; the state is smaller on a
  32-bit MCU) from running the compiled model in our runtime, under the hazard checker
  (hazards must be 0) and bit-exact with TFLM; for modules, compiled with the default
  fusion (rows mode) and with --fusion window (least memory);
- the paper's figures (KB; they include a few KB of runtime overhead);
- for modules, host invoke time of the fused module over the same module unfused, in
  each mode (median of --runs ratios, the two timed alternately).

    python benchmarks/paper_tables.py [--out benchmarks/results] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path
from typing import Any

from paper_models import IMAGENET_MODULES, LAYERS, VWW_MODULES, build_layer, build_module

import tflm_vmcu
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.ir import Graph, Operator
from tflm_vmcu.planner.ring import plan_ring
from tflm_vmcu.tflm_reference import TflmSession
from tflm_vmcu.validate import compare, make_inputs, run_ours

ROOT = Path(__file__).resolve().parent.parent
KB = 1024


def in_place_depthwise(graph: Graph, op: Operator, pos: int) -> tuple[int, bool] | None:
    """Overlap rule of the baseline: a depthwise conv's output may take over its input's
    bytes (exactly in place); nothing else overlaps."""
    if op.opcode != "DEPTHWISE_CONV_2D" or pos != 0:
        return None
    return (
        (0, True)
        if graph.tensors[op.outputs[0]].nbytes <= graph.tensors[op.inputs[0]].nbytes
        else None
    )


def invoke_seconds(model: bytes, inputs: list[Any], budget: float = 0.2) -> float:
    interp = tflm_vmcu.Interpreter(model)
    for d, a in zip(interp.get_input_details(), inputs, strict=True):
        interp.set_tensor(d["index"], a)
    interp.invoke()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        interp.invoke()
        n += 1
    return (time.perf_counter() - start) / n


def fused_over_unfused(fused: bytes, unfused: bytes, inputs: list[Any], runs: int) -> float:
    """Median ratio of invoke times, the two timed alternately."""
    ratios = []
    for _ in range(runs):
        t_fused = invoke_seconds(fused, inputs)
        ratios.append(t_fused / invoke_seconds(unfused, inputs))
    return statistics.median(ratios)


def run_checked(data: bytes, model: bytes, tflm: TflmSession) -> dict[str, Any]:
    """Pool, total, fused blocks, hazards and bit-exactness of a compiled model."""
    graph = tflm_vmcu.read_model(data)
    inputs = make_inputs(graph, 2, seed=0)
    ref = tflm.run(data, inputs)
    interp = tflm_vmcu.Interpreter(model, check_hazards=True)
    ours = run_ours(interp, inputs)
    names = [d["name"] for d in interp.get_output_details()]
    return {
        "tflm_head": ref.head_bytes,
        "pool": interp.activation_bytes,
        "total": interp.total_bytes,
        "fused_blocks": interp.fused_blocks,
        "ok": interp.hazards == 0 and all(d.bit_exact for d in compare(ours, ref.outputs, names)),
    }


def measure(name: str, data: bytes, tflm: TflmSession, runs: int, timed: bool) -> dict[str, Any]:
    graph = tflm_vmcu.read_model(data)
    rows_model = compile_bytes(data).model
    row: dict[str, Any] = {"name": name}
    row.update(run_checked(data, rows_model, tflm))
    row["in_place_dw"] = plan_ring(
        graph, segments=(1,), rule=in_place_depthwise, linear=True
    ).pool_bytes
    row["pool_vs_head"] = row["pool"] / row["tflm_head"]
    if timed:
        window = compile_bytes(data, fusion="window").model
        w = run_checked(data, window, tflm)
        row.update({f"window_{k}": v for k, v in w.items() if k != "tflm_head"})
        row["window_pool_vs_head"] = row["window_pool"] / row["tflm_head"]
        inputs = make_inputs(graph, 1, seed=0)[0]
        unfused = compile_bytes(data, fusion="off").model
        row["rows_time"] = fused_over_unfused(rows_model, unfused, inputs, runs)
        row["window_time"] = fused_over_unfused(window, unfused, inputs, runs)
    return row


def kb(v: float | None) -> str:
    return "-" if v is None else f"{v / KB:.1f}"


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(r[key]) for key, _ in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--runs", type=int, default=3, help="timing repetitions per module")
    args = parser.parse_args()
    raw: list[dict[str, Any]] = []
    shown_layers, shown_modules = [], []
    with TflmSession() as tflm:
        for layer in LAYERS:
            r = measure(layer.name, build_layer(layer), tflm, args.runs, timed=False)
            r["paper_tinyengine_kb"], r["paper_vmcu_kb"] = (
                layer.paper_tinyengine_kb,
                layer.paper_vmcu_kb,
            )
            raw.append(r)
            shown_layers.append(
                {
                    "name": f"{layer.name} ({layer.size}, {layer.cin}, {layer.cout})",
                    "head": kb(r["tflm_head"]),
                    "inplace": kb(r["in_place_dw"]),
                    "pool": kb(r["pool"]),
                    "total": kb(r["total"]),
                    "te": f"{layer.paper_tinyengine_kb:.1f}",
                    "vmcu": f"{layer.paper_vmcu_kb:.1f}",
                    "ok": "yes" if r["ok"] else "NO",
                }
            )
        for m in VWW_MODULES + IMAGENET_MODULES:
            r = measure(m.name, build_module(m), tflm, args.runs, timed=True)
            r["paper_vmcu_kb"] = m.paper_vmcu_kb
            raw.append(r)
            best = min(r["total"], r["window_total"]) / KB
            shown_modules.append(
                {
                    "name": f"{m.name} ({m.size}, {m.cin}, {m.cmid}, {m.cout}, {m.kernel}, "
                    f"s{'/'.join(map(str, m.strides))})",
                    "head": kb(r["tflm_head"]),
                    "inplace": kb(r["in_place_dw"]),
                    "pool": kb(r["pool"]),
                    "ratio": f"{r['pool_vs_head']:.3f}",
                    "total": kb(r["total"]),
                    "time": f"{r['rows_time']:.2f}",
                    "wpool": kb(r["window_pool"]),
                    "wratio": f"{r['window_pool_vs_head']:.3f}",
                    "wtotal": kb(r["window_total"]),
                    "wtime": f"{r['window_time']:.2f}",
                    "te": "-" if m.paper_tinyengine_kb is None else f"{m.paper_tinyengine_kb:.1f}",
                    "vmcu": f"{m.paper_vmcu_kb:.1f}",
                    "below": "yes" if best <= m.paper_vmcu_kb else "NO",
                    "ok": "yes" if r["ok"] and r["window_ok"] else "NO",
                }
            )
    common = [("name", "layer (H=W, Cin, Cout)"), ("head", "TFLM head"), ("inplace", "in-place dw")]
    layer_md = table(
        shown_layers,
        [*common, ("pool", "our pool"), ("total", "our total"), ("te", "paper TinyEngine"),
         ("vmcu", "paper vMCU"), ("ok", "bit-exact, 0 hazards")],
    )  # fmt: skip
    module_md = table(
        shown_modules,
        [("name", "module (H=W, Cin, Cmid, Cout, K, strides)"), *common[1:],
         ("pool", "rows: pool"), ("ratio", "pool/head"), ("total", "total"),
         ("time", "time vs unfused"), ("wpool", "window: pool"), ("wratio", "pool/head"),
         ("wtotal", "total"), ("wtime", "time vs unfused"), ("te", "paper TinyEngine"),
         ("vmcu", "paper vMCU"), ("below", "best total <= paper"),
         ("ok", "bit-exact, 0 hazards")],
    )  # fmt: skip
    text = (
        "RAM in KB (1,024 bytes).\n\nSingle pointwise layers:\n\n"
        + layer_md
        + "\n\nInverted-bottleneck modules:\n\n"
        + module_md
        + "\n"
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_tables.md").write_text(text)
    keys = sorted({k for r in raw for k in r}, key=lambda k: (k != "name", k))
    with (args.out / "paper_tables.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(raw)


if __name__ == "__main__":
    main()
