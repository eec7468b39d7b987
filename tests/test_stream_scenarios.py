"""Scenario vectors ``vectors/stream-scenarios.json`` (draft 8, 12.2).

The file is generated from our endpoint, so replaying it only proves we are
consistent with ourselves.  The tests below therefore also check every
scenario against the draft rule it illustrates, reading only the JSON (as
another runtime would), and check that the replayer notices a wrong packet.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.vectors import all_suites, dump, verify_doc
from pilot_proto.vectors._format import iter_tests
from pilot_proto.vectors.stream_scenarios import FILENAME, generate, verify
from pilot_proto.wire.sack import decode_sack

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / FILENAME
MASK = 0xFFFFFFFF


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return dict(json.loads(VECTORS.read_text(encoding="utf-8")))


def _scenario(doc: dict[str, Any], profile: str, name: str) -> dict[str, Any]:
    for group, test in iter_tests(doc):
        if group["profile"] == profile and test["name"] == name:
            return test
    raise KeyError((profile, name))


def _io(test: dict[str, Any]) -> list[tuple[float, str, dict[str, Any] | None, list[dict[str, Any]], list[Any]]]:
    """(t, op, input packet, output packets, output events) per input step."""
    out: list[tuple[float, str, dict[str, Any] | None, list[dict[str, Any]], list[Any]]] = []
    for step in test["steps"]:
        if step["op"] == "expect":
            t, op, pkt, _, _ = out[-1]
            out[-1] = (t, op, pkt, step["packets"], step["events"])
        else:
            out.append((step["t"], step["op"], step.get("packet"), [], []))
    return out


def _sent(test: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    return [(t, p) for t, _, _, pkts, _ in _io(test) for p in pkts]


PROFILES = ["draft", "go-interop"]


@pytest.mark.req("SES-001", "SES-040")
def test_committed_file_verifies_and_is_current(doc: dict[str, Any]) -> None:
    suite = all_suites()[FILENAME]
    assert verify_doc(suite, doc) == []
    assert dump(generate()) == VECTORS.read_text(encoding="utf-8")
    assert doc["numberOfTests"] >= 30


@pytest.mark.req("SES-040")
def test_replayer_detects_a_wrong_packet_and_a_wrong_time(doc: dict[str, Any]) -> None:
    bad = copy.deepcopy(doc)
    test = _scenario(bad, "draft", "rto-backoff")
    expects = [s for s in test["steps"] if s["op"] == "expect"]
    expects[-2]["packets"][0]["seq"] += 1
    assert any("rto-backoff" in f and "packets" in f for f in verify(bad))
    bad = copy.deepcopy(doc)
    test = _scenario(bad, "draft", "syn-backoff")
    timer = next(s for s in test["steps"] if s["op"] == "timer")
    timer["t"] = timer["t"] + 0.5  # the SYN retransmission comes earlier than the script says
    assert any("syn-backoff" in f and "before the step's time" in f for f in verify(bad))


@pytest.mark.req("SES-002", "SES-003", "SES-010", "SES-012", "SES-013")
@pytest.mark.parametrize("profile", PROFILES)
def test_active_handshake(doc: dict[str, Any], profile: str) -> None:
    test = _scenario(doc, profile, "handshake-active")
    (_, _, _, (syn,), _), (_, _, synack, (ack,), events) = _io(test)
    assert syn["flags"] == ["SYN"] and syn["seq"] == test["isn"][0] and syn["window"] > 0
    assert synack is not None and synack["ack"] == (syn["seq"] + 1) & MASK
    assert ack["flags"] == ["ACK"] and ack["ack"] == (synack["seq"] + 1) & MASK and ack["seq"] == syn["seq"] + 1
    assert events == [{"type": "Connected"}]


@pytest.mark.req("SES-004", "SES-011", "SES-013")
@pytest.mark.parametrize("profile", PROFILES)
def test_passive_handshake(doc: dict[str, Any], profile: str) -> None:
    test = _scenario(doc, profile, "handshake-passive")
    steps = _io(test)
    syn, (synack,) = steps[1][2], steps[1][3]
    assert syn is not None and synack["flags"] == ["SYN", "ACK"]
    assert synack["ack"] == syn["seq"] + 1 and synack["seq"] == test["isn"][0] and synack["window"] > 0
    assert steps[-1][4] == [{"type": "Connected"}]


@pytest.mark.req("SES-045")
@pytest.mark.parametrize(("profile", "waits"), [("draft", [1, 2, 4, 8, 8]), ("go-interop", [1, 2, 4, 1, 2, 4])])
def test_syn_backoff(doc: dict[str, Any], profile: str, waits: list[float]) -> None:
    """Draft: 1, 2, 4, 8 s ... at most 5 retries; go-interop follows Go's schedule (erratum E-SES-8)."""
    test = _scenario(doc, profile, "syn-backoff")
    times = [t for t, p in _sent(test) if p["flags"] == ["SYN"]]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx(waits)
    assert _io(test)[-1][4] == [{"type": "Closed", "reason": "connect_timeout"}]


