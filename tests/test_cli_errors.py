"""Every command-line failure is one line on stderr and exit status 1: files and folders
that cannot be read or written, bad numbers, unknown commands, a reader that goes away."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODELS

from tflm_vmcu.cli import main

MODEL = str(MODELS / "op_add.tflite")


def _cases(tmp: Path) -> list[tuple[list[str], str]]:
    existing = tmp / "existing_file"
    existing.write_text("x")
    return [
        (["compile", MODEL, "-o", "/nonexistent/dir/x.tflite"], "No such file or directory"),
        (["export", MODEL, "-o", "/nonexistent/x.h"], "No such file or directory"),
        (["report", MODEL, "-o", str(existing)], str(existing)),
        (["compile", str(tmp / "missing.tflite"), "-o", str(tmp / "o.tflite")], "missing.tflite"),
        (["validate", MODEL, "--runs", "0"], "0 is not a positive count"),
        (["validate", MODEL, "--runs", "-3"], "-3 is not a positive count"),
        (["validate", MODEL, "--runs", "many"], "'many' is not a whole number"),
        (["validate", MODEL, "--seed", "x"], "invalid int value"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["compile", MODEL], "required: -o/--output"),
        (["compile", MODEL, "-o", str(tmp / "o.tflite"), "--io", "int4"], "invalid choice"),
        # Options that do not apply are refused, not ignored.
        (["compile", MODEL, "-o", str(tmp / "o.tflite"), "--kernels", "portable"], "--kernels"),
        (["validate", "--tflm", MODEL, "--check-hazards"], "no hazard checker"),
    ]


@pytest.mark.parametrize("case", range(13))
def test_failure_is_one_line_and_exit_1(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = _cases(tmp_path)[case]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("tflm-vmcu: error: "), err
    assert expected in err
    assert "internal error" not in err


def test_reader_going_away_is_one_line(tmp_path: Path) -> None:
    """`tflm-vmcu inspect MODEL | head -0`: the output has nowhere to go."""
    cmd = [
        sys.executable,
        "-m",
        "tflm_vmcu.cli",
        "inspect",
        str(MODELS / "mobilenetv2_small.tflite"),
    ]
    # From elsewhere than the checkout: `-m` puts the working folder on the module path.
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # as `| head -0` does: before the command (still importing) writes
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 1
    assert err.strip().count("\n") == 0, err
    assert "output closed" in err, err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import tflm_vmcu

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"tflm-vmcu {tflm_vmcu.__version__}"


def test_compiling_a_compiled_model_replaces_its_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    once, twice = tmp_path / "once.tflite", tmp_path / "twice.tflite"
    source = str(MODELS / "mobilenetv2_small.tflite")
    assert main(["compile", source, "-o", str(once)]) == 0
    printed = capsys.readouterr().out
    assert main(["compile", str(once), "-o", str(twice)]) == 0
    assert once.stat().st_size == twice.stat().st_size
    from tflm_vmcu.plan_format import PLAN_METADATA
    from tflm_vmcu.reader import read_model

    plan_bytes = len(read_model(once.read_bytes()).metadata[PLAN_METADATA])
    assert f"plan stored in the model: {plan_bytes:,} bytes of flash" in printed


def test_report_json_with_a_folder_writes_the_files_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = tmp_path / "r"
    assert main(["report", MODEL, "--json", "-o", str(out)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["pool_bytes"] > 0
    assert sorted(p.suffix for p in out.iterdir()) == [".png", ".svg", ".txt"]


def test_verbose_shows_steps_and_quiet_hides_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-v: each long step on stderr with its time; -q: no notes on stdout."""
    model = str(MODELS / "op_add.tflite")
    assert main(["-v", "export", model, "-o", str(tmp_path / "a.h"), "--target", "tflm-vmcu"]) == 0
    out = capsys.readouterr().out
    assert "note: this model has no memory plan" in out
    assert main(["-q", "export", model, "-o", str(tmp_path / "a.h"), "--target", "tflm-vmcu"]) == 0
    assert "note:" not in capsys.readouterr().out
    from tflm_vmcu import progress

    progress.configure(on=True, verbose=True)
    progress.step("building something")
    assert "] building something" in capsys.readouterr().err
    progress.configure(on=False)
    progress.step("building something")
    assert capsys.readouterr().err == ""
