"""The committed beacon vector file verifies against our code and equals a fresh generation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pilot_proto.vectors import dump, verify_doc
from pilot_proto.vectors._format import iter_tests
from pilot_proto.vectors.beacon import SUITES

SUITE = SUITES[0]
FILE = Path(__file__).resolve().parent.parent / "vectors" / SUITE.filename

pytestmark = pytest.mark.req(
    "NAT-005", "NAT-006", "NAT-007", "NAT-012", "NAT-014", "NAT-021", "NAT-022", "NAT-023", "NAT-026", "NAT-027",
    "TUN-006", "TUN-027",
)  # fmt: skip


def test_committed_file_verifies_and_is_current() -> None:
    text = FILE.read_text(encoding="utf-8")
    assert verify_doc(SUITE, json.loads(text)) == []
    assert text == dump(SUITE.generate()), f"{FILE.name} is stale: run `pilot-proto vectors generate --out vectors/`"


def test_every_message_type_and_pilp_variant_is_covered() -> None:
    doc = SUITE.generate()
    types = {bytes.fromhex(t["msg"])[0] for g, t in iter_tests(doc) if g["type"] == "BeaconMessageTest" and t["msg"]}
    assert set(range(1, 8)) <= types
    pilp = {
        len(t["frame"]) // 2 for g, t in iter_tests(doc) if g["type"] == "PunchFrameTest" and t["result"] == "valid"
    }
    assert pilp == {4, 8}
    profiles = {t["profile"] for g, t in iter_tests(doc) if g["type"] == "RelayDeliveryTest"}
    assert profiles == {"draft", "go-interop"}


@pytest.mark.parametrize("field", ["msg", "error", "delivered", "sender"])
def test_verifier_catches_a_wrong_expectation(field: str) -> None:
    doc = SUITE.generate()
    for _, t in iter_tests(doc):
        if field in t and t[field] is not None:
            broken = copy.deepcopy(doc)
            for _, bt in iter_tests(broken):
                if bt["tcId"] == t["tcId"]:
                    if field == "msg":
                        bt[field] = bt[field][:-2] + ("00" if bt[field][-2:] != "00" else "01")
                    elif field == "sender":
                        bt[field] = bt[field] + 1
                    else:
                        bt[field] = "bad_magic" if field == "error" else "00"
            assert verify_doc(SUITE, broken), f"tampering {field} of tcId {t['tcId']} went unnoticed"
            return
    pytest.fail(f"no vector has {field}")
