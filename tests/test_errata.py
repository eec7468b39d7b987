"""spec/errata.md: every erratum has one ID, and every ID that code, tests or requirements cite exists.

Many hands append errata; two entries under one ID (it happened: two E-NAT-4) make every citation of it
ambiguous, so the file is checked like code.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ERRATA = ROOT / "spec" / "errata.md"
HEADING = re.compile(r"^## (E-[A-Z0-9]+(?:-[A-Z0-9]+)*-\d+):", re.M)
CITATION = re.compile(r"\bE-[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-\d+\b")


def _ids() -> Counter[str]:
    return Counter(HEADING.findall(ERRATA.read_text(encoding="utf-8")))


def test_every_erratum_id_is_unique() -> None:
    ids = _ids()
    assert len(ids) > 50
    assert [i for i, n in ids.items() if n > 1] == []


def test_every_cited_erratum_exists() -> None:
    known = set(_ids())
    missing: dict[str, list[str]] = {}
    files = [*ROOT.glob("pilot_proto/**/*.py"), *ROOT.glob("pilot_proto/**/*.toml"), *ROOT.glob("tests/**/*.py"),
             *ROOT.glob("spec/requirements/*.toml"), ROOT / "README.md"]  # fmt: skip
    for path in files:
        for cited in set(CITATION.findall(path.read_text(encoding="utf-8", errors="replace"))):
            if cited not in known:
                missing.setdefault(cited, []).append(path.relative_to(ROOT).as_posix())
    assert missing == {}
