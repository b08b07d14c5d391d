"""`tflm-vmcu firmware`: the command-line parser and the command. `--runtime tflm-vmcu` (the
default) builds the runtime's own firmware (native.py); `--runtime tflm-plugin` TFLM with
the plug-in beside stock TFLM, from the TFLM tree of `--tflm-source` (tflm_plugin.py)."""

from __future__ import annotations

import argparse
from typing import Any

from ..json_output import emit
from .boards import BOARDS, STACK_BYTES
from .build import NO_DSP_FLAG
from .host import PLANS
from .native import firmware
from .qemu import DEFAULT_TIMEOUT_S
from .tflm_plugin import PluginFirmwareResult, firmware_plugin


def add_firmware_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Registers `tflm-vmcu firmware` on the CLI's sub-command parsers."""
    p = sub.add_parser(
        "firmware",
        help="build the model into bare-metal firmware (arm-none-eabi-gcc); run it under QEMU",
    )
    p.add_argument("model")
    p.add_argument("--cpu", choices=list(BOARDS), default="cortex-m4")
    p.add_argument(
        "--runtime",
        choices=["tflm-vmcu", "tflm-plugin"],
        default="tflm-vmcu",
        help="tflm-vmcu: this runtime's own firmware; tflm-plugin: MODEL (compiled with "
        "--target tflm-plugin) in TFLM + the plug-in, and without its plan in stock TFLM, "
        "both built from --tflm-source (e.g. TFLM's cmsis_nn tree)",
    )
    p.add_argument(
        "--tflm-source", metavar="DIR", help="a TFLM source tree (for --runtime tflm-plugin)"
    )
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
        "with --fusion window / off), flat (tensor level: no overlaps, no wrap; same "
        "kernels) or model (the plan the model carries, as compiled)",
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
    p.add_argument("--corrupt-expected", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_firmware)


def cmd_firmware(args: argparse.Namespace) -> int:
    if args.runtime == "tflm-plugin":
        return _cmd_plugin(args)
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
        corrupt_expected=args.corrupt_expected,
        plan=args.plan,
        count=args.count,
        dsp=args.dsp,
    )
    if args.json:
        emit("firmware", result.to_json())
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


def _cmd_plugin(args: argparse.Namespace) -> int:
    from ..errors import TflmVmcuError

    if args.tflm_source is None:
        raise TflmVmcuError("--runtime tflm-plugin needs --tflm-source DIR (a TFLM source tree)")
    if args.plan != "ring" or not args.dsp:
        raise TflmVmcuError("--plan and --no-dsp apply to --runtime tflm-vmcu only")
    result = firmware_plugin(
        args.model,
        args.tflm_source,
        args.cpu,
        run=args.run,
        out_dir=args.out,
        seed=args.seed,
        timeout=args.timeout,
        stack_bytes=args.stack_bytes,
        count=args.count,
        corrupt_expected=args.corrupt_expected,
    )
    if args.json:
        emit("firmware", result.to_json())
    else:
        _print_plugin(result)
    if not result.ran:
        return 0
    return 0 if result.bit_exact else 2


def _ratio(ours: int | None, theirs: int | None) -> str:
    return f" ({ours / theirs:.3f}x stock)" if ours is not None and theirs else ""


def _print_plugin(r: PluginFirmwareResult) -> None:
    print(
        f"model: {r.model}  cpu: {r.cpu}  board: {r.board}  TFLM: {r.tflm_source} "
        f"({r.kernels} kernels)"
    )
    print(
        f"operators: {r.ring_ops} on ring kernels, {r.tflm_ops} on TFLM kernels, "
        f"{r.fused_blocks} fused blocks"
    )
    if r.elf:
        print(f"elf: {r.elf} (stock: {r.stock_elf})")
    print(f"flash: {r.flash_bytes:,} bytes (stock TFLM {r.stock_flash_bytes or 0:,})")
    if not r.ran:
        return
    print(r.console.rstrip())
    if r.arena_bytes is not None:
        print(
            f"arena: {r.arena_bytes:,} bytes{_ratio(r.arena_bytes, r.stock_arena_bytes)}, "
            f"stock TFLM {r.stock_arena_bytes or 0:,}"
        )
    if r.ram_bytes is not None:
        print(f"ram: {r.ram_bytes:,} bytes (arena + stack {r.stack_bytes:,})")
    if r.instructions is not None:
        print(
            f"instructions (Invoke): {r.instructions:,}"
            f"{_ratio(r.instructions, r.stock_instructions)}, stock TFLM "
            f"{r.stock_instructions or 0:,} ({r.instructions_method})"
        )
    if r.ops and r.stock_ops and all(r.stock_ops_of):
        print(f"  {'operator':<36} {'plug-in':>12} {'stock':>12}")
        for ours, theirs in zip(r.ops, r.stock_ops_of, strict=True):
            stock = sum(r.stock_ops[k].instructions for k in theirs)
            name = ours.opcode if len(theirs) == 1 else f"{ours.opcode} ({len(theirs)} ops)"
            print(f"  {ours.index:>3} {name:<32} {ours.instructions:>12,} {stock:>12,}")
    print(f"result: {r.verdict}")
