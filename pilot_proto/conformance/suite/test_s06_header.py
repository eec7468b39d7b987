"""Draft 6: the 34-byte header and its CRC-32, judged through an authenticated tunnel.

Every malformed packet rides inside a valid PILS frame, so only the header rule under test is wrong.
"Dropped" is observed as silence to a packet that would otherwise be answered (a Control ping or a SYN),
followed by a good ping that *is* answered.
"""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import CONTROL, SYN, Peer, raw_header
from pilot_proto.profile import Profile

QUIET = 0.4  # seconds of silence that count as "dropped" (x --timeout-scale)


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
