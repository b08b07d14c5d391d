"""Cross build: the toolchain checks, configuring and building a CMake firmware project
with cmake/arm-none-eabi.cmake for one core, and the flash an ELF occupies.

configure() takes the project folder (`project`, default: the runtime's firmware/) and
extra cache variables (`defines`), so every firmware kind uses the same toolchain file,
board, build type, stack and kernel setting, and the same checks on a reused build
folder. A project configured here receives these cache variables:

    CMAKE_TOOLCHAIN_FILE           cmake/arm-none-eabi.cmake of the source checkout
    TFLM_VMCU_CPU, TFLM_VMCU_BOARD the core and its QEMU board (boards.BOARDS)
    CMAKE_BUILD_TYPE               Release, MinSizeRel or Debug
    TFLM_VMCU_STACK_BYTES          thread stack reserved and painted
    TFLM_VMCU_FIRMWARE_GENERATED   BUILD_DIR/generated: the headers host.write_headers()
                                   writes (model_data.h, model_io.h)
    TFLM_VMCU_EXTRA_FLAGS          NO_DSP_FLAG for the portable kernels, else empty
                                   (fixed when the folder is first configured)

and builds `firmware.elf` in the build folder (build_elf()).
"""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import TflmVmcuError
from .boards import RAM_BASE, STACK_BYTES, board_for

NO_DSP_FLAG = "-DTFLM_VMCU_NO_DSP"

_TOOL_HINTS = {
    "arm-none-eabi-gcc": "install the GNU Arm toolchain (Debian: apt-get install "
    "gcc-arm-none-eabi binutils-arm-none-eabi libnewlib-arm-none-eabi)",
    "arm-none-eabi-size": "install binutils-arm-none-eabi",
    "arm-none-eabi-readelf": "install binutils-arm-none-eabi",
    "cmake": "install CMake >= 3.18 (pip install cmake)",
    "qemu-system-arm": "install QEMU (Debian: apt-get install qemu-system-arm)",
}


def source_dir() -> Path:
    """The sources that hold firmware/, cmake/ and cpp/ (tflm_vmcu.sources)."""
    from ..sources import source_root

    return source_root()


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


def run_tool(cmd: list[str], what: str, timeout: float | None = None) -> str:
    """Runs a build tool; its standard output, or TflmVmcuError saying `what` failed (a
    region overflow and a missing newlib get a one-line message of their own)."""
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
    *,
    project: Path | None = None,
    defines: Mapping[str, str] | None = None,
) -> None:
    """Configures firmware/ (or the CMake project in `project`) for `cpu` in `build_dir`
    (once: later calls only check that the folder was configured for the same core and
    kernel setting). With `dsp` False, the runtime is compiled with NO_DSP_FLAG: the
    portable kernels, also on cores with the DSP extension. The compiler flags are fixed
    at the first configure, so a folder configured for the other setting is refused
    rather than reconfigured. `defines` are further cache variables (NAME: value); the
    folder is configured again when one differs from its cache."""
    board = board_for(cpu)
    check_tools(run=False)
    extra = dict(defines or {})
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
            and all(_cached(build_dir, name) == value for name, value in extra.items())
            and ((build_dir / "build.ninja").is_file() or (build_dir / "Makefile").is_file())
        ):
            return
    root = source_dir()
    cmd = [
        "cmake",
        "-S",
        str(project if project is not None else root / "firmware"),
        "-B",
        str(build_dir),
        f"-DCMAKE_TOOLCHAIN_FILE={root / 'cmake' / 'arm-none-eabi.cmake'}",
        f"-DTFLM_VMCU_CPU={cpu}",
        f"-DTFLM_VMCU_BOARD={board}",
        f"-DCMAKE_BUILD_TYPE={build_type}",
        f"-DTFLM_VMCU_STACK_BYTES={stack_bytes}",
        f"-DTFLM_VMCU_FIRMWARE_GENERATED={build_dir / 'generated'}",
    ]
    cmd += [f"-D{name}={value}" for name, value in extra.items()]
    if cached_dsp is None:  # a new folder (a configured one keeps its flags, checked above)
        cmd.append(f"-DTFLM_VMCU_EXTRA_FLAGS={'' if dsp else NO_DSP_FLAG}")
    if cached_cpu is None and shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    run_tool(cmd, "configuring the firmware (cmake)")


def build_targets(
    build_dir: Path, targets: Sequence[str] = (), what: str = "building the firmware"
) -> None:
    """Builds `targets` (all when empty) of the configured folder `build_dir`."""
    cmd = ["cmake", "--build", str(build_dir)]
    if targets:
        cmd += ["--target", *targets]
    run_tool([*cmd, "--parallel"], what)


def build_library(build_dir: Path, cpu: str, build_type: str = "Release", dsp: bool = True) -> None:
    """Builds the runtime library and the startup code for `cpu` in `build_dir` (with the
    DSP kernels, or with `dsp` False the portable ones), so that later models only
    compile main.cc and link."""
    configure(build_dir, cpu, build_type, dsp=dsp)
    build_targets(build_dir, ("tflm_vmcu", "fw_board"), "building the runtime library")


def build_elf(build_dir: Path, elf: Path, built: str = "firmware.elf") -> Path:
    """Builds the configured folder `build_dir` and copies the ELF it links (`built`) to
    `elf`; returns `elf`."""
    build_targets(build_dir)
    shutil.copyfile(build_dir / built, elf)
    return elf


def copy_if_changed(files: Iterable[Path], folder: Path) -> None:
    """Copies each of `files` into `folder`, unless the copy there has the same bytes
    (so an incremental build that reads the copies skips them)."""
    for path in files:
        target = folder / path.name
        if not target.is_file() or not filecmp.cmp(path, target, shallow=False):
            shutil.copyfile(path, target)


def section_sizes(elf: Path) -> dict[str, int]:
    """Bytes per section (arm-none-eabi-size -A)."""
    out = run_tool(["arm-none-eabi-size", "-A", "-d", str(elf)], "arm-none-eabi-size")
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def check_load_segments(elf: Path) -> None:
    """Refuses an image that asks the loader to zero-fill code memory: a loadable segment
    placed in flash (below RAM) whose memory size exceeds its file size. QEMU fills such a
    segment at its flash address, and a memory block larger than the flash left after the
    code wraps onto the vector table (the core then locks up at reset)."""
    out = run_tool(["arm-none-eabi-readelf", "-lW", str(elf)], "arm-none-eabi-readelf")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == "LOAD":
            paddr, filesz, memsz = (int(p, 16) for p in (parts[3], parts[4], parts[5]))
            if paddr < RAM_BASE and memsz > filesz:
                raise TflmVmcuError(
                    f"{elf.name}: a segment at flash address 0x{paddr:x} holds {filesz:,} "
                    f"bytes and asks for {memsz - filesz:,} more zero-filled there (linker "
                    "script: RAM sections need a load address in RAM)"
                )


def flash_bytes(sizes: dict[str, int]) -> int:
    """Code memory: every loaded section outside RAM (text, rodata, exidx) plus the
    initial values of .data."""
    ram_only = {".stack", ".bss"}
    return sum(
        n
        for s, n in sizes.items()
        if s not in ram_only and not s.startswith((".debug", ".ARM.attributes", ".comment"))
    )
