"""Running an ELF under qemu-system-arm on an MPS2 board: the command line, the exit
codes the firmware uses (firmware/firmware.h) and the `report:` line it prints. Any
firmware kind that exits through semihosting and prints one `report: key=value ...` line
runs and reports through these."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import TflmVmcuError

DEFAULT_TIMEOUT_S = 120.0

# Exit codes of the firmware (firmware/firmware.h).
EXIT_CODES = {
    0: "bit-exact",
    1: "output differs from the host's",
    2: "AllocateTensors failed",
    3: "Invoke failed",
    4: "the generated headers do not match the model",
    5: "stack overflow",
    6: "TFLM halted (one of its checks failed)",
}
FAULT_BASE = 128
EXCEPTIONS = {2: "NMI", 3: "HardFault", 4: "MemManage", 5: "BusFault", 6: "UsageFault"}

_REPORT = re.compile(r"^report:(.*)$", re.MULTILINE)
_FIELD = re.compile(r"(\w+)=(\d+)")


def describe_exit(code: int) -> str:
    if code in EXIT_CODES:
        return EXIT_CODES[code]
    if code >= FAULT_BASE:
        number = code - FAULT_BASE
        return f"fault: {EXCEPTIONS.get(number, 'exception')} (exception {number})"
    return f"exit code {code}"


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


def parse_report(console: str) -> dict[str, int]:
    m = _REPORT.search(console)
    return {k: int(v) for k, v in _FIELD.findall(m.group(1))} if m else {}
