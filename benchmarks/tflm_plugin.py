"""Arena of each model in TFLM four ways, measured side by side on the host from one TFLM
tree (reference kernels): stock TFLM; stock TFLM with the offline plan (`compile --target
tflm --kernels reference`); TFLM with the tflm-vmcu plug-in (`compile --target
tflm-plugin`); and this project's own interpreter (pool + state, 64-bit host).

    python benchmarks/tflm_plugin.py [--tflm-source DIR] [--models M ...]

Every arena is the smallest AllocateTensors accepts (bisection on multiples of 16), and the
plug-in's outputs are compared bit for bit with stock TFLM's on seeded inputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from model_set import ROOT, default_models

import tflm_vmcu
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.plugin_target import compile_for_plugin
from tflm_vmcu.tflm_host import run_stock, smallest_arena
from tflm_vmcu.tflm_target import compile_for_tflm
from tflm_vmcu.validate import make_inputs

TREE = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflm-source", type=Path, default=TREE)
    parser.add_argument("--models", nargs="*", type=Path, default=None)
    args = parser.parse_args()
    tree = args.tflm_source
    head = ["model", "stock TFLM", "+ offline plan", "+ plug-in", "plug-in / stock"]
    head += ["bit-exact", "tflm-vmcu runtime"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * 4 + "---|---:|")
    for path in args.models or default_models():
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


if __name__ == "__main__":
    main()
