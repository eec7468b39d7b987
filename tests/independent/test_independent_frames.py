"""The shipped frame vectors, checked with ``struct`` and ``zlib`` written out here (issue 13).

Independent decoders for the 34-byte packet header (draft 6), the five tunnel frames (draft 7), the SACK
payload (wire-notes 1.11) and the 6-byte address (draft 4.1).  Nothing imports pilot_proto.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Any

import pytest
from independent_vectors import H, cases, load

pytestmark = pytest.mark.req("PKT-005", "PKT-010")

_HDR = struct.Struct(">BBHHIHIHHIIHI")  # ver|flags, proto, len, src net, src node, dst net, dst node, ports...
assert _HDR.size == 34


def crc32_of(packet: bytes, length: int) -> int:
    """Draft 6.5: CRC-32 (IEEE) of the header with a zeroed checksum field, then the payload."""
    return zlib.crc32(packet[:30] + bytes(4) + packet[34 : 34 + length]) & 0xFFFFFFFF


def text(network: int, node: int) -> str:
    return f"{network}:{network:04X}.{node >> 16:04X}.{node & 0xFFFF:04X}"


def decode_header(raw: bytes, draft: bool) -> dict[str, Any] | str:
    """The header's fields, or the error code, in the draft 12.1 order: length, trailing, CRC, version."""
    if len(raw) < 34:
        return "truncated"
    vf, proto, length, sn, snode, dn, dnode, sport, dport, seq, ack, window, checksum = _HDR.unpack_from(raw)
    if len(raw) < 34 + length:
        return "truncated"
    if draft and len(raw) > 34 + length:
        return "trailing_data"
    if crc32_of(raw, length) != checksum:
        return "bad_checksum"
    if vf >> 4 != 1:
        return "bad_version"
    return {
        "version": vf >> 4, "flags": vf & 0xF, "protocol": proto, "src": text(sn, snode), "dst": text(dn, dnode),
        "srcPort": sport, "dstPort": dport, "seq": seq, "ack": ack, "window": window, "checksum": checksum,
        "payload": raw[34 : 34 + length].hex(),
    }  # fmt: skip


def _profiles(group: dict[str, Any]) -> list[bool]:
    """``draft`` flags for the profiles a group applies to."""
    return {"any": [True, False], "draft": [True], "go-interop": [False]}[group.get("profile", "any")]


def test_header_file() -> None:
    seen = set()
    for group, t in cases("header_test.json"):
        raw = H(t["encoded"])
        for draft in _profiles(group):
            got = decode_header(raw, draft)
            if t["result"] == "invalid":
                assert got == t["error"], f"tcId {t['tcId']}: independent {got}, file {t['error']}"
                seen.add(got)
                continue
            assert isinstance(got, dict), f"tcId {t['tcId']}: independent decoder refuses it ({got})"
            assert got.pop("payload") == t["payload"]
            assert got == t["header"], t["tcId"]
    assert seen == {"truncated", "trailing_data", "bad_checksum", "bad_version"}


def test_appendix_b_syn_layout() -> None:
    """Draft Appendix B: the SYN's first bytes, fixed by the draft's own example."""
    syn = next(t for _, t in cases("header_test.json") if "Appendix B SYN" in t["comment"])
    raw = H(syn["encoded"])
    assert raw[0] == 0x11 and raw[1] == 0x01 and raw[2:4] == b"\x00\x00"  # version 1, SYN, Stream, no payload
    assert struct.unpack_from(">HIHIHH", raw, 4) == (0, 1, 0, 2, 49152, 1000)
    assert struct.unpack_from(">H", raw, 28) == (512,)


_FIXED = {b"PILK": 40, b"PILA": 136, b"PILP": 8}


def decode_tunnel_frame(raw: bytes, draft: bool) -> dict[str, Any] | str:
    """Draft 7 framing by hand (go-interop accepts longer PILK/PILA/PILP and the bare 4-byte PILP)."""
    if len(raw) < 4:
        return "truncated"
    magic = raw[:4]
    if magic not in (b"PILT", b"PILS", b"PILK", b"PILA", b"PILP"):
        return "bad_magic"
    if magic == b"PILT":
        return "truncated" if len(raw) < 38 else {"packet": raw[4:].hex()}
    if magic == b"PILS":
        if len(raw) < 4 + 4 + 12 + 16:
            return "truncated"
        sender, nonce = struct.unpack_from(">I12s", raw, 4)
        return {"sender": sender, "nonce": nonce.hex(), "ciphertext": raw[20:].hex()}
    if magic == b"PILP" and len(raw) == 4 and not draft:
        return {"sender": None}
    size = _FIXED[magic]
    if len(raw) < size:
        return "truncated"
    if len(raw) > size and draft:
        return "trailing_data"
    (sender,) = struct.unpack_from(">I", raw, 4)
    if magic == b"PILP":
        return {"sender": sender}
    out: dict[str, Any] = {"sender": sender, "x25519Public": raw[8:40].hex()}
    if magic == b"PILA":
        out.update(ed25519Public=raw[40:72].hex(), signature=raw[72:136].hex(), trailer=raw[136:].hex())
    return out


