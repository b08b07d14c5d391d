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


def _build(build: Path, *options: str) -> Path:
    subprocess.run(
        [
            "cmake",
            "-S",
            str(ROOT),
            "-B",
            str(build),
            "-DTFLM_VMCU_BUILD_EXAMPLES=ON",
            "-DCMAKE_BUILD_TYPE=Release",
            *options,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    return build / "run_model"


@pytest.fixture(scope="module")
def run_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("cmake-build"))


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


def test_plan_verifier_can_be_left_out(run_model: Path, tmp_path: Path) -> None:
    """An unsafe plan (every tensor at offset 0) is refused by the default build and runs
    unchecked in a build configured with -DTFLM_VMCU_VERIFY_PLAN=OFF."""
    from bad_input_catalogue import _all_offsets_zero, _plan_edit

    model = tmp_path / "unsafe.tflite"
    model.write_bytes(_plan_edit(_all_offsets_zero))
    (tmp_path / "in.bin").write_bytes(bytes(256))
    args = [str(model), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")]
    proc = subprocess.run([str(run_model), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "unsafe memory plan at operator 0 (CONV_2D)" in proc.stderr
    trusting = _build(tmp_path / "build", "-DTFLM_VMCU_VERIFY_PLAN=OFF")
    proc = subprocess.run([str(trusting), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_tflm_plugin_target_builds(tmp_path: Path) -> None:
    """The CMake target tflm_vmcu::tflm_plugin compiles against a TFLM tree, -Werror."""
    tree = ROOT.parent / "shared" / "third_party" / "tflite-micro" / "reference"
    if not tree.is_dir():
        pytest.skip(f"{tree} not present (TFLM source trees live in ../shared/third_party)")
    build = tmp_path / "build"
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DTFLM_VMCU_TFLM_SOURCE={tree}"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "tflm_vmcu_tflm_plugin", "-j2"],
        check=True,
        capture_output=True,
    )
    assert (build / "libtflm_vmcu_tflm_plugin.a").is_file()
