"""The committed SACK vectors verify against the implementation and equal a fresh generation (draft 8.6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilot_proto.vectors import dump
from pilot_proto.vectors.sack import SUITES

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


@pytest.mark.req("SES-061", "SES-062", "SES-064", "SES-065")
def test_committed_sack_vectors_verify_and_are_fresh() -> None:
    (suite,) = SUITES
    text = (VECTORS / suite.filename).read_text()
    doc = json.loads(text)
    assert suite.verify(doc) == []
    assert dump(suite.generate()) == text
    assert doc["numberOfTests"] >= 30
    tampered = json.loads(text)
    for group in tampered["testGroups"]:
        if group["type"] == "SackClassifyTest":
            group["tests"][0]["classification"] = "data"
    assert suite.verify(tampered)
