"""Virtual addresses and socket addresses (draft 4): binary form, text form under both profiles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire import address
from pilot_proto.wire.address import (
    BEACON,
    NAMESERVER,
    REGISTRY,
    UNSPECIFIED,
    Addr,
    SocketAddr,
    broadcast,
)

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)
addrs = st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
PROFILES = list(Profile)


def _refused(text: str, profile: Profile) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        Addr.parse(text, profile)
    assert info.value.code is ErrorCode.BAD_ADDRESS and info.value.requirement
    return info.value


# -- binary ----------------------------------------------------------------------------------------------------


@pytest.mark.req("ADDR-001", "ADDR-007")
@SETTINGS
@given(addrs, st.binary(max_size=8), st.binary(max_size=8))
def test_binary_roundtrip_at_any_offset(addr: Addr, before: bytes, after: bytes) -> None:
    raw = addr.to_bytes()
    assert raw == addr.network.to_bytes(2, "big") + addr.node.to_bytes(4, "big")
    assert Addr.from_bytes(before + raw + after, len(before)) == addr


@pytest.mark.req("ADDR-001")
def test_binary_truncated_and_out_of_range() -> None:
    for n in range(6):
        with pytest.raises(DecodeError) as info:
            Addr.from_bytes(bytes(n))
        assert info.value.code is ErrorCode.TRUNCATED
    with pytest.raises(DecodeError):
        Addr.from_bytes(bytes(12), -1)
    with pytest.raises(DecodeError):
        Addr.from_bytes(bytes(12), 7)
    for bad in (Addr(0x10000, 0), Addr(0, 1 << 32), Addr(-1, 0)):
        with pytest.raises(ValueError):
            bad.to_bytes()


# -- text -------------------------------------------------------------------------------------------------------


@pytest.mark.req("ADDR-002", "ADDR-008", "ADDR-016", "ADDR-004")
@pytest.mark.parametrize("profile", PROFILES)
def test_draft_backbone_example(profile: Profile) -> None:
    addr = Addr.parse("0:0000.0000.0001", profile)
    assert addr == Addr(0, 1) == REGISTRY
    assert str(addr) == "0:0000.0000.0001"


@pytest.mark.req("ADDR-009", "ADDR-016")
def test_draft_network_one_example_depends_on_profile() -> None:
    """`1:00A3.F291.0004` (draft 4.2): draft reads node F2910004 on network 1; Go refuses it (E-ADDR-1)."""
    assert Addr.parse("1:00A3.F291.0004", Profile.DRAFT) == Addr(1, 0xF2910004)
    err = _refused("1:00A3.F291.0004", Profile.GO_INTEROP)
    assert err.requirement == "ADDR-009"
    assert Addr.parse("1:0001.F291.0004", Profile.GO_INTEROP) == Addr(1, 0xF2910004)
    # we always write Go's form, which both profiles read back
    assert str(Addr(1, 0xF2910004)) == "1:0001.F291.0004"


@pytest.mark.req("ADDR-015")
@pytest.mark.parametrize("network", [0, 1, 7, 65534])
def test_broadcast_text_form(network: int) -> None:
    """`X:FFFF.FFFF.FFFF` (draft 4.4) is broadcast on X under draft; Go writes and wants `X:XXXX.FFFF.FFFF`."""
    draft_text = f"{network}:FFFF.FFFF.FFFF"
    parsed = Addr.parse(draft_text, Profile.DRAFT)
    assert parsed == broadcast(network) and parsed.is_broadcast
    _refused(draft_text, Profile.GO_INTEROP)
    go_text = str(broadcast(network))
    assert go_text == f"{network}:{network:04X}.FFFF.FFFF"
    for profile in PROFILES:
        assert Addr.parse(go_text, profile) == broadcast(network)


@pytest.mark.req("ADDR-015", "ADDR-006")
def test_broadcast_on_the_reserved_network_is_the_same_text_in_both_forms() -> None:
    assert str(broadcast(65535)) == "65535:FFFF.FFFF.FFFF"
    for profile in PROFILES:
        assert Addr.parse("65535:FFFF.FFFF.FFFF", profile).is_reserved_network
    assert not Addr(65534, 1).is_reserved_network and Addr(65535, 0).is_reserved_network


@pytest.mark.req("ADDR-004", "ADDR-005", "ADDR-006")
@pytest.mark.parametrize("network", [0, 1, 2, 1000, 65533, 65534, 65535])
def test_network_classes(network: int) -> None:
    addr = Addr(network, 1)
    kinds = [addr.is_backbone, addr.is_user_network, addr.is_reserved_network]
    assert kinds.count(True) == 1
    assert addr.is_backbone == (network == 0)
    assert addr.is_user_network == (1 <= network <= 65534)
    assert addr.is_reserved_network == (network == 65535)


@pytest.mark.req("ADDR-011", "ADDR-012", "ADDR-013", "ADDR-014")
def test_special_addresses() -> None:
    assert (str(UNSPECIFIED), str(REGISTRY), str(BEACON), str(NAMESERVER)) == (
        "0:0000.0000.0000",
        "0:0000.0000.0001",
        "0:0000.0000.0002",
        "0:0000.0000.0003",
    )
    assert UNSPECIFIED.is_unspecified and not REGISTRY.is_unspecified
    assert not any(a.is_broadcast for a in (UNSPECIFIED, REGISTRY, BEACON, NAMESERVER))


@pytest.mark.req("ADDR-002", "ADDR-008", "ADDR-009")
@SETTINGS
@given(addrs)
def test_text_roundtrip_both_profiles(addr: Addr) -> None:
    text = str(addr)
    net, _, groups = text.partition(":")
    assert net == str(addr.network) and groups == groups.upper() and len(groups) == 14
    for profile in PROFILES:
        assert Addr.parse(text, profile) == addr
        assert Addr.parse(text.lower(), profile) == addr  # hex is read in either case


@pytest.mark.req("ADDR-008")
def test_leading_zeros_in_the_network_are_accepted() -> None:
    for profile in PROFILES:
        assert Addr.parse("0001:0001.0000.0002", profile) == Addr(1, 2)
        assert Addr.parse("0" * 5000 + "1:0001.0000.0002", profile) == Addr(1, 2)


@pytest.mark.req("ADDR-002", "ADDR-008")
@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        ":0000.0000.0001",
        "0:",
        "0:0000.0000",
        "0:0000.0000.0000.0001",
        "0:000.0000.0001",
        "0:00000.0000.0001",
        "0:0000.0000.000G",
        "0:0000.0000.+001",
        "0:0000 0000 0001",
        "-1:0000.0000.0001",
        "+1:0001.0000.0001",
        "65536:0000.0000.0001",
        "99999999999:0000.0000.0001",
        "9" * 5000 + ":0000.0000.0001",
        "\u0661:0001.0000.0001",  # ARABIC-INDIC DIGIT ONE is a digit, but not ASCII
        "0:\uff10000.0000.0001",  # FULLWIDTH DIGIT ZERO
        " 0:0000.0000.0001",
        "0:0000.0000.0001 ",
        "0x0:0000.0000.0001",
    ],
)
@pytest.mark.parametrize("profile", PROFILES)
def test_malformed_texts(text: str, profile: Profile) -> None:
    _refused(text, profile)


# -- socket addresses ---------------------------------------------------------------------------------------------


@pytest.mark.req("ADDR-003", "ADDR-010")
def test_socket_address_forms() -> None:
    sa = SocketAddr.parse("1:00A3.F291.0004:1000", Profile.DRAFT)
    assert sa == SocketAddr(Addr(1, 0xF2910004), 1000)
    assert str(sa) == "1:0001.F291.0004:1000"
    assert SocketAddr.parse(str(sa), Profile.GO_INTEROP) == sa
    for profile in PROFILES:
        assert SocketAddr.parse("0:0000.0000.0001:0", profile).port == 0
        assert SocketAddr.parse("0:0000.0000.0001:65535", profile).port == 65535
        assert SocketAddr.parse("0:0000.0000.0001:00080", profile).port == 80


@pytest.mark.req("ADDR-010")
@pytest.mark.parametrize(
    "text",
    ["0:0000.0000.0001", "0:0000.0000.0001:", "0:0000.0000.0001:65536", "0:0000.0000.0001:-1",
     "0:0000.0000.0001:1e3", "0:0000.0000.0001: 80", "0:0000.0000.0001:" + "9" * 5000,
     "0:0000.0000.0001:\u0668\u0660"],
)  # fmt: skip
@pytest.mark.parametrize("profile", PROFILES)
def test_malformed_socket_addresses(text: str, profile: Profile) -> None:
    with pytest.raises(DecodeError) as info:
        SocketAddr.parse(text, profile)
    assert info.value.code is ErrorCode.BAD_ADDRESS


@pytest.mark.req("ADDR-003", "ADDR-010")
@SETTINGS
@given(addrs, st.integers(0, 0xFFFF))
def test_socket_roundtrip(addr: Addr, port: int) -> None:
    for profile in PROFILES:
        assert SocketAddr.parse(str(SocketAddr(addr, port)), profile) == SocketAddr(addr, port)


# -- robustness ------------------------------------------------------------------------------------------------------

texty = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789abcdefABCDEF:.+- \u0661", max_size=30),
    st.builds(lambda a, s: str(a)[: len(s)] + s, addrs, st.text(max_size=5)),
)


@pytest.mark.req("ADDR-002", "ADDR-003")
@SETTINGS
@given(texty)
def test_text_parsers_only_raise_pilot_errors(text: str) -> None:
    for profile in PROFILES:
        for parse in (Addr.parse, SocketAddr.parse):
            try:
                parse(text, profile)
            except PilotError as exc:
                assert exc.code is ErrorCode.BAD_ADDRESS


@pytest.mark.req("ADDR-001", "ADDR-002")
@SETTINGS
@given(st.binary(max_size=40), st.sampled_from(sorted(address.DECODERS)))
def test_byte_decoders_only_raise_pilot_errors(data: bytes, name: str) -> None:
    try:
        address.DECODERS[name](data)
    except PilotError as exc:
        assert exc.code in (ErrorCode.BAD_ADDRESS, ErrorCode.TRUNCATED)
