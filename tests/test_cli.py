"""The command line: inspect and validate (text and JSON)."""

from __future__ import annotations

import json

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
