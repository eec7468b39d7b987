"""A private target that never approves the suite: stream tests are ``unsupported`` with one message, at once.

The gated built-in node is started here and judged as a third-party ``--target`` with no ``--registry``: the suite
learns that it gates (a SYN to echo goes unanswered while pings work), has no identity it could ask trust for, and
decides once that every test needing a stream is unsupported -- not a 4 s wait per test, never fail/inconclusive.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_conformance_builtin import run_suite

from pilot_proto.conformance.builtin import Builtin, start_builtin

pytestmark = pytest.mark.slow


@pytest.fixture
def private_node() -> Iterator[Builtin]:
    node = start_builtin("draft", 0x00C0FFEE, bytes(16), duration=120.0, trust="gated")
    yield node
    node.stop()


@pytest.mark.req("SEC-015")
def test_unapproved_private_target_makes_stream_tests_unsupported(tmp_path: Path, private_node: Builtin) -> None:
    code, report, out, _ = run_suite(
        tmp_path, f"--target={private_node.host}:{private_node.port}", "--section=8.2", "--section=14", "--seed=2"
    )  # fmt: skip
    assert report, out[-3000:]
    tests = report["tests"]
    assert not [t["id"] for t in tests if t["verdict"] in ("fail", "inconclusive")], out[-3000:]
    gate = [t for t in tests if t["verdict"] == "unsupported" and "is private" in t["message"]]
    assert len(gate) >= 10, [(t["id"], t["verdict"], t["message"]) for t in tests]
    assert {t["message"] for t in gate} == {
        "the target is private and did not approve the suite's trust request; approve the suite's node (give "
        "--registry so it has one) or run it public"
    }
    assert any(t["verdict"] == "pass" for t in tests)  # the sanity checks still run: pings pass the gate
    assert code == 0, out[-3000:]
    assert report["duration_s"] < 10, f"decided once, yet the run took {report['duration_s']} s"
