"""Cortex-M4 and Cortex-M7 under QEMU: the ring plan against a flat plan, and the DSP
kernels against the portable ones, per model and per layer.

For each committed model and each supported model in ../shared/models that fits the
board, the firmware (firmware/, `tflm-vmcu firmware`) runs the model three times per core:
with its ring plan and with a flat, tensor-level plan (every live tensor in its own bytes,
no overlaps, no wrap) on the same runtime and kernels, both with the Armv7E-M DSP loops of
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (cpp/src/kernels/dsp.h); and with the ring
plan on the runtime built with -DTFLM_VMCU_NO_DSP (`tflm-vmcu firmware --no-dsp`: the
portable loops). Every run must be bit-exact. Per run: flash bytes, static RAM (pool +
runtime state + stack high-water mark, as the firmware measured them), and the exact
instructions of one Invoke(), per operator and in total, counted by the QEMU plugin in
tools/qemu_insn_plugin. Every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layer of the
models in LAYER_MODELS gets a row with its instructions per MAC, portable and DSP.

    python benchmarks/cortex_m.py [--out benchmarks/results] [--jobs 2] [MODEL ...]

Writes cortex_m.csv (ring against flat, one row per model and core), cortex_m_dsp.csv
(DSP against portable, per model and core), cortex_m_layers.csv (per layer),
cortex_m_ops.csv (per op type) and cortex_m.md (the tables, also printed). The firmware
is built from a copy of the sources taken at the start, so edits made during the run do
not mix two versions of the runtime in one table.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from model_set import default_models

from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import (
    BOARDS,
    NO_DSP_FLAG,
    PLANS,
    build_library,
    check_fits,
    firmware,
    host_run,
    missing_tools,
)
from tflm_vmcu.ir import Graph
from tflm_vmcu.reader import read_model

ROOT = Path(__file__).resolve().parent.parent
CPUS = ("cortex-m4", "cortex-m7")
# Models whose conv / depthwise / fully connected layers get a per-layer table (those
# present among the models run).
LAYER_MODELS = (
    "op_conv_2d.tflite",
    "op_depthwise_conv_2d.tflite",
    "op_fully_connected.tflite",
    "mobilenetv2_small.tflite",  # pointwise and 3x3 depthwise layers of realistic width
    "tflm_person_detect.tflite",  # ../shared/models: MobileNet v1 0.25, 96x96 grey
)
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
PADDING = {0: "SAME", 1: "VALID"}
# Layer kinds of the per-layer table, in the order of its summary.
POINTWISE, CONV3X3, CONV_OTHER, DEPTHWISE, FC = (
    "pointwise 1x1",
    "3x3 conv",
    "other conv",
    "depthwise",
    "FC",
)
KINDS = (POINTWISE, CONV3X3, CONV_OTHER, DEPTHWISE, FC)
# The speedup below which a pointwise or 3x3 conv layer is listed in the summary.
SLOW_SPEEDUP = 2.0
# Variants run per model and core: (key, plan, DSP kernels).
# (key, plan, DSP kernels). "ring" and "flat" compare plans on the same (unfused) kernels,
# "portable" the kernels on the same plan; "fused" is what `tflm-vmcu compile` gives, with
# inverted-bottleneck blocks fused where that lowers the pool.
VARIANTS = (
    ("ring", "ring-unfused", True),
    ("flat", "flat", True),
    ("portable", "ring-unfused", False),
    ("fused", "ring", True),
)
# The variants whose kernel calls are one per operator (per-op and per-layer tables).
UNFUSED = ("ring", "flat", "portable")
assert {plan for _, plan, _ in VARIANTS} <= set(PLANS)


# What the firmware build reads (firmware/CMakeLists.txt adds the top-level project).
SOURCES = ("CMakeLists.txt", "cmake", "cpp", "firmware", "python", "tools")


def snapshot_sources(dest: Path) -> Path:
    """Copies the sources the firmware is built from into `dest`."""
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def source_version() -> str:
    """The commit the sources were copied from, and how many of the copied files differ
    from it ('' outside a git checkout)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", *SOURCES],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return ""
    if not status:
        return f"commit {head}"
    return f"commit {head} with uncommitted changes to {len(status)} file(s)"


@cache
def _graph(path: str) -> Graph:
    return read_model(Path(path).read_bytes())


