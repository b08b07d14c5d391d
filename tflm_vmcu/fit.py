"""`tflm-vmcu fit`: does the model fit a board's RAM (and flash)? Answered with the figures
predicted on the host without a toolchain (tflm_vmcu/device.py: the plan's pool, the
runtime's state for a 32-bit Arm core, the stack of its deepest kernel as measured on that
core, the runtime's code + the model), or with `measure`, the same figures measured with the
model running on the emulated core (`tflm-vmcu firmware`). When it does not fit, the same
for the options that shrink it (`--fusion window`, `--io int8`)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import TflmVmcuError
from .int8_io import int8_io
from .plan_format import read_plan
from .reader import load_bytes, read_model

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
    flash_bytes: int  # the runtime's code + the model (no test data)
    pool_bytes: int
    state_bytes: int
    stack_bytes: int


@dataclass
class FitReport:
    model: str
    cpu: str
    method: str  # "predicted" (on the host) or "measured" (on the emulated core)
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


def _predict(data: bytes, options: str, plan: str, cpu: str, limits: tuple[int, int | None]) -> Fit:
    from .device import predict

    need = predict(data, cpu, plan)
    return _row(
        options, limits, need.pool_bytes, need.state_bytes, need.stack_bytes, need.flash_bytes
    )


def _measure(
    data: bytes,
    name: str,
    options: str,
    plan: str,
    cpu: str,
    work: Path,
    limits: tuple[int, int | None],
) -> Fit:
    from .device import io_bytes
    from .firmware import firmware, host_run

    host = host_run(data, name=name, plan=plan)
    r = firmware(
        data,
        cpu,
        out_dir=work / (options.replace(" ", "_").strip("-") or "default"),
        build_dir=work / "build",
        host=host,
    )
    if not r.ran or r.bit_exact is not True:
        raise TflmVmcuError(f"the model did not run on {cpu}: {r.verdict}")
    assert r.pool_bytes is not None
    assert r.state_bytes is not None
    assert r.stack_bytes is not None
    # The program: the firmware image less the harness's test input and expected output.
    program = r.flash_bytes - io_bytes(host.inputs, host.outputs)
    return _row(options, limits, r.pool_bytes, r.state_bytes, r.stack_bytes, program)


def _row(
    options: str, limits: tuple[int, int | None], pool: int, state: int, stack: int, flash: int
) -> Fit:
    ram_limit, flash_limit = limits
    ram = pool + state + stack
    fits = ram <= ram_limit and (flash_limit is None or flash <= flash_limit)
    return Fit(options, fits, ram, flash, pool, state, stack)


def fit(
    model: str | Path,
    ram: int,
    flash: int | None = None,
    cpu: str = "cortex-m4",
    measure: bool = False,
) -> FitReport:
    data = load_bytes(model)
    name = Path(model).name
    limits = (ram, flash)
    # A model compiled for this runtime (with any options) is answered for as it is.
    given = "model" if read_plan(read_model(data)) is not None else "ring"
    with tempfile.TemporaryDirectory(prefix="tflm-vmcu-fit-") as tmp:

        def row(options: str, d: bytes, plan: str) -> Fit:
            if measure:
                return _measure(d, name, options, plan, cpu, Path(tmp), limits)
            return _predict(d, options, plan, cpu, limits)

        base = row("", data, given)
        alternatives = []
        if not base.fits:  # what would: the options that shrink it
            tries = [("--fusion window", data, "ring-window")]
            int8_data, edges = int8_io(data)
            if edges:
                tries += [("--io int8", int8_data, "ring")]
                tries += [("--io int8 --fusion window", int8_data, "ring-window")]
            alternatives = [row(*t) for t in tries]
    return FitReport(
        model=str(model),
        cpu=cpu,
        method="measured" if measure else "predicted",
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
