"""Smoke tests of the fast header codec; the exhaustive proofs live in test_wire_*."""

from __future__ import annotations

import pytest

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.wire import Addr, Flags, Packet, PacketProtocol, decode_packet


@pytest.mark.req("PKT-001", "PKT-002", "PKT-010")
def test_roundtrip_and_crc_rejection() -> None:
    pkt = Packet(Flags.SYN, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, window=512)
    raw = pkt.encode()
    assert len(raw) == 34
    back = decode_packet(raw)
    assert back._replace(checksum=0) == pkt
    bad = bytearray(raw)
    bad[33] ^= 1
    with pytest.raises(DecodeError) as info:
        decode_packet(bytes(bad))
    assert info.value.code is ErrorCode.BAD_CHECKSUM and info.value.field == "header.checksum"
