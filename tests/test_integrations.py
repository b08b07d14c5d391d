"""Zephyr, Mbed and CMake-package integrations (docs/INTEGRATION.md).

Zephyr and Mbed OS are not available here: scripts/check_integrations.sh validates the
metadata, builds the runtime with each system's compiler flags and file lists, installs
the CMake package and links a find_package() consumer, and runs the Zephyr sample's
main() from each build under QEMU. The build test needs the GNU Arm toolchain and CMake
and is skipped without them; the output comparison also needs qemu-system-arm.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tflm_vmcu

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_integrations.sh"
SAMPLE_HEADER = ROOT / "zephyr" / "samples" / "hello_vmcu" / "src" / "model_data.h"
BUILDS = ["zephyr", "mbed", "package"]

_MISSING = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "cmake") if not shutil.which(t)]
requires_toolchain = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} not found: the integration checks need the GNU Arm "
    "toolchain (gcc-arm-none-eabi, libnewlib-arm-none-eabi) and CMake",
)
requires_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not found"
)


def _sample_model() -> bytes:
    """The model bytes of the sample's header (written by `tflm-vmcu export`)."""
    text = SAMPLE_HEADER.read_text()
    body = text.split("g_model[] = {", 1)[1].split("};", 1)[0]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def _arena_bytes() -> int:
    match = re.search(r"#define G_MODEL_ARENA_BYTES (\d+)", SAMPLE_HEADER.read_text())
    assert match is not None
    return int(match.group(1))


def _host_run(check_hazards: bool = False) -> tflm_vmcu.Interpreter:
    """The sample's model and input pattern (byte i = i * 37 + 11) on the host runtime."""
    interp = tflm_vmcu.Interpreter(_sample_model(), check_hazards=check_hazards)
    for d in interp.get_input_details():
        pattern = (np.arange(d["bytes"], dtype=np.uint32) * 37 + 11).astype(np.uint8)
        interp.set_tensor(d["index"], pattern.view(np.int8).reshape(d["shape"]))
    interp.invoke()
    return interp


def test_sample_model_has_a_plan_and_fits_its_memory_block() -> None:
    interp = _host_run(check_hazards=True)
    assert interp.has_plan
    assert interp.hazards == 0, interp.first_hazard
    assert interp.activation_bytes + interp.state_bytes <= _arena_bytes()


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Runs the script once; returns its work folder and its output."""
    work = tmp_path_factory.mktemp("integrations")
    r = subprocess.run(
        ["bash", str(SCRIPT), str(work)], capture_output=True, text=True, timeout=1800
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    return work, r.stdout


@pytest.mark.qemu
@requires_toolchain
def test_integration_checks_pass(checked: tuple[Path, str]) -> None:
    _, out = checked
    for step in ("metadata: ok", "zephyr:", "mbed:", "package:", "all checks passed"):
        assert f"check_integrations: {step}" in out, out


@pytest.mark.qemu
@requires_toolchain
@requires_qemu
@pytest.mark.parametrize("build", BUILDS)
def test_sample_output_matches_host_runtime(checked: tuple[Path, str], build: str) -> None:
    work, _ = checked
    console = (work / f"hello_{build}.console").read_text()
    host = _host_run()
    expected = [
        " ".join(str(int(v)) for v in host.get_tensor(d["index"]).reshape(-1))
        for d in host.get_output_details()
    ]
    got = re.findall(r"^hello_vmcu: output \d+: (.*)$", console, re.M)
    assert got == expected, console

    sizes = re.search(r"pool (\d+) bytes, state (\d+) bytes, plan yes", console)
    assert sizes is not None, console
    assert int(sizes.group(1)) == host.activation_bytes  # the plan fixes the pool
    assert int(sizes.group(2)) <= host.state_bytes  # 32-bit pointers: smaller state
