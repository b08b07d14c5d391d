"""Bare-metal firmware for one model: compile it with the ring plan, compute the expected
output with the host runtime, build firmware/ for a Cortex-M core with arm-none-eabi-gcc
(cmake/arm-none-eabi.cmake) and run it under QEMU on an MPS2 board. The firmware compares
its output with the host's bit for bit and exits 0 only on a match.

    tflm-vmcu firmware MODEL --cpu cortex-m4 --run [--json] [--out DIR]

A build folder holds the runtime library and the startup code compiled once for one core;
each further model only recompiles main.cc and relinks (pass the same --build-dir).
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

    @property
    def memory_bytes(self) -> int:
        """The firmware's memory block: pool + state (the core's when known, else the
        host's, which is larger) + a margin, rounded up to 16."""
        state = self.target_state_bytes or self.state_bytes
        return -(-(self.pool_bytes + state + MEMORY_MARGIN_BYTES) // 16) * 16


def host_run(model: str | Path | bytes, seed: int = 0, name: str | None = None) -> HostRun:
    """Compiles `model` with the ring plan and runs it in the host runtime on the seeded
    input of `tflm-vmcu validate --runs 1 --seed SEED`."""
    from .compiler import compile_bytes
    from .interpreter import Interpreter
    from .validate import make_inputs

    data = load_bytes(model)
    compiled = compile_bytes(data).model
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


def configure(
    build_dir: Path, cpu: str, build_type: str = "Release", stack_bytes: int = STACK_BYTES
) -> None:
    """Configures firmware/ for `cpu` in `build_dir` (once: later calls only check that
    the folder was configured for the same core)."""
    board = _board(cpu)
    check_tools(run=False)
    cached_cpu = _cached(build_dir, "TFLM_VMCU_CPU")
    if cached_cpu is not None:
        if cached_cpu != cpu:
            raise TflmVmcuError(
                f"build folder {build_dir} is configured for {cached_cpu}, not {cpu}: "
                "use another --build-dir"
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
    if cached_cpu is None and shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    _run(cmd, "configuring the firmware (cmake)")


def build_library(build_dir: Path, cpu: str, build_type: str = "Release") -> None:
    """Builds the runtime library and the startup code for `cpu` in `build_dir`, so that
    later models only compile main.cc and link."""
    configure(build_dir, cpu, build_type)
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


# --- QEMU ------------------------------------------------------------------------------


def qemu_command(elf: Path, board: str) -> list[str]:
    return [
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


def run_qemu(elf: Path, board: str, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[int, str]:
    """Runs the firmware; returns its exit code and its console output."""
    try:
        proc = subprocess.run(
            qemu_command(elf, board), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise TflmVmcuError(
            f"the firmware did not finish within {timeout:g} s under QEMU ({board})"
        ) from None
    return proc.returncode, proc.stdout + proc.stderr


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
    ran: bool = False
    bit_exact: bool | None = None
    exit_code: int | None = None
    verdict: str = "built"
    pool_bytes: int | None = None
    state_bytes: int | None = None
    stack_bytes: int | None = None
    ram_bytes: int | None = None
    instructions: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    console: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["instructions_method"] = "qemu -icount shift=0, SysTick around Invoke()"
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
) -> FirmwareResult:
    """Builds (and with `run`, runs under QEMU) the firmware for `model` on `cpu`.

    `out_dir` receives the headers and the ELF (a temporary folder when None);
    `build_dir` is the CMake build folder, reusable across models for one core
    (default: OUT_DIR/build-CPU). `host` reuses an earlier host_run().

    The first build sizes the memory block from the host's (64-bit) state. With
    `exact_memory`, a bit-exact run is followed by a second one whose block is the
    state the core reported + the pool + MEMORY_MARGIN_BYTES (only main.cc is rebuilt);
    its result is returned."""
    _board(cpu)  # an unknown core fails before anything is built
    check_tools(run=run)
    t0 = time.perf_counter()
    host = host if host is not None else host_run(model, seed)
    check_fits(host, stack_bytes)
    host_seconds = time.perf_counter() - t0
    with _folder(out_dir) as out:
        build = Path(build_dir) if build_dir is not None else out / f"build-{cpu}"
        configure(build, cpu, build_type, stack_bytes)
        result = _build_and_run(host, cpu, out, build, run, timeout, corrupt_expected)
        if (
            exact_memory
            and result.bit_exact
            and result.state_bytes is not None
            and result.state_bytes != host.state_bytes
        ):
            first = result.seconds
            exact = replace(host, target_state_bytes=result.state_bytes)
            result = _build_and_run(exact, cpu, out, build, run, timeout, corrupt_expected)
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
) -> FirmwareResult:
    board = _board(cpu)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    for header in write_headers(host, build / "generated", corrupt_expected):
        target = out / header.name
        if not target.is_file() or not filecmp.cmp(header, target, shallow=False):
            shutil.copyfile(header, target)
    _run(["cmake", "--build", str(build), "--parallel"], "building the firmware")
    elf = out / f"{Path(host.name).stem}-{cpu}.elf"
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
        seconds=seconds,
    )
    if not run:
        return result
    t0 = time.perf_counter()
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
            result.instructions = round(
                report["invoke_ticks"] * report["calibration_instructions"] / calibration
            )
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
    p.add_argument("--build-dir", metavar="DIR", help="CMake build folder to reuse (one per core)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input (as validate)")
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
    )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"model: {result.model}  cpu: {result.cpu}  board: {result.board}")
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
                print(f"instructions (Invoke): {result.instructions:,}")
            print(f"result: {result.verdict}")
    if not result.ran:
        return 0
    return 0 if result.bit_exact else 2
