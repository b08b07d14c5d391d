"""The one JSON shape every `--json` command prints (documented in docs/JSON.md): one
object per command, with the schema version and the command first, figures under the same
names in every command (`pool_bytes`, `state_bytes`, `total_bytes`, `arena_bytes`,
`bit_exact`, `hazards`, ...), and on failure `{"error": ...}` in place of the figures."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_VERSION = 1


def emit(command: str, figures: dict[str, Any]) -> None:
    """Prints the figures of `command` as the one JSON object of its output."""
    print(json.dumps({"schema_version": SCHEMA_VERSION, "command": command, **figures}))


def emit_error(command: str | None, message: str) -> None:
    emit(command or "", {"error": message})