def test_tunnel_frames_file() -> None:
    for group, t in cases("tunnel_frames_test.json"):
        raw = H(t["frame"])
        for draft in _profiles(group):
            got = decode_tunnel_frame(raw, draft)
            if t["result"] == "invalid":
                assert got == t["error"], f"tcId {t['tcId']}: independent {got}, file {t['error']}"
                continue
            assert isinstance(got, dict), f"tcId {t['tcId']}: independent decoder refuses it ({got})"
            assert {k: t.get(k) for k in got} == got, t["tcId"]


def decode_sack(raw: bytes, draft: bool) -> list[list[int]] | str:
    if len(raw) < 5:
        return "truncated"
    if raw[:4] != b"SACK":
        return "bad_magic"
    count = raw[4]
    if not 1 <= count <= 4:
        return "out_of_range"
    if len(raw) < 5 + 8 * count:
        return "truncated"
    if draft and len(raw) > 5 + 8 * count:
        return "trailing_data"
    return [list(struct.unpack_from(">II", raw, 5 + 8 * i)) for i in range(count)]


def test_sack_file() -> None:
    kinds = set()
    for group, t in cases("stream_sack_test.json"):
        kinds.add(group["type"])
        draft = group.get("profile") != "go-interop"
        if group["type"] == "SackDecodeTest":
            got = decode_sack(H(t["payload"]), draft)
            assert got == (t["error"] if t["result"] == "invalid" else t["blocks"]), t["tcId"]
        elif group["type"] == "SackEncodeTest":
            blocks = t["blocks"]
            assert H(t["payload"]) == b"SACK" + bytes([len(blocks)]) + b"".join(struct.pack(">II", *b) for b in blocks)
    assert {"SackDecodeTest", "SackEncodeTest"} <= kinds


_TEXT = re.compile(r"^([0-9]{1,5}):([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})$")


def test_address_file() -> None:
    for group, t in cases("address_test.json"):
        if group["type"] == "AddressBinaryTest":
            raw = H(t["binary"])
            if t["result"] == "invalid":
                assert len(raw) < 6 and t["error"] == "truncated"
                continue
            net, node = struct.unpack(">HI", raw)
            assert (net, node, text(net, node)) == (t["network"], t["node"], t["canonical"])
        elif group["type"] == "AddressTextTest" and t["result"] == "valid":
            m = _TEXT.match(t["text"])
            assert m is not None, t["tcId"]
            net, node = int(m[1]), int(m[3] + m[4], 16)
            assert (net, node) == (t["network"], t["node"]), t["tcId"]
            assert t["binary"] == struct.pack(">HI", net, node).hex()
            assert t["canonical"] == text(net, node)
        elif group["type"] == "AddressTextTest" and group["profile"] == "go-interop":
            m = _TEXT.match(t["text"])  # Go's form: the first group repeats the network (E-ADDR-1)
            assert m is None or int(m[2], 16) != int(m[1]) or int(m[1]) > 0xFFFF, t["tcId"]


def test_golden_frame_kinds() -> None:
    doc = load("golden_test.json")
    for t in doc["testGroups"][0]["tests"]:
        raw, fields = H(t["encoded"]), t["fields"]
        if t["layer"] == "L1":
            got = decode_header(raw, draft=True)
            assert isinstance(got, dict), t["kind"]
            assert (got["flags"], got["protocol"], got["seq"], got["ack"], got["payload"]) == (
                fields["flags"], fields["protocol"], fields["seq"], fields["ack"], fields["payload"])  # fmt: skip
        elif t["kind"] == "l7-sack-payload":
            assert decode_sack(raw, draft=True) == fields["blocks"]
        elif t["kind"] == "l4-punch-pilp":
            assert raw == b"PILP"
    assert load("golden_test.json")["numberOfTests"] == 18
