"""Load shipped vector files without our package (only ``json`` and ``pathlib``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return doc


def cases(name: str, group_type: str | None = None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(group, test)`` pairs of one file, optionally of one group type; fails if there are none."""
    found = 0
    for group in load(name)["testGroups"]:
        if group_type is None or group["type"] == group_type:
            for test in group["tests"]:
                found += 1
                yield group, test
    assert found, f"{name} has no {group_type or ''} tests"


H = bytes.fromhex