def layer_kind(graph: Graph, index: int) -> str:
    """POINTWISE, CONV3X3, CONV_OTHER, DEPTHWISE or FC."""
    op = graph.operators[index]
    if op.opcode == "FULLY_CONNECTED":
        return FC
    if op.opcode == "DEPTHWISE_CONV_2D":
        return DEPTHWISE
    flt = graph.tensors[op.inputs[1]].shape  # [Cout, KH, KW, Cin]
    return {(1, 1): POINTWISE, (3, 3): CONV3X3}.get((flt[1], flt[2]), CONV_OTHER)


def layer_description(graph: Graph, index: int) -> str:
    """e.g. '3x3 s2 SAME, 15x12x8 -> 7x5x12' for a conv layer."""
    op = graph.operators[index]
    shape_in = graph.tensors[op.inputs[0]].shape
    shape_out = graph.tensors[op.outputs[0]].shape
    dims = f"{'x'.join(map(str, shape_in[1:]))} -> {'x'.join(map(str, shape_out[1:]))}"
    if op.opcode == "FULLY_CONNECTED":
        return dims
    flt = graph.tensors[op.inputs[1]].shape
    o = op.options
    text = f"{flt[1]}x{flt[2]} s{o.get('stride_h', 1)} {PADDING.get(o.get('padding', 0), '?')}"
    if o.get("dilation_h_factor", 1) != 1:
        text += f" d{o['dilation_h_factor']}"
    if op.opcode == "DEPTHWISE_CONV_2D":
        text += f" m{o.get('depth_multiplier', 1)}"
    return f"{text}, {dims}"


def output_elements(graph: Graph, index: int) -> int:
    return math.prod(graph.tensors[graph.operators[index].outputs[0]].shape)


def run_core(cpu: str, models: list[Path]) -> list[dict[str, Any]]:
    """Every variant (VARIANTS) of every model on one core: one build folder per kernel
    setting, each used in turn."""
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"cortex-m-{cpu}-") as tmp:
        builds = {dsp: Path(tmp) / ("build" if dsp else "build-nodsp") for dsp in (True, False)}
        for dsp, build in builds.items():
            build_library(build, cpu, dsp=dsp)
        for model in models:
            row: dict[str, Any] = {"model": model.name, "path": str(model), "cpu": cpu}
            try:
                hosts = {}
                for key, plan, dsp in VARIANTS:
                    if plan not in hosts:
                        hosts[plan] = host_run(model, 0, plan=plan)
                        check_fits(hosts[plan])
                    r = firmware(
                        model,
                        cpu,
                        build_dir=builds[dsp],
                        out_dir=Path(tmp) / "out",
                        host=hosts[plan],
                        dsp=dsp,
                    )
                    if not r.bit_exact or not r.ops or r.dsp != dsp:
                        raise TflmVmcuError(f"{key}: {r.verdict}\n{r.console}")
                    row[key] = r.to_json()
            except TflmVmcuError as exc:
                row["skipped"] = str(exc).splitlines()[0]
            rows.append(row)
            print(f"{cpu} {model.name}: {row.get('skipped', 'done')}", flush=True)
    return rows


def ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def short(cpu: str) -> str:
    return cpu.replace("cortex-", "").upper()


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ring plan against flat plan (DSP kernels), per model and core."""
    rows = []
    for r in results:
        if "skipped" in r:
            continue
        ring, flat, fused = r["ring"], r["flat"], r["fused"]
        rows.append(
            {
                "model": r["model"],
                "cpu": r["cpu"],
                "ops": len(ring["ops"]),
                "flash_ring": ring["flash_bytes"],
                "flash_flat": flat["flash_bytes"],
                "pool_ring": ring["pool_bytes"],
                "pool_flat": flat["pool_bytes"],
                "state": ring["state_bytes"],
                "stack_ring": ring["stack_bytes"],
                "stack_flat": flat["stack_bytes"],
                "ram_ring": ring["ram_bytes"],
                "ram_flat": flat["ram_bytes"],
                "instructions_ring": ring["instructions"],
                "instructions_flat": flat["instructions"],
                "instructions_ratio": ratio(ring["instructions"], flat["instructions"]),
                "fused_blocks": len(
                    [op for op in fused["ops"] if op["opcode"].startswith("FUSED")]
                ),
                "ram_fused": fused["ram_bytes"],
                "instructions_fused": fused["instructions"],
                "fused_ratio": ratio(fused["instructions"], ring["instructions"]),
                "icount_ring": ring["instructions_icount"],
                "bit_exact": ring["bit_exact"] and flat["bit_exact"] and fused["bit_exact"],
            }
        )
    return rows


def _mac_instructions(run: dict[str, Any]) -> tuple[int, int]:
    """Instructions and MACs of the CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops."""
    ops = [op for op in run["ops"] if op["opcode"] in MAC_OPS]
    return sum(op["instructions"] for op in ops), sum(op["macs"] or 0 for op in ops)


def dsp_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DSP kernels against portable kernels (ring plan), per model and core."""
    rows = []
    for r in results:
        if "skipped" in r:
            continue
        dsp, portable = r["ring"], r["portable"]
        mac_dsp, macs = _mac_instructions(dsp)
        mac_portable, _ = _mac_instructions(portable)
        rows.append(
            {
                "model": r["model"],
                "cpu": r["cpu"],
                "flash_dsp": dsp["flash_bytes"],
                "flash_portable": portable["flash_bytes"],
                "stack_dsp": dsp["stack_bytes"],
                "stack_portable": portable["stack_bytes"],
                "instructions_dsp": dsp["instructions"],
                "instructions_portable": portable["instructions"],
                "speedup": ratio(portable["instructions"], dsp["instructions"]),
                "macs": macs,
                "mac_ops_dsp": mac_dsp,
                "mac_ops_portable": mac_portable,
                "mac_ops_speedup": ratio(mac_portable, mac_dsp) if macs else math.nan,
                "bit_exact": dsp["bit_exact"] and portable["bit_exact"],
            }
        )
    return rows


def op_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if "skipped" in r:
            continue
        types = {key: r[key]["op_types"] for key in UNFUSED}
        for name, t in types["ring"].items():
            rows.append(
                {
                    "model": r["model"],
                    "cpu": r["cpu"],
                    "op": name,
                    "ops": t["ops"],
                    "instructions_ring": t["instructions"],
                    "instructions_flat": types["flat"][name]["instructions"],
                    "instructions_portable": types["portable"][name]["instructions"],
                    "macs": t["macs"] or "",
                }
            )
        rows.append(
            {
                "model": r["model"],
                "cpu": r["cpu"],
                "op": "(interpreter)",
                "ops": "",
                **{f"instructions_{key}": r[key]["interpreter_instructions"] for key in UNFUSED},
                "macs": "",
            }
        )
    return rows


