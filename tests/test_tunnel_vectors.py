"""The committed tunnel vector files verify against our code and equal a fresh generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot_proto.vectors import dump, verify_doc
from pilot_proto.vectors.tunnel import SUITES

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
BY_NAME = {s.filename: s for s in SUITES}
REQS = {
    "tunnel_kdf_test.json": ("SEC-008", "SEC-009", "SEC-028"),
    "tunnel_kex_test.json": ("TUN-016", "TUN-018", "TUN-019", "TUN-020", "SEC-028"),
    "tunnel_pils_test.json": ("TUN-003", "NONCE-001", "SEC-006", "SEC-027", "CONS-015", "CONS-016"),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.req(*REQS[n])) for n in sorted(BY_NAME)])
def test_committed_file_verifies_and_is_current(name: str) -> None:
    suite = BY_NAME[name]
    text = (VECTORS / name).read_text(encoding="utf-8")
    assert verify_doc(suite, json.loads(text)) == []
    assert text == dump(suite.generate()), f"{name} is stale: run `pilot-proto vectors generate --out vectors/`"


@pytest.mark.req("SEC-006", "CONS-016")
def test_verifier_catches_a_wrong_expectation() -> None:
    suite = BY_NAME["tunnel_pils_test.json"]
    doc = suite.generate()
    for group in doc["testGroups"]:
        for test in group["tests"]:
            if test.get("error") == "replay":
                test["result"], test["packet"] = "valid", "00"
                del test["error"]
    assert any("accepted" in p or "raised" in p for p in verify_doc(suite, doc))
