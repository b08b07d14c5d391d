"""Cortex-M4 and Cortex-M7 under QEMU: the ring plan against a flat plan, per model.

For each committed model and each supported model in ../shared/models that fits the
board, the firmware (firmware/, `tflm-vmcu firmware`) runs the model twice per core: with
its ring plan and with a flat, tensor-level plan (every live tensor in its own bytes, no
overlaps, no wrap) on the same runtime and kernels. Both runs must be bit-exact. Per run:
flash bytes, static RAM (pool + runtime state + stack high-water mark, as the firmware
measured them), and the exact instructions of one Invoke(), per operator and in total,
counted by the QEMU plugin in tools/qemu_insn_plugin. Instructions per MAC are given for
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, with a per-layer table for the models in
LAYER_MODELS.

    python benchmarks/cortex_m.py [--out benchmarks/results] [--jobs 2] [MODEL ...]

Writes cortex_m.csv (one row per model and core), cortex_m_ops.csv (per op type),
cortex_m_layers.csv (per layer) and cortex_m.md (the tables, also printed). The firmware
is built from a copy of the sources taken at the start, so edits made during the run do
not mix two versions of the runtime in one table.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import (
    BOARDS,
    PLANS,
    build_library,
    check_fits,
    firmware,
    host_run,
    missing_tools,
)
from tflm_vmcu.reader import read_model

ROOT = Path(__file__).resolve().parent.parent
UNSUPPORTED = {"tflm_keyword_scrambled_8bit.tflite"}
CPUS = ("cortex-m4", "cortex-m7")
# Models whose conv / depthwise / fully connected layers get a per-layer table.
LAYER_MODELS = (
    "op_conv_2d.tflite",
    "op_depthwise_conv_2d.tflite",
    "op_fully_connected.tflite",
    "mobilenetv2_small.tflite",  # pointwise and 3x3 depthwise layers of realistic width
)
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
PADDING = {0: "SAME", 1: "VALID"}


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


def default_models() -> list[Path]:
    shared = ROOT.parent / "shared" / "models"
    paths = sorted((ROOT / "models").glob("*.tflite"))
    if shared.is_dir():
        paths += sorted(p for p in shared.glob("*.tflite") if p.name not in UNSUPPORTED)
    return paths


def layer_description(model: Path, index: int) -> str:
    """e.g. '3x3 s2 SAME, 15x12x8 -> 7x5x12' for a conv layer."""
    graph = read_model(model.read_bytes())
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


def run_core(cpu: str, models: list[Path]) -> list[dict[str, Any]]:
    """Both plans of every model on one core (one build folder, used in turn)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"cortex-m-{cpu}-") as tmp:
        build = Path(tmp) / "build"
        build_library(build, cpu)
        for model in models:
            row: dict[str, Any] = {"model": model.name, "path": str(model), "cpu": cpu}
            try:
                for plan in PLANS:
                    host = host_run(model, 0, plan=plan)
                    check_fits(host)
                    r = firmware(
                        model,
                        cpu,
                        build_dir=build,
                        out_dir=Path(tmp) / "out",
                        host=host,
                        exact_memory=False,
                    )
                    if not r.bit_exact or not r.ops:
                        raise TflmVmcuError(f"{plan} plan: {r.verdict}\n{r.console}")
                    row[plan] = r.to_json()
            except TflmVmcuError as exc:
                row["skipped"] = str(exc).splitlines()[0]
            rows.append(row)
            print(f"{cpu} {model.name}: {row.get('skipped', 'done')}", flush=True)
    return rows


def ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if "skipped" in r:
            continue
        ring, flat = r["ring"], r["flat"]
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
                "icount_ring": ring["instructions_icount"],
                "bit_exact": ring["bit_exact"] and flat["bit_exact"],
            }
        )
    return rows


def op_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if "skipped" in r:
            continue
        ring, flat = r["ring"]["op_types"], r["flat"]["op_types"]
        for name, t in ring.items():
            rows.append(
                {
                    "model": r["model"],
                    "cpu": r["cpu"],
                    "op": name,
                    "ops": t["ops"],
                    "instructions_ring": t["instructions"],
                    "instructions_flat": flat[name]["instructions"],
                    "macs": t["macs"] or "",
                }
            )
        rows.append(
            {
                "model": r["model"],
                "cpu": r["cpu"],
                "op": "(interpreter)",
                "ops": "",
                "instructions_ring": r["ring"]["interpreter_instructions"],
                "instructions_flat": r["flat"]["interpreter_instructions"],
                "macs": "",
            }
        )
    return rows


