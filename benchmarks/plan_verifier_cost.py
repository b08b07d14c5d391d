"""What proving a plan safe at load costs: the plan verifier (cpp/src/plan_verifier.cc) on
the host and on Cortex-M4 (QEMU), per model, beside what the model itself costs.

    python benchmarks/plan_verifier_cost.py [--models M ...] [--no-qemu]

Host: median wall time of AllocateTensors() with the verifier and trusting the plan (the
same call with `verify_plan=False`), over repeated runs. Cortex-M4: the firmware harness
calls AllocateTensors() twice in one run, trusting the plan and then verifying it, and
reports both instruction counts (SysTick under QEMU -icount); the difference is the
verifier's. Flash: the verifier's code (plan_verifier.cc and the access-order models of
access_order.cc, which only the verifier links on a device) as arm-none-eabi-size reports
it for the Cortex-M4 build. Builds with -DTFLM_VMCU_VERIFY_PLAN=OFF leave both out.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from model_set import default_models

from tflm_vmcu._runtime import Runtime
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import firmware, missing_tools

REPEATS = 30
VERIFIER_OBJECTS = ("plan_verifier.cc.obj", "access_order.cc.obj")


def host_seconds(model: bytes, memory: int, verify: bool) -> float:
    times = []
    for _ in range(REPEATS):
        rt = Runtime(model, memory, verify)
        t0 = time.perf_counter()
        status = rt.allocate()
        times.append(time.perf_counter() - t0)
        if status != 0:
            raise TflmVmcuError(rt.error())
    return statistics.median(times)


def text_bytes(build_dir: Path) -> int | None:
    objs = [p for name in VERIFIER_OBJECTS for p in build_dir.rglob(name)]
    if len(objs) != len(VERIFIER_OBJECTS):
        return None
    out = subprocess.run(
        ["arm-none-eabi-size", *map(str, objs)], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", type=Path, default=None)
    parser.add_argument("--no-qemu", action="store_true", help="host figures only")
    args = parser.parse_args()
    qemu = not args.no_qemu and not missing_tools(run=True)
    rows = []
    flash: int | None = None
    with tempfile.TemporaryDirectory(prefix="verifier-cost-") as tmp:
        build = Path(tmp) / "build-cortex-m4"
        for path in args.models or default_models():
            compiled = compile_bytes(path.read_bytes()).model
            probe = Runtime(compiled, 1 << 26, True)
            if probe.allocate() != 0:
                print(f"{path.name}: skipped ({probe.error()})")
                continue
            memory = probe.pool_bytes() + probe.state_bytes() + 64
            verified = host_seconds(compiled, memory, True)
            trusted = host_seconds(compiled, memory, False)
            row = [
                path.name,
                f"{probe.num_tensors():,}",
                f"{verified * 1e6:,.0f}",
                f"{(verified - trusted) * 1e6:,.0f}",
            ]
            if qemu:
                fw = firmware(compiled, "cortex-m4", build_dir=build, count=False)
                if (
                    not fw.bit_exact
                    or fw.allocate_instructions is None
                    or fw.verifier_instructions is None
                    or fw.instructions is None
                ):
                    raise TflmVmcuError(f"{path.name}: firmware run failed: {fw.verdict}")
                row += [
                    f"{fw.allocate_instructions:,}",
                    f"{fw.verifier_instructions:,}",
                    f"{fw.instructions:,}",
                    f"{fw.verifier_instructions / fw.instructions:.3f}",
                ]
                flash = text_bytes(build)
            rows.append(row)
    head = ["model", "tensors", "host allocate µs", "host verifier µs"]
    if qemu:
        head += ["M4 allocate insns", "M4 verifier insns", "M4 invoke insns", "verifier/invoke"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if flash is not None:
        print(f"\nverifier code on Cortex-M4 (plan_verifier.cc + access_order.cc): {flash:,} bytes")


if __name__ == "__main__":
    main()
