"""Tunnel frames (draft 7), their magics (20.1) and the per-frame overhead arithmetic (13)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire import frames
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    KeyExchangeFrame,
    Magic,
    PlaintextFrame,
    PunchFrame,
    auth_kex_signed_message,
    decode_frame,
    encode_frame,
    is_beacon_message,
)
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet, encode_packet

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)
PROFILES = list(Profile)
X = bytes(range(32))
ED = bytes(range(32, 64))
SIG = bytes(range(64, 128))
PACKET = encode_packet(Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, 1, 1, 502, b"hi"))


def _code(data: bytes, profile: Profile) -> ErrorCode:
    with pytest.raises(DecodeError) as info:
        decode_frame(data, profile)
    assert info.value.field and info.value.section and info.value.requirement
    return info.value.code


@pytest.mark.req("IANA-001", "IANA-002", "IANA-003", "IANA-004", "IANA-005", "TUN-001", "TUN-008", "TUN-010")
def test_magic_values() -> None:
    assert {m.name: int.from_bytes(m.value, "big") for m in Magic} == {
        "PILT": 0x50494C54,
        "PILS": 0x50494C53,
        "PILK": 0x50494C4B,
        "PILA": 0x50494C41,
        "PILP": 0x50494C50,
    }
    assert len(Magic) == 5
    assert all(m.value[0] == 0x50 and not is_beacon_message(m.value) for m in Magic)


# -- layouts -----------------------------------------------------------------------------------------------------


@pytest.mark.req("TUN-002", "TUN-011", "TUN-007")
def test_pilt_layout() -> None:
    raw = encode_frame(PlaintextFrame(PACKET))
    assert raw == b"PILT" + PACKET
    frame = decode_frame(raw)
    assert isinstance(frame, PlaintextFrame) and decode_packet(frame.packet).payload == b"hi"
    for n in range(4, 38):
        assert _code(raw[:n], Profile.DRAFT) is ErrorCode.TRUNCATED


@pytest.mark.req("TUN-003", "TUN-013", "TUN-014")
def test_pils_layout() -> None:
    nonce = bytes.fromhex("a1a2a3a4") + (7).to_bytes(8, "big")
    frame = EncryptedFrame(1, nonce, b"C" * 5 + b"T" * 16)
    raw = encode_frame(frame)
    assert raw == bytes.fromhex("50494c53 00000001") + nonce + b"C" * 5 + b"T" * 16
    back = decode_frame(raw)
    assert back == frame and isinstance(back, EncryptedFrame)
    assert back.nonce_prefix == bytes.fromhex("a1a2a3a4") and back.counter == 7
    assert len(encode_frame(EncryptedFrame(1, nonce, bytes(16)))) == 36
    for profile in PROFILES:
        assert _code(raw[:35], profile) is ErrorCode.TRUNCATED
    with pytest.raises(ValueError):
        encode_frame(EncryptedFrame(1, nonce, bytes(15)))
    with pytest.raises(ValueError):
        encode_frame(EncryptedFrame(1, nonce[:11], bytes(16)))


@pytest.mark.req("TUN-004", "TUN-024")
def test_pilk_layout_and_size() -> None:
    raw = encode_frame(KeyExchangeFrame(0xDEADBEEF, X))
    assert raw == b"PILK" + bytes.fromhex("deadbeef") + X and len(raw) == 40
    for profile in PROFILES:
        assert decode_frame(raw, profile) == KeyExchangeFrame(0xDEADBEEF, X)
        assert _code(raw[:39], profile) is ErrorCode.TRUNCATED
    assert _code(raw + b"\x00", Profile.DRAFT) is ErrorCode.TRAILING_DATA
    assert decode_frame(raw + b"\x00", Profile.GO_INTEROP) == KeyExchangeFrame(0xDEADBEEF, X)
    with pytest.raises(ValueError):
        encode_frame(KeyExchangeFrame(1, X[:31]))


@pytest.mark.req("TUN-005", "TUN-018", "TUN-023")
def test_pila_layout_signed_message_and_trailer() -> None:
    frame = AuthKeyExchangeFrame(7, X, ED, SIG)
    raw = encode_frame(frame)
    assert raw == b"PILA" + (7).to_bytes(4, "big") + X + ED + SIG and len(raw) == 136
    assert auth_kex_signed_message(7, X) == b"auth" + b"\x00\x00\x00\x07" + X
    assert len(auth_kex_signed_message(7, X)) == 40
    for profile in PROFILES:
        assert decode_frame(raw, profile) == frame
        assert _code(raw[:135], profile) is ErrorCode.TRUNCATED
    trailer = b"\x05\x01"  # GoC: uvarint caps=5, uvarint flags=1 (request)
    assert _code(raw + trailer, Profile.DRAFT) is ErrorCode.TRAILING_DATA
    assert decode_frame(raw + trailer, Profile.GO_INTEROP) == frame._replace(trailer=trailer)
    assert encode_frame(frame._replace(trailer=trailer)) == raw + trailer
    for bad in (frame._replace(ed25519_public=ED[:31]), frame._replace(signature=SIG + b"x")):
        with pytest.raises(ValueError):
            encode_frame(bad)


@pytest.mark.req("TUN-006", "TUN-027")
def test_pilp_draft_eight_bytes_go_four() -> None:
    draft = encode_frame(PunchFrame(0x01020304))
    assert draft == b"PILP\x01\x02\x03\x04"
    assert encode_frame(PunchFrame(None)) == b"PILP"
    for profile in PROFILES:
        assert decode_frame(draft, profile) == PunchFrame(0x01020304)
        for n in (5, 6, 7):
            assert _code(draft[:n], profile) is ErrorCode.TRUNCATED
    assert _code(b"PILP", Profile.DRAFT) is ErrorCode.TRUNCATED
    assert decode_frame(b"PILP", Profile.GO_INTEROP) == PunchFrame(None)
    assert _code(draft + b"\x00", Profile.DRAFT) is ErrorCode.TRAILING_DATA
    assert decode_frame(draft + b"\x00", Profile.GO_INTEROP) == PunchFrame(0x01020304)


@pytest.mark.req("TUN-001", "TUN-009")
@pytest.mark.parametrize("profile", PROFILES)
def test_short_and_unknown_magic(profile: Profile) -> None:
    for n in range(4):
        assert _code(b"PILT"[:n], profile) is ErrorCode.TRUNCATED
    for magic in (b"PILX", b"pilt", b"PIL\x00", b"SACK", b"\xff\xff\xff\xff"):
        assert _code(magic + bytes(200), profile) is ErrorCode.BAD_MAGIC


@pytest.mark.req("TUN-010")
def test_beacon_demultiplexing() -> None:
    for first in range(256):
        assert is_beacon_message(bytes([first, 0, 0, 0, 0])) == (first < 0x10)
    assert not is_beacon_message(b"")


# -- roundtrips and robustness ---------------------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
k32 = st.binary(min_size=32, max_size=32)
any_frame = st.one_of(
    st.builds(PlaintextFrame, st.binary(min_size=34, max_size=100)),
    st.builds(EncryptedFrame, u32, st.binary(min_size=12, max_size=12), st.binary(min_size=16, max_size=100)),
    st.builds(KeyExchangeFrame, u32, k32),
    st.builds(AuthKeyExchangeFrame, u32, k32, k32, st.binary(min_size=64, max_size=64), st.just(b"")),
    st.builds(PunchFrame, u32),
)


@pytest.mark.req("TUN-001", "TUN-002", "TUN-003", "TUN-004", "TUN-005", "TUN-006")
@SETTINGS
@given(any_frame)
def test_roundtrip(frame: frames.Frame) -> None:
    raw = encode_frame(frame)
    for profile in PROFILES:
        assert decode_frame(raw, profile) == frame
        assert decode_frame(bytearray(raw), profile) == decode_frame(memoryview(raw), profile) == frame


@pytest.mark.req("TUN-001", "TUN-009")
@SETTINGS
@given(
    st.one_of(st.binary(max_size=200), st.builds(lambda m, b: m + b, st.sampled_from([m.value for m in Magic]),
                                                 st.binary(max_size=200))),
    st.sampled_from(sorted(frames.DECODERS)),
)  # fmt: skip
def test_arbitrary_bytes_only_raise_pilot_errors(data: bytes, name: str) -> None:
    try:
        frames.DECODERS[name](data)
    except PilotError as exc:
        assert isinstance(exc, DecodeError) and exc.requirement


# -- section 13: overhead arithmetic, checked with real frames ---------------------------------------------------

IP_UDP = 20 + 8
PATH_MTU = 1500


def _pils_for(payload_len: int) -> bytes:
    packet = encode_packet(Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 1, 2,
                                  payload=bytes(payload_len)))  # fmt: skip
    return encode_frame(EncryptedFrame(1, bytes(12), packet + bytes(16)))  # sealed size = packet + tag


def _pilt_for(payload_len: int) -> bytes:
    packet = encode_packet(Packet(0, 2, Addr(0, 1), Addr(0, 2), 1, 2, payload=bytes(payload_len)))
    return encode_frame(PlaintextFrame(packet))


@pytest.mark.req("MTU-001", "MTU-002")
@pytest.mark.parametrize("n", [0, 1, 100, 1402, 4096])
def test_per_frame_overhead(n: int) -> None:
    assert len(_pils_for(n)) - n == 70
    assert len(_pilt_for(n)) - n == 38


@pytest.mark.req("MTU-003", "MTU-004", "MTU-005")
def test_single_datagram_capacity_on_ethernet() -> None:
    room = PATH_MTU - IP_UDP
    assert room == 1472
    assert len(_pils_for(1402)) == room and len(_pils_for(1403)) > room
    assert len(_pilt_for(1434)) == room and len(_pilt_for(1435)) > room


def _ip_fragments(frame_len: int) -> int:
    # each IPv4 fragment carries at most 1480 bytes of the UDP datagram (8-byte UDP header included)
    return math.ceil((frame_len + 8) / (PATH_MTU - 20))


@pytest.mark.req("MTU-006", "MTU-007")
def test_fragmentation_of_full_segments() -> None:
    assert _ip_fragments(len(_pils_for(4096))) == 3
    assert _ip_fragments(len(_pilt_for(4096))) == 3
    assert _ip_fragments(len(_pils_for(1400))) == 1  # an MSS of 1400 fits one datagram even encrypted