def layer_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layer of LAYER_MODELS: its
    instructions per variant and core, per MAC portable and DSP, and the DSP speedup."""
    rows = []
    by_model = {(r["model"], r["cpu"]): r for r in results if "skipped" not in r}
    for name in LAYER_MODELS:
        runs = {cpu: by_model.get((name, cpu)) for cpu in CPUS}
        first = next((r for r in runs.values() if r is not None), None)
        if first is None:
            continue
        graph = _graph(first["path"])
        for k, op in enumerate(first["ring"]["ops"]):
            if op["opcode"] not in MAC_OPS:
                continue
            row: dict[str, Any] = {
                "model": name,
                "layer": k,
                "op": op["opcode"],
                "kind": layer_kind(graph, k),
                "shape": layer_description(graph, k),
                "macs": op["macs"],
                "macs_per_output": op["macs"] // output_elements(graph, k),
            }
            for cpu, r in runs.items():
                if r is None:
                    continue
                counts = {key: r[key]["ops"][k]["instructions"] for key in UNFUSED}
                for key, n in counts.items():
                    row[f"{cpu}_{key}"] = n
                row[f"{cpu}_per_mac_portable"] = counts["portable"] / op["macs"]
                row[f"{cpu}_per_mac_dsp"] = counts["ring"] / op["macs"]
                row[f"{cpu}_speedup"] = ratio(counts["portable"], counts["ring"])
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()})


def fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: Sequence[Sequence[object]], left: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * left + "---:|" * (len(header) - left)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in values) / len(values))


def lowest(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return min(rows, key=lambda r: float(r[key]))


def highest(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return max(rows, key=lambda r: float(r[key]))


def ring_flat_section(results: list[dict[str, Any]]) -> list[str]:
    summary = summary_rows(results)
    lines = [
        "## Ring plan against flat plan",
        "",
        "Both plans on the same runtime and the same (DSP) kernels, without fused blocks. "
        "Instructions: exact count of one Invoke(). RAM: pool + runtime state + stack "
        "high-water mark. Fused: the model as `tflm-vmcu compile` gives it, with "
        "inverted-bottleneck blocks fused where that lowers the pool (fused/ring: its "
        "instructions over the unfused ring plan's).",
        "",
    ]
    header = [
        "model",
        "core",
        "flash ring",
        "flash flat",
        "RAM ring",
        "RAM flat",
        "instructions ring",
        "instructions flat",
        "ring/flat",
        "fused blocks",
        "RAM fused",
        "fused/ring",
        "bit-exact",
    ]
    rows = [
        [
            r["model"],
            short(r["cpu"]),
            r["flash_ring"],
            r["flash_flat"],
            r["ram_ring"],
            r["ram_flat"],
            r["instructions_ring"],
            r["instructions_flat"],
            r["instructions_ratio"],
            r["fused_blocks"],
            r["ram_fused"],
            r["fused_ratio"],
            r["bit_exact"],
        ]
        for r in sorted(summary, key=lambda r: (r["cpu"], r["model"]))
    ]
    lines += table(header, rows, left=2)
    lines.append("")
    for cpu in CPUS:
        mine = [r for r in summary if r["cpu"] == cpu]
        if mine:
            worst = highest(mine, "instructions_ratio")
            geo = geomean([r["instructions_ratio"] for r in mine])
            lines.append(
                f"- {short(cpu)}: ring/flat instructions max {worst['instructions_ratio']:.4f} "
                f"({worst['model']}), geometric mean {geo:.4f}, over {len(mine)} models"
            )
    for r in results:
        if "skipped" in r:
            lines.append(f"- skipped {r['model']} on {short(r['cpu'])}: {r['skipped']}")
    return lines


def dsp_section(results: list[dict[str, Any]]) -> list[str]:
    rows_in = dsp_rows(results)
    lines = [
        "## DSP kernels against portable kernels",
        "",
        "Ring plan; DSP: the runtime as built for the core (Armv7E-M DSP loops in CONV_2D, "
        f"DEPTHWISE_CONV_2D and FULLY_CONNECTED); portable: built with {NO_DSP_FLAG}. "
        "Speedup: portable instructions / DSP instructions, for the whole Invoke() and for "
        "its conv, depthwise and fully connected ops only.",
        "",
    ]
    header = [
        "model",
        "core",
        "flash DSP",
        "flash portable",
        "instructions DSP",
        "instructions portable",
        "speedup",
        "conv/dw/FC speedup",
        "bit-exact",
    ]
    rows = [
        [
            r["model"],
            short(r["cpu"]),
            r["flash_dsp"],
            r["flash_portable"],
            r["instructions_dsp"],
            r["instructions_portable"],
            r["speedup"],
            r["mac_ops_speedup"] if r["macs"] else "",
            r["bit_exact"],
        ]
        for r in sorted(rows_in, key=lambda r: (r["cpu"], r["model"]))
    ]
    lines += table(header, rows, left=2)
    lines.append("")
    for cpu in CPUS:
        mine = [r for r in rows_in if r["cpu"] == cpu and r["macs"]]
        if mine:
            lo, hi = lowest(mine, "speedup"), highest(mine, "speedup")
            geo = geomean([r["speedup"] for r in mine])
            lines.append(
                f"- {short(cpu)}: whole-model speedup over the {len(mine)} models with conv, "
                f"depthwise or FC layers: geometric mean {geo:.2f}x, min {lo['speedup']:.2f}x "
                f"({lo['model']}), max {hi['speedup']:.2f}x ({hi['model']})"
            )
    return lines


def op_type_section(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Per op type",
        "",
        "Summed over all models (kernel eval and all it calls); ring and flat with the DSP "
        "kernels, portable with the ring plan.",
        "",
    ]
    totals: dict[tuple[str, str], list[int]] = {}
    for row in op_rows(results):
        t = totals.setdefault((row["cpu"], row["op"]), [0, 0, 0, 0, 0])
        t[0] += row["ops"] or 0
        t[1] += row["instructions_ring"]
        t[2] += row["instructions_flat"]
        t[3] += row["instructions_portable"]
        t[4] += row["macs"] or 0
    rows = [
        [
            op,
            short(cpu),
            t[0] or "",
            t[1],
            t[2],
            ratio(t[1], t[2]),
            t[3],
            ratio(t[3], t[1]),
            t[1] / t[4] if t[4] else "",
            t[3] / t[4] if t[4] else "",
        ]
        for (cpu, op), t in sorted(totals.items(), key=lambda kv: (kv[0][0], -kv[1][3]))
    ]
    header = [
        "op type",
        "core",
        "ops",
        "instructions ring",
        "flat",
        "ring/flat",
        "portable",
        "DSP speedup",
        "per MAC DSP",
        "per MAC portable",
    ]
    return lines + table(header, rows, left=2)


def layer_section(results: list[dict[str, Any]]) -> list[str]:
    layers = layer_rows(results)
    if not layers:
        return []
    lines = [
        "## Per layer: DSP against portable",
        "",
        "Every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED layer of "
        + ", ".join(dict.fromkeys(r["model"] for r in layers))
        + " (ring plan). MACs/out: multiply-accumulates per output element (the dot "
        "product length). Instructions per MAC; speedup: portable / DSP instructions "
        "(counts in cortex_m_layers.csv).",
        "",
    ]
    header = ["model", "layer", "kind", "kernel, input -> output", "MACs", "MACs/out"]
    for cpu in CPUS:
        header += [f"{short(cpu)} portable", f"{short(cpu)} DSP", f"{short(cpu)} speedup"]
    rows = [
        [r["model"], r["layer"], r["kind"], r["shape"], r["macs"], r["macs_per_output"]]
        + [
            r.get(f"{cpu}_{key}", "")
            for cpu in CPUS
            for key in ("per_mac_portable", "per_mac_dsp", "speedup")
        ]
        for r in layers
    ]
    lines += table(header, rows, left=4)
    lines.append("")
    for cpu in CPUS:
        parts = []
        for kind in KINDS:
            mine = [r for r in layers if r["kind"] == kind and f"{cpu}_speedup" in r]
            if not mine:
                continue
            speedups = [r[f"{cpu}_speedup"] for r in mine]
            lo = lowest(mine, f"{cpu}_speedup")
            parts.append(
                f"{kind} ({len(mine)}): median {statistics.median(speedups):.2f}x, "
                f"min {min(speedups):.2f}x ({lo['model']} #{lo['layer']})"
            )
        if parts:
            lines.append(f"- {short(cpu)} DSP speedup per layer: " + "; ".join(parts))
    for cpu in CPUS:
        slow = [
            r
            for r in layers
            if r["kind"] in (POINTWISE, CONV3X3)
            and r.get(f"{cpu}_speedup", math.inf) < SLOW_SPEEDUP
        ]
        listed = ", ".join(
            f"{r['model']} #{r['layer']} ({r['kind']}, {r['shape']}, "
            f"{r['macs_per_output']} MACs/out): {r[f'{cpu}_speedup']:.2f}x"
            for r in slow
        )
        lines.append(
            f"- {short(cpu)} pointwise and 3x3 conv layers below {SLOW_SPEEDUP:g}x: "
            + (listed or "none")
        )
    return lines


def markdown(results: list[dict[str, Any]], seconds: float, version: str = "") -> str:
    lines = [
        "# Cortex-M4 and Cortex-M7 under QEMU",
        "",
        "QEMU MPS2 boards (AN386 Cortex-M4, AN500 Cortex-M7), GCC arm-none-eabi, CMake "
        "Release build; instructions are exact counts of one Invoke() (QEMU TCG plugin, "
        "tools/qemu_insn_plugin). Every run is bit-exact against the host runtime. "
        "Generated by `python benchmarks/cortex_m.py`"
        + (f" from {version}" if version else "")
        + ".",
        "",
    ]
    for section in (ring_flat_section, dsp_section, layer_section, op_type_section):
        lines += [*section(results), ""]
    lines.append(f"Run time: {seconds:.0f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--jobs", type=int, default=2, help="cores run in parallel")
    args = parser.parse_args()
    missing = missing_tools(run=True)
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found (see firmware/README.md)")
    assert set(CPUS) <= set(BOARDS)
    models = args.models or default_models()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cortex-m-src-") as src:
        version = source_version()
        os.environ["TFLM_VMCU_SOURCE_DIR"] = str(snapshot_sources(Path(src)))
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            per_core = list(pool.map(run_core, CPUS, [models] * len(CPUS)))
    results = [r for rows in per_core for r in rows]
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "cortex_m.csv", summary_rows(results))
    write_csv(args.out / "cortex_m_dsp.csv", dsp_rows(results))
    write_csv(args.out / "cortex_m_ops.csv", op_rows(results))
    write_csv(args.out / "cortex_m_layers.csv", layer_rows(results))
    text = markdown(results, seconds, version)
    (args.out / "cortex_m.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
