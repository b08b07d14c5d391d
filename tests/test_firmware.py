"""Bare-metal firmware under QEMU: every model runs bit-exact on Cortex-M4 and Cortex-M7.

The QEMU tests need arm-none-eabi-gcc (with newlib), CMake and qemu-system-arm, and are
skipped with a message when one is missing. The runtime library is built once per core;
each model then only compiles main.cc and links.
"""

from __future__ import annotations

import argparse
import json
import stat
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from conftest import UNSUPPORTED_SHARED, committed_models, model_params, shared_models

from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import (
    BOARD_RAM_BYTES,
    BOARDS,
    FAULT_BASE,
    HostRun,
    add_firmware_parser,
    build_library,
    check_fits,
    check_tools,
    firmware,
    host_run,
    io_header,
    missing_tools,
)

CPUS = ["cortex-m4", "cortex-m7"]
MODELS = committed_models() + [p for p in shared_models() if p.name not in UNSUPPORTED_SHARED]
_MISSING = missing_tools(run=True)
requires_tools = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} not found: the firmware tests need the GNU Arm "
    "toolchain (gcc-arm-none-eabi, libnewlib-arm-none-eabi), CMake and qemu-system-arm",
)


@cache
def _host(path: Path) -> HostRun:
    return host_run(path, seed=0)


@pytest.fixture(scope="session")
def build_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One CMake build folder per core, with the runtime library built once."""
    dirs = {}
    for cpu in CPUS:
        d = tmp_path_factory.mktemp(f"firmware-{cpu}")
        build_library(d, cpu)
        dirs[cpu] = d
    return dirs


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("model", model_params(MODELS))
def test_model_bit_exact_under_qemu(
    model: Path,
    cpu: str,
    build_dirs: dict[str, Path],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    host = _host(model)
    try:
        check_fits(host)
    except TflmVmcuError as exc:
        pytest.skip(f"{model.name} does not fit {BOARDS[cpu]}: {exc}")
    r = firmware(model, cpu, build_dir=build_dirs[cpu], out_dir=tmp_path, host=host)
    assert r.bit_exact, f"{r.verdict}\n{r.console}"
    assert r.exit_code == 0
    # The plan is the host's: same pool. The 32-bit state is no larger than the host's.
    assert r.pool_bytes == host.pool_bytes
    assert r.state_bytes is not None
    assert 0 < r.state_bytes <= host.state_bytes
    assert r.stack_bytes is not None
    assert 0 < r.stack_bytes < 64 * 1024
    assert r.ram_bytes == r.pool_bytes + r.state_bytes + r.stack_bytes
    # The memory block is exactly the core's pool + state + the 64-byte margin.
    assert r.memory_block_bytes == -(-(r.pool_bytes + r.state_bytes + 64) // 16) * 16
    assert r.flash_bytes > len(host.model)
    assert r.instructions is not None
    assert r.instructions > 0
    for key in ("flash_bytes", "ram_bytes", "pool_bytes", "state_bytes", "stack_bytes"):
        record_property(key, getattr(r, key))
    record_property("instructions", r.instructions)


@pytest.mark.qemu
@requires_tools
@pytest.mark.parametrize("cpu", CPUS)
def test_wrong_expected_output_fails(cpu: str, build_dirs: dict[str, Path]) -> None:
    """The verdict is real: one flipped expected bit makes the firmware exit non-zero."""
    model = committed_models()[0]
    r = firmware(model, cpu, build_dir=build_dirs[cpu], host=_host(model), corrupt_expected=True)
    assert r.exit_code == 1, r.console
    assert r.bit_exact is False
    assert "OUTPUT DIFFERS" in r.console
    assert r.verdict == "output differs from the host's"


@pytest.mark.qemu
@requires_tools
def test_stack_overflow_ends_in_a_fault_exit(build_dirs: dict[str, Path]) -> None:
    """A thread stack far too small faults (or is seen used up): a non-zero exit code,
    not a hang."""
    model = committed_models()[0]
    r = firmware(
        model, "cortex-m4", build_dir=build_dirs["cortex-m4"], host=_host(model), stack_bytes=256
    )
    assert r.exit_code is not None
    assert r.exit_code == 5 or r.exit_code >= FAULT_BASE, r.console
    assert not r.bit_exact


@pytest.mark.qemu
@requires_tools
def test_cli_json(
    build_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_firmware_parser(parser.add_subparsers(dest="command", required=True))
    model = committed_models()[0]
    cmd = ["firmware", str(model), "--cpu", "cortex-m7", "--run", "--json"]
    cmd += ["--out", str(tmp_path), "--build-dir", str(build_dirs["cortex-m7"])]
    args = parser.parse_args(cmd)
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] is True
    assert out["cpu"] == "cortex-m7"
    assert out["board"] == "mps2-an500"
    for key in ("instructions", "flash_bytes", "ram_bytes", "pool_bytes", "state_bytes"):
        assert isinstance(out[key], int), key
        assert out[key] > 0, key
    assert out["ram_bytes"] == out["pool_bytes"] + out["state_bytes"] + out["stack_bytes"]
    assert Path(out["elf"]).is_file()
    assert (tmp_path / "model_data.h").is_file()
    assert (tmp_path / "model_io.h").is_file()


# --- without the toolchain -------------------------------------------------------------


def _fake_tools(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for name in names:
        path = folder / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_missing_toolchain_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TflmVmcuError, match=r"^arm-none-eabi-gcc not found: install") as info:
        firmware(committed_models()[0], "cortex-m4")
    assert "\n" not in str(info.value)


def test_missing_qemu_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    names = ["arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "cmake"]
    _fake_tools(bin_dir, names)
    monkeypatch.setenv("PATH", str(bin_dir))
    check_tools(run=False)
    with pytest.raises(TflmVmcuError, match=r"^qemu-system-arm not found: install"):
        check_tools(run=True)


def test_unknown_cpu() -> None:
    with pytest.raises(TflmVmcuError, match="no QEMU board for 'cortex-m0'"):
        firmware(committed_models()[0], "cortex-m0")


def _fake_run(pool_bytes: int) -> HostRun:
    return HostRun("big.tflite", b"TFL3", [b"\x01\x02"], [b"\x03\x04"], pool_bytes, 1000, 0)


def test_model_larger_than_board_ram() -> None:
    check_fits(_fake_run(64 * 1024))
    with pytest.raises(
        TflmVmcuError, match=rf"^model needs [0-9,]+ bytes of RAM .*board has {BOARD_RAM_BYTES:,}"
    ):
        check_fits(_fake_run(BOARD_RAM_BYTES))


def test_io_header_corrupts_exactly_one_byte() -> None:
    run = _fake_run(16)
    good, bad = io_header(run), io_header(run, corrupt_expected=True)
    assert "fw_expected_0[2] = {\n    0x03, 0x04\n}" in good
    assert "fw_expected_0[2] = {\n    0x02, 0x04\n}" in bad
    assert "fw_input_0[2] = {\n    0x01, 0x02\n}" in bad
    assert "#define FW_EXPECTED_CORRUPTED 1" in bad
