"""Cores, the QEMU boards that run them and the memory every firmware kind reserves.
Shared by the host side (what fits), the build (which board to link for) and QEMU."""

from __future__ import annotations

from ..errors import TflmVmcuError

# Cores with a QEMU board. Each board has 4 MiB of code memory at 0x0 and 4 MiB of RAM
# at 0x20000000 (firmware/mps2.ld).
BOARDS = {"cortex-m3": "mps2-an385", "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
BOARD_RAM_BYTES = 4 << 20
RAM_BASE = 0x20000000
BOARD_FLASH_BYTES = 4 << 20
STACK_BYTES = 64 * 1024  # thread stack reserved and painted (firmware/mps2.ld)
HANDLER_STACK_BYTES = 2048
STATIC_RESERVE_BYTES = 1024  # .data and the rest of .bss (the firmware keeps little)
# Cores with the Armv7E-M DSP extension: their kernels use the DSP loops unless the
# runtime is built with NO_DSP_FLAG (firmware(dsp=False), `--no-dsp`).
DSP_CPUS = frozenset({"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"})


def board_for(cpu: str) -> str:
    """The QEMU board that runs `cpu`; TflmVmcuError for a core without one."""
    if cpu not in BOARDS:
        raise TflmVmcuError(f"no QEMU board for '{cpu}' (choose from {', '.join(BOARDS)})")
    return BOARDS[cpu]
