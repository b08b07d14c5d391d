"""The C++ library builds standalone with CMake (freestanding flags, -Werror) and its
API gives the same output as the Python binding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, ROOT

import tflm_vmcu

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


@pytest.fixture(scope="module")
def run_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("cmake-build")
    subprocess.run(
        [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build),
            "-DTFLM_VMCU_BUILD_EXAMPLES=ON",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    return build / "run_model"


def test_cpp_example_matches_python(run_model: Path, tmp_path: Path) -> None:
    model = MODELS / "dscnn_kws.tflite"
    interp = tflm_vmcu.Interpreter(model)
    d = interp.get_input_details()[0]
    x = np.random.default_rng(3).integers(-128, 128, size=tuple(d["shape"]), dtype=np.int8)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    proc = subprocess.run(
        [str(run_model), str(model), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"pool_bytes={interp.activation_bytes}" in proc.stdout
    interp.set_tensor(d["index"], x)
    interp.invoke()
    expected = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert (tmp_path / "out.bin").read_bytes() == expected.tobytes()


def test_cpp_example_reports_errors(run_model: Path, tmp_path: Path) -> None:
    (tmp_path / "in.bin").write_bytes(b"\0" * 490)
    proc = subprocess.run(
        [
            str(run_model),
            str(MODELS / "dscnn_kws.tflite"),
            str(tmp_path / "in.bin"),
            str(tmp_path / "out.bin"),
            "1000",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "memory block of 1000 bytes is too small" in proc.stderr
