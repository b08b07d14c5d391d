"""The command line: inspect and validate (text and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MODELS

from tflm_vmcu.cli import main

DEFAULT = MODELS / "mobilenetv2_small.tflite"


def test_inspect_lists_ops_and_live_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(DEFAULT)]) == 0
    out = capsys.readouterr().out
    assert "CONV_2D" in out
    assert "DEPTHWISE_CONV_2D" in out
    assert "peak live activation bytes" in out


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEFAULT), "--json", "--runs", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(DEFAULT)
    assert report["bit_exact"] is True
    assert report["runs"] == 2
    ours, tflm = report["ours"], report["tflm"]
    assert ours["total_bytes"] == ours["pool_bytes"] + ours["state_bytes"]
    assert tflm["total_bytes"] == tflm["head_bytes"] + tflm["tail_bytes"]
    assert tflm["head_bytes"] > 0


def test_validate_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(MODELS / "op_add.tflite"), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "bit-exact" in out
    assert "TFLM" in out


def test_compile_then_validate_with_hazard_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compiled.tflite"
    assert main(["compile", str(DEFAULT), "-o", str(out)]) == 0
    assert "ring plan" in capsys.readouterr().out
    assert main(["validate", str(out), "--json", "--runs", "2", "--check-hazards"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["planned"] is True
    assert report["hazards"] == 0
    assert report["bit_exact"] is True
    assert report["ours"]["pool_bytes"] < report["tflm"]["head_bytes"]


def test_report_writes_table_and_pictures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "op_relu.tflite"
    assert main(["report", str(model), "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "segment-level lower bound" in out
    assert "TFLM smallest arena (searched)" in out
    for suffix in (".png", ".svg", ".txt"):
        assert (tmp_path / f"op_relu{suffix}").stat().st_size > 0
    assert main(["report", str(model), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["total_bytes"] == figures["pool_bytes"] + figures["state_bytes"]
    assert figures["segment_bound_bytes"] <= figures["pool_bytes"] <= figures["tflm_head_bytes"]


def test_unplanned_model_gets_a_note_of_what_compiling_saves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tflm_vmcu
    from tflm_vmcu.compiler import compile_bytes

    data = DEFAULT.read_bytes()
    unplanned = tflm_vmcu.Interpreter(data).activation_bytes
    planned = compile_bytes(data).plan.pool_bytes
    note = f"would bring its pool from {unplanned:,} to {planned:,} bytes"
    assert main(["validate", str(DEFAULT), "--runs", "1"]) == 0
    assert note in capsys.readouterr().out
    assert main(["validate", str(DEFAULT), "--runs", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["compile_would_save_bytes"] == unplanned - planned
    compiled = tmp_path / "c.tflite"
    assert main(["compile", str(DEFAULT), "-o", str(compiled)]) == 0
    capsys.readouterr()
    assert main(["validate", str(compiled), "--runs", "1"]) == 0
    assert "no memory plan" not in capsys.readouterr().out
    # export sizes the arena for the runtime the model was compiled for
    assert main(["export", str(compiled), "-o", str(tmp_path / "c.h")]) == 0
    assert "(tflm-vmcu)" in capsys.readouterr().out
    assert main(["export", str(DEFAULT), "-o", str(tmp_path / "d.h")]) == 0
    assert "(tflm)" in capsys.readouterr().out


def test_export_header_says_which_kernels_the_offline_plan_is_safe_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, header = tmp_path / "t.tflite", tmp_path / "t.h"
    src = str(MODELS / "op_add.tflite")
    argv = ["compile", src, "-o", str(model), "--target", "tflm", "--kernels", "portable"]
    assert main(argv) == 0
    assert main(["export", str(model), "-o", str(header)]) == 0
    text = header.read_text()
    assert "safe for TFLM's portable kernels only" in text
    assert main(["export", src, "-o", str(header)]) == 0
    assert "safe for TFLM's" not in header.read_text()
