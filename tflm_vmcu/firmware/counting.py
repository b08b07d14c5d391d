"""Exact instruction counts: the QEMU TCG plugin (tools/qemu_insn_plugin) adds one to a
counter before every executed instruction and logs the counter whenever execution
reaches a marked address. build_plugin() builds it with the host C compiler;
invoke_sites() finds the marks in an ELF (the first instruction of Invoke(), the
instruction after its call in main(), and each kernel call in Invoke()'s loop with the
instruction after it); count_instructions() runs an ELF under QEMU with any marks;
attribute() turns the logged counts into instructions per Invoke() and per kernel call.

The marks are symbols and call sites, so another firmware kind passes its own symbols to
invoke_sites() (its Invoke(), the function whose loop calls the kernels, the kernels
called directly) and its own list of expected kernel calls to attribute().
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TflmVmcuError
from ..ir import Graph, Operator
from ..plan_format import kernel_spans
from .build import run_tool, source_dir
from .qemu import DEFAULT_TIMEOUT_S, run_qemu

PLUGIN_SOURCE = Path("tools") / "qemu_insn_plugin" / "insn_count.c"
INVOKE_SYMBOL = "_ZN9tflm_vmcu11Interpreter6InvokeEv"  # tflm_vmcu::Interpreter::Invoke()
FUSED_SYMBOL = "_ZN9tflm_vmcu14EvalBottleneck"  # tflm_vmcu::EvalBottleneck(...)
_HOST_COMPILERS = ("cc", "gcc", "clang")
_DISASM_LINE = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
# (first operator, name, MACs) of one kernel call that Invoke() makes (kernel_calls()).
KernelCall = tuple[int, str, int | None]


class PluginError(TflmVmcuError):
    """The instruction-count plugin cannot be used: no host compiler, no marks found in
    the ELF, or no counts written."""


def host_compiler() -> str | None:
    """The host C compiler that builds the plugin (None when there is none)."""
    for name in _HOST_COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def build_plugin(directory: Path) -> Path:
    """Builds the instruction-count plugin (tools/qemu_insn_plugin/insn_count.c) into
    DIRECTORY/qemu_insn_plugin/ with the host C compiler, unless it is up to date."""
    source = source_dir() / PLUGIN_SOURCE
    if not source.is_file():
        raise TflmVmcuError(f"the QEMU plugin source {source} is missing")
    cc = host_compiler()
    if cc is None:
        raise PluginError("no host C compiler (cc, gcc or clang) to build the QEMU plugin")
    lib = directory / "qemu_insn_plugin" / "libinsn_count.so"
    if lib.is_file() and lib.stat().st_mtime >= source.stat().st_mtime:
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_name(f".{lib.name}.{os.getpid()}")
    run_tool(
        [cc, "-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-o", str(tmp), str(source)],
        "building the QEMU instruction-count plugin",
    )
    tmp.replace(lib)
    return lib


@dataclass(frozen=True)
class InvokeSites:
    """Addresses in the firmware ELF that delimit Invoke() and each kernel call."""

    invoke_entry: int  # first instruction of Interpreter::Invoke()
    invoke_return: int  # the instruction after main()'s call to Invoke()
    eval_calls: tuple[tuple[int, int], ...]  # (blx to a kernel's eval, instruction after)

    @property
    def marks(self) -> list[int]:
        marks = [self.invoke_entry, self.invoke_return]
        for call, ret in self.eval_calls:
            marks += [call, ret]
        return marks


def _disassemble(elf: Path, symbol: str) -> list[tuple[int, str, str]]:
    """(address, mnemonic, operands) of every instruction of `symbol`."""
    out = run_tool(
        ["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", f"--disassemble={symbol}", str(elf)],
        "arm-none-eabi-objdump",
    )
    lines = []
    for line in out.splitlines():
        m = _DISASM_LINE.match(line)
        if m and not m.group(2).startswith("."):
            lines.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return lines


def invoke_sites(
    elf: Path,
    *,
    invoke_symbol: str = INVOKE_SYMBOL,
    loop_symbol: str | None = None,
    kernel_symbols: Sequence[str] = (FUSED_SYMBOL,),
) -> InvokeSites:
    """Finds Invoke(), main()'s call to it and the kernel call(s) in its loop.

    `invoke_symbol` is the (mangled) Invoke() that main() calls once; `loop_symbol` the
    function whose loop calls the kernels (default: Invoke() itself). A kernel call is
    a `blx` through a register (a kernel's eval pointer) or a `bl` to a symbol that
    contains one of `kernel_symbols` (by default the fused inverted bottleneck)."""
    loop = invoke_symbol if loop_symbol is None else loop_symbol
    for tool in ("arm-none-eabi-objdump", "arm-none-eabi-nm"):
        if shutil.which(tool) is None:
            raise PluginError(f"{tool} not found: install binutils-arm-none-eabi")
    symbols = {}
    for line in run_tool(["arm-none-eabi-nm", str(elf)], "arm-none-eabi-nm").splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16) & ~1
    for name in dict.fromkeys((invoke_symbol, loop)):
        if name not in symbols or "main" not in symbols:
            raise PluginError(f"{elf.name} has no {name} or main")
    main = _disassemble(elf, "main")
    returns = [
        main[i + 1][0]
        for i, (_, mnemonic, operands) in enumerate(main[:-1])
        if mnemonic.startswith("bl") and f"<{invoke_symbol}>" in operands
    ]
    body = _disassemble(elf, loop)
    # Kernel calls: through a kernel's eval pointer, or to the fused inverted bottleneck.
    calls = tuple(
        (addr, body[i + 1][0])
        for i, (addr, mnemonic, operands) in enumerate(body[:-1])
        if (mnemonic == "blx" and re.fullmatch(r"r\d+|ip|lr", operands.strip()))
        or (mnemonic.startswith("bl") and any(k in operands for k in kernel_symbols))
    )
    if len(returns) != 1 or not calls:
        raise PluginError(
            f"{elf.name}: expected one call of Invoke() in main and a kernel call in it, "
            f"found {len(returns)} and {len(calls)}"
        )
    return InvokeSites(symbols[invoke_symbol], returns[0], calls)


@dataclass
class InstructionCounts:
    """What the plugin counted in one run."""

    total: int  # every instruction QEMU executed, reset to exit
    events: list[tuple[int, int]]  # (marked address, instructions before it)
    ranges: dict[str, int]  # name -> instructions executed in its address range
    events_dropped: int = 0


def plugin_arguments(
    out: Path, marks: list[int], ranges: dict[str, tuple[int, int]] | None = None
) -> str:
    args = [f"out={out}"] + [f"mark={a:#x}" for a in marks]
    for name, (lo, hi) in (ranges or {}).items():
        if not re.fullmatch(r"[\w.$]+", name):
            raise TflmVmcuError(f"range name '{name}' must be a plain symbol name")
        args.append(f"range={name}@{lo:#x}-{hi:#x}")
    return ",".join(args)


def read_counts(path: Path) -> InstructionCounts:
    data = json.loads(path.read_text())
    return InstructionCounts(
        total=int(data["total"]),
        events=[(int(a), int(c)) for a, c in data["events"]],
        ranges={r["name"]: int(r["count"]) for r in data["ranges"]},
        events_dropped=int(data["events_dropped"]),
    )


@dataclass
class OpCount:
    """Instructions of one operator (or one fused block, indexed by its first operator): its
    kernel's eval and everything it calls."""

    index: int
    opcode: str
    instructions: int
    macs: int | None  # multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED

    @property
    def instructions_per_mac(self) -> float | None:
        return self.instructions / self.macs if self.macs else None


def op_macs(graph: Graph, op: Operator) -> int | None:
    """Multiply-accumulates of a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED op (one per
    filter tap and output element); None for other ops."""
    if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return None
    if len(op.inputs) < 2 or not op.outputs or op.inputs[1] < 0:
        return None
    out = graph.tensors[op.outputs[0]].shape
    flt = graph.tensors[op.inputs[1]].shape
    outputs = int(np.prod(out, dtype=np.int64))
    if op.opcode == "CONV_2D":  # filter [Cout, KH, KW, Cin per group]
        return outputs * int(np.prod(flt[1:], dtype=np.int64))
    if op.opcode == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, Cout]
        return outputs * int(np.prod(flt[1:3], dtype=np.int64))
    return outputs * int(flt[-1])  # FULLY_CONNECTED: filter [units, depth]


