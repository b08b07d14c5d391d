"""Memory of every model under the ring plan against TFLM, as CSV and Markdown.

For each committed model and each supported model in ../shared/models: our pool,
runtime state and total RAM (measured by running the compiled model in our runtime),
TFLM's head (measured by running the tflite-micro runtime) and the smallest arena it
runs in (searched; the total it reports is sometimes too small),
the replica of TFLM's greedy plan, and the tensor- and segment-level lower bounds.

    python benchmarks/memory.py [--out benchmarks/results] [MODEL ...]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from model_set import default_models

from tflm_vmcu.report import build_report

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    ("model", "model"),
    ("ops", "ops"),
    ("pool_bytes", "pool"),
    ("tflm_head_bytes", "TFLM head"),
    ("pool_vs_tflm_head", "pool/head"),
    ("tflm_greedy_bytes", "greedy replica"),
    ("tensor_bound_bytes", "tensor bound"),
    ("segment_bound_bytes", "segment bound"),
    ("state_bytes", "state"),
    ("total_bytes", "total RAM"),
    ("tflm_min_arena_bytes", "TFLM arena"),
    ("total_vs_tflm_total", "total/arena"),
    ("planning_seconds", "plan s"),
]


def fmt(key: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if "vs" in key or key.endswith("seconds") else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return Path(str(value)).name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rows = [build_report(p).figures for p in args.models or default_models()]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "memory.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([key for key, _ in COLUMNS])
        for r in rows:
            writer.writerow([Path(r[k]).name if k == "model" else r[k] for k, _ in COLUMNS])
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    lines += ["| " + " | ".join(fmt(k, r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    (args.out / "memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
