"""Requirement IDs for the suite: ``spec/requirements`` of a checkout, else the copy shipped in the package.

An installed wheel has no ``spec/`` directory, so ``pilot_proto/conformance/requirements/*.toml`` carries
a verbatim copy; ``tests/test_conformance_plugin.py`` fails when the copy and ``spec/`` differ
(refresh it with ``python -m pilot_proto.conformance.requirements``).
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

from pilot_proto.spec import Requirement, SpecError, default_spec_dir, load_requirements

__all__ = ["PACKAGED", "load", "refresh"]

PACKAGED = Path(__file__).resolve().parent / "requirements"


@cache
def load() -> dict[str, Requirement]:
    try:
        return load_requirements(default_spec_dir())
    except SpecError:
        return load_requirements(PACKAGED)


def refresh() -> int:
    """Copy ``spec/requirements/*.toml`` into the package; returns the number of files copied."""
    PACKAGED.mkdir(exist_ok=True)
    for old in PACKAGED.glob("*.toml"):
        old.unlink()
    n = 0
    for path in sorted(default_spec_dir().glob("*.toml")):
        shutil.copyfile(path, PACKAGED / path.name)
        n += 1
    return n


if __name__ == "__main__":
    print(f"copied {refresh()} requirement files to {PACKAGED}")
