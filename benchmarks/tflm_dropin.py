"""Smallest stock-TFLM arena of every model, without and with the offline plan.

For each committed model and each supported model in ../shared/models: the smallest
arena the tflite-micro runtime accepts for the original model and for the model
compiled with `--target tflm` for the reference and the portable kernel libraries,
and whether the outputs stay bit-identical (5 seeded runs). Writes
benchmarks/results/tflm_dropin.{csv,md}.

    python benchmarks/tflm_dropin.py [MODEL ...]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from model_set import default_models

from tflm_vmcu.tflm_check import compare_in_tflm
from tflm_vmcu.tflm_target import compile_for_tflm

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    args = parser.parse_args()
    header = ["model", "arena", "reference", "ratio", "portable", "bit_identical"]
    rows = []
    for path in args.models or default_models():
        data = path.read_bytes()
        ref = compare_in_tflm(data, compile_for_tflm(data, "reference").model, runs=5)
        port = compare_in_tflm(data, compile_for_tflm(data, "portable").model, runs=5)
        rows.append(
            [
                path.name,
                ref.original_arena,
                ref.planned_arena,
                round(ref.planned_arena / ref.original_arena, 3),
                port.planned_arena,
                ref.bit_identical and port.bit_identical,
            ]
        )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tflm_dropin.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = [
        "| model | TFLM arena | with plan (reference) | ratio | with plan (portable) "
        "| bit-identical |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {m} | {a:,} | {r:,} | {q:.3f} | {p:,} | {'yes' if ok else 'NO'} |"
        for m, a, r, q, p, ok in rows
    ]
    (out / "tflm_dropin.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
