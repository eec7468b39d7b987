"""The 34-byte header and packets (draft 6, 12.1): layout, checksum, limits and typed decode errors."""

from __future__ import annotations

import binascii
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire import header
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    Flags,
    Packet,
    PacketProtocol,
    checksum,
    decode_packet,
    encode_packet,
)

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


def _crc32_table() -> list[int]:
    """Table for the reflected CRC-32/ISO-HDLC (poly 0x04C11DB7, reflected 0xEDB88320), built by hand."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32_table()


def reference_crc32(data: bytes) -> int:
    """Independent CRC-32: init 0xFFFFFFFF, reflected in/out, xorout 0xFFFFFFFF (not zlib, not our codec)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _with_crc(head30: bytes, payload: bytes) -> bytes:
    """Assemble a packet by hand: 30 header bytes, CRC over header-with-zeroed-crc || payload, payload."""
    crc = reference_crc32(head30 + b"\x00\x00\x00\x00" + payload)
    return head30 + struct.pack(">I", crc) + payload


def test_reference_crc_matches_the_standard_check_value() -> None:
    assert reference_crc32(b"123456789") == 0xCBF43926 == binascii.crc32(b"123456789")


# -- draft Appendix B ------------------------------------------------------------------------------------------

SYN_HEAD = bytes.fromhex("11 01 0000 0000 00000001 0000 00000002 c000 03e8 00000000 00000000 0200")


@pytest.mark.req("PKT-005", "PKT-006", "PKT-015", "PKT-020", "PKT-021", "VER-001", "PKT-011")
def test_appendix_b_syn_packet() -> None:
    pkt = Packet(Flags.SYN, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, window=512)
    raw = encode_packet(pkt)
    assert len(raw) == 34
    assert raw[:30] == SYN_HEAD
    assert raw == _with_crc(SYN_HEAD, b"")
    assert int.from_bytes(raw[30:], "big") == binascii.crc32(SYN_HEAD + bytes(4))
    back = decode_packet(raw)
    assert back.flags == Flags.SYN and back.version == 1 and back.window == 512
    assert str(back.src) == "0:0000.0000.0001" and str(back.dst) == "0:0000.0000.0002"


@pytest.mark.req("PKT-002", "PKT-005", "PKT-020", "PKT-021", "PKT-015")
def test_appendix_b_data_packet() -> None:
    # The draft leaves addresses, ports, seq and ack of its data example unspecified; we reuse the SYN's
    # endpoints and put the packet right after the handshake (seq 1, ack 1).
    pkt = Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, 1, 1, 502, b"hello")
    raw = encode_packet(pkt)
    assert len(raw) == 39
    assert raw[0] == 0x12 and raw[1] == 0x01 and raw[2:4] == b"\x00\x05"
    assert raw[28:30] == b"\x01\xf6" and raw[34:] == bytes.fromhex("68656c6c6f")
    assert raw == _with_crc(raw[:30], b"hello")


# -- layout ---------------------------------------------------------------------------------------------------


@pytest.mark.req("PKT-004", "PKT-005", "PKT-007", "PKT-008", "PKT-009", "ADDR-001")
@SETTINGS
@given(
    st.integers(0, 15),
    st.integers(0, 15),
    st.integers(0, 255),
    st.tuples(*[st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)] * 2),
    st.tuples(*[st.integers(0, 0xFFFF)] * 2 + [st.integers(0, 0xFFFFFFFF)] * 2 + [st.integers(0, 0xFFFF)]),
    st.binary(max_size=300),
)
def test_every_field_sits_at_its_draft_offset(
    version: int,
    flags: int,
    proto: int,
    addrs: tuple[int, int, int, int],
    rest: tuple[int, int, int, int, int],
    payload: bytes,
) -> None:
    sn, snode, dn, dnode = addrs
    sp, dp, seq, ack, win = rest
    pkt = Packet(flags, proto, Addr(sn, snode), Addr(dn, dnode), sp, dp, seq, ack, win, payload, version)
    raw = encode_packet(pkt)

    def be(off: int, size: int) -> int:
        return int.from_bytes(raw[off : off + size], "big")

    assert raw[0] >> 4 == version and raw[0] & 0xF == flags
    assert (raw[1], be(2, 2), be(4, 2), be(6, 4), be(10, 2), be(12, 4)) == (proto, len(payload), sn, snode, dn, dnode)
    assert (be(16, 2), be(18, 2), be(20, 4), be(24, 4), be(28, 2)) == (sp, dp, seq, ack, win)
    assert be(30, 4) == reference_crc32(raw[:30] + bytes(4) + payload) == checksum(raw[:30], payload)
    assert raw[34:] == payload


