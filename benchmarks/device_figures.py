"""Per-core figures that let `tflm-vmcu fit` predict a model's RAM and flash on a Cortex-M
core without a toolchain: the stack each kernel needs and the runtime's code bytes.

For every core with a QEMU board, the firmware (`tflm-vmcu firmware`) runs small models
of each kernel and a few networks with fused blocks, bit-exact, in rows and in window
mode, and reads the stack's high-water mark (the harness's own calls included:
AllocateTensors with the plan verifier, Invoke, the report) and the image's flash. A
kernel's figure is the largest high-water mark of the generated models that run it alone,
in variants that take its different paths (one or more batch rows, strides, broadcast).
QUANTIZE and DEQUANTIZE never run alone; a model's high-water mark bounds every kernel it
runs, so theirs is the least of the models that run them. A fused kernel is a model's
deepest call: the figure of FUSED_BLOCK, and of FUSED_CHAIN_N for a chain of N blocks (each
stage one call deeper than the one it feeds), is the largest of the models whose longest
fused chain it is (networks, and chains planned as such). The code bytes are the image's
flash less the model and the harness's test data (input and expected output), the largest
over the runs.

    python benchmarks/device_figures.py [--out tflm_vmcu/device_figures.json]

Then, with the new figures, it predicts every committed and shared model on Cortex-M4 and
Cortex-M7 and runs it there: benchmarks/results/device_figures.md, the table of predicted
against measured RAM and flash. Rerun it after a change to the runtime: the firmware tests
check the predictions against every model they run (within 2% of the measured RAM), so
stale figures fail there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from model_set import default_models
from streaming_models import mcunet_class

from tflm_vmcu.device import (
    FC_ROWS,
    FUSED_BLOCK,
    FUSED_CHAINS,
    figures,
    io_bytes,
    needs,
    stack_keys,
)
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import BOARDS, build_library, check_fits, firmware, host_run
from tflm_vmcu.fusion import chain_candidates, find_blocks
from tflm_vmcu.ops import SUPPORTED_OPS
from tflm_vmcu.plan_format import write_plan
from tflm_vmcu.planner.fused import plan_with_blocks
from tflm_vmcu.reader import read_model
from tflm_vmcu.synth import ModelBuilder

ROOT = Path(__file__).resolve().parent.parent
FUSED_KEYS = [FUSED_BLOCK, *FUSED_CHAINS]  # shallowest first
EXTRA_KEYS = [FC_ROWS, *FUSED_KEYS]  # stack keys besides the operators' names


def _one(build: Callable[[ModelBuilder, int], int], shape: list[int], zp: int = -3) -> bytes:
    b = ModelBuilder(seed=0)
    return b.build([build(b, b.input(shape, 0.05, zp))])


def _block(b: ModelBuilder, x: int, expand: int, stride: int = 1) -> int:
    cin = b.shapes[x][3]
    y = b.conv2d(x, expand, (1, 1), activation="RELU")
    y = b.depthwise_conv2d(y, 1, (3, 3), (stride, stride), activation="RELU")
    y = b.conv2d(y, cin, (1, 1))
    return b.elementwise("ADD", x, y) if stride == 1 else y


def single_kernel_models() -> dict[str, bytes]:
    """Models of one kernel each, in the variants whose kernels take different paths."""
    nhwc = [1, 12, 12, 16]
    return {
        "conv_1x1": _one(lambda b, x: b.conv2d(x, 16, (1, 1)), nhwc),
        "conv_3x3_s2_relu": _one(
            lambda b, x: b.conv2d(x, 8, (3, 3), (2, 2), activation="RELU"), nhwc
        ),
        "depthwise_3x3": _one(lambda b, x: b.depthwise_conv2d(x, 1, (3, 3)), nhwc),
        "depthwise_5x5_s2_x2": _one(lambda b, x: b.depthwise_conv2d(x, 2, (5, 5), (2, 2)), nhwc),
        "fc_batch1": _one(lambda b, x: b.fully_connected(x, 10, per_channel=True), [1, 64]),
        "fc_batch2": _one(lambda b, x: b.fully_connected(x, 10), [2, 64], 0),
        "fc_batch3_offset": _one(lambda b, x: b.fully_connected(x, 12), [3, 40]),
        "avg_pool": _one(lambda b, x: b.pool("AVERAGE", x, (2, 2), (2, 2)), nhwc),
        "max_pool_same": _one(lambda b, x: b.pool("MAX", x, (3, 3), (1, 1), "SAME"), nhwc),
        "add": _one(lambda b, x: b.elementwise("ADD", x, b.constant(nhwc)), nhwc),
        "mul_broadcast": _one(
            lambda b, x: b.elementwise("MUL", x, b.constant([1, 1, 1, 16])), nhwc
        ),
        **{
            kind.lower(): _one(lambda b, x, k=kind: b.unary(k, x), nhwc)  # type: ignore[misc]
            for kind in ("RELU", "RELU6", "HARD_SWISH", "LOGISTIC")
        },
        "softmax": _one(lambda b, x: b.softmax(x), [4, 32]),
        "pad": _one(lambda b, x: b.pad(x, [(0, 0), (1, 1), (2, 0), (0, 0)]), nhwc),
        "concatenation": _one(lambda b, x: b.concatenation([x, x, x], 3), nhwc),
        "transpose": _one(lambda b, x: b.transpose(x, [0, 2, 1, 3]), nhwc),
        "reshape": _one(lambda b, x: b.reshape(x, [1, 144, 16]), nhwc),
        "mean": _one(lambda b, x: b.mean(x, [1, 2], keep_dims=False), nhwc),
        "mean_keep": _one(lambda b, x: b.mean(x, [2], keep_dims=True), nhwc),
        "block": _one(lambda b, x: _block(b, x, 96), [1, 16, 16, 16]),
    }


def chain_models() -> dict[str, bytes]:
    """Four blocks, their first N fused as one chain (N = 2, 3, 4), in rows and in window
    mode: the plan is made with that choice (the compiler's own may differ)."""
    b = ModelBuilder(seed=0)
    x = b.input([1, 16, 16, 16], 0.05, -3)
    for _ in range(4):
        x = _block(b, x, 48)
    data = b.build([x])
    graph = read_model(data)
    chains = chain_candidates(graph, find_blocks(graph))
    models = {}
    for chain in chains:
        if chain.stages[0].ops[0] == 0:
            for window in (False, True):
                fused = dataclasses.replace(chain, window=window)
                name = f"chain_{len(chain.stages)}_{'window' if window else 'rows'}"
                models[name] = write_plan(data, plan_with_blocks(graph, [fused]))
    return models


def other_models() -> dict[str, bytes]:
    """QUANTIZE and DEQUANTIZE (never alone: float edges around an int8 body) and networks
    whose plans fuse blocks and chains."""
    return {
        "op_quantize_dequantize.tflite": (
            ROOT / "models/op_quantize_dequantize.tflite"
        ).read_bytes(),
        "mobilenetv2_small.tflite": (ROOT / "models/mobilenetv2_small.tflite").read_bytes(),
        "mcunet_class_48": mcunet_class(48),
    }


def measure_core(cpu: str, work: Path) -> dict[str, Any]:
    build = work / f"build-{cpu}"
    build_library(build, cpu)
    alone: dict[str, int] = {}  # the largest high-water mark of a model running only it
    within: dict[str, int] = {}  # the least of a model running it among others
    code = 0
    runs = [
        (name, data, plan)
        for plan in ("ring", "ring-window")
        for name, data in {**single_kernel_models(), **other_models()}.items()
    ]
    runs += [(name, data, "model") for name, data in chain_models().items()]
    for name, data, plan in runs:
        host = host_run(data, name=name, plan=plan)
        r = firmware(data, cpu, build_dir=build, out_dir=work / "out", host=host, count=False)
        if not r.bit_exact or r.stack_bytes is None:
            raise SystemExit(f"{name} on {cpu}: {r.verdict}\n{r.console}")
        keys = stack_keys(read_model(host.model))
        # The deepest call of a model with fused blocks is its longest chain's.
        fused = [k for k in FUSED_KEYS if k in keys]
        deepest = fused[-1] if fused else next(iter(keys)) if len(keys) == 1 else None
        for key in keys:
            if key == deepest:
                alone[key] = max(alone.get(key, 0), r.stack_bytes)
            else:
                within[key] = min(within.get(key, r.stack_bytes), r.stack_bytes)
        code = max(code, r.flash_bytes - len(host.model) - io_bytes(host.inputs, host.outputs))
        print(f"{cpu} {plan:11} {name:30} {' '.join(sorted(keys)):40} {r.stack_bytes:5}")
    stack = {**within, **alone}
    missing = [k for k in [op.name for op in SUPPORTED_OPS] + EXTRA_KEYS if k not in stack]
    if missing:
        raise SystemExit(f"no model measures {', '.join(missing)}")
    return {"code_bytes": code, "stack_bytes": dict(sorted(stack.items()))}


def check(cpus: Sequence[str], work: Path) -> str:
    """Markdown: predicted against measured RAM and flash, per model and core."""
    figures.cache_clear()
    rows = []
    for cpu in cpus:
        build = work / f"check-{cpu}"
        build_library(build, cpu)
        for path in default_models():
            host = host_run(path)
            try:
                check_fits(host)
            except TflmVmcuError:
                continue  # larger than the board's RAM
            r = firmware(path, cpu, build_dir=build, out_dir=work / "out", host=host, count=False)
            need = needs(host.model, cpu)
            if not r.bit_exact or r.ram_bytes is None or r.stack_bytes is None:
                raise SystemExit(f"{path.name} on {cpu}: {r.verdict}")
            program = r.flash_bytes - io_bytes(host.inputs, host.outputs)
            rows.append(
                f"| {path.name} | {cpu[7:].upper()} | {need.ram_bytes:,} | {r.ram_bytes:,} | "
                f"{(need.ram_bytes - r.ram_bytes) / r.ram_bytes:+.2%} | "
                f"{need.stack_bytes:,} | {r.stack_bytes:,} | {need.flash_bytes:,} | {program:,} | "
                f"{(need.flash_bytes - program) / program:+.2%} |"
            )
            print(rows[-1], flush=True)
    errors = [abs(float(r.split("|")[5].strip(" %+"))) for r in rows]
    return "\n".join(
        [
            "# `tflm-vmcu fit`: predicted against measured",
            "",
            "Predicted on the host without a toolchain (tflm_vmcu/device.py: the plan's pool, "
            "the runtime's state for a 32-bit Arm core, the stack figure of the deepest kernel, "
            "the runtime's code + the model) against the firmware on the QEMU board "
            "(`tflm-vmcu firmware`; flash without the harness's test input and expected "
            "output). RAM = pool + state + stack. Generated by "
            "`python benchmarks/device_figures.py`.",
            "",
            f"Largest RAM error: {max(errors):.2f}% over {len(rows)} runs.",
            "",
            "| model | core | RAM predicted | RAM measured | error | stack predicted | "
            "stack measured | flash predicted | flash measured | error |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "tflm_vmcu" / "device_figures.json"))
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="device-figures-") as tmp:
        cores = {cpu: measure_core(cpu, Path(tmp)) for cpu in BOARDS}
    result = {
        "generated_by": "python benchmarks/device_figures.py",
        "commit": commit,
        "cores": cores,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="device-figures-") as tmp:
        table = check(("cortex-m4", "cortex-m7"), Path(tmp))
    out = ROOT / "benchmarks" / "results" / "device_figures.md"
    out.write_text(table)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