def kernel_calls(graph: Graph) -> list[KernelCall]:
    """(first operator, name, MACs) of each kernel call Invoke() makes, in order: one per
    operator, except one per fused block of the model's plan (kernel_spans)."""
    out: list[KernelCall] = []
    for first, last in kernel_spans(graph):
        if first == last:
            op = graph.operators[first]
            out.append((first, op.opcode, op_macs(graph, op)))
            continue
        fused = graph.operators[first : last + 1]
        macs = [op_macs(graph, op) for op in fused]
        name = "FUSED " + " > ".join(op.opcode for op in fused)
        out.append((first, name, sum(m for m in macs if m is not None)))
    return out


def attribute(
    counts: InstructionCounts,
    sites: InvokeSites,
    graph: Graph,
    calls: list[KernelCall] | None = None,
) -> tuple[int, list[OpCount]]:
    """Instructions of the first Invoke() (its first instruction up to its return) and of
    each kernel call in it (from its kernel's first instruction up to its return).
    `calls` are the kernel calls expected in order (default: kernel_calls(graph))."""
    if counts.events_dropped:
        raise TflmVmcuError(f"the plugin dropped {counts.events_dropped} marks")
    expected = kernel_calls(graph) if calls is None else calls
    call_marks = {c for c, _ in sites.eval_calls}
    rets = {r for _, r in sites.eval_calls}
    start = next((i for i, (a, _) in enumerate(counts.events) if a == sites.invoke_entry), None)
    if start is None:
        raise TflmVmcuError("Invoke() was never reached")
    entry = counts.events[start][1]
    ops: list[OpCount] = []
    pending: int | None = None
    for addr, count in counts.events[start + 1 :]:
        if addr == sites.invoke_return:
            if pending is not None or len(ops) != len(expected):
                raise TflmVmcuError(f"Invoke() made {len(ops)} of {len(expected)} kernel calls")
            return count - entry, ops
        if addr in call_marks and pending is None:
            pending = count
        elif addr in rets and pending is not None:
            if len(ops) >= len(expected):
                raise TflmVmcuError("more kernel calls than operators")
            index, name, macs = expected[len(ops)]
            # count - pending covers the blx itself and the kernel: count the kernel only.
            ops.append(OpCount(index, name, count - pending - 1, macs))
            pending = None
        else:
            raise TflmVmcuError(f"unexpected mark at {addr:#x} inside Invoke()")
    raise TflmVmcuError("Invoke() did not return")


