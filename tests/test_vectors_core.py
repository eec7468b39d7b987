"""Core vector files: committed == freshly generated, they verify, and independent checks agree with them.

Independent checks do not use the fast codec: the Appendix B packets are rebuilt from the draft's
byte table with ``struct`` and ``binascii.crc32``; invalid vectors are re-checked with the construct
schemas; header vectors are dissected with the scapy layers.
"""

from __future__ import annotations

import binascii
import copy
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile
from pilot_proto.vectors import address as address_vectors
from pilot_proto.vectors import dump, golden, verify_doc
from pilot_proto.vectors import frames as frame_vectors
from pilot_proto.vectors import header as header_vectors
from pilot_proto.vectors._format import iter_tests
from pilot_proto.wire import schemas
from pilot_proto.wire.scapy_layers import Pilot

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
SUITES = {s.filename: s for m in (address_vectors, header_vectors, frame_vectors, golden) for s in m.SUITES}
GOLDEN_DIR = Path(os.environ.get("PILOT_GOLDEN_DIR", "/tmp/goref/golden"))


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_committed_file_is_fresh_and_verifies(name: str) -> None:
    suite = SUITES[name]
    text = (VECTORS / name).read_text(encoding="utf-8")
    assert text == dump(suite.generate()), f"{name} is stale: run 'pilot-proto vectors generate --out vectors/'"
    assert verify_doc(suite, json.loads(text)) == []


@pytest.mark.parametrize("name", sorted(SUITES))
def test_verifier_catches_a_tampered_vector(name: str) -> None:
    doc = _load(name)
    tampered = copy.deepcopy(doc)
    _, first = next(iter_tests(tampered))
    for key in ("encoded", "frame", "text", "binary"):
        if key in first:
            value = first[key]
            first[key] = value[:-2] + ("00" if value[-2:] != "00" else "01") if key != "text" else value + "0"
            break
    assert verify_doc(SUITES[name], tampered), f"{name}: verify accepted a modified vector"


# -- header_test.json ----------------------------------------------------------------------------------------------


def _by_comment(doc: dict[str, Any], start: str) -> dict[str, Any]:
    return next(t for _, t in iter_tests(doc) if t["comment"].startswith(start))


@pytest.mark.req("PKT-005", "PKT-020", "PKT-021", "VER-001")
def test_appendix_b_vectors_rebuilt_from_the_draft_table() -> None:
    doc = _load("header_test.json")
    syn = _by_comment(doc, "draft Appendix B SYN")
    head = struct.pack(">BBHHIHIHHIIH", 0x11, 0x01, 0, 0, 1, 0, 2, 49152, 1000, 0, 0, 512)
    crc = binascii.crc32(head + bytes(4))
    assert syn["encoded"] == (head + struct.pack(">I", crc)).hex()
    assert syn["header"]["checksum"] == crc
    data = _by_comment(doc, "draft Appendix B data")
    head = struct.pack(">BBHHIHIHHIIH", 0x12, 0x01, 5, 0, 1, 0, 2, 49152, 1000, 1, 1, 502)
    crc = binascii.crc32(head + bytes(4) + b"hello")
    assert data["encoded"] == (head + struct.pack(">I", crc) + b"hello").hex()
    assert len(bytes.fromhex(data["encoded"])) == 39


@pytest.mark.req("PKT-001", "PKT-010", "PKT-023", "PKT-024", "VER-001", "VER-002")
def test_header_vectors_agree_with_the_schema_and_scapy() -> None:
    doc = _load("header_test.json")
    for group, t in iter_tests(doc):
        profiles = list(Profile) if group["profile"] == "any" else [Profile.parse(group["profile"])]
        raw = bytes.fromhex(t["encoded"])
        for profile in profiles:
            try:
                pkt = schemas.parse_packet_schema(raw, profile)
            except PilotError as exc:
                assert t["result"] == "invalid" and exc.code.value == t["error"], t["tcId"]
                continue
            assert t["result"] == "valid", t["tcId"]
            assert pkt == header_vectors.packet_from_json(t["header"], t["payload"])
        if t["result"] == "valid":
            layer = Pilot(raw)
            h = t["header"]
            assert (int(layer.version), int(layer.flags), int(layer.protocol)) == (
                h["version"],
                h["flags"],
                h["protocol"],
            )
            assert (layer.src_port, layer.dst_port, layer.seq, layer.ack, layer.window, layer.checksum) == (
                h["srcPort"], h["dstPort"], h["seq"], h["ack"], h["window"], h["checksum"],
            )  # fmt: skip


@pytest.mark.req("VER-002", "PKT-010", "PKT-023", "PKT-024")
def test_header_invalid_vectors_cover_the_required_cases() -> None:
    doc = _load("header_test.json")
    errors = [t.get("error") for _, t in iter_tests(doc) if t["result"] == "invalid"]
    assert {"bad_checksum", "truncated", "bad_version", "trailing_data"} <= set(errors)
    assert errors.count("bad_version") == 15  # versions 0 and 2..15


# -- tunnel_frames_test.json ------------------------------------------------------------------------------------


