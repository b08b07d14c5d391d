"""The package as a user gets it: the C++ sources found wherever the package is (a
checkout, or the copy a wheel carries), and a CMake project that finds the runtime
through `tflm-vmcu --cmake-dir`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tflm_vmcu.cli import main
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.sources import cmake_dir, source_root

CONSUMER = """cmake_minimum_required(VERSION 3.18)
project(consumer CXX)
find_package(tflm_vmcu 0.1 CONFIG REQUIRED)
add_executable(app main.cc)
target_link_libraries(app PRIVATE tflm_vmcu::tflm_vmcu m)
"""

MAIN = """#include <stdio.h>
#include "tflm_vmcu/interpreter.h"
alignas(16) static uint8_t memory[4096];
alignas(16) static const uint8_t not_a_model[16] = {};
int main() {
  tflm_vmcu::Interpreter interp(not_a_model, sizeof(not_a_model), memory, sizeof(memory));
  const bool refused = interp.AllocateTensors() != tflm_vmcu::Status::kOk;
  printf("refused: %d, %s\\n", refused ? 1 : 0, interp.error_message());
  return refused ? 0 : 1;
}
"""


def test_cmake_dir_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--cmake-dir"])
    assert exc.value.code == 0
    assert Path(capsys.readouterr().out.strip()) == cmake_dir()
    assert (cmake_dir() / "tflm_vmcuConfig.cmake").is_file()
    out = subprocess.run(  # from elsewhere: `-m` puts the working folder on the path
        [sys.executable, "-m", "tflm_vmcu", "--cmake-dir"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
    )
    assert Path(out.stdout.strip()) == cmake_dir()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_project_finds_the_package_through_cmake_dir(tmp_path: Path) -> None:
    (tmp_path / "CMakeLists.txt").write_text(CONSUMER)
    (tmp_path / "main.cc").write_text(MAIN)
    build = tmp_path / "build"
    configure = ["cmake", "-S", str(tmp_path), "-B", str(build), f"-Dtflm_vmcu_DIR={cmake_dir()}"]
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    run = subprocess.run([str(build / "app")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "refused: 1" in run.stdout
    # A version the sources are not compatible with is not found.
    (tmp_path / "CMakeLists.txt").write_text(CONSUMER.replace("tflm_vmcu 0.1", "tflm_vmcu 9.0"))
    bad = subprocess.run([*configure[:4], str(tmp_path / "b2"), configure[5]], capture_output=True)
    assert bad.returncode != 0


def test_sources_found_in_a_wheel_copy_and_refused_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFLM_VMCU_SOURCE_DIR", str(tmp_path))
    with pytest.raises(TflmVmcuError, match="C\\+\\+ sources are not under"):
        source_root()
    copy = tmp_path / "sources"
    root = Path(__file__).resolve().parent.parent
    for part in ("cpp", "firmware"):
        shutil.copytree(root / part, copy / part)
    monkeypatch.setenv("TFLM_VMCU_SOURCE_DIR", str(copy))
    assert source_root() == copy
