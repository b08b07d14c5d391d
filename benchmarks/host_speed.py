"""Host invoke time of tflm-vmcu against the tflite-micro runtime, per model.

Both runtimes live in this one process and are timed alternately (ours, TFLM, ours,
...) on the same seeded input, so machine noise hits both alike. Only invoke() is
timed: the input is set once (the kernels' work does not depend on the values).
Prints a Markdown table; ratio = our median / TFLM's median (below 1.0: we are
faster).

    python benchmarks/host_speed.py [--rounds 15] [MODEL ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from model_set import default_models
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

import tflm_vmcu
from tflm_vmcu.validate import make_inputs


def time_model(path: Path, rounds: int) -> tuple[float, float]:
    data = path.read_bytes()
    graph = tflm_vmcu.read_model(data)
    (inputs,) = make_inputs(graph, runs=1, seed=0)
    ours = tflm_vmcu.Interpreter(data)
    theirs = tflm_runtime.Interpreter.from_bytes(data, arena_size=4 << 20)
    in_idx = [d["index"] for d in ours.get_input_details()]

    for i, a in zip(in_idx, inputs, strict=True):
        ours.set_tensor(i, a)
    for i, a in enumerate(inputs):
        theirs.set_input(a, i)
    run_ours, run_tflm = ours.invoke, theirs.invoke
    run_ours()
    run_tflm()
    # Repeat each timed call enough to last ~20 ms, so timer resolution does not matter.
    start = time.perf_counter()
    run_tflm()
    reps = max(1, int(0.02 / max(time.perf_counter() - start, 1e-6)))
    ours_t, tflm_t = [], []
    for _ in range(rounds):
        for fn, out in ((run_ours, ours_t), (run_tflm, tflm_t)):
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            out.append((time.perf_counter() - start) / reps)
    return statistics.median(ours_t), statistics.median(tflm_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rows = []
    for path in args.models or default_models():
        ours, theirs = time_model(path, args.rounds)
        rows.append((path.name, ours, theirs))
    print("| model | tflm-vmcu (µs) | TFLM (µs) | ratio |")
    print("|---|---:|---:|---:|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours * 1e6:,.1f} | {theirs * 1e6:,.1f} | {ours / theirs:.2f} |")
    ratios = [o / t for _, o, t in rows]
    print(
        f"\ngeometric mean ratio: {float(np.exp(np.mean(np.log(ratios)))):.2f} "
        f"(max {max(ratios):.2f}) over {len(rows)} models"
    )


if __name__ == "__main__":
    main()
