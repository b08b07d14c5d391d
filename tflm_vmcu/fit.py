"""`tflm-vmcu fit`: does the model fit a board's RAM (and flash)? Answered with the figures
of the model running on the emulated core (`tflm-vmcu firmware`: pool, runtime state for
the 32-bit layout and the stack's high-water mark, measured, not estimated), and, when it
does not fit, the same for the options that shrink it (`--fusion window`, `--io int8`)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import TflmVmcuError
from .int8_io import int8_io
from .reader import load_bytes

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(?:i?[bB])?\s*$")


def parse_size(text: str) -> int:
    """Bytes of "65536", "64K", "64KB", "64KiB", "1M", "0.5MB" (K = 1,024)."""
    m = _SIZE.match(text)
    if m is None:
        raise TflmVmcuError(f"'{text}' is not a size (bytes, or a number with K or M)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


@dataclass
class Fit:
    options: str  # the compile options this row measures ("" = the default)
    fits: bool
    ram_bytes: int  # pool + state + stack high-water mark, on the core
    flash_bytes: int
    pool_bytes: int
    state_bytes: int
    stack_bytes: int


@dataclass
class FitReport:
    model: str
    cpu: str
    ram_limit_bytes: int
    flash_limit_bytes: int | None
    fits: bool
    ram_bytes: int
    flash_bytes: int
    pool_bytes: int
    state_bytes: int
    stack_bytes: int
    alternatives: list[Fit] = field(default_factory=list)  # when it does not fit

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _measure(
    data: bytes | str | Path,
    options: str,
    plan: str,
    cpu: str,
    work: Path,
    ram: int,
    flash: int | None,
) -> Fit:
    from .firmware import firmware

    r = firmware(
        data,
        cpu,
        out_dir=work / (options.replace(" ", "_").strip("-") or "default"),
        build_dir=work / "build",
        plan=plan,
    )
    if not r.ran or r.ram_bytes is None or r.bit_exact is not True:
        raise TflmVmcuError(f"the model did not run on {cpu}: {r.verdict}")
    assert r.pool_bytes is not None
    assert r.state_bytes is not None
    assert r.stack_bytes is not None
    fits = r.ram_bytes <= ram and (flash is None or r.flash_bytes <= flash)
    return Fit(
        options, fits, r.ram_bytes, r.flash_bytes, r.pool_bytes, r.state_bytes, r.stack_bytes
    )


def fit(model: str | Path, ram: int, flash: int | None = None, cpu: str = "cortex-m4") -> FitReport:
    data = load_bytes(model)
    with tempfile.TemporaryDirectory(prefix="tflm-vmcu-fit-") as tmp:
        work = Path(tmp)
        # The model as given (its name is in the image, as with `tflm-vmcu firmware`).
        base = _measure(model, "", "ring", cpu, work, ram, flash)
        alternatives = []
        if not base.fits:
            int8_data, edges = int8_io(data)
            tries = [("--fusion window", data, "ring-window")]
            if edges:
                tries += [("--io int8", int8_data, "ring")]
                tries += [("--io int8 --fusion window", int8_data, "ring-window")]
            alternatives = [_measure(d, o, p, cpu, work, ram, flash) for o, d, p in tries]
    return FitReport(
        model=str(model),
        cpu=cpu,
        ram_limit_bytes=ram,
        flash_limit_bytes=flash,
        fits=base.fits,
        ram_bytes=base.ram_bytes,
        flash_bytes=base.flash_bytes,
        pool_bytes=base.pool_bytes,
        state_bytes=base.state_bytes,
        stack_bytes=base.stack_bytes,
        alternatives=alternatives,
    )
