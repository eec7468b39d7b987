"""Draft 6: the 34-byte header and its CRC-32, judged through an authenticated tunnel.

Every malformed packet rides inside a valid PILS frame, so only the header rule under test is wrong.
"Dropped" is observed as silence to a packet that would otherwise be answered (a Control ping or a SYN),
followed by a good ping that *is* answered.
"""

from __future__ import annotations

import zlib

import pytest

from pilot_proto.conformance.harness import ACK, CONTROL, FIN, RST, STREAM, SYN, Peer, raw_header
from pilot_proto.profile import Profile
from pilot_proto.wire.header import decode_packet, encode_packet

QUIET = 0.3  # seconds of silence that count as "dropped" (x --timeout-scale)
ECHO = 7
CLOSED = 4093  # a registered-range port no reference service uses


def _ping_raw(peer: Peer, **over: object) -> tuple[bytes, int, int]:
    req = peer.ping_packet()
    fields: dict[str, object] = dict(flags=0, protocol=CONTROL, src=req.src, dst=req.dst, src_port=req.src_port,
                                     dst_port=0, seq=req.seq, payload=req.payload)  # fmt: skip
    fields.update(over)
    return raw_header(**fields), req.src_port, req.seq  # type: ignore[arg-type]


def _answered(peer: Peer, src_port: int, seq: int) -> bool:
    got = peer.expect_packet(lambda p: p.protocol == CONTROL and p.dst_port == src_port and p.seq == seq, QUIET)
    return got is not None


@pytest.fixture
def pinged(peer: Peer) -> Peer:
    peer.keyed()
    peer.require_ping()
    return peer


@pytest.mark.req("PKT-010", "PKT-020", "PKT-021")
@pytest.mark.parametrize("delta", [1, 0x80000000], ids=["crc+1", "crc-top-bit"])
def test_wrong_crc_is_dropped(pinged: Peer, delta: int) -> None:
    raw, port, seq = _ping_raw(pinged, crc_delta=delta)
    pinged.send_packet(raw)
    assert not _answered(pinged, port, seq), "a packet with a wrong CRC-32 was processed (answered)"
    pinged.alive()


@pytest.mark.req("PKT-010", "PKT-020")
def test_wrong_crc_syn_gets_no_answer(pinged: Peer) -> None:
    s = pinged.stream(7)
    pkt = s.packet(SYN, seq=s.isn, ack=0)
    pinged.send_packet(raw_header(flags=SYN, src=pkt.src, dst=pkt.dst, src_port=s.src_port, dst_port=7, seq=s.isn,
                                  window=64, crc_delta=7))  # fmt: skip
    assert s.reply(QUIET) is None, "a SYN with a wrong CRC-32 was answered (SYN-ACK or RST)"
    pinged.alive()


@pytest.mark.req("PKT-020")
def test_crc_covers_payload(pinged: Peer) -> None:
    raw, port, seq = _ping_raw(pinged)
    tampered = raw[:-1] + bytes([raw[-1] ^ 0x01])  # payload bit flipped, header CRC unchanged
    pinged.send_packet(tampered)
    assert not _answered(pinged, port, seq), "a packet whose payload no longer matches its CRC was answered"
    pinged.alive()


@pytest.mark.req("PKT-001", "PKT-023")
@pytest.mark.parametrize("cut", [33, 20, 0], ids=["33-bytes", "20-bytes", "empty"])
def test_short_packet_is_dropped(pinged: Peer, cut: int) -> None:
    raw, port, seq = _ping_raw(pinged)
    pinged.send_packet(raw[:cut])
    assert not _answered(pinged, port, seq)
    pinged.alive()


@pytest.mark.req("PKT-002", "PKT-023")
def test_length_longer_than_payload_is_dropped(pinged: Peer) -> None:
    req = pinged.ping_packet()
    raw, port, seq = _ping_raw(pinged, length=len(req.payload) + 5)
    pinged.send_packet(raw)
    assert not _answered(pinged, port, seq), "a packet whose length field exceeds its payload was answered"
    pinged.alive()


@pytest.mark.req("PKT-024")
def test_trailing_bytes_after_payload(pinged: Peer) -> None:
    raw, port, seq = _ping_raw(pinged)
    pinged.send_packet(raw + b"\x00\x01\x02")
    answered = _answered(pinged, port, seq)
    if pinged.target.profile is Profile.DRAFT:
        assert not answered, "draft: bytes after 34 + length make the packet invalid, yet it was answered"
    else:
        assert answered, "go-interop: bytes after the payload are ignored, yet the packet was not answered"
    pinged.alive()


