"""Every saved fuzz finding is a regression test: ``tests/fuzz_regressions/<harness slug>/<hash>.bin``.

``pilot-proto fuzz`` writes a minimised input here when an oracle breaks; the file fails this test
until the bug is fixed, and then keeps it fixed.  A directory that names no harness fails too, so a
renamed harness cannot silently orphan its regressions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot_proto.fuzzing.harness import all_harnesses

ROOT = Path(__file__).resolve().parent / "fuzz_regressions"
BY_SLUG = {h.slug: h for h in all_harnesses().values()}
CASES = sorted(ROOT.glob("*/*.bin")) if ROOT.is_dir() else []


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_saved_finding_stays_fixed(path: Path) -> None:
    harness = BY_SLUG.get(path.parent.name)
    assert harness is not None, f"{path.parent.name} names no harness (renamed? move the file)"
    harness.fuzz_one_input(path.read_bytes())


def test_regression_directory_exists_and_is_replayed() -> None:
    """The replay cannot pass by finding nothing: the directory is there and every file is collected."""
    assert ROOT.is_dir()
    assert len(CASES) == len(list(ROOT.rglob("*.bin")))
