"""One JSON schema (docs/JSON.md) for every subcommand: the version and the command in
every object, the same names for the same figures, and errors as JSON too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import MODELS

from tflm_vmcu.cli import main

MODEL = MODELS / "mobilenetv2_small.tflite"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, rc: int = 0) -> dict[str, Any]:
    assert main([*argv, "--json"]) == rc
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # exactly one object
    obj: dict[str, Any] = json.loads(out)
    assert obj["schema_version"] == 1
    assert obj["command"] == argv[0]
    return obj


def test_every_command_speaks_one_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compiled, offline = tmp_path / "c.tflite", tmp_path / "t.tflite"
    inspect = run_json(capsys, "inspect", str(MODEL))
    assert inspect["tensor_bound_bytes"] == max(o["live_bytes"] for o in inspect["operators"])
    comp = run_json(capsys, "compile", str(MODEL), "-o", str(compiled))
    assert comp["fusion"]["fused"]
    assert comp["plan_bytes"] > 0
    validate = run_json(capsys, "validate", str(compiled), "--runs", "1", "--check-hazards")
    report = run_json(capsys, "report", str(compiled))
    # The same figure under the same name everywhere.
    assert comp["pool_bytes"] == validate["ours"]["pool_bytes"] == report["pool_bytes"]
    assert report["ours"] == validate["ours"]
    assert report["tflm"]["head_bytes"] == validate["tflm"]["head_bytes"]
    assert comp["tensor_bound_bytes"] == inspect["tensor_bound_bytes"]
    assert validate["bit_exact"] is True
    assert validate["hazards"] == 0
    tflm = run_json(capsys, "compile", str(MODEL), "-o", str(offline), "--target", "tflm")
    check = run_json(capsys, "validate", "--tflm", str(offline), "--runs", "1")
    assert check["bit_exact"] is True
    assert check["smallest_arena_bytes"] <= check["stock_smallest_arena_bytes"]
    assert tflm["head_bytes"] <= tflm["tflm_head_bytes"]
    export = run_json(capsys, "export", str(compiled), "-o", str(tmp_path / "m.h"))
    assert export["target"] == "tflm-vmcu"
    # The memory block for a 32-bit core (tests/test_firmware.py runs every model in it).
    assert (
        export["arena_bytes"] == -(-(report["pool_bytes"] + report["arm32_state_bytes"]) // 16) * 16
    )


@pytest.mark.parametrize("command", ["inspect", "compile", "report", "validate", "export"])
def test_errors_are_json_too(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.tflite")
    argv = [command, missing] + (
        ["-o", str(tmp_path / "o")] if command in ("compile", "export") else []
    )
    obj = run_json(capsys, *argv, rc=1)
    assert set(obj) == {"schema_version", "command", "error"}
    assert "missing.tflite" in obj["error"]
