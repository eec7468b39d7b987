"""The construct schemas (declarative truth) and the fast codecs are byte-identical in both directions.

For every field value (all 16 versions, all 16 flag sets, all 256 protocol bytes, full u16/u32 ranges,
payloads of 0 to a few KiB) and both profiles: fast encode == schema build, fast decode == schema
parse, and on arbitrary or mutated bytes both accept the same inputs and reject the rest with the same
:class:`ErrorCode`.
"""

from __future__ import annotations

import construct as c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire import schemas
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    Frame,
    KeyExchangeFrame,
    PlaintextFrame,
    PunchFrame,
    decode_frame,
    encode_frame,
)
from pilot_proto.wire.header import Packet, decode_packet, encode_packet

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
PROFILES = st.sampled_from(list(Profile))

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addrs = st.builds(Addr, u16, u32)
payloads = st.one_of(st.binary(max_size=64), st.binary(min_size=1000, max_size=4096))


@st.composite
def packets(draw: st.DrawFn, versions: st.SearchStrategy[int] | None = None) -> Packet:
    """Packets with every field drawn over its whole range (all 16 versions unless ``versions`` says otherwise)."""
    return Packet(
        flags=draw(st.integers(0, 15)),
        protocol=draw(st.integers(0, 255)),
        src=draw(addrs),
        dst=draw(addrs),
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        window=draw(u16),
        payload=draw(payloads),
        version=draw(versions if versions is not None else st.integers(0, 15)),
    )


key32 = st.binary(min_size=32, max_size=32)
frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(PlaintextFrame, st.binary(min_size=34, max_size=200)),
    st.builds(EncryptedFrame, u32, st.binary(min_size=12, max_size=12), st.binary(min_size=16, max_size=300)),
    st.builds(KeyExchangeFrame, u32, key32),
    st.builds(AuthKeyExchangeFrame, u32, key32, key32, st.binary(min_size=64, max_size=64), st.just(b"")),
    st.builds(PunchFrame, u32),
)
go_only_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        AuthKeyExchangeFrame, u32, key32, key32, st.binary(min_size=64, max_size=64), st.binary(min_size=1, max_size=20)
    ),
    st.just(PunchFrame(None)),
)


def _outcome_packet(fn: object, data: bytes, profile: Profile, **kw: bool) -> object:
    try:
        return fn(data, profile, **kw)  # type: ignore[operator]
    except PilotError as exc:
        assert isinstance(exc, DecodeError), exc
        assert exc.field and exc.section and exc.requirement, exc.to_dict()
        return exc.code


def _outcome_frame(fn: object, data: bytes, profile: Profile) -> object:
    try:
        return fn(data, profile)  # type: ignore[operator]
    except PilotError as exc:
        assert isinstance(exc, DecodeError), exc
        assert exc.field and exc.section and exc.requirement, exc.to_dict()
        return exc.code


# -- packets --------------------------------------------------------------------------------------------------


@pytest.mark.req("PKT-001", "PKT-002", "PKT-004", "PKT-005", "PKT-006", "PKT-020", "PKT-021")
@SETTINGS
@given(packets())
def test_fast_encode_equals_schema_build(pkt: Packet) -> None:
    assert encode_packet(pkt) == schemas.build_packet_schema(pkt)


@pytest.mark.req("PKT-001", "PKT-002", "PKT-005", "PKT-010", "VER-001")
@SETTINGS
@given(packets(), PROFILES, st.booleans())
def test_fast_decode_equals_schema_parse(pkt: Packet, profile: Profile, check_version: bool) -> None:
    raw = encode_packet(pkt)
    fast = _outcome_packet(decode_packet, raw, profile, check_version=check_version)
    slow = _outcome_packet(schemas.parse_packet_schema, raw, profile, check_version=check_version)
    assert fast == slow
    if pkt.version == 1 or not check_version:
        assert isinstance(fast, Packet)
        assert fast._replace(checksum=0) == pkt
    else:
        assert fast is ErrorCode.BAD_VERSION


