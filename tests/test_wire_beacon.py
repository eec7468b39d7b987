"""Beacon message codec (draft 9; layouts from the Go reference, wire-notes 1.10)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire.beacon import (
    BEACON_SCHEMA,
    DECODERS,
    TYPE_DECODERS,
    BeaconMessage,
    BeaconType,
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    RelayDeliver,
    Sync,
    decode_beacon,
    encode_beacon,
    encode_delivery,
)
from pilot_proto.wire.frames import is_beacon_message

u32 = st.integers(0, 0xFFFFFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda ip: ip.ipv4_mapped is None).map(str)
endpoints = st.builds(Endpoint, st.one_of(ipv4, ipv6), st.integers(0, 0xFFFF))
payloads = st.binary(max_size=200)
messages: st.SearchStrategy[BeaconMessage] = st.one_of(
    st.builds(Discover, u32),
    st.builds(DiscoverReply, endpoints),
    st.builds(PunchRequest, u32, u32),
    st.builds(PunchCommand, endpoints),
    st.builds(Relay, u32, u32, payloads),
    st.builds(RelayDeliver, u32, payloads),
    st.builds(Sync, u32, st.lists(u32, max_size=20).map(tuple)),
)


def _schema_value(msg: BeaconMessage) -> dict[str, object]:
    parsed = BEACON_SCHEMA.parse(encode_beacon(msg))
    return dict(parsed.body)


@pytest.mark.req("NAT-005", "NAT-006", "NAT-012", "NAT-014", "NAT-021", "NAT-023", "NAT-026")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(messages, st.sampled_from(list(Profile)))
def test_roundtrip_and_schema_agree(msg: BeaconMessage, profile: Profile) -> None:
    raw = encode_beacon(msg)
    assert decode_beacon(raw, profile) == msg
    # the declarative schema parses the same bytes and rebuilds them exactly
    assert BEACON_SCHEMA.build(BEACON_SCHEMA.parse(raw)) == raw
    assert raw[0] == BEACON_SCHEMA.parse(raw).type and is_beacon_message(raw)


@pytest.mark.req("NAT-005", "NAT-006", "NAT-012", "NAT-014", "NAT-021", "NAT-023", "NAT-026")
def test_exact_layouts() -> None:
    assert encode_beacon(Discover(0x01020304)) == bytes.fromhex("0101020304")
    assert encode_beacon(DiscoverReply(Endpoint("192.0.2.7", 9001))) == bytes.fromhex("0204c000020723 29")
    assert encode_beacon(PunchRequest(1, 2)) == bytes.fromhex("03 00000001 00000002")
    v6 = encode_beacon(PunchCommand(Endpoint("2001:db8::1", 443)))
    assert v6 == bytes.fromhex("04 10 20010db8000000000000000000000001 01bb") and len(v6) == 20
    assert encode_beacon(Relay(5, 6, b"PILT")) == bytes.fromhex("05 00000005 00000006 50494c54")
    assert encode_beacon(RelayDeliver(5, b"PILT")) == bytes.fromhex("06 00000005 50494c54")
    assert encode_beacon(Sync(9, (1, 2))) == bytes.fromhex("07 00000009 0002 00000001 00000002")
    # IPv4-mapped IPv6 is written as 4 bytes, like Go's To4()
    assert encode_beacon(DiscoverReply(Endpoint("::ffff:192.0.2.7", 1)))[1] == 4
    assert _schema_value(Discover(7))["node"] == 7


@pytest.mark.req("NAT-027")
def test_decoders_registry_covers_every_type() -> None:
    assert sorted(TYPE_DECODERS) == [t.value for t in BeaconType] == list(range(1, 8))
    assert set(DECODERS) == {"beacon@draft", "beacon@go-interop", "schema.beacon"}
    for fn in DECODERS.values():
        with pytest.raises(PilotError):
            fn(b"\x09")
        assert fn(b"\x01\x00\x00\x00\x05") is not None


@pytest.mark.req("NAT-007", "NAT-027", "NAT-005", "NAT-012", "NAT-026")
@pytest.mark.parametrize(
    ("hexdata", "code", "field"),
    [
        ("", ErrorCode.TRUNCATED, "beacon.type"),
        ("00", ErrorCode.BAD_MAGIC, "beacon.type"),
        ("08", ErrorCode.BAD_MAGIC, "beacon.type"),
        ("0f00", ErrorCode.BAD_MAGIC, "beacon.type"),
        ("01000000", ErrorCode.TRUNCATED, "discover.length"),
        ("0205c000020700000001", ErrorCode.BAD_VALUE, "discover_reply.ip_len"),
        ("0200", ErrorCode.BAD_VALUE, "discover_reply.ip_len"),
        ("02", ErrorCode.TRUNCATED, "discover_reply.ip_len"),
        ("0204c00002", ErrorCode.TRUNCATED, "discover_reply.length"),
        ("0410" + "00" * 16, ErrorCode.TRUNCATED, "punch_command.length"),
        ("030000000100", ErrorCode.TRUNCATED, "punch_request.length"),
        ("0500000001000000", ErrorCode.TRUNCATED, "relay.length"),
        ("06000000", ErrorCode.TRUNCATED, "relay_deliver.length"),
        ("07000000090002" + "00000001", ErrorCode.TRUNCATED, "sync.length"),
    ],
)
def test_invalid_messages(hexdata: str, code: ErrorCode, field: str) -> None:
    for profile in Profile:
        with pytest.raises(DecodeError) as info:
            decode_beacon(bytes.fromhex(hexdata), profile)
        assert info.value.code is code and info.value.field == field
        assert info.value.requirement and info.value.requirement.startswith("NAT-")
        assert info.value.section and info.value.section.startswith("9")


@pytest.mark.req("NAT-005", "NAT-012", "NAT-006", "NAT-026")
@pytest.mark.parametrize(
    "msg", [Discover(1), PunchRequest(1, 2), DiscoverReply(Endpoint("192.0.2.1", 1)), Sync(1, (2,))], ids=repr
)
def test_trailing_bytes_by_profile(msg: BeaconMessage) -> None:
    raw = encode_beacon(msg) + b"\x00"
    with pytest.raises(DecodeError) as info:
        decode_beacon(raw, Profile.DRAFT)
    assert info.value.code is ErrorCode.TRAILING_DATA
    assert decode_beacon(raw, Profile.GO_INTEROP) == msg  # Go checks only len < n


@pytest.mark.req("NAT-022", "NAT-023")
def test_delivery_form_by_profile() -> None:
    frame = b"PILS" + bytes(36)
    assert encode_delivery(7, frame, Profile.DRAFT) == frame
    go = encode_delivery(7, frame, Profile.GO_INTEROP)
    assert go == b"\x06\x00\x00\x00\x07" + frame and decode_beacon(go) == RelayDeliver(7, frame)


@pytest.mark.req("NAT-027")
@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(list(Profile)))
def test_garbage_never_crashes(data: bytes, profile: Profile) -> None:
    try:
        msg = decode_beacon(data, profile)
    except PilotError:
        return
    assert decode_beacon(encode_beacon(msg), profile) == msg
    if profile is Profile.DRAFT and not isinstance(msg, DiscoverReply | PunchCommand):
        assert encode_beacon(msg) == data  # strict profile: accepted means canonical


@pytest.mark.req("NAT-007")
def test_encoder_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        encode_beacon(DiscoverReply(Endpoint("not-an-ip", 1)))
    with pytest.raises(ValueError):
        encode_beacon(DiscoverReply(Endpoint("192.0.2.1", 70000)))
    with pytest.raises(ValueError):
        encode_beacon(Sync(1, tuple(range(70000))))
    assert str(Endpoint("::1", 5)) == "[::1]:5" and str(Endpoint("192.0.2.1", 5)) == "192.0.2.1:5"
