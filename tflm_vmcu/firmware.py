"""Bare-metal firmware for one model: compile it with the ring plan (or a flat,
tensor-level plan), compute the expected output with the host runtime, build firmware/
for a Cortex-M core with arm-none-eabi-gcc (cmake/arm-none-eabi.cmake) and run it under
QEMU on an MPS2 board. The firmware compares its output with the host's bit for bit and
exits 0 only on a match.

    tflm-vmcu firmware MODEL --cpu cortex-m4 --run [--json] [--out DIR] [--plan ring|flat]
                             [--no-dsp]

A build folder holds the runtime library and the startup code compiled once for one core;
each further model only recompiles main.cc and relinks (pass the same --build-dir).

On cores with the Armv7E-M DSP extension (Cortex-M4, M7), CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED use their DSP loops (cpp/src/kernels/dsp.h). --no-dsp builds the runtime
with -DTFLM_VMCU_NO_DSP (through TFLM_VMCU_EXTRA_FLAGS), so the same core runs the portable
loops, e.g. to compare the two. The setting is fixed when a build folder is configured: the
default folder is named after it (build-CPU or build-CPU-nodsp), and a --build-dir
configured for the other setting is refused.

Instruction counts are exact: QEMU runs with a TCG plugin (tools/qemu_insn_plugin) that
adds one to a counter before every executed instruction and logs the counter whenever
execution reaches a marked address. The marks are the first instruction of
Interpreter::Invoke(), the instruction after its call in main(), and the kernel call in
Invoke()'s loop with the instruction after it (found in the ELF with arm-none-eabi-nm and
-objdump). Invoke() costs the count between the first two; each operator costs the count
between its kernel call and the return, so a kernel's count includes everything it
calls (helpers, memcpy). When the plugin cannot be built (no host C compiler) or
loaded, the count falls back to the SysTick estimate under -icount, and the result says
why.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TflmVmcuError
from .export import c_source
from .ir import Graph, Operator
from .lifetimes import lifetimes
from .plan_format import read_plan, write_plan
from .planner.plan import Placement, Plan
from .planner.ring import flat_offsets
from .quant import channel_params
from .reader import load_bytes, read_model

# Cores with a QEMU board. Each board has 4 MiB of code memory at 0x0 and 4 MiB of RAM
# at 0x20000000 (firmware/mps2.ld).
BOARDS = {"cortex-m3": "mps2-an385", "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
BOARD_RAM_BYTES = 4 << 20
BOARD_FLASH_BYTES = 4 << 20
STACK_BYTES = 64 * 1024  # thread stack reserved and painted (firmware/mps2.ld)
HANDLER_STACK_BYTES = 2048
STATIC_RESERVE_BYTES = 1024  # .data and the rest of .bss (the firmware keeps little)
# Added to the host's pool + state: the state is smaller on a 32-bit core.
MEMORY_MARGIN_BYTES = 64
DEFAULT_TIMEOUT_S = 120.0
# Memory plans the firmware can run: the ring plan of `tflm-vmcu compile`, or a flat,
# tensor-level plan (every live tensor in its own bytes: no overlaps, nothing wraps) for
# the same runtime and kernels.
PLANS = ("ring", "ring-window", "ring-unfused", "flat")
FLAT_SEGMENT_BYTES = 16  # flat plan: tensors 16-byte aligned, as TFLM's planner
# Cores with the Armv7E-M DSP extension: their kernels use the DSP loops unless the
# runtime is built with NO_DSP_FLAG (firmware(dsp=False), `--no-dsp`).
DSP_CPUS = frozenset({"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"})
NO_DSP_FLAG = "-DTFLM_VMCU_NO_DSP"

# Exit codes of the firmware (firmware/firmware.h).
EXIT_CODES = {
    0: "bit-exact",
    1: "output differs from the host's",
    2: "AllocateTensors failed",
    3: "Invoke failed",
    4: "the generated headers do not match the model",
    5: "stack overflow",
}
FAULT_BASE = 128
EXCEPTIONS = {2: "NMI", 3: "HardFault", 4: "MemManage", 5: "BusFault", 6: "UsageFault"}

_REPORT = re.compile(r"^report:(.*)$", re.MULTILINE)
_FIELD = re.compile(r"(\w+)=(\d+)")


def source_dir() -> Path:
    """The source checkout that holds firmware/, cmake/ and cpp/ (TFLM_VMCU_SOURCE_DIR
    overrides)."""
    env = os.environ.get("TFLM_VMCU_SOURCE_DIR")
    root = Path(env) if env else Path(__file__).resolve().parent.parent
    if (
        not (root / "firmware" / "CMakeLists.txt").is_file()
        or not (root / "cmake" / "arm-none-eabi.cmake").is_file()
    ):
        raise TflmVmcuError(
            f"firmware sources not found under {root}: run from a source checkout "
            "or set TFLM_VMCU_SOURCE_DIR"
        )
    return root


def describe_exit(code: int) -> str:
    if code in EXIT_CODES:
        return EXIT_CODES[code]
    if code >= FAULT_BASE:
        number = code - FAULT_BASE
        return f"fault: {EXCEPTIONS.get(number, 'exception')} (exception {number})"
    return f"exit code {code}"


_TOOL_HINTS = {
    "arm-none-eabi-gcc": "install the GNU Arm toolchain (Debian: apt-get install "
    "gcc-arm-none-eabi binutils-arm-none-eabi libnewlib-arm-none-eabi)",
    "arm-none-eabi-size": "install binutils-arm-none-eabi",
    "cmake": "install CMake >= 3.18 (pip install cmake)",
    "qemu-system-arm": "install QEMU (Debian: apt-get install qemu-system-arm)",
}


def missing_tools(run: bool = True) -> list[str]:
    """Names of the programs the firmware needs that are not on PATH."""
    names = ["arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "cmake"]
    if run:
        names.append("qemu-system-arm")
    return [n for n in names if shutil.which(n) is None]


def check_tools(run: bool = True) -> None:
    missing = missing_tools(run)
    if missing:
        name = missing[0]
        hint = _TOOL_HINTS.get(name, _TOOL_HINTS["arm-none-eabi-gcc"])
        raise TflmVmcuError(f"{name} not found: {hint}")


def _board(cpu: str) -> str:
    if cpu not in BOARDS:
        raise TflmVmcuError(f"no QEMU board for '{cpu}' (choose from {', '.join(BOARDS)})")
    return BOARDS[cpu]


# --- host side: compile, expected output, headers --------------------------------------


@dataclass
class HostRun:
    """The compiled model and what the host runtime computed on one seeded input."""

    name: str
    model: bytes
    inputs: list[bytes]
    outputs: list[bytes]
    pool_bytes: int
    state_bytes: int  # on the host (64-bit pointers)
    seed: int
    target_state_bytes: int | None = None  # as the core reported it, once known
    plan: str = "ring"  # "ring" or "flat" (PLANS)

    @property
    def memory_bytes(self) -> int:
        """The firmware's memory block: pool + state (the core's when known, else the
        host's, which is larger) + a margin, rounded up to 16."""
        state = self.target_state_bytes or self.state_bytes
        return -(-(self.pool_bytes + state + MEMORY_MARGIN_BYTES) // 16) * 16


def flat_plan(graph: Graph, segment_bytes: int = FLAT_SEGMENT_BYTES) -> Plan:
    """A tensor-level plan: every activation tensor in its own bytes while it is live (no
    overlaps, nothing wraps), placed first fit, largest first. Tensors whose lifetimes
    do not meet share bytes, as in TFLM's planner. It carries the same precomputed
    per-channel parameters as the ring plan, so both plans run the same kernel code."""
    lts = {lt.tensor: lt for lt in lifetimes(graph)}
    pool, offsets = flat_offsets(lts, segment_bytes)
    placements = {
        t: Placement(t, graph.tensors[t].name, offsets[t], lt.nbytes, lt.first, lt.last)
        for t, lt in lts.items()
    }
    plan = Plan(pool, segment_bytes, placements, "tensor")
    for op in graph.operators:
        words = channel_params(graph, op)
        if words is not None:
            plan.op_words[op.index] = words
    return plan


def compile_for_plan(data: bytes, plan: str = "ring") -> bytes:
    """The model with its `plan` ("ring": `tflm-vmcu compile`; "ring-window" and
    "ring-unfused": the same with `--fusion window` and `--fusion off`; "flat":
    flat_plan())."""
    if plan not in PLANS:
        raise TflmVmcuError(f"unknown plan '{plan}' (choose from {', '.join(PLANS)})")
    if plan == "flat":
        return write_plan(data, flat_plan(read_model(data)))
    from .compiler import compile_bytes

    fusion = {"ring": "rows", "ring-window": "window", "ring-unfused": "off"}[plan]
    return compile_bytes(data, fusion).model


def host_run(
    model: str | Path | bytes, seed: int = 0, name: str | None = None, plan: str = "ring"
) -> HostRun:
    """Compiles `model` with `plan` ("ring" or "flat") and runs it in the host runtime on
    the seeded input of `tflm-vmcu validate --runs 1 --seed SEED`."""
    from .interpreter import Interpreter
    from .validate import make_inputs

    data = load_bytes(model)
    compiled = compile_for_plan(data, plan)
    arrays = make_inputs(read_model(compiled), 1, seed)[0]
    if not arrays:
        raise TflmVmcuError("the model has no inputs")
    interp = Interpreter(compiled)
    for d, a in zip(interp.get_input_details(), arrays, strict=True):
        interp.set_tensor(d["index"], a)
    interp.invoke()
    outputs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    if name is None:
        name = Path(model).name if isinstance(model, (str, Path)) else "model"
    return HostRun(
        name=name,
        model=compiled,
        inputs=[np.ascontiguousarray(a).tobytes() for a in arrays],
        outputs=[np.ascontiguousarray(o).tobytes() for o in outputs],
        pool_bytes=interp.activation_bytes,
        state_bytes=interp.state_bytes,
        seed=seed,
        plan=plan,
    )


def _c_bytes(name: str, data: bytes) -> str:
    rows = (", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16))
    body = ",\n".join(f"    {row}" for row in rows)
    return f"static const unsigned char {name}[{len(data)}] = {{\n{body}\n}};\n"


def io_header(run: HostRun, corrupt_expected: bool = False) -> str:
    """model_io.h: the input and the expected output bytes for firmware/main.cc. With
    `corrupt_expected`, one expected byte is flipped (to check the verdict is real)."""
    expected = [bytearray(o) for o in run.outputs]
    if corrupt_expected:
        expected[0][0] ^= 0x01
    label = re.sub(r"[^A-Za-z0-9_.+-]", "_", run.name)
    parts = [
        f"/* Generated by `tflm-vmcu firmware`: input and expected output of {label}\n"
        f" * (seed {run.seed}, computed by the host runtime), for firmware/main.cc. */\n",
        "#ifndef TFLM_VMCU_FIRMWARE_MODEL_IO_H_\n#define TFLM_VMCU_FIRMWARE_MODEL_IO_H_\n\n",
        f'#define FW_MODEL_NAME "{label}"\n',
        f"#define FW_NUM_INPUTS {len(run.inputs)}\n",
        f"#define FW_NUM_OUTPUTS {len(expected)}\n",
        f"#define FW_HOST_POOL_BYTES {run.pool_bytes}\n",
        f"#define FW_HOST_STATE_BYTES {run.state_bytes}\n",
        f"#define FW_EXPECTED_CORRUPTED {int(corrupt_expected)}\n\n",
    ]
    parts += [_c_bytes(f"fw_input_{i}", bytes(b)) for i, b in enumerate(run.inputs)]
    parts += [_c_bytes(f"fw_expected_{i}", bytes(b)) for i, b in enumerate(expected)]
    for kind, items in (("inputs", run.inputs), ("expected", expected)):
        prefix = "fw_input" if kind == "inputs" else "fw_expected"
        ptrs = ", ".join(f"{prefix}_{i}" for i in range(len(items)))
        sizes = ", ".join(str(len(b)) for b in items)
        count = "FW_NUM_INPUTS" if kind == "inputs" else "FW_NUM_OUTPUTS"
        size_name = "fw_input_bytes" if kind == "inputs" else "fw_expected_bytes"
        parts.append(f"\nstatic const unsigned char* const fw_{kind}[{count}] = {{{ptrs}}};\n")
        parts.append(f"static const unsigned int {size_name}[{count}] = {{{sizes}}};\n")
    parts.append("\n#endif /* TFLM_VMCU_FIRMWARE_MODEL_IO_H_ */\n")
    return "".join(parts)


def write_headers(run: HostRun, directory: Path, corrupt_expected: bool = False) -> list[Path]:
    """Writes model_data.h and model_io.h into `directory`. A file whose content is
    unchanged is not rewritten, so an incremental build skips it."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "model_data.h": c_source(run.model, "g_model", run.memory_bytes, "tflm-vmcu"),
        "model_io.h": io_header(run, corrupt_expected),
    }
    paths = []
    for name, text in files.items():
        path = directory / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def check_fits(run: HostRun, stack_bytes: int = STACK_BYTES) -> int:
    """The static RAM the firmware needs; TflmVmcuError when the board lacks it."""
    ram = run.memory_bytes + stack_bytes + HANDLER_STACK_BYTES + STATIC_RESERVE_BYTES
    if ram > BOARD_RAM_BYTES:
        raise TflmVmcuError(
            f"model needs {ram:,} bytes of RAM (memory block {run.memory_bytes:,} + stack "
            f"{stack_bytes + HANDLER_STACK_BYTES:,}), board has {BOARD_RAM_BYTES:,}"
        )
    flash = len(run.model) + sum(map(len, run.inputs)) + sum(map(len, run.outputs))
    if flash > BOARD_FLASH_BYTES:
        raise TflmVmcuError(
            f"model needs over {flash:,} bytes of flash (model, input and expected "
            f"output), board has {BOARD_FLASH_BYTES:,}"
        )
    return ram


# --- cross build -----------------------------------------------------------------------


def _run(cmd: list[str], what: str, timeout: float | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TflmVmcuError(f"{what} timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes", out)
        if overflow:
            region, extra = overflow.groups()
            raise TflmVmcuError(
                f"the firmware does not fit the board: {region} overflowed by {int(extra):,} bytes"
            )
        if re.search(r"stdint\.h: No such file|cannot find -l(c|m|c_nano)\b", out):
            raise TflmVmcuError(
                "newlib for arm-none-eabi not found: install libnewlib-arm-none-eabi"
            )
        tail = "\n".join(out.splitlines()[-25:])
        raise TflmVmcuError(f"{what} failed:\n{tail}")
    return proc.stdout


def _cached(build_dir: Path, name: str) -> str | None:
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return None
    m = re.search(rf"^{re.escape(name)}:\w+=(.*)$", cache.read_text(), re.MULTILINE)
    return m.group(1) if m else None


def _cached_dsp(build_dir: Path) -> bool | None:
    """False when the folder's compiler flags carry NO_DSP_FLAG (portable kernels), True
    when they do not, None when the folder is not configured."""
    flags = _cached(build_dir, "CMAKE_CXX_FLAGS")
    if flags is None:
        flags = _cached(build_dir, "TFLM_VMCU_EXTRA_FLAGS")
    if flags is None:
        return None
    return NO_DSP_FLAG not in flags.split()


def _kernels(dsp: bool) -> str:
    return "DSP kernels" if dsp else f"portable kernels ({NO_DSP_FLAG})"


def default_build_dir(out: Path, cpu: str, dsp: bool = True) -> Path:
    """The build folder `firmware()` uses under `out` when none is given: one per core and
    kernel setting, so the two settings never share compiled objects."""
    return out / (f"build-{cpu}" if dsp else f"build-{cpu}-nodsp")


def configure(
    build_dir: Path,
    cpu: str,
    build_type: str = "Release",
    stack_bytes: int = STACK_BYTES,
    dsp: bool = True,
) -> None:
    """Configures firmware/ for `cpu` in `build_dir` (once: later calls only check that
    the folder was configured for the same core and kernel setting). With `dsp` False,
    the runtime is compiled with NO_DSP_FLAG: the portable kernels, also on cores with
    the DSP extension. The compiler flags are fixed at the first configure, so a folder
    configured for the other setting is refused rather than reconfigured."""
    board = _board(cpu)
    check_tools(run=False)
    cached_cpu = _cached(build_dir, "TFLM_VMCU_CPU")
    cached_dsp = _cached_dsp(build_dir)
    if cached_cpu is not None:
        if cached_cpu != cpu:
            raise TflmVmcuError(
                f"build folder {build_dir} is configured for {cached_cpu}, not {cpu}: "
                "use another --build-dir"
            )
        if cached_dsp is not None and cached_dsp != dsp:
            raise TflmVmcuError(
                f"build folder {build_dir} is configured for the {_kernels(cached_dsp)}, "
                f"not the {_kernels(dsp)}: use another --build-dir"
            )
        if (
            _cached(build_dir, "CMAKE_BUILD_TYPE") == build_type
            and _cached(build_dir, "TFLM_VMCU_STACK_BYTES") == str(stack_bytes)
            and ((build_dir / "build.ninja").is_file() or (build_dir / "Makefile").is_file())
        ):
            return
    root = source_dir()
    cmd = [
        "cmake",
        "-S",
        str(root / "firmware"),
        "-B",
        str(build_dir),
        f"-DCMAKE_TOOLCHAIN_FILE={root / 'cmake' / 'arm-none-eabi.cmake'}",
        f"-DTFLM_VMCU_CPU={cpu}",
        f"-DTFLM_VMCU_BOARD={board}",
        f"-DCMAKE_BUILD_TYPE={build_type}",
        f"-DTFLM_VMCU_STACK_BYTES={stack_bytes}",
        f"-DTFLM_VMCU_FIRMWARE_GENERATED={build_dir / 'generated'}",
    ]
    if cached_dsp is None:  # a new folder (a configured one keeps its flags, checked above)
        cmd.append(f"-DTFLM_VMCU_EXTRA_FLAGS={'' if dsp else NO_DSP_FLAG}")
    if cached_cpu is None and shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    _run(cmd, "configuring the firmware (cmake)")


def build_library(build_dir: Path, cpu: str, build_type: str = "Release", dsp: bool = True) -> None:
    """Builds the runtime library and the startup code for `cpu` in `build_dir` (with the
    DSP kernels, or with `dsp` False the portable ones), so that later models only
    compile main.cc and link."""
    configure(build_dir, cpu, build_type, dsp=dsp)
    _run(
        ["cmake", "--build", str(build_dir), "--target", "tflm_vmcu", "fw_board", "--parallel"],
        "building the runtime library",
    )


def section_sizes(elf: Path) -> dict[str, int]:
    """Bytes per section (arm-none-eabi-size -A)."""
    out = _run(["arm-none-eabi-size", "-A", "-d", str(elf)], "arm-none-eabi-size")
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def flash_bytes(sizes: dict[str, int]) -> int:
    """Code memory: every loaded section outside RAM (text, rodata, exidx) plus the
    initial values of .data."""
    ram_only = {".stack", ".bss"}
    return sum(
        n
        for s, n in sizes.items()
        if s not in ram_only and not s.startswith((".debug", ".ARM.attributes", ".comment"))
    )


# --- instruction counting: the QEMU plugin and the marks ------------------------------

PLUGIN_SOURCE = Path("tools") / "qemu_insn_plugin" / "insn_count.c"
INVOKE_SYMBOL = "_ZN9tflm_vmcu11Interpreter6InvokeEv"  # tflm_vmcu::Interpreter::Invoke()
FUSED_SYMBOL = "_ZN9tflm_vmcu14EvalBottleneck"  # tflm_vmcu::EvalBottleneck(...)
_HOST_COMPILERS = ("cc", "gcc", "clang")
_DISASM_LINE = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")


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
    _run(
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
    out = _run(
        ["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", f"--disassemble={symbol}", str(elf)],
        "arm-none-eabi-objdump",
    )
    lines = []
    for line in out.splitlines():
        m = _DISASM_LINE.match(line)
        if m and not m.group(2).startswith("."):
            lines.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return lines


def invoke_sites(elf: Path) -> InvokeSites:
    """Finds Invoke(), main()'s call to it and the kernel call(s) in its loop."""
    for tool in ("arm-none-eabi-objdump", "arm-none-eabi-nm"):
        if shutil.which(tool) is None:
            raise PluginError(f"{tool} not found: install binutils-arm-none-eabi")
    symbols = {}
    for line in _run(["arm-none-eabi-nm", str(elf)], "arm-none-eabi-nm").splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16) & ~1
    if INVOKE_SYMBOL not in symbols or "main" not in symbols:
        raise PluginError(f"{elf.name} has no {INVOKE_SYMBOL} or main")
    main = _disassemble(elf, "main")
    returns = [
        main[i + 1][0]
        for i, (_, mnemonic, operands) in enumerate(main[:-1])
        if mnemonic.startswith("bl") and f"<{INVOKE_SYMBOL}>" in operands
    ]
    invoke = _disassemble(elf, INVOKE_SYMBOL)
    # Kernel calls: through a kernel's eval pointer, or to the fused inverted bottleneck.
    calls = tuple(
        (addr, invoke[i + 1][0])
        for i, (addr, mnemonic, operands) in enumerate(invoke[:-1])
        if (mnemonic == "blx" and re.fullmatch(r"r\d+|ip|lr", operands.strip()))
        or (mnemonic.startswith("bl") and FUSED_SYMBOL in operands)
    )
    if len(returns) != 1 or not calls:
        raise PluginError(
            f"{elf.name}: expected one call of Invoke() in main and a kernel call in it, "
            f"found {len(returns)} and {len(calls)}"
        )
    return InvokeSites(symbols[INVOKE_SYMBOL], returns[0], calls)


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


def kernel_calls(graph: Graph) -> list[tuple[int, str, int | None]]:
    """(first operator, name, MACs) of each kernel call Invoke() makes, in order: one per
    operator, except one per fused block of the model's plan."""
    plan = read_plan(graph)
    blocks = {b.first: b for b in plan.blocks} if plan is not None else {}
    out: list[tuple[int, str, int | None]] = []
    k = 0
    while k < len(graph.operators):
        b = blocks.get(k)
        if b is None:
            op = graph.operators[k]
            out.append((k, op.opcode, op_macs(graph, op)))
            k += 1
            continue
        fused = graph.operators[b.first : b.last + 1]
        macs = [op_macs(graph, op) for op in fused]
        name = "FUSED " + " > ".join(op.opcode for op in fused)
        out.append((k, name, sum(m for m in macs if m is not None)))
        k = b.last + 1
    return out


def attribute(
    counts: InstructionCounts, sites: InvokeSites, graph: Graph
) -> tuple[int, list[OpCount]]:
    """Instructions of the first Invoke() (its first instruction up to its return) and of
    each kernel call in it (from its kernel's first instruction up to its return)."""
    if counts.events_dropped:
        raise TflmVmcuError(f"the plugin dropped {counts.events_dropped} marks")
    calls = {c for c, _ in sites.eval_calls}
    rets = {r for _, r in sites.eval_calls}
    expected = kernel_calls(graph)
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
        if addr in calls and pending is None:
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


# --- QEMU ------------------------------------------------------------------------------


def qemu_command(elf: Path, board: str, plugin: str | None = None) -> list[str]:
    """The QEMU command line; `plugin` is `LIBRARY,ARG=VALUE,...` for -plugin."""
    cmd = [
        "qemu-system-arm",
        "-M",
        board,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        # Virtual time advances 1 ns per instruction: SysTick counts instructions.
        "-icount",
        "shift=0",
        "-kernel",
        str(elf),
    ]
    if plugin is not None:
        cmd += ["-plugin", plugin]
    return cmd


def run_qemu(
    elf: Path, board: str, timeout: float = DEFAULT_TIMEOUT_S, plugin: str | None = None
) -> tuple[int, str]:
    """Runs the firmware; returns its exit code and its console output."""
    try:
        proc = subprocess.run(
            qemu_command(elf, board, plugin),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TflmVmcuError(
            f"the firmware did not finish within {timeout:g} s under QEMU ({board})"
        ) from None
    return proc.returncode, proc.stdout + proc.stderr


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


ICOUNT_METHOD = "qemu -icount shift=0, SysTick around Invoke()"
PLUGIN_METHOD = (
    "qemu TCG plugin (tools/qemu_insn_plugin), exact: Interpreter::Invoke() from its "
    "first instruction to its return"
)


@dataclass
class FirmwareResult:
    model: str
    cpu: str
    board: str
    elf: str
    flash_bytes: int
    host_pool_bytes: int
    host_state_bytes: int
    memory_block_bytes: int
    plan: str = "ring"
    dsp: bool = True  # the kernels' DSP loops are compiled in (a DSP core, not --no-dsp)
    ran: bool = False
    bit_exact: bool | None = None
    exit_code: int | None = None
    verdict: str = "built"
    pool_bytes: int | None = None
    state_bytes: int | None = None
    stack_bytes: int | None = None
    ram_bytes: int | None = None
    instructions: int | None = None  # per Invoke(): exact (plugin), else the estimate
    instructions_icount: int | None = None  # SysTick estimate under -icount
    instructions_method: str = ""
    interpreter_instructions: int | None = None  # Invoke() minus its kernels
    # AllocateTensors() (SysTick estimate under -icount), and the share of the plan verifier
    # (AllocateTensors minus the same call trusting the plan).
    allocate_instructions: int | None = None
    verifier_instructions: int | None = None
    ops: list[OpCount] = field(default_factory=list)  # per operator, when counted
    seconds: dict[str, float] = field(default_factory=dict)
    console: str = ""

    @property
    def op_types(self) -> dict[str, dict[str, Any]]:
        return op_type_totals(self.ops)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ops"] = [
            {**asdict(op), "instructions_per_mac": op.instructions_per_mac} for op in self.ops
        ]
        d["op_types"] = self.op_types
        return d


def parse_report(console: str) -> dict[str, int]:
    m = _REPORT.search(console)
    return {k: int(v) for k, v in _FIELD.findall(m.group(1))} if m else {}


@contextmanager
def _folder(path: str | Path | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
    else:
        with tempfile.TemporaryDirectory(prefix="tflm-vmcu-firmware-") as tmp:
            yield Path(tmp)


def firmware(
    model: str | Path | bytes,
    cpu: str = "cortex-m4",
    *,
    run: bool = True,
    out_dir: str | Path | None = None,
    build_dir: str | Path | None = None,
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT_S,
    build_type: str = "Release",
    stack_bytes: int = STACK_BYTES,
    exact_memory: bool = True,
    corrupt_expected: bool = False,
    host: HostRun | None = None,
    plan: str | None = None,
    count: bool = True,
    dsp: bool = True,
) -> FirmwareResult:
    """Builds (and with `run`, runs under QEMU) the firmware for `model` on `cpu`.

    `out_dir` receives the headers and the ELF (a temporary folder when None);
    `build_dir` is the CMake build folder, reusable across models for one core and one
    `dsp` setting (default: OUT_DIR/build-CPU, or OUT_DIR/build-CPU-nodsp). `host` reuses
    an earlier host_run(). `plan` is "ring" (the default) or "flat" (see flat_plan());
    with `host`, it must be the host's. With `dsp` False, the runtime is built with
    NO_DSP_FLAG: the portable kernels, also on a core with the DSP extension.
    With `count`, instructions are counted exactly, per Invoke() and per operator, by
    the QEMU plugin (when a host C compiler can build it; else the SysTick estimate).

    The first build sizes the memory block from the host's (64-bit) state. With
    `exact_memory`, a bit-exact run is followed by a second one whose block is the
    state the core reported + the pool + MEMORY_MARGIN_BYTES (only main.cc is rebuilt);
    its result is returned."""
    _board(cpu)  # an unknown core fails before anything is built
    if plan is not None and plan not in PLANS:
        raise TflmVmcuError(f"unknown plan '{plan}' (choose from {', '.join(PLANS)})")
    if host is not None and plan is not None and plan != host.plan:
        raise TflmVmcuError(f"the host run uses the {host.plan} plan, not {plan}")
    check_tools(run=run)
    t0 = time.perf_counter()
    host = host if host is not None else host_run(model, seed, plan=plan or "ring")
    check_fits(host, stack_bytes)
    host_seconds = time.perf_counter() - t0
    with _folder(out_dir) as out:
        build = Path(build_dir) if build_dir is not None else default_build_dir(out, cpu, dsp)
        configure(build, cpu, build_type, stack_bytes, dsp)
        plugin_lib: Path | None = None
        no_count = "" if count else "not asked for"
        if run and count:
            try:
                plugin_lib = build_plugin(build)
            except TflmVmcuError as exc:
                no_count = str(exc).splitlines()[0]
        step = (cpu, out, build, run, timeout, corrupt_expected, plugin_lib, no_count, dsp)
        result = _build_and_run(host, *step)
        if (
            exact_memory
            and result.bit_exact
            and result.state_bytes is not None
            and result.state_bytes != host.state_bytes
        ):
            first = result.seconds
            exact = replace(host, target_state_bytes=result.state_bytes)
            result = _build_and_run(exact, *step)
            result.seconds = {k: first[k] + result.seconds[k] for k in first}
        result.seconds["host"] = host_seconds
        if out_dir is None:
            result.elf = ""
    return result


def _build_and_run(
    host: HostRun,
    cpu: str,
    out: Path,
    build: Path,
    run: bool,
    timeout: float,
    corrupt_expected: bool,
    plugin_lib: Path | None = None,
    no_count: str = "",
    dsp: bool = True,
) -> FirmwareResult:
    """One build and run. With `plugin_lib`, QEMU counts instructions; `no_count` says
    why there is no exact count otherwise (it falls back to the SysTick estimate). `dsp`
    is the build folder's kernel setting (configure())."""
    board = _board(cpu)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    for header in write_headers(host, build / "generated", corrupt_expected):
        target = out / header.name
        if not target.is_file() or not filecmp.cmp(header, target, shallow=False):
            shutil.copyfile(header, target)
    _run(["cmake", "--build", str(build), "--parallel"], "building the firmware")
    suffix = ("" if host.plan == "ring" else f"-{host.plan}") + ("" if dsp else "-nodsp")
    elf = out / f"{Path(host.name).stem}-{cpu}{suffix}.elf"
    shutil.copyfile(build / "firmware.elf", elf)
    seconds["build"] = time.perf_counter() - t0
    result = FirmwareResult(
        model=host.name,
        cpu=cpu,
        board=board,
        elf=str(elf),
        flash_bytes=flash_bytes(section_sizes(elf)),
        host_pool_bytes=host.pool_bytes,
        host_state_bytes=host.state_bytes,
        memory_block_bytes=host.memory_bytes,
        plan=host.plan,
        dsp=dsp and cpu in DSP_CPUS,
        seconds=seconds,
    )
    if not run:
        return result
    t0 = time.perf_counter()
    counts: InstructionCounts | None = None
    sites: InvokeSites | None = None
    if plugin_lib is not None:
        try:
            sites = invoke_sites(elf)
            code, console, counts = count_instructions(
                elf, board, plugin_lib, sites.marks, None, timeout
            )
        except PluginError as exc:
            no_count = str(exc)
    if counts is None:
        code, console = run_qemu(elf, board, timeout)
    seconds["qemu"] = time.perf_counter() - t0
    report = parse_report(console)
    result.ran = True
    result.exit_code = code
    result.verdict = describe_exit(code)
    result.bit_exact = code == 0 and report.get("mismatches") == 0
    result.console = console
    if report:
        result.pool_bytes = report["pool_bytes"]
        result.state_bytes = report["state_bytes"]
        result.stack_bytes = report["stack_bytes"]
        result.ram_bytes = result.pool_bytes + result.state_bytes + result.stack_bytes
        calibration = report.get("calibration_ticks", 0)
        if calibration > 0:
            result.instructions_icount = round(
                report["invoke_ticks"] * report["calibration_instructions"] / calibration
            )
            result.instructions = result.instructions_icount
            result.instructions_method = ICOUNT_METHOD
            per_tick = report["calibration_instructions"] / calibration
            if "allocate_ticks" in report:
                result.allocate_instructions = round(report["allocate_ticks"] * per_tick)
                result.verifier_instructions = round(
                    (report["allocate_ticks"] - report["allocate_trusted_ticks"]) * per_tick
                )
            if no_count and no_count != "not asked for":
                result.instructions_method += f" (no exact count: {no_count})"
    if counts is not None and sites is not None and result.bit_exact:
        invoke, ops = attribute(counts, sites, read_model(host.model))
        result.instructions = invoke
        result.instructions_method = PLUGIN_METHOD
        result.ops = ops
        result.interpreter_instructions = invoke - sum(op.instructions for op in ops)
    return result


# --- command line ----------------------------------------------------------------------


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