@pytest.mark.req("VER-001", "VER-002", "VER-006")
@pytest.mark.parametrize("version", [0, 2, 15])
def test_control_packet_with_other_version_is_dropped(pinged: Peer, version: int) -> None:
    raw, port, seq = _ping_raw(pinged, version=version)
    pinged.send_packet(raw)
    assert not _answered(pinged, port, seq), f"a version-{version} ping was answered"
    pinged.alive()


@pytest.mark.req("PKT-014")
@pytest.mark.parametrize("proto", [0x00, 0x04, 0xFF])
def test_unknown_protocol_is_dropped(pinged: Peer, proto: int) -> None:
    raw, port, _ = _ping_raw(pinged, protocol=proto)
    pinged.send_packet(raw)
    got = pinged.packets_during(QUIET)
    assert not [p for p in got if p.dst_port == port], f"protocol {proto:#x} was answered: {got}"
    pinged.alive()


@pytest.mark.req("PKT-025")
def test_packet_for_another_node_is_ignored(pinged: Peer) -> None:
    other = pinged.target_addr()._replace(node=pinged.target_addr().node ^ 0x5A5A)
    raw, port, seq = _ping_raw(pinged, dst=other)
    pinged.send_packet(raw)
    assert not _answered(pinged, port, seq), "a ping addressed to another node ID was answered"
    pinged.alive()


@pytest.mark.req("PKT-025")
def test_syn_for_another_node_is_ignored(pinged: Peer) -> None:
    s = pinged.stream(7)
    pkt = s.packet(SYN, seq=s.isn, ack=0)
    pinged.send_packet(pkt._replace(dst=pkt.dst._replace(node=pkt.dst.node ^ 0x5A5A)))
    assert s.reply(QUIET) is None, "a SYN addressed to another node was answered"
    pinged.alive()


@pytest.mark.req("SES-152", "SVC-041", "SVC-042")
def test_ping_reply_fields(pinged: Peer) -> None:
    req = pinged.ping_packet(payload=b"\x00conformance\xff")
    pinged.send_packet(req)
    rep = pinged.expect_packet(lambda p: p.protocol == CONTROL and p.dst_port == req.src_port, 2.0)
    assert rep is not None, "no ping reply"
    assert rep.src_port == 0 and rep.flags == 0x2, f"reply must be ACK from port 0: {rep.describe()}"
    assert rep.seq == req.seq and rep.ack == (req.seq + 1) & 0xFFFFFFFF, rep.describe()
    assert rep.payload == req.payload, "the ping payload was not echoed unchanged"
    assert rep.dst == req.src and rep.src == req.dst, rep.describe()