def layer_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    by_model = {(r["model"], r["cpu"]): r for r in results if "skipped" not in r}
    for name in LAYER_MODELS:
        runs = {cpu: by_model.get((name, cpu)) for cpu in CPUS}
        first = next((r for r in runs.values() if r is not None), None)
        if first is None:
            continue
        path = Path(first["path"])
        for k, op in enumerate(first["ring"]["ops"]):
            if op["opcode"] not in MAC_OPS:
                continue
            row: dict[str, Any] = {
                "model": name,
                "layer": k,
                "op": op["opcode"],
                "shape": layer_description(path, k),
                "macs": op["macs"],
            }
            for cpu, r in runs.items():
                if r is None:
                    continue
                ring, flat = r["ring"]["ops"][k], r["flat"]["ops"][k]
                row[f"{cpu}_ring"] = ring["instructions"]
                row[f"{cpu}_flat"] = flat["instructions"]
                row[f"{cpu}_per_mac"] = ring["instructions"] / op["macs"]
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


def table(header: list[str], rows: list[list[object]], left: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * left + "---:|" * (len(header) - left)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines


def markdown(results: list[dict[str, Any]], seconds: float) -> str:
    summary = summary_rows(results)
    lines = [
        "Ring plan against a flat (tensor-level) plan on the same runtime and kernels, "
        "QEMU MPS2 boards (AN386 Cortex-M4, AN500 Cortex-M7), GCC "
        "arm-none-eabi, CMake Release build. Instructions: exact count of one Invoke() "
        "(QEMU TCG plugin). RAM: pool + runtime state + stack high-water mark.",
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
        "bit-exact",
    ]
    rows = [
        [
            r["model"],
            r["cpu"].replace("cortex-", "").upper(),
            r["flash_ring"],
            r["flash_flat"],
            r["ram_ring"],
            r["ram_flat"],
            r["instructions_ring"],
            r["instructions_flat"],
            r["instructions_ratio"],
            r["bit_exact"],
        ]
        for r in sorted(summary, key=lambda r: (r["cpu"], r["model"]))
    ]
    lines += table(header, rows, left=2)
    lines.append("")
    for cpu in CPUS:
        ratios = [r["instructions_ratio"] for r in summary if r["cpu"] == cpu]
        if ratios:
            geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            worst = max(summary, key=lambda r: r["instructions_ratio"] if r["cpu"] == cpu else 0)
            lines.append(
                f"- {cpu}: ring/flat instructions, geometric mean {geo:.4f}, max "
                f"{worst['instructions_ratio']:.4f} ({worst['model']}), over {len(ratios)} models"
            )
    skipped = [r for r in results if "skipped" in r]
    for r in skipped:
        lines.append(f"- skipped {r['model']} on {r['cpu']}: {r['skipped']}")

    # Per op type, over all models.
    lines += ["", "Per op type, summed over all models (kernel eval and all it calls):", ""]
    totals: dict[tuple[str, str], list[int]] = {}
    for row in op_rows(results):
        t = totals.setdefault((row["cpu"], row["op"]), [0, 0, 0, 0])
        t[0] += row["ops"] or 0
        t[1] += row["instructions_ring"]
        t[2] += row["instructions_flat"]
        t[3] += row["macs"] or 0
    rows = [
        [
            op,
            cpu.replace("cortex-", "").upper(),
            t[0] or "",
            t[1],
            t[2],
            ratio(t[1], t[2]),
            t[1] / t[3] if t[3] else "",
        ]
        for (cpu, op), t in sorted(totals.items(), key=lambda kv: (kv[0][0], -kv[1][1]))
    ]
    header = ["op type", "core", "ops", "instructions ring", "flat", "ring/flat", "per MAC"]
    lines += table(header, rows, left=2)

    # Per layer.
    layers = layer_rows(results)
    if layers:
        lines += ["", "Per layer (ring plan; flat in the CSV), instructions per MAC:", ""]
        header = ["model", "layer", "op", "kernel, input -> output", "MACs"]
        for cpu in CPUS:
            short = cpu.replace("cortex-", "").upper()
            header += [f"{short} instructions", f"{short} per MAC"]
        rows = [
            [r["model"], r["layer"], r["op"], r["shape"], r["macs"]]
            + [r.get(f"{cpu}_{key}", "") for cpu in CPUS for key in ("ring", "per_mac")]
            for r in layers
        ]
        lines += table(header, rows, left=4)
    lines += ["", f"Run time: {seconds:.0f} s."]
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
        os.environ["TFLM_VMCU_SOURCE_DIR"] = str(snapshot_sources(Path(src)))
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            per_core = list(pool.map(run_core, CPUS, [models] * len(CPUS)))
    results = [r for rows in per_core for r in rows]
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "cortex_m.csv", summary_rows(results))
    write_csv(args.out / "cortex_m_ops.csv", op_rows(results))
    write_csv(args.out / "cortex_m_layers.csv", layer_rows(results))
    text = markdown(results, seconds)
    (args.out / "cortex_m.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