@pytest.mark.req("PKT-015", "PKT-011", "PKT-012", "PKT-013", "IANA-006", "IANA-007", "IANA-008")
def test_flag_and_protocol_values() -> None:
    assert [int(f) for f in (Flags.SYN, Flags.ACK, Flags.FIN, Flags.RST)] == [0x1, 0x2, 0x4, 0x8]
    assert [int(p) for p in PacketProtocol] == [0x01, 0x02, 0x03]
    assert [p.name for p in PacketProtocol] == ["STREAM", "DATAGRAM", "CONTROL"]
    synack = Packet(Flags.SYN | Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 1, 2)
    assert encode_packet(synack)[0] == 0x13
    assert decode_packet(encode_packet(synack)).has(Flags.ACK)
    assert "SYN|ACK" in synack.describe()


@pytest.mark.req("PKT-014")
def test_unassigned_protocol_bytes_are_carried_not_refused() -> None:
    for proto in (0x00, 0x04, 0x7F, 0xFF):
        raw = encode_packet(Packet(0, proto, Addr(0, 1), Addr(0, 2), 1, 2))
        assert decode_packet(raw).protocol == proto


# -- limits -----------------------------------------------------------------------------------------------------


@pytest.mark.req("PKT-003")
def test_payload_limit() -> None:
    pkt = Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 1, 2, payload=bytes(MAX_PAYLOAD))
    raw = encode_packet(pkt)
    assert len(raw) == HEADER_SIZE + 65535 and raw[2:4] == b"\xff\xff"
    assert decode_packet(raw).payload == bytes(MAX_PAYLOAD)
    with pytest.raises(LocalProtocolError) as info:
        encode_packet(pkt._replace(payload=bytes(MAX_PAYLOAD + 1)))
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.requirement == "PKT-003"


@pytest.mark.req("PKT-005")
@pytest.mark.parametrize(
    "change",
    [
        {"version": 16},
        {"version": -1},
        {"flags": 16},
        {"protocol": 256},
        {"src": Addr(0x10000, 0)},
        {"dst": Addr(0, 1 << 32)},
        {"src_port": 0x10000},
        {"dst_port": -1},
        {"seq": 1 << 32},
        {"ack": -1},
        {"window": 0x10000},
    ],
)
def test_out_of_range_fields_are_local_errors(change: dict[str, object]) -> None:
    pkt = Packet(0, 1, Addr(0, 1), Addr(0, 2), 1, 2)._replace(**change)
    with pytest.raises(LocalProtocolError) as info:
        encode_packet(pkt)
    assert info.value.code is ErrorCode.OUT_OF_RANGE


# -- decode errors ----------------------------------------------------------------------------------------------

GOOD = encode_packet(Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, 1, 1, 502, b"hello"))


def _code(data: bytes, profile: Profile = Profile.DRAFT, **kw: bool) -> ErrorCode:
    with pytest.raises(DecodeError) as info:
        decode_packet(data, profile, **kw)
    err = info.value
    assert err.field and err.section and err.requirement and err.rule
    return err.code


