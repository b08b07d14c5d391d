"""Whole-network streaming: which blocks and chains the compiler fuses, the pool that gives,
with and without chains, window mode and --io int8, and what it costs on Cortex-M4.

Models: the committed ones with fusion candidates, those in ../shared/models, and networks
the generator builds here (benchmarks/streaming_models.py: MobileNetV2 1.0 224, an
MCUNet-class network, a 163-operator network). Per model (host, one run):

- the pool of our runtime: nothing fused, single blocks only, blocks and chains (rows mode,
  the default), window mode, and rows mode after `--io int8` (for models with float edges);
  TFLM's head on the original model (tflite-micro runtime); planning seconds;
- the blocks and chains fused, and whether the plan reaches its segment-level bound;
- bit-exact against TFLM and hazard-free under the checker (rows mode, --io as given).

On Cortex-M4 (QEMU, `tflm-vmcu firmware`): pool, state, stack and total RAM, and exact
Invoke() instructions, of the compiled model against the unfused ring plan (MobileNetV2
with a 100-class head: the 1000-class one does not fit the board's 4 MB of flash).

    python benchmarks/streaming.py [--no-firmware] [--out benchmarks/results]

Writes streaming.md (the tables, also printed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from model_set import default_models
from streaming_models import deep_163, mcunet_class, mobilenetv2_224

import tflm_vmcu
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import firmware
from tflm_vmcu.fusion import block_candidates
from tflm_vmcu.int8_io import int8_io
from tflm_vmcu.planner.fused import plan_model
from tflm_vmcu.tflm_reference import TflmSession
from tflm_vmcu.validate import make_inputs, run_ours

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_MODELS = [
    "mobilenetv2_small.tflite",
    "tflm_person_detect.tflite",
    "tinyengine_vww.tflite",
    "tinyengine_vww.tflite --io int8",
    "mcunet_class (generated)",
    "mobilenetv2_224, 100 classes (generated)",
]


def generated() -> dict[str, bytes]:
    return {
        "mobilenetv2_224 (generated)": mobilenetv2_224(),
        "mobilenetv2_224, 100 classes (generated)": mobilenetv2_224(100),
        "mcunet_class (generated)": mcunet_class(),
        "deep_163 (generated)": deep_163(),
    }


def _fused(plan: Any) -> str:
    """The fused blocks and chains by their operators (a count past eight)."""
    if len(plan.notes["fused_blocks"]) > 8:
        return f"{len(plan.notes['fused_blocks'])} blocks"
    parts = []
    for b in plan.notes["fused_blocks"]:
        first, last = b["ops"]
        chain = f" ({b['blocks']} blocks)" if b["blocks"] > 1 else ""
        parts.append(f"{first}-{last}{chain}")
    return ", ".join(parts) or "-"


def host_row(name: str, data: bytes, tflm: TflmSession) -> dict[str, Any]:
    graph = tflm_vmcu.read_model(data)
    inputs = make_inputs(graph, 1, 0)
    head = tflm.run(data, inputs).head_bytes
    pools = {mode: plan_model(graph, mode).pool_bytes for mode in ("off", "window")}
    pools["blocks"] = plan_model(graph, "rows", chains=False).pool_bytes
    start = time.perf_counter()
    compiled = compile_bytes(data)
    seconds = time.perf_counter() - start
    plan = compiled.plan
    interp = tflm_vmcu.Interpreter(compiled.model, check_hazards=True)
    same = all(
        np.array_equal(a, b)
        for a, b in zip(run_ours(interp, inputs)[0], tflm.run(data, inputs).outputs[0], strict=True)
    )
    int8_data, edges = int8_io(data)
    bound = int(plan.notes["fusion_bound_bytes"])
    seg = plan.segment_bytes
    return {
        "model": name,
        "ops": len(graph.operators),
        "head": head,
        "off": pools["off"],
        "blocks": pools["blocks"],
        "rows": plan.pool_bytes,
        "ratio": plan.pool_bytes / head,
        "window": pools["window"],
        "int8": compile_bytes(int8_data).plan.pool_bytes if edges else None,
        "fused": _fused(plan),
        "reached": plan.pool_bytes <= -(-bound // seg) * seg,
        "seconds": seconds,
        "exact": same and interp.hazards == 0,
    }


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def host_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ["model", "ops", "TFLM head", "unfused", "blocks only", "blocks + chains"]
    head += ["/ head", "window", "--io int8", "fused (rows)", "bound reached", "plan s"]
    head += ["bit-exact, 0 hazards"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * 8 + "---|---|---:|---|"]
    for r in rows:
        cells = [r["model"], str(r["ops"]), _n(r["head"]), _n(r["off"]), _n(r["blocks"])]
        cells += [_n(r["rows"]), f"{r['ratio']:.3f}", _n(r["window"]), _n(r["int8"])]
        cells += [r["fused"], "yes" if r["reached"] else "no", f"{r['seconds']:.2f}"]
        cells += ["yes" if r["exact"] else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def firmware_table(models: dict[str, bytes]) -> list[str]:
    head = ["model", "plan", "pool", "state", "stack", "RAM", "instructions", "vs unfused"]
    head += ["bit-exact"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * 6 + "---|"]
    with tempfile.TemporaryDirectory(prefix="streaming-bench-") as tmp:
        build = Path(tmp) / "build-cortex-m4"
        for name, data in models.items():
            results = {}
            for plan in ("ring-unfused", "ring"):
                try:
                    out = Path(tmp) / "out"
                    r = firmware(data, "cortex-m4", out_dir=out, build_dir=build, plan=plan)
                except TflmVmcuError as exc:
                    lines.append(f"| {name} | {plan} | {str(exc).splitlines()[0]} |")
                    continue
                results[plan] = r
                base = results.get("ring-unfused")
                ratio = (
                    f"{r.instructions / base.instructions:.3f}"
                    if base is not None and r.instructions and base.instructions
                    else "-"
                )
                cells = [name, "compiled" if plan == "ring" else "unfused ring"]
                cells += [_n(r.pool_bytes), _n(r.state_bytes), _n(r.stack_bytes)]
                cells += [_n(r.ram_bytes), _n(r.instructions), ratio]
                cells += ["yes" if r.bit_exact else "NO"]
                lines.append("| " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-firmware", action="store_true", help="host tables only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    models = {p.name: p.read_bytes() for p in default_models()}
    models.update(generated())
    rows = []
    with TflmSession(arena_size=8 << 20) as tflm:
        for name, data in models.items():
            if not block_candidates(tflm_vmcu.read_model(data)):
                continue  # nothing to fuse: the ring planner's tables cover it
            try:
                rows.append(host_row(name, data, tflm))
            except TflmVmcuError as exc:
                print(f"{name}: {exc}")
                continue
            print("\n".join(host_table(rows[-1:])[2:]), flush=True)
    lines = ["# Whole-network streaming", "", "Host (pools in bytes; `python benchmarks/"]
    lines[-1] += "streaming.py`):"
    lines += ["", *host_table(rows)]
    if not args.no_firmware:
        fw_models = {}
        for key in FIRMWARE_MODELS:
            name, _, io = key.partition(" --io ")
            if name not in models:
                continue
            data = models[name]
            fw_models[key] = int8_io(data)[0] if io == "int8" else data
        lines += ["", "Cortex-M4 (QEMU, mps2-an386; RAM = pool + state + stack high-water):"]
        lines += ["", *firmware_table(fw_models)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streaming.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
