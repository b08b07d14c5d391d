"""`tflm-vmcu firmware`: the command-line parser and the command."""

from __future__ import annotations

import argparse
import json

from .boards import BOARDS, STACK_BYTES
from .build import NO_DSP_FLAG
from .host import PLANS
from .native import firmware
from .qemu import DEFAULT_TIMEOUT_S


def add_firmware_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `tflm-vmcu firmware` on the CLI's sub-command parsers."""
    p = sub.add_parser(
        "firmware",
        help="build the model into bare-metal firmware (arm-none-eabi-gcc); run it under QEMU",
    )
    p.add_argument("model")
    p.add_argument("--cpu", choices=list(BOARDS), default="cortex-m4")
    p.add_argument(
        "--run", action="store_true", help="run under qemu-system-arm and check bit-exactness"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="DIR", help="folder for the headers, ELF and build")
    p.add_argument(
        "--build-dir",
        metavar="DIR",
        help="CMake build folder to reuse (one per core and kernel setting)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the input (as validate)")
    p.add_argument(
        "--plan",
        choices=list(PLANS),
        default="ring",
        help="memory plan: ring (tflm-vmcu compile), ring-window / ring-unfused (the same "
        "with --fusion window / off) or flat (tensor level: no overlaps, no wrap; same "
        "kernels)",
    )
    p.add_argument(
        "--no-dsp",
        dest="dsp",
        action="store_false",
        help=f"build the runtime with {NO_DSP_FLAG}: the portable conv, depthwise and fully "
        "connected loops instead of the DSP ones on Cortex-M4/M7 (its own build folder)",
    )
    p.add_argument(
        "--no-count",
        dest="count",
        action="store_false",
        help="skip the exact instruction count (QEMU plugin); report the SysTick estimate",
    )
    p.add_argument("--build-type", choices=["Release", "MinSizeRel", "Debug"], default="Release")
    p.add_argument(
        "--stack-bytes", type=int, default=STACK_BYTES, help="thread stack reserved (bytes)"
    )
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="QEMU seconds")
    p.add_argument(
        "--no-exact-memory",
        dest="exact_memory",
        action="store_false",
        help="keep the memory block sized from the host's state (skip the second build)",
    )
    p.add_argument("--corrupt-expected", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_firmware)


def cmd_firmware(args: argparse.Namespace) -> int:
    result = firmware(
        args.model,
        args.cpu,
        run=args.run,
        out_dir=args.out,
        build_dir=args.build_dir,
        seed=args.seed,
        timeout=args.timeout,
        build_type=args.build_type,
        stack_bytes=args.stack_bytes,
        exact_memory=args.exact_memory,
        corrupt_expected=args.corrupt_expected,
        plan=args.plan,
        count=args.count,
        dsp=args.dsp,
    )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        kernels = "DSP" if result.dsp else "portable"
        print(
            f"model: {result.model}  cpu: {result.cpu}  board: {result.board}  "
            f"plan: {result.plan}  kernels: {kernels}"
        )
        if result.elf:
            print(f"elf: {result.elf}")
        print(f"flash: {result.flash_bytes:,} bytes")
        if result.ran:
            print(result.console.rstrip())
            if result.ram_bytes is not None:
                print(
                    f"ram: {result.ram_bytes:,} bytes (pool {result.pool_bytes:,} + state "
                    f"{result.state_bytes:,} + stack {result.stack_bytes:,})"
                )
            if result.instructions is not None:
                print(
                    f"instructions (Invoke): {result.instructions:,} ({result.instructions_method})"
                )
            if result.ops:
                print(f"  interpreter: {result.interpreter_instructions:,}")
                for name, t in result.op_types.items():
                    per_mac = t["instructions_per_mac"]
                    extra = f", {per_mac:.2f} per MAC" if per_mac is not None else ""
                    print(f"  {name} x{t['ops']}: {t['instructions']:,}{extra}")
            print(f"result: {result.verdict}")
    if not result.ran:
        return 0
    return 0 if result.bit_exact else 2