def op_type_totals(ops: list[OpCount]) -> dict[str, dict[str, Any]]:
    """Per op type: number of ops, instructions, MACs and instructions per MAC."""
    totals: dict[str, dict[str, Any]] = {}
    for op in ops:
        t = totals.setdefault(op.opcode, {"ops": 0, "instructions": 0, "macs": None})
        t["ops"] += 1
        t["instructions"] += op.instructions
        if op.macs is not None:
            t["macs"] = (t["macs"] or 0) + op.macs
    for t in totals.values():
        t["instructions_per_mac"] = t["instructions"] / t["macs"] if t["macs"] else None
    return dict(sorted(totals.items(), key=lambda kv: -int(kv[1]["instructions"])))


def count_instructions(
    elf: Path,
    board: str,
    plugin_lib: Path,
    marks: list[int],
    ranges: dict[str, tuple[int, int]] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[int, str, InstructionCounts]:
    """Runs the firmware under the plugin: exit code, console and the counts. The plugin
    writes its counts when QEMU exits, also after a fault; PluginError when it wrote
    none (e.g. a QEMU built without plugin support)."""
    with tempfile.TemporaryDirectory(prefix="tflm-vmcu-count-") as tmp:
        out = Path(tmp) / "counts.json"
        plugin = f"{plugin_lib},{plugin_arguments(out, marks, ranges)}"
        code, console = run_qemu(elf, board, timeout, plugin)
        if not out.is_file():
            first = console.strip().splitlines()[:1] or [f"exit code {code}"]
            raise PluginError(f"the QEMU plugin wrote no counts: {first[0]}")
        return code, console, read_counts(out)