def _be(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


@pytest.mark.req("PKT-004", "PKT-005", "PKT-006", "PKT-013")
def test_target_header_is_big_endian_at_the_draft_offsets(pinged: Peer) -> None:
    """The target's own ping reply, read byte by byte (not through a decoder): every field sits at its draft
    offset in network byte order, the version in the high nibble of byte 0 and the flags in the low one."""
    seq = 0x01020304 ^ (pinged.rng.getrandbits(16) << 8)  # four different bytes: a swapped field shows
    req = pinged.ping_packet(seq=seq, payload=b"offsets")
    pinged.send_packet(req)
    pinged.expect_packet(pinged.is_ping_reply(req), 2.0)
    got = [i for i in pinged.inbound if i.packet is not None and pinged.is_ping_reply(req)(i.packet)]
    assert got, "no ping reply to read"
    raw = got[-1].raw
    me, it = req.src, req.dst
    expect = {
        "version (high nibble of byte 0)": (raw[0] >> 4, 1),
        "flags (low nibble of byte 0): ACK": (raw[0] & 0x0F, 0x2),
        "protocol (byte 1): Control 0x03": (raw[1], 0x03),
        "payload length (bytes 2-3)": (raw[2:4], _be(len(req.payload), 2)),
        "source network (bytes 4-5)": (raw[4:6], _be(it.network, 2)),
        "source node (bytes 6-9)": (raw[6:10], _be(it.node, 4)),
        "destination network (bytes 10-11)": (raw[10:12], _be(me.network, 2)),
        "destination node (bytes 12-15)": (raw[12:16], _be(me.node, 4)),
        "source port (bytes 16-17)": (raw[16:18], _be(0, 2)),
        "destination port (bytes 18-19)": (raw[18:20], _be(req.src_port, 2)),
        "sequence (bytes 20-23)": (raw[20:24], _be(seq, 4)),
        "acknowledgment (bytes 24-27)": (raw[24:28], _be((seq + 1) & 0xFFFFFFFF, 4)),
        "payload (from byte 34)": (raw[34:], req.payload),
    }
    wrong = {k: f"{v[0]!r} != {v[1]!r}" for k, v in expect.items() if v[0] != v[1]}
    assert not wrong, f"the ping reply {raw[:34].hex()} has fields off their draft offsets/byte order: {wrong}"
    crc = zlib.crc32(raw[34:], zlib.crc32(raw[:30] + bytes(4)))
    assert raw[30:34] == _be(crc, 4), f"checksum bytes 30-33 are {raw[30:34].hex()}, big-endian CRC-32 is {crc:08x}"


@pytest.mark.req("PKT-015", "PKT-011")
def test_flag_values_on_the_wire(pinged: Peer) -> None:
    """SYN 0x1, ACK 0x2, FIN 0x4, RST 0x8 in the low nibble of byte 0, combined; stream packets carry protocol
    0x01.  Read from the raw bytes of the target's SYN-ACK, its data, its FIN and its RST."""
    s = pinged.stream(ECHO)
    s.connect()
    s.send(b"flags")
    assert s.read(5) == b"flags", "the echo did not return the data"
    s.send(b"", ACK | FIN)
    assert s.reply(3.0, lambda p: bool(p.flags & FIN)) is not None, "the echo sent no FIN after ours"
    rst_stream = pinged.stream(CLOSED)
    rst_stream.syn()
    assert rst_stream.reply(2.0, lambda p: bool(p.flags & RST)) is not None, "no RST for a SYN to a closed port"
    mine = [i.raw for i in pinged.inbound if i.packet is not None and i.packet.protocol == STREAM]
    nibbles = {r[0] & 0x0F for r in mine}
    assert all(r[1] == 0x01 for r in mine), "a stream packet of the target does not carry protocol 0x01"
    assert 0x3 in nibbles, f"no SYN-ACK with flags 0x3 (SYN 0x1 | ACK 0x2) among {sorted(nibbles)}"
    assert 0x2 in nibbles, f"no plain ACK 0x2 among {sorted(nibbles)}"
    assert nibbles & {0x4, 0x6}, f"no FIN (0x4, or 0x6 with ACK) among {sorted(nibbles)}"
    assert nibbles & {0x8, 0xA}, f"no RST (0x8, or 0xA with ACK) among {sorted(nibbles)}"
    assert not nibbles & {0x5, 0x7, 0x9, 0xB, 0xC, 0xD, 0xE, 0xF}, f"contradictory flag combinations: {nibbles}"


@pytest.mark.req("SVC-043")
def test_control_packet_to_port_without_handler_is_ignored(pinged: Peer) -> None:
    """Only port 0 (ping) handles Control packets; ones for ports 5, 1000 and 4094 get no answer of any kind."""
    ours = {}
    for port in (5, 1000, 4094):
        raw, src_port, _ = _ping_raw(pinged, dst_port=port)
        pinged.send_packet(raw)
        ours[src_port] = port
    got = [p for p in pinged.packets_during(QUIET) if p.dst_port in ours]
    assert not got, f"Control packets to ports without a handler were answered: {[p.describe() for p in got]}"
    pinged.alive()


@pytest.mark.req("PKT-022", "SEC-006")
def test_crc_is_no_defence_tampering_is_caught_by_the_tag(pinged: Peer) -> None:
    """Without the key an attacker can still change a sealed packet AND fix its CRC: GCM encrypts with a key
    stream (XOR), and CRC-32 is affine, so the CRC of the changed packet is computable from the change alone.
    Only the AEAD tag protects the packet; a target that relied on the CRC would answer the altered ping."""
    req = pinged.ping_packet(payload=b"pay 0000 units")
    inner = encode_packet(req)
    frame = pinged.seal(inner)
    new_payload = b"pay 9999 units"
    delta = bytes(a ^ b for a, b in zip(req.payload, new_payload, strict=True))
    full = bytes(30) + bytes(4) + delta  # the change to header+payload, checksum excluded
    crc_delta = zlib.crc32(full) ^ zlib.crc32(bytes(len(full)))  # CRC(a ^ d) = CRC(a) ^ CRC(d) ^ CRC(0)
    patch = bytearray(len(inner))
    patch[34:] = delta
    patch[30:34] = _be(crc_delta, 4)
    body = bytearray(frame)
    for i, b in enumerate(patch):
        body[20 + i] ^= b  # ciphertext starts after magic, sender and nonce
    plain_check = bytes(a ^ b for a, b in zip(inner, patch, strict=True))
    assert decode_packet(plain_check, pinged.target.profile).payload == new_payload  # the forgery's CRC is valid
    pinged.send_raw(bytes(body), "PILS with its ciphertext altered and the inner CRC fixed up (tag unchanged)")
    assert not _answered(pinged, req.src_port, req.seq), (
        "a sealed ping altered in transit, with a recomputed CRC but the old tag, was answered"
    )
    pinged.alive()
