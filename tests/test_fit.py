"""`tflm-vmcu fit`: the answer and its figures, predicted on the host (tflm_vmcu/device.py)
or measured on the emulated core (`--measure`, the figures `tflm-vmcu firmware --json`
gives); when it does not fit, the options that shrink it too. The predictions are checked
against the firmware on every model in tests/test_firmware.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MODELS

from tflm_vmcu.cli import main
from tflm_vmcu.compiler import compile_bytes
from tflm_vmcu.device import (
    FC_ROWS,
    FUSED_BLOCK,
    FUSED_CHAINS,
    figures,
    io_bytes,
    predict,
    stack_keys,
)
from tflm_vmcu.errors import TflmVmcuError
from tflm_vmcu.firmware import BOARDS, host_run
from tflm_vmcu.fit import fit, parse_size
from tflm_vmcu.fusion import chain_candidates, find_blocks
from tflm_vmcu.ops import SUPPORTED_OPS
from tflm_vmcu.plan_format import read_plan, write_plan
from tflm_vmcu.planner.fused import plan_with_blocks
from tflm_vmcu.reader import read_model
from tflm_vmcu.synth import ModelBuilder

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


def test_fit_predicts_without_a_toolchain(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no arm-none-eabi-gcc, CMake or QEMU
    need = predict(Path(MODEL).read_bytes(), "cortex-m4")
    assert main(["fit", MODEL, "--ram", "1M", "--json"]) == 0
    yes = json.loads(capsys.readouterr().out)
    assert (yes["fits"], yes["method"], yes["alternatives"]) == (True, "predicted", [])
    assert yes["ram_bytes"] == need.ram_bytes
    assert need.ram_bytes == need.pool_bytes + need.state_bytes + need.stack_bytes
    assert (yes["pool_bytes"], yes["state_bytes"], yes["stack_bytes"], yes["flash_bytes"]) == (
        need.pool_bytes,
        need.state_bytes,
        need.stack_bytes,
        need.flash_bytes,
    )
    # Exactly enough RAM fits; one byte less does not, and the options that shrink it are
    # predicted too: --io int8 drops the float input and output.
    assert main(["fit", MODEL, "--ram", str(need.ram_bytes), "--json"]) == 0
    capsys.readouterr()
    assert main(["fit", MODEL, "--ram", str(need.ram_bytes - 1), "--json"]) == 3
    no = json.loads(capsys.readouterr().out)
    options = {a["options"]: a for a in no["alternatives"]}
    assert set(options) == {"--fusion window", "--io int8", "--io int8 --fusion window"}
    assert options["--io int8"]["ram_bytes"] < need.ram_bytes
    assert options["--io int8"]["fits"] is True
    assert main(["fit", MODEL, "--ram", "1M", "--flash", str(need.flash_bytes - 1)]) == 3
    assert "does NOT fit" in capsys.readouterr().out


def test_figures_cover_every_kernel_on_every_core() -> None:
    keys = {op.name for op in SUPPORTED_OPS} | {FC_ROWS, FUSED_BLOCK, *FUSED_CHAINS}
    for cpu in BOARDS:
        core = figures()[cpu]
        assert set(core["stack_bytes"]) == keys, cpu
        assert core["code_bytes"] > 0
    with pytest.raises(TflmVmcuError, match="no figures for 'cortex-m0'"):
        predict(Path(MODEL).read_bytes(), "cortex-m0")


def test_stack_keys_follow_the_kernel_paths() -> None:
    """FULLY_CONNECTED over several rows has its own (deeper) figure; a fused block's
    operators are one FUSED_BLOCK."""
    b = ModelBuilder()
    x = b.input([1, 64])
    one = b.fully_connected(x, 8)
    rows = b.fully_connected(b.reshape(one, [2, 4]), 4)
    graph = read_model(b.build([rows]))
    assert stack_keys(graph) == {"FULLY_CONNECTED", FC_ROWS, "RESHAPE"}
    compiled = read_model(compile_bytes((MODELS / "mobilenetv2_small.tflite").read_bytes()).model)
    plan = read_plan(compiled)
    assert plan is not None
    assert plan.blocks
    assert FUSED_BLOCK in stack_keys(compiled)
    # A chain of N blocks (one depthwise convolution each) has the figure of its length.
    b = ModelBuilder()
    x = b.input([1, 8, 8, 8])
    for _ in range(3):
        y = b.conv2d(x, 24, (1, 1), activation="RELU")
        y = b.conv2d(b.depthwise_conv2d(y, 1, activation="RELU"), 8, (1, 1))
        x = b.elementwise("ADD", x, y)
    data = b.build([x])
    graph = read_model(data)
    for chain in chain_candidates(graph, find_blocks(graph)):
        planned = read_model(write_plan(data, plan_with_blocks(graph, [chain])))
        n = len(chain.stages)
        assert FUSED_CHAINS[n - 2] in stack_keys(planned), n
        assert FUSED_BLOCK not in stack_keys(planned)


@pytest.mark.qemu
@requires_tools
def test_fit_measure_answers_with_the_figures_firmware_measures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["firmware", MODEL, "--cpu", "cortex-m4", "--run", "--json", "--out", str(tmp_path)])
        == 0
    )
    measured = json.loads(capsys.readouterr().out)
    assert main(["fit", MODEL, "--ram", "1M", "--json", "--measure"]) == 0
    yes = json.loads(capsys.readouterr().out)
    assert (yes["fits"], yes["method"], yes["alternatives"]) == (True, "measured", [])
    for key in ("ram_bytes", "pool_bytes", "state_bytes", "stack_bytes"):
        assert yes[key] == measured[key], key
    # The program's flash: the image less the harness's input and expected output.
    host = host_run(MODEL)
    assert yes["flash_bytes"] == measured["flash_bytes"] - io_bytes(host.inputs, host.outputs)
    # One byte short: no, and the smaller options, each measured.
    short = str(yes["ram_bytes"] - 1)
    assert main(["fit", MODEL, "--ram", short, "--json", "--measure"]) == 3
    no = json.loads(capsys.readouterr().out)
    assert no["fits"] is False
    options = {a["options"]: a for a in no["alternatives"]}
    assert set(options) == {"--fusion window", "--io int8", "--io int8 --fusion window"}
    assert options["--io int8"]["ram_bytes"] < no["ram_bytes"]
    assert options["--io int8"]["fits"] is True


def test_a_compiled_model_is_answered_for_as_compiled(tmp_path: Path) -> None:
    """A model compiled with --fusion window keeps its plan: its answer is the window
    plan's, which the default compile of the raw model only reaches as an alternative."""
    raw = MODELS / "mobilenetv2_small.tflite"
    window = tmp_path / "window.tflite"
    window.write_bytes(compile_bytes(raw.read_bytes(), "window").model)
    as_compiled = fit(window, 1 << 20)
    from_raw = fit(raw, 1)  # fits nowhere: every alternative is given
    alternative = {a.options: a for a in from_raw.alternatives}["--fusion window"]
    assert as_compiled.pool_bytes == alternative.pool_bytes < from_raw.pool_bytes
    assert as_compiled.ram_bytes == alternative.ram_bytes