@pytest.mark.req("PKT-006", "PKT-011", "PKT-012", "PKT-013", "PKT-014", "PKT-015")
def test_every_version_flag_and_protocol_byte_is_identical() -> None:
    """Exhaustive over byte 0 (256 values) and the protocol byte (256 values)."""
    base = Packet(0, 0, Addr(1, 2), Addr(3, 4), 5, 6, 7, 8, 9, b"xy")
    for version in range(16):
        for flags in range(16):
            pkt = base._replace(version=version, flags=flags)
            raw = encode_packet(pkt)
            assert raw == schemas.build_packet_schema(pkt)
            assert raw[0] == version << 4 | flags
            back = schemas.parse_packet_schema(raw, check_version=False)
            assert back == decode_packet(raw, check_version=False)
            assert (back.version, back.flags) == (version, flags)
    for proto in range(256):
        pkt = base._replace(version=1, protocol=proto)
        raw = encode_packet(pkt)
        assert raw == schemas.build_packet_schema(pkt)
        assert schemas.parse_packet_schema(raw).protocol == decode_packet(raw).protocol == proto


@st.composite
def packet_like_bytes(draw: st.DrawFn) -> bytes:
    """Valid packets damaged in the ways that matter (truncation, extension, bit flips), or noise."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.binary(max_size=120))
    raw = bytearray(encode_packet(draw(packets(versions=st.sampled_from([0, 1, 1, 1, 2, 15])))))
    if choice == 1:
        return bytes(raw[: draw(st.integers(0, len(raw)))])
    if choice == 2:
        return bytes(raw) + draw(st.binary(min_size=1, max_size=8))
    if choice == 3:
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(raw)
    # a rewritten length field (the CRC then usually fails, sometimes truncation or trailing data wins)
    raw[2:4] = draw(u16).to_bytes(2, "big")
    return bytes(raw)


@pytest.mark.req("PKT-001", "PKT-010", "PKT-023", "PKT-024", "VER-001")
@SETTINGS
@given(packet_like_bytes(), PROFILES, st.booleans(), st.booleans())
def test_same_verdict_on_arbitrary_bytes(data: bytes, profile: Profile, verify: bool, check_version: bool) -> None:
    kw = {"verify_checksum": verify, "check_version": check_version}
    fast = _outcome_packet(decode_packet, data, profile, **kw)
    slow = _outcome_packet(schemas.parse_packet_schema, data, profile, **kw)
    assert fast == slow


@pytest.mark.req("PKT-001", "PKT-005")
@SETTINGS
@given(packets())
def test_header_schema_reads_the_same_fields(pkt: Packet) -> None:
    raw = encode_packet(pkt)
    h = schemas.HEADER.parse(raw[:34])
    fast = decode_packet(raw, check_version=False)
    assert (h.vf.version, schemas._flags_int(h.vf.flags), int(h.protocol), h.length) == (
        fast.version,
        fast.flags,
        fast.protocol,
        len(fast.payload),
    )
    assert (Addr(h.src.network, h.src.node), Addr(h.dst.network, h.dst.node)) == (fast.src, fast.dst)
    assert (h.src_port, h.dst_port, h.seq, h.ack, h.window, h.checksum) == (
        fast.src_port,
        fast.dst_port,
        fast.seq,
        fast.ack,
        fast.window,
        fast.checksum,
    )
    assert schemas.HEADER.sizeof() == 34


@pytest.mark.req("PKT-003")
def test_both_refuse_to_build_oversized_or_out_of_range_fields() -> None:
    from pilot_proto.errors import LocalProtocolError

    base = Packet(0, 1, Addr(0, 1), Addr(0, 2), 1, 2)
    bad = [
        base._replace(payload=bytes(0x10000)),
        base._replace(version=16),
        base._replace(flags=16),
        base._replace(protocol=256),
        base._replace(src_port=0x10000),
        base._replace(seq=1 << 32),
        base._replace(window=-1),
        base._replace(src=Addr(0x10000, 0)),
    ]
    for pkt in bad:
        with pytest.raises(LocalProtocolError):
            encode_packet(pkt)
        with pytest.raises(c.ConstructError):
            schemas.build_packet_schema(pkt)


# -- addresses -----------------------------------------------------------------------------------------------


@pytest.mark.req("ADDR-001")
@SETTINGS
@given(addrs)
def test_address_schema_matches(addr: Addr) -> None:
    raw = addr.to_bytes()
    assert raw == schemas.ADDRESS.build({"network": addr.network, "node": addr.node})
    parsed = schemas.ADDRESS.parse(raw)
    assert Addr(parsed.network, parsed.node) == Addr.from_bytes(raw) == addr


# -- tunnel frames ---------------------------------------------------------------------------------------------


@pytest.mark.req("TUN-001", "TUN-002", "TUN-003", "TUN-004", "TUN-005", "TUN-006")
@SETTINGS
@given(frames, PROFILES)
def test_frame_encode_equals_schema_build_and_parse(frame: Frame, profile: Profile) -> None:
    raw = encode_frame(frame)
    assert raw == schemas.build_frame_schema(frame, profile)
    assert decode_frame(raw, profile) == schemas.parse_frame_schema(raw, profile) == frame


@pytest.mark.req("TUN-023", "TUN-027")
@SETTINGS
@given(go_only_frames)
def test_go_only_frame_forms(frame: Frame) -> None:
    raw = encode_frame(frame)
    assert raw == schemas.build_frame_schema(frame, Profile.GO_INTEROP)
    assert decode_frame(raw, Profile.GO_INTEROP) == schemas.parse_frame_schema(raw, Profile.GO_INTEROP) == frame
    expected = ErrorCode.TRAILING_DATA if isinstance(frame, AuthKeyExchangeFrame) else ErrorCode.TRUNCATED
    assert _outcome_frame(decode_frame, raw, Profile.DRAFT) == expected
    assert _outcome_frame(schemas.parse_frame_schema, raw, Profile.DRAFT) == expected


@st.composite
def frame_like_bytes(draw: st.DrawFn) -> bytes:
    magic = draw(st.sampled_from([b"PILT", b"PILS", b"PILK", b"PILA", b"PILP", b"PILX", b"pilt", b"\x00\x01\x02\x03"]))
    cut = draw(st.integers(0, 4))
    body = draw(
        st.one_of(
            st.binary(max_size=160),
            st.integers(0, 160).map(bytes),  # zero bodies of every length around the size limits
        )
    )
    return magic[:cut] if cut < 4 else magic + body


@pytest.mark.req("TUN-001", "TUN-009", "TUN-011", "TUN-014", "TUN-023", "TUN-024", "TUN-027")
@SETTINGS
@given(st.one_of(frame_like_bytes(), st.binary(max_size=64)), PROFILES)
def test_frames_same_verdict_on_arbitrary_bytes(data: bytes, profile: Profile) -> None:
    assert _outcome_frame(decode_frame, data, profile) == _outcome_frame(schemas.parse_frame_schema, data, profile)


@pytest.mark.req("TUN-024", "TUN-027", "TUN-023")
def test_frame_size_boundaries_exhaustively() -> None:
    """Every body length 0..200 after each magic, both profiles: same verdict from both codecs."""
    for magic in (b"PILT", b"PILS", b"PILK", b"PILA", b"PILP"):
        for n in range(201):
            data = magic + bytes(range(n % 256))[:n].ljust(n, b"\x07")
            for profile in Profile:
                fast = _outcome_frame(decode_frame, data, profile)
                assert fast == _outcome_frame(schemas.parse_frame_schema, data, profile), (magic, n, profile)


# -- documentation -------------------------------------------------------------------------------------------


def test_every_schema_is_documented() -> None:
    for name in ("ADDRESS", "HEADER", "PACKET", "PILT", "PILS", "PILK", "PILA", "PILP", "TUNNEL_FRAME", "PROTOCOL"):
        assert getattr(schemas, name).docs, name
