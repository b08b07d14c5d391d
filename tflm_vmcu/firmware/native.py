"""The runtime's own firmware (firmware/: the tflm-vmcu interpreter, main.cc and the
board code): firmware() compiles the model for a plan, computes the expected output on
the host, builds the ELF for one core and, with `run`, runs it under QEMU and reports."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import progress
from ..errors import TflmVmcuError
from . import counting
from .boards import DSP_CPUS, STACK_BYTES, board_for
from .build import (
    build_elf,
    check_load_segments,
    check_tools,
    configure,
    copy_if_changed,
    default_build_dir,
    flash_bytes,
    section_sizes,
)
from .host import PLANS, HostRun, check_fits, host_run, write_headers
from .qemu import DEFAULT_TIMEOUT_S
from .result import FirmwareResult, run_and_report


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

    The memory block is the pool + the state the runtime computes for a 32-bit Arm core,
    rounded up to 16 (device.memory_block_bytes, what `export` declares), with no margin;
    the core reports the state it used (`state_bytes`)."""
    board_for(cpu)  # an unknown core fails before anything is built
    if plan is not None and plan not in PLANS:
        raise TflmVmcuError(f"unknown plan '{plan}' (choose from {', '.join(PLANS)})")
    if host is not None and plan is not None and plan != host.plan:
        raise TflmVmcuError(f"the host run uses the {host.plan} plan, not {plan}")
    check_tools(run=run)
    t0 = time.perf_counter()
    if host is None:
        progress.step("compiling the model and running it on the host")
        host = host_run(model, seed, plan=plan or "ring")
    check_fits(host, stack_bytes)
    host_seconds = time.perf_counter() - t0
    with _folder(out_dir) as out:
        build = Path(build_dir) if build_dir is not None else default_build_dir(out, cpu, dsp)
        progress.step(f"configuring the {cpu} build in {build}")
        configure(build, cpu, build_type, stack_bytes, dsp)
        plugin_lib: Path | None = None
        no_count = "" if count else "not asked for"
        if run and count:
            try:
                # Through the module, so that it can be replaced (tests do).
                plugin_lib = counting.build_plugin(build)
            except TflmVmcuError as exc:
                no_count = str(exc).splitlines()[0]
        step = (cpu, out, build, run, timeout, corrupt_expected, plugin_lib, no_count, dsp)
        result = _build_and_run(host, *step)
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
    board = board_for(cpu)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    copy_if_changed(write_headers(host, build / "generated", corrupt_expected), out)
    suffix = ("" if host.plan == "ring" else f"-{host.plan}") + ("" if dsp else "-nodsp")
    progress.step(f"building the firmware for {cpu}")
    elf = build_elf(build, out / f"{Path(host.name).stem}-{cpu}{suffix}.elf")
    seconds["build"] = time.perf_counter() - t0
    check_load_segments(elf)
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
    run_and_report(result, host.model, timeout, plugin_lib, no_count)
    return result
