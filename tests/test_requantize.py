"""MultiplyByQuantizedMultiplierRight (kernels/quant_util.h), the one-rounding form of TFLM's
requantisation that the DSP loops use for right shifts, gives TFLM's value: compiled on the
host and compared over edge values and random ones (tests/requantize_check.cc)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

COMPILER = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@pytest.mark.skipif(COMPILER is None, reason="no host C++ compiler")
def test_one_rounding_requantisation_matches_tflm(tmp_path: Path) -> None:
    exe = tmp_path / "requantize_check"
    subprocess.run(
        [
            str(COMPILER),
            "-O2",
            "-std=c++17",
            f"-I{ROOT / 'cpp' / 'src'}",
            f"-I{ROOT / 'cpp' / 'include'}",
            str(ROOT / "tests" / "requantize_check.cc"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    run = subprocess.run([str(exe), "50000000"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip().endswith(" 0 mismatches"), run.stdout
