"""The models every benchmark runs: the committed ones, then the shared third-party ones
(../shared/models) that the runtime supports, when that folder exists."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Shared models the runtime refuses (SVDF, int16 activations).
UNSUPPORTED = {"tflm_keyword_scrambled_8bit.tflite"}


def default_models() -> list[Path]:
    shared = ROOT.parent / "shared" / "models"
    paths = sorted((ROOT / "models").glob("*.tflite"))
    if shared.is_dir():
        paths += sorted(p for p in shared.glob("*.tflite") if p.name not in UNSUPPORTED)
    return paths