@pytest.mark.req("PKT-001")
@pytest.mark.parametrize("profile", list(Profile))
def test_every_short_header_is_truncated(profile: Profile) -> None:
    for n in range(HEADER_SIZE):
        assert _code(GOOD[:n], profile) is ErrorCode.TRUNCATED


@pytest.mark.req("PKT-023", "PKT-002")
@pytest.mark.parametrize("profile", list(Profile))
def test_short_payload_is_truncated(profile: Profile) -> None:
    for n in range(HEADER_SIZE, len(GOOD)):
        assert _code(GOOD[:n], profile) is ErrorCode.TRUNCATED


@pytest.mark.req("PKT-024")
def test_trailing_bytes_draft_rejects_go_ignores() -> None:
    assert _code(GOOD + b"\x00") is ErrorCode.TRAILING_DATA
    assert decode_packet(GOOD + b"junk", Profile.GO_INTEROP) == decode_packet(GOOD)


@pytest.mark.req("PKT-010", "PKT-020")
@pytest.mark.parametrize("profile", list(Profile))
def test_every_single_bit_flip_is_caught(profile: Profile) -> None:
    """CRC-32 detects every 1-bit error; a flip in the length field shows up as truncation or bad CRC."""
    for i in range(len(GOOD)):
        for bit in range(8):
            bad = bytearray(GOOD)
            bad[i] ^= 1 << bit
            code = _code(bytes(bad), profile)
            if i in (2, 3):
                assert code in (ErrorCode.TRUNCATED, ErrorCode.BAD_CHECKSUM, ErrorCode.TRAILING_DATA)
            else:
                assert code is ErrorCode.BAD_CHECKSUM, (i, bit)


@pytest.mark.req("PKT-022")
def test_crc_is_no_integrity_protection() -> None:
    """Anyone who changes a packet can recompute the CRC: the forged packet is indistinguishable (draft 6.5)."""
    forged_head = GOOD[:16] + struct.pack(">H", 4444) + GOOD[18:30]
    forged_payload = b"HELLO"
    forged = forged_head + struct.pack(">I", checksum(forged_head, forged_payload)) + forged_payload
    pkt = decode_packet(forged)
    assert pkt.payload == b"HELLO" and pkt.src_port == 4444 and pkt.dst_port == 1000


@pytest.mark.req("PKT-010")
def test_checksum_can_be_skipped_on_request() -> None:
    bad = GOOD[:30] + b"\x00\x00\x00\x00" + GOOD[34:]
    assert _code(bad) is ErrorCode.BAD_CHECKSUM
    assert decode_packet(bad, verify_checksum=False).payload == b"hello"


@pytest.mark.req("VER-001", "VER-002", "PKT-010")
@pytest.mark.parametrize("version", [0, *range(2, 16)])
def test_bad_version_with_valid_crc(version: int) -> None:
    raw = encode_packet(decode_packet(GOOD)._replace(version=version))
    assert raw == _with_crc(bytes([version << 4 | 0x2]) + GOOD[1:30], b"hello")
    assert _code(raw) is ErrorCode.BAD_VERSION
    assert _code(raw, Profile.GO_INTEROP) is ErrorCode.BAD_VERSION
    assert decode_packet(raw, check_version=False).version == version
    # the CRC is checked first: a wrong-version packet with a bad CRC is a checksum error
    assert _code(raw[:-1] + bytes([raw[-1] ^ 1])) is ErrorCode.BAD_CHECKSUM


@pytest.mark.req("PKT-001", "PKT-010", "PKT-023", "PKT-024")
@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(sorted(header.DECODERS)))
def test_arbitrary_bytes_only_raise_pilot_errors(data: bytes, name: str) -> None:
    try:
        header.DECODERS[name](data)
    except PilotError as exc:
        assert isinstance(exc, DecodeError) and exc.requirement


@pytest.mark.req("PKT-001")
def test_decoder_accepts_bytearray_and_memoryview() -> None:
    assert decode_packet(bytearray(GOOD)) == decode_packet(memoryview(GOOD)) == decode_packet(GOOD)
