"""Arbitrary datagrams never crash the NAT state machines and never move a live path (NAT-027, NAT-043)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.nat import BeaconConfig, BeaconServer, FrameReceived, NatConfig, PathManager, PathState
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.wire.beacon import (
    Discover,
    Endpoint,
    PunchCommand,
    Relay,
    RelayDeliver,
    encode_beacon,
)

BEACON = Endpoint("203.0.113.1", 9001)
PEER = Endpoint("198.51.100.2", 40001)
sources = st.sampled_from([BEACON, PEER, Endpoint("192.0.2.66", 6666), Endpoint("2001:db8::66", 1)])
endpoints = st.builds(Endpoint, st.ip_addresses(v=4).map(str), st.integers(0, 0xFFFF))
crafted = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda e: encode_beacon(PunchCommand(e)), endpoints),
    st.builds(lambda s, p: encode_beacon(RelayDeliver(s, p)), st.integers(0, 2**32 - 1), st.binary(max_size=60)),
    st.builds(lambda s: b"PILP" + s.to_bytes(4, "big"), st.integers(0, 5)),
    st.builds(lambda b: b"PILS" + b, st.binary(min_size=32, max_size=60)),
)


@pytest.mark.req("NAT-027", "NAT-040", "NAT-041", "NAT-042", "NAT-043")
@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(st.tuples(crafted, sources), max_size=30), st.sampled_from(list(Profile)))
def test_unauthenticated_input_never_moves_a_live_direct_path(
    datagrams: list[tuple[bytes, Endpoint]], profile: Profile
) -> None:
    pm = PathManager(1, BEACON, NatConfig.for_profile(profile))
    pm.start(0.0)
    pm.connect(2, 0.0, PEER)
    pm.confirm_direct(2, PEER, 0.1)
    pm.events()
    for i, (data, src) in enumerate(datagrams):
        pm.receive_datagram(data, src, 1.0 + i * 0.01)
        events = pm.events()
        # only frames for the tunnel layer to judge, or one refusal for the datagram (sansio idiom)
        assert all(isinstance(e, FrameReceived | InputRejected) for e in events)
        assert sum(isinstance(e, InputRejected) for e in events) <= 1
        assert not (any(isinstance(e, InputRejected) for e in events) and len(events) > 1)
    assert pm.state(2) is PathState.DIRECT and pm.peers[2].direct == PEER
    assert set(pm.peers) == {2}
    pm.send(2, b"PILS" + bytes(32), 2.0)
    assert [d.addr for d in pm.datagrams_to_send() if d.data.startswith(b"PILS" + bytes(32))] == [PEER]


@pytest.mark.req("NAT-027", "NAT-044", "NAT-045")
@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=80),
                st.builds(lambda n: encode_beacon(Discover(n)), st.integers(0, 3)),
                st.builds(lambda s, d: encode_beacon(Relay(s, d, b"PILT")), st.integers(0, 3), st.integers(0, 3)),
            ),
            sources,
        ),
        max_size=40,
    ),
    st.sampled_from(list(Profile)),
)
def test_beacon_survives_anything(datagrams: list[tuple[bytes, Endpoint]], profile: Profile) -> None:
    srv = BeaconServer(BeaconConfig.for_profile(profile, max_nodes=3))
    for i, (data, src) in enumerate(datagrams):
        srv.receive_datagram(data, src, i * 0.01)
        for out in srv.datagrams_to_send():
            assert len(out.data) <= len(data) + 20  # never an amplifier
    assert len(srv.nodes) <= 3