@pytest.mark.req("TUN-001", "TUN-009", "TUN-023", "TUN-024", "TUN-027")
def test_frame_vectors_agree_with_the_schema() -> None:
    doc = _load("tunnel_frames_test.json")
    for group, t in iter_tests(doc):
        profiles = list(Profile) if group["profile"] == "any" else [Profile.parse(group["profile"])]
        for profile in profiles:
            try:
                frame = schemas.parse_frame_schema(bytes.fromhex(t["frame"]), profile)
            except PilotError as exc:
                assert t["result"] == "invalid" and exc.code.value == t["error"], t["tcId"]
                continue
            assert t["result"] == "valid" and frame == frame_vectors.frame_from_json(t["magic"], t), t["tcId"]
    magics = {t["magic"] for _, t in iter_tests(doc) if t["result"] == "valid"}
    assert magics == {"PILT", "PILS", "PILK", "PILA", "PILP"}


# -- address_test.json -------------------------------------------------------------------------------------------


@pytest.mark.req("ADDR-009", "ADDR-015", "ADDR-016")
def test_address_vectors_cover_the_draft_examples_per_profile() -> None:
    doc = _load("address_test.json")
    outcome = {(g["profile"], t["text"]): t["result"] for g, t in iter_tests(doc) if g["type"] == "AddressTextTest"}
    assert outcome[("any", "0:0000.0000.0001")] == "valid"
    assert outcome[("draft", "1:00A3.F291.0004")] == "valid"
    assert outcome[("go-interop", "1:00A3.F291.0004")] == "invalid"
    assert outcome[("draft", "7:FFFF.FFFF.FFFF")] == "valid"
    assert outcome[("go-interop", "7:FFFF.FFFF.FFFF")] == "invalid"


# -- golden corpus -----------------------------------------------------------------------------------------------

README_KINDS = [
    "l1-packet-syn", "l1-packet-data", "l1-packet-fin", "l1-packet-rst", "l1-packet-datagram",
    "l4-msg-discover", "l4-msg-discover-reply-v4", "l4-msg-discover-reply-v6", "l4-msg-punch-request",
    "l4-msg-punch-command", "l4-msg-relay", "l4-msg-relay-deliver", "l4-msg-sync", "l4-punch-pilp",
    "l5-key-exchange-auth", "l5-key-exchange-unauth", "l6-encrypted-frame", "l7-sack-payload",
]  # fmt: skip

#: Facts the corpus README states, checked on the decoded real files.
README_FACTS: dict[str, dict[str, Any]] = {
    "l1-packet-syn": {"flags": 0x1, "seq": 100, "payload": ""},
    "l1-packet-data": {"flags": 0x2, "seq": 101, "ack": 200, "payload": b"hello".hex()},
    "l1-packet-fin": {"flags": 0x6, "seq": 200, "ack": 101},
    "l1-packet-rst": {"flags": 0x8, "seq": 300},
    "l1-packet-datagram": {"protocol": 2},
    "l4-punch-pilp": {"type": "PunchFrame", "sender": None},
    "l6-encrypted-frame": {"plaintext": b"hello".hex()},
    "l7-sack-payload": {"blocks": [[1500, 1600]]},
}


@pytest.mark.req("TUN-005", "TUN-004", "TUN-027", "PKT-005")
def test_golden_vectors_cover_every_corpus_kind() -> None:
    doc = _load("golden_test.json")
    kinds = [t["kind"] for _, t in iter_tests(doc)]
    assert kinds == README_KINDS
    for _, t in iter_tests(doc):
        facts = README_FACTS.get(t["kind"], {})
        assert {k: t["fields"][k] for k in facts} == facts, t["kind"]
    sizes = {t["kind"]: len(t["encoded"]) // 2 for _, t in iter_tests(doc)}
    assert sizes["l5-key-exchange-auth"] == 136 and sizes["l5-key-exchange-unauth"] == 40
    assert sizes["l1-packet-syn"] == 34 and sizes["l4-punch-pilp"] == 4


def _corpus_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.bin")) if GOLDEN_DIR.is_dir() else []


@pytest.mark.interop
@pytest.mark.req("PKT-005", "TUN-004", "TUN-005", "TUN-027")
def test_against_the_go_golden_corpus() -> None:
    """Decode every real corpus file with our decoders, re-encode it, check the README facts.

    Skips unless ``$PILOT_GOLDEN_DIR`` (default ``/tmp/goref/golden``) holds ``*.bin`` files of the corpus
    (its ``RECONSTRUCTED-not-golden`` subfolder is deliberately not read).  Prints which kinds are also
    byte-identical to our own ``golden_test.json`` encoding.
    """
    files = [f for f in _corpus_files() if f.stem in README_KINDS]
    if not files:
        pytest.skip(f"no Go golden corpus (*.bin) in {GOLDEN_DIR}")
    layers = {k.name: k.layer for k in golden.GOLDEN_KINDS}
    same = []
    for path in files:
        raw = path.read_bytes()
        fields = golden.decode_kind(layers[path.stem], path.stem, raw)
        assert golden.reencode(layers[path.stem], path.stem, raw) == raw, path.name
        facts = README_FACTS.get(path.stem, {})
        assert {k: fields[k] for k in facts} == facts, path.name
        if golden.encode_kind(path.stem) == raw:
            same.append(path.stem)
    print(f"golden corpus: {len(files)} files round-trip; byte-identical to our vectors: {same}")
