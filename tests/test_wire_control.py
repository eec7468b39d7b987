"""Ping/pong on port 0: Control packets and Go's reply rule (draft 6.3, wire-notes 1.13)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.wire.address import Addr
from pilot_proto.wire.control import (
    PING_PORT,
    build_ping,
    build_reply,
    decode_ping,
    decode_pong,
    is_ping,
    is_reply_to,
)
from pilot_proto.wire.header import Flags, Packet, PacketProtocol

addrs = st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
pings = st.builds(build_ping, addrs, addrs, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.binary(max_size=64))
A, B = Addr(0, 0x0001), Addr(0, 0x0002)


@pytest.mark.req("SVC-041")
def test_ping_is_control_to_port_zero() -> None:
    ping = build_ping(A, B, 49152, seq=5, payload=b"hello")
    assert ping.protocol == PacketProtocol.CONTROL and ping.dst_port == PING_PORT == 0
    assert ping.flags == Flags.NONE and is_ping(ping)
    raw = ping.encode()
    assert raw[1] == 0x03 and raw[18:20] == b"\x00\x00"  # protocol byte, destination port
    assert decode_ping(raw)._replace(checksum=0) == ping


@pytest.mark.req("SVC-042")
def test_reply_follows_go_rule_field_by_field() -> None:
    ping = build_ping(A, B, 49200, seq=41, payload=b"\x00\x01")
    pong = build_reply(ping)
    assert pong.flags == Flags.ACK
    assert pong.protocol == PacketProtocol.CONTROL
    assert (pong.src, pong.dst) == (B, A)
    assert (pong.src_port, pong.dst_port) == (0, 49200)
    assert (pong.seq, pong.ack) == (41, 42)
    assert pong.payload == b"\x00\x01"
    assert build_reply(ping, local=Addr(3, 9)).src == Addr(3, 9)


@pytest.mark.req("SVC-042")
def test_reply_ack_wraps_at_2_32() -> None:
    pong = build_reply(build_ping(A, B, 1, seq=0xFFFFFFFF))
    assert pong.ack == 0
    assert decode_pong(pong.encode()).ack == 0


@pytest.mark.req("SVC-041", "SVC-042")
@settings(max_examples=150, deadline=None)
@given(pings, st.sampled_from(list(Profile)))
def test_any_ping_roundtrips_and_its_reply_matches(ping: Packet, profile: Profile) -> None:
    back = decode_ping(ping.encode(), profile)
    assert back._replace(checksum=0) == ping
    pong = decode_pong(build_reply(back).encode(), profile)
    assert is_reply_to(pong, ping)


@pytest.mark.req("SVC-042")
@pytest.mark.parametrize(
    "change",
    [
        {"flags": Flags.ACK | Flags.SYN},
        {"protocol": PacketProtocol.DATAGRAM},
        {"src_port": 7},
        {"dst_port": 49153},
        {"dst": Addr(0, 99)},
        {"seq": 42},
        {"ack": 41},
        {"payload": b"other"},
    ],
    ids=["flags", "protocol", "src_port", "dst_port", "dst", "seq", "ack", "payload"],
)
def test_is_reply_to_rejects_each_wrong_field(change: dict[str, object]) -> None:
    ping = build_ping(A, B, 49152, seq=41, payload=b"p")
    pong = build_reply(ping)
    assert is_reply_to(pong, ping)
    assert not is_reply_to(pong._replace(**change), ping)


@pytest.mark.req("SVC-043")
def test_control_to_other_ports_is_not_a_ping() -> None:
    other = build_ping(A, B, 49152)._replace(dst_port=1005)
    assert not is_ping(other)
    with pytest.raises(DecodeError) as info:
        decode_ping(other.encode())
    assert info.value.code is ErrorCode.BAD_VALUE and info.value.field == "header.dst_port"
    assert not is_ping(build_ping(A, B, 1)._replace(protocol=PacketProtocol.STREAM))
    assert not is_ping(build_reply(build_ping(A, B, 1)))  # a reply is never answered


@pytest.mark.req("SVC-041")
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"protocol": PacketProtocol.STREAM}, "header.protocol"),
        ({"dst_port": 7}, "header.dst_port"),
        ({"flags": Flags.ACK}, "header.flags"),
    ],
    ids=["not-control", "not-port-0", "has-ack"],
)
def test_decode_ping_invalid(change: dict[str, object], field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_ping(build_ping(A, B, 49152)._replace(**change).encode())
    assert info.value.field == field and info.value.requirement == "SVC-041" and info.value.section == "6.3"


@pytest.mark.req("SVC-042")
@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"protocol": PacketProtocol.DATAGRAM}, "header.protocol", ErrorCode.BAD_VALUE),
        ({"src_port": 1}, "header.src_port", ErrorCode.BAD_VALUE),
        ({"flags": Flags.ACK | Flags.FIN}, "header.flags", ErrorCode.BAD_FLAGS),
        ({"flags": Flags.NONE}, "header.flags", ErrorCode.BAD_FLAGS),
        ({"ack": 7}, "header.ack", ErrorCode.BAD_VALUE),
    ],
    ids=["not-control", "src-port", "extra-flag", "no-ack-flag", "ack-not-seq+1"],
)
def test_decode_pong_invalid(change: dict[str, object], field: str, code: ErrorCode) -> None:
    pong = build_reply(build_ping(A, B, 49152, seq=3))._replace(**change)
    with pytest.raises(DecodeError) as info:
        decode_pong(pong.encode())
    assert info.value.field == field and info.value.code is code


@pytest.mark.req("SVC-041")
def test_damaged_ping_fails_in_header_layer_first() -> None:
    raw = bytearray(build_ping(A, B, 49152, payload=b"abc").encode())
    raw[-1] ^= 0xFF
    with pytest.raises(DecodeError) as info:
        decode_ping(bytes(raw))
    assert info.value.code is ErrorCode.BAD_CHECKSUM
