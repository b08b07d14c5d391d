"""Arena of each model in TFLM four ways, measured side by side on the host from one TFLM
tree (reference kernels): stock TFLM; stock TFLM with the offline plan (`compile --target
tflm --kernels reference`); TFLM with the tflm-vmcu plug-in (`compile --target
tflm-plugin`); and this project's own interpreter (pool + state, 64-bit host). Then on
Cortex-M4 under QEMU, from the cmsis_nn tree (`tflm-vmcu firmware --runtime tflm-plugin`):
the arena (arena_used_bytes() on the core) and the exact instructions of Invoke() of stock
TFLM + CMSIS-NN against TFLM + plug-in, and, per op type, where the instructions go.

    python benchmarks/tflm_plugin.py [--tflm-source DIR] [--cmsis-source DIR] [--cpu CPU]
                                     [--models M ...] [--no-host] [--no-target]

On the host every arena is the smallest AllocateTensors accepts (bisection on multiples of
16), and the plug-in's outputs are compared bit for bit with stock TFLM's on seeded inputs;
on the core, the plug-in firmware compares its outputs with the stock firmware's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from model_set import ROOT, default_models

import tflm_vmcu
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware.counting import OpCount
from tflm_vmcu.firmware.tflm_plugin import PluginFirmwareResult, firmware_plugin
from tflm_vmcu.plugin_target import compile_for_plugin
from tflm_vmcu.tflm_host import run_stock, smallest_arena
from tflm_vmcu.tflm_target import compile_for_tflm
from tflm_vmcu.validate import make_inputs

TREE = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "reference"
CMSIS_TREE = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "cmsis_nn"
# Model whose instructions are broken down per op type (when present).
BREAKDOWN = "tflm_person_detect.tflite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflm-source", type=Path, default=TREE)
    parser.add_argument("--cmsis-source", type=Path, default=CMSIS_TREE)
    parser.add_argument("--cpu", default="cortex-m4")
    parser.add_argument("--models", nargs="*", type=Path, default=None)
    parser.add_argument("--no-host", dest="host", action="store_false")
    parser.add_argument("--no-target", dest="target", action="store_false")
    args = parser.parse_args()
    models = args.models or default_models()
    if args.host:
        host_table(args.tflm_source, models)
    if args.target:
        target_table(args.cmsis_source, args.cpu, models)


def host_table(tree: Path, models: list[Path]) -> None:
    print(f"Host, {tree.name} tree (smallest arena, bytes):\n")
    head = ["model", "stock TFLM", "+ offline plan", "+ plug-in", "plug-in / stock"]
    head += ["bit-exact", "tflm-vmcu runtime"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * 4 + "---|---:|")
    for path in models:
        data = path.read_bytes()
        try:
            plugin, _ = compile_for_plugin(data)
        except TflmVmcuError as exc:
            print(f"| {path.name} | plug-in refuses it: {exc} |")
            continue
        inputs = make_inputs(tflm_vmcu.read_model(data), 3, 0)
        stock, _ = smallest_arena(tree, data, inputs[0])
        offline, _ = smallest_arena(tree, compile_for_tflm(data, "reference").model, inputs[0])
        ours, _ = smallest_arena(tree, plugin, inputs[0], plugin=True)
        same = all(
            np.array_equal(a, b)
            for arrays in inputs
            for a, b in zip(
                run_stock(tree, plugin, arrays, ours, plugin=True)[0],
                run_stock(tree, data, arrays, stock)[0],
                strict=True,
            )
        )
        try:
            own = f"{tflm_vmcu.Interpreter(compile_bytes(data).model).total_bytes:,}"
        except TflmVmcuError:
            own = "refused"
        row = [path.name, f"{stock:,}", f"{offline:,}", f"{ours:,}", f"{ours / stock:.3f}"]
        print("| " + " | ".join([*row, "yes" if same else "NO", own]) + " |", flush=True)


def _ratio(ours: int | None, theirs: int | None) -> str:
    return f"{ours / theirs:.3f}" if ours is not None and theirs else "-"


def target_table(tree: Path, cpu: str, models: list[Path]) -> None:
    print(f"\n{cpu} under QEMU, {tree.name} tree (arena_used_bytes() on the core; exact")
    print("instructions of MicroInterpreter::Invoke()):\n")
    head = ["model", "stock TFLM + CMSIS-NN arena", "TFLM + plug-in arena", "arena ratio"]
    head += ["stock + CMSIS-NN instructions", "plug-in instructions", "instr. ratio"]
    head += ["bit-exact"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * 6 + "---|")
    breakdown: PluginFirmwareResult | None = None
    with tempfile.TemporaryDirectory(prefix="tflm-plugin-bench-") as tmp:
        for path in models:
            try:
                plugin, _ = compile_for_plugin(path.read_bytes())
                r = firmware_plugin(
                    plugin, tree, cpu, out_dir=Path(tmp) / path.stem, name=path.name
                )
            except TflmVmcuError as exc:
                print(f"| {path.name} | {str(exc).splitlines()[0]} |", flush=True)
                continue
            row = [path.name, f"{r.stock_arena_bytes:,}", f"{r.arena_bytes:,}"]
            row.append(_ratio(r.arena_bytes, r.stock_arena_bytes))
            row += [f"{r.stock_instructions:,}", f"{r.instructions:,}"]
            row += [_ratio(r.instructions, r.stock_instructions), "yes" if r.bit_exact else "NO"]
            print("| " + " | ".join(row) + " |", flush=True)
            if path.name == BREAKDOWN:
                breakdown = r
    if breakdown is not None:
        per_op_table(breakdown)


def per_op_table(r: PluginFirmwareResult) -> None:
    """Instructions per op type, stock + CMSIS-NN against the plug-in's ring kernels."""
    print(f"\n{r.model} on {r.cpu}, instructions per op type (per operator: `tflm-vmcu")
    print("firmware OUT --runtime tflm-plugin ...`):\n")
    print("| op type | ops | stock + CMSIS-NN | plug-in | ratio | per MAC: stock | plug-in |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals: dict[str, list[int]] = {}
    macs: dict[str, int] = {}
    for ours, theirs in zip(r.ops, r.stock_ops_of, strict=True):
        stock_ops: list[OpCount] = [r.stock_ops[k] for k in theirs]
        name = ours.opcode if len(theirs) == 1 else "fused block"
        t = totals.setdefault(name, [0, 0, 0])
        t[0] += 1
        t[1] += sum(op.instructions for op in stock_ops)
        t[2] += ours.instructions
        macs[name] = macs.get(name, 0) + sum(op.macs or 0 for op in stock_ops)
    for name, (count, stock, ours_n) in sorted(totals.items(), key=lambda kv: -kv[1][1]):
        per_mac = [f"{n / macs[name]:.2f}" if macs[name] else "-" for n in (stock, ours_n)]
        row = [name, str(count), f"{stock:,}", f"{ours_n:,}", _ratio(ours_n, stock), *per_mac]
        print("| " + " | ".join(row) + " |")
    stock_loop = (r.stock_instructions or 0) - sum(op.instructions for op in r.stock_ops)
    ours_loop = r.interpreter_instructions or 0
    row = ["TFLM's loop", "", f"{stock_loop:,}", f"{ours_loop:,}", _ratio(ours_loop, stock_loop)]
    print("| " + " | ".join([*row, "-", "-"]) + " |")


if __name__ == "__main__":
    main()
