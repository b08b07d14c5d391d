"""`tflm-vmcu fit`: the answer and its figures are the model's on the emulated core, the
same as `tflm-vmcu firmware --json` measures; when it does not fit, the options that
shrink it are measured too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MODELS

from tflm_vmcu.cli import main
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.fit import parse_size

MODEL = str(MODELS / "op_quantize_dequantize.tflite")  # float edges: --io int8 applies
requires_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "cmake", "qemu-system-arm")),
    reason="fit runs the model on the emulated core: needs arm-none-eabi-gcc, CMake, QEMU",
)


@pytest.mark.parametrize(
    ("text", "value"),
    [("65536", 65536), ("64K", 65536), ("64KB", 65536), ("64KiB", 65536), ("1M", 1 << 20)],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_bad_size_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TflmVmcuError, match="not a size"):
        parse_size("lots")
    assert main(["fit", MODEL, "--ram", "lots"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.qemu
@requires_tools
def test_fit_answers_with_the_figures_firmware_measures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["firmware", MODEL, "--cpu", "cortex-m4", "--run", "--json", "--out", str(tmp_path)])
        == 0
    )
    measured = json.loads(capsys.readouterr().out)
    assert main(["fit", MODEL, "--ram", "1M", "--json"]) == 0
    yes = json.loads(capsys.readouterr().out)
    assert yes["fits"] is True
    assert yes["alternatives"] == []
    for key in ("ram_bytes", "pool_bytes", "state_bytes", "stack_bytes", "flash_bytes"):
        assert yes[key] == measured[key], key
    # One byte short: no, and the smaller options, each measured.
    short = str(yes["ram_bytes"] - 1)
    assert main(["fit", MODEL, "--ram", short, "--json"]) == 3
    no = json.loads(capsys.readouterr().out)
    assert no["fits"] is False
    options = {a["options"]: a for a in no["alternatives"]}
    assert set(options) == {"--fusion window", "--io int8", "--io int8 --fusion window"}
    assert options["--io int8"]["ram_bytes"] < no["ram_bytes"]
    assert options["--io int8"]["fits"] is True
    assert main(["fit", MODEL, "--ram", "1M", "--flash", "1K"]) == 3
    assert "does NOT fit" in capsys.readouterr().out