@pytest.mark.req("SES-100")
def test_delayed_ack(doc: dict[str, Any]) -> None:
    steps = _io(_scenario(doc, "draft", "delayed-ack"))
    first, timer, second, third = steps[3], steps[4], steps[5], steps[6]
    assert first[3] == [] and first[4][0]["type"] == "DataReceived"  # no ACK for one segment yet
    assert timer[1] == "timer" and timer[0] == pytest.approx(first[0] + 0.040)
    assert timer[3][0]["ack"] == first[2]["seq"] + 100  # type: ignore[index]
    assert second[3] == [] and len(third[3]) == 1 and third[3][0]["ack"] == third[2]["seq"] + 100  # type: ignore[index]


@pytest.mark.req("SES-093", "SES-078")
@pytest.mark.parametrize("profile", PROFILES)
def test_segmentation(doc: dict[str, Any], profile: str) -> None:
    test = _scenario(doc, profile, "send-segmentation")
    send = next(s for s in _io(test) if s[1] == "app_send")
    data = next(s["data"] for s in test["steps"] if s["op"] == "app_send")
    assert [len(p["payload"]) // 2 for p in send[3]] == [100, 100, 50]
    assert "".join(p["payload"] for p in send[3]) == data
    assert [p["seq"] for p in send[3]] == [test["isn"][0] + 1 + 100 * i for i in range(3)]


@pytest.mark.req("SES-073", "SES-074")
@pytest.mark.parametrize("profile", PROFILES)
def test_fast_retransmit_on_third_duplicate(doc: dict[str, Any], profile: str) -> None:
    steps = _io(_scenario(doc, profile, "fast-retransmit"))
    acks = [s for s in steps if s[1] == "recv"][1:]  # after the SYN-ACK
    assert [len(s[3]) for s in acks] == [0, 0, 0, 1, 0]
    (rtx,) = acks[3][3]
    assert rtx["seq"] == acks[0][2]["ack"] and len(rtx["payload"]) == 200  # type: ignore[index]


@pytest.mark.req("SES-050", "SES-060", "SES-061", "SES-062", "SES-101")
@pytest.mark.parametrize("profile", PROFILES)
def test_sack_receiver(doc: dict[str, Any], profile: str) -> None:
    steps = _io(_scenario(doc, profile, "sack-receiver"))
    data = [s for s in steps if s[1] == "recv" and s[2] and s[2]["payload"]]
    base = data[0][2]["seq"]  # type: ignore[index]
    held: list[tuple[int, int]] = []
    delivered = 0
    for _, _, pkt, out, events in data:
        assert pkt is not None
        delivered += sum(len(e["data"]) // 2 for e in events if e["type"] == "DataReceived")
        s = pkt["seq"] - base
        if s > delivered:  # out of order: an immediate ACK with SACK blocks naming what is held
            held.append((s, s + 100))
            (ack,) = out
            blocks = [((a - base) & MASK, (b - base) & MASK) for a, b in decode_sack(bytes.fromhex(ack["payload"]))]
            assert sorted(blocks) == sorted(h for h in held if h[0] >= delivered) and len(blocks) <= 4
            assert ack["ack"] - base == delivered
    assert delivered == 500


@pytest.mark.req("SES-063")
@pytest.mark.parametrize("profile", PROFILES)
def test_sack_sender_retransmits_only_the_hole(doc: dict[str, Any], profile: str) -> None:
    test = _scenario(doc, profile, "sack-sender")
    sent = [p for _, p in _sent(test) if p["payload"]]
    first = [p["seq"] for p in sent[:5]]
    assert [p["seq"] for p in sent[5:]] == [first[1]]


@pytest.mark.req("SES-043", "SES-044", "SES-046", "SES-048")
@pytest.mark.parametrize(("profile", "limit"), [("draft", 8), ("go-interop", 7)])
def test_rto_backoff(doc: dict[str, Any], profile: str, limit: int) -> None:
    test = _scenario(doc, profile, "rto-backoff")
    data = [t for t, p in _sent(test) if p["payload"]]
    gaps = [b - a for a, b in itertools.pairwise(data)]
    assert len(data) == 1 + limit
    assert gaps[0] == pytest.approx(0.2)  # SRTT 50 ms -> RTO clamped up to 200 ms
    for a, b in itertools.pairwise(gaps):
        assert b == pytest.approx(min(2 * a, 10.0))
    assert _io(test)[-1][4] == [{"type": "Closed", "reason": "timeout"}]


@pytest.mark.req("SES-082", "SES-083", "SES-081")
def test_zero_window_probes(doc: dict[str, Any]) -> None:
    test = _scenario(doc, "draft", "zero-window-sender")
    sent = [(t, p) for t, p in _sent(test) if p["payload"]]
    probes = [(t, p) for t, p in sent if len(p["payload"]) == 2]
    assert len(probes) == 3 and len({p["seq"] for _, p in probes}) == 1
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(probes)]
    assert gaps[1] > gaps[0]
    assert len(sent[-1][1]["payload"]) // 2 == 49  # window reopened: the rest goes


@pytest.mark.req("SES-080", "SES-051")
@pytest.mark.parametrize("profile", PROFILES)
def test_receiver_window_closes_and_reopens(doc: dict[str, Any], profile: str) -> None:
    test = _scenario(doc, profile, "zero-window-receiver")
    windows = [p["window"] for _, p in _sent(test)]
    # go-interop never advertises 0, which a Go peer reads as "unlimited" (erratum E-SES-3)
    assert windows[0] == 2 and min(windows) == (0 if profile == "draft" else 1) and windows[-1] > 0
    delivered = [e for s in _io(test) for e in s[4] if e["type"] == "DataReceived"]
    assert len(delivered) == 2  # the third segment lay beyond the window and was not taken


@pytest.mark.req("SES-005", "SES-006", "SES-020", "SES-021", "SES-120")
@pytest.mark.parametrize("profile", PROFILES)
def test_active_close_and_time_wait(doc: dict[str, Any], profile: str) -> None:
    test = _scenario(doc, profile, "close-active")
    steps = _io(test)
    (fin,) = steps[2][3]
    assert "FIN" in fin["flags"] and fin["seq"] == test["isn"][0] + 1
    fin_acked_at = steps[3][0]
    before, after = steps[-2], steps[-1]
    assert before[0] < fin_acked_at + 10 < after[0]
    assert before[3][0]["flags"] == ["ACK"] and after[3][0]["flags"] == ["RST"]


@pytest.mark.req("SES-022")
@pytest.mark.parametrize("profile", PROFILES)
def test_passive_close(doc: dict[str, Any], profile: str) -> None:
    steps = _io(_scenario(doc, profile, "close-passive"))
    assert {"type": "StreamEnded"} in steps[-2][4] and "FIN" in steps[-2][3][0]["flags"]
    assert steps[-1][4] == [{"type": "Closed", "reason": "normal"}]


@pytest.mark.req("SES-130", "SES-132")
@pytest.mark.parametrize("profile", PROFILES)
def test_rst(doc: dict[str, Any], profile: str) -> None:
    assert _io(_scenario(doc, profile, "rst-in-window"))[-1][4] == [
        {"type": "Reset"},
        {"type": "Closed", "reason": "reset"},
    ]
    out_of_window = _io(_scenario(doc, profile, "rst-out-of-window"))[-1][4]
    assert out_of_window == ([] if profile == "draft" else [{"type": "Reset"}, {"type": "Closed", "reason": "reset"}])


@pytest.mark.req("SES-131")
@pytest.mark.parametrize("profile", PROFILES)
def test_rst_to_unknown_port_never_to_rst(doc: dict[str, Any], profile: str) -> None:
    syn, rst = _io(_scenario(doc, profile, "rst-no-listener"))
    assert [p["flags"] for p in syn[3]] == [["RST"]] and rst[3] == []


@pytest.mark.req("VER-005", "VER-006")
@pytest.mark.parametrize("profile", PROFILES)
def test_version_mismatch(doc: dict[str, Any], profile: str) -> None:
    steps = _io(_scenario(doc, profile, "version-mismatch"))
    bad_syn = steps[1]
    assert bad_syn[2]["version"] == 2  # type: ignore[index]
    assert [p["flags"] for p in bad_syn[3]] == ([["RST"]] if profile == "draft" else [])
    assert steps[-1][2]["version"] == 2 and steps[-1][3] == [] and steps[-1][4] == []  # type: ignore[index]
