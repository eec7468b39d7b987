"""Sans-IO beacon server: discovery, punch coordination, relay, limits (draft 9.1-9.3)."""

from __future__ import annotations

import pytest

from pilot_proto.nat import BeaconConfig, BeaconServer, Datagram
from pilot_proto.profile import Profile
from pilot_proto.wire.beacon import (
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
)

A = Endpoint("198.51.100.1", 40000)
B = Endpoint("198.51.100.2", 40001)
EVIL = Endpoint("192.0.2.66", 6666)
FRAME = b"PILS" + bytes(36)


def registered(profile: Profile = Profile.DRAFT, **kw: object) -> BeaconServer:
    srv = BeaconServer(BeaconConfig.for_profile(profile, **kw))
    srv.receive_datagram(encode_beacon(Discover(1)), A, 0.0)
    srv.receive_datagram(encode_beacon(Discover(2)), B, 0.0)
    srv.datagrams_to_send()
    return srv


@pytest.mark.req("NAT-001", "NAT-002", "NAT-003")
def test_discover_replies_with_observed_endpoint_and_registers() -> None:
    srv = BeaconServer()
    v6 = Endpoint("2001:db8::5", 5000)
    srv.receive_datagram(encode_beacon(Discover(1)), A, 0.0)
    srv.receive_datagram(encode_beacon(Discover(3)), v6, 0.0)
    out = srv.datagrams_to_send()
    assert out == [
        Datagram(encode_beacon(DiscoverReply(A)), A),
        Datagram(encode_beacon(DiscoverReply(v6)), v6),
    ]
    assert srv.lookup(1) == A and srv.lookup(3) == v6


@pytest.mark.req("NAT-011", "NAT-013")
def test_punch_request_commands_both_sides() -> None:
    srv = registered()
    srv.receive_datagram(encode_beacon(PunchRequest(1, 2)), A, 1.0)
    out = srv.datagrams_to_send()
    assert out == [
        Datagram(encode_beacon(PunchCommand(B)), A),
        Datagram(encode_beacon(PunchCommand(A)), B),
    ]


@pytest.mark.req("NAT-018")
def test_no_punch_command_for_unknown_target_or_self() -> None:
    srv = registered()
    srv.receive_datagram(encode_beacon(PunchRequest(1, 99)), A, 1.0)
    srv.receive_datagram(encode_beacon(PunchRequest(1, 1)), A, 1.0)
    assert srv.datagrams_to_send() == [] and srv.stats["unknown_target"] == 2


@pytest.mark.req("NAT-045", "NAT-018")
def test_punch_request_from_elsewhere_neither_commands_nor_rebinds() -> None:
    srv = registered()
    srv.receive_datagram(encode_beacon(PunchRequest(1, 2)), EVIL, 1.0)  # claims to be node 1
    srv.receive_datagram(encode_beacon(PunchRequest(77, 2)), EVIL, 1.0)  # unknown requester
    assert srv.datagrams_to_send() == [] and srv.stats["spoofed"] == 2
    assert srv.lookup(1) == A and srv.lookup(77) is None


@pytest.mark.req("NAT-021", "NAT-022", "NAT-023", "NAT-024")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_relay_forwards_payload_in_profile_form(profile: Profile) -> None:
    srv = registered(profile)
    srv.receive_datagram(encode_beacon(Relay(1, 2, FRAME)), A, 1.0)
    [out] = srv.datagrams_to_send()
    assert out.addr == B
    if profile is Profile.DRAFT:
        assert out.data == FRAME  # bare payload (E-NAT-2)
    else:
        assert decode_beacon(out.data) == RelayDeliver(1, FRAME)


@pytest.mark.req("NAT-025", "NAT-045")
def test_relay_drops() -> None:
    srv = registered(max_relay_payload=100)
    srv.receive_datagram(encode_beacon(Relay(1, 99, FRAME)), A, 1.0)  # unknown destination
    srv.receive_datagram(encode_beacon(Relay(1, 2, b"P" * 101)), A, 1.0)  # too large
    srv.receive_datagram(encode_beacon(Relay(1, 2, FRAME)), EVIL, 1.0)  # sender not registered there
    srv.receive_datagram(encode_beacon(Relay(2, 1, FRAME)), A, 1.0)  # claims B's ID from A
    assert srv.datagrams_to_send() == []
    assert (srv.stats["unknown_dest"], srv.stats["too_large"], srv.stats["spoofed"]) == (1, 1, 2)


@pytest.mark.req("NAT-025")
def test_default_relay_limit_is_65535() -> None:
    srv = registered()
    srv.receive_datagram(encode_beacon(Relay(1, 2, b"P" * 0x10000)), A, 1.0)
    srv.receive_datagram(encode_beacon(Relay(1, 2, b"P" * 0xFFFF)), A, 1.0)
    assert len(srv.datagrams_to_send()) == 1 and srv.stats["too_large"] == 1


@pytest.mark.req("NAT-045")
def test_go_style_unverified_relay_is_available_as_an_option() -> None:
    srv = registered(Profile.GO_INTEROP, verify_relay_sender=False)
    srv.receive_datagram(encode_beacon(Relay(1, 2, FRAME)), EVIL, 1.0)
    [out] = srv.datagrams_to_send()
    assert out.addr == B and decode_beacon(out.data) == RelayDeliver(1, FRAME)  # a claim, as in Go


@pytest.mark.req("NAT-044")
def test_per_source_rate_limit() -> None:
    srv = BeaconServer(BeaconConfig(rate_per_source=10.0, burst_per_source=5.0))
    for _ in range(20):
        srv.receive_datagram(encode_beacon(Discover(1)), A, 0.0)
    assert len(srv.datagrams_to_send()) == 5 and srv.stats["rate_limited"] == 15
    srv.receive_datagram(encode_beacon(Discover(2)), B, 0.0)  # another source is unaffected
    assert len(srv.datagrams_to_send()) == 1
    srv.receive_datagram(encode_beacon(Discover(1)), A, 0.5)  # 0.5 s refills 5 tokens
    assert len(srv.datagrams_to_send()) == 1


@pytest.mark.req("NAT-044")
def test_tables_are_bounded() -> None:
    srv = BeaconServer(BeaconConfig(max_nodes=3, max_sources=4))
    for i in range(10):
        srv.receive_datagram(encode_beacon(Discover(i)), Endpoint(f"192.0.2.{i}", 1000), 0.0)
    assert len(srv.nodes) == 3 and srv.stats["table_full"] == 7
    assert len(srv.datagrams_to_send()) == 10  # discovery still answered
    assert len(srv._limiter) == 4


@pytest.mark.req("NAT-047", "NAT-044")
def test_stale_registrations_are_reaped_and_make_room() -> None:
    srv = BeaconServer(BeaconConfig(max_nodes=2, node_ttl=600.0, reap_interval=60.0))
    srv.receive_datagram(encode_beacon(Discover(1)), A, 0.0)
    srv.receive_datagram(encode_beacon(Discover(2)), B, 500.0)
    assert srv.get_timer() == 60.0
    srv.handle_timer(660.0)
    assert srv.lookup(1) is None and srv.lookup(2) == B and srv.stats["reaped"] == 1
    srv.receive_datagram(encode_beacon(Discover(5)), A, 700.0)  # table full again (2 and 5)
    srv.receive_datagram(encode_beacon(Discover(3)), EVIL, 1400.0)  # full of stale entries -> reap on demand
    assert srv.lookup(3) == EVIL and srv.lookup(2) is None and srv.lookup(5) is None


@pytest.mark.req("NAT-027")
def test_malformed_and_daemon_bound_messages_are_ignored() -> None:
    srv = registered()
    for raw in (b"", b"\x09", b"\x01\x00", encode_beacon(DiscoverReply(A)), encode_beacon(PunchCommand(A)),
                encode_beacon(RelayDeliver(1, FRAME)), encode_beacon(Sync(5, (1,))), FRAME):  # fmt: skip
        srv.receive_datagram(raw, A, 1.0)
    assert srv.datagrams_to_send() == []
    assert srv.stats["malformed"] == 4 and srv.stats["ignored"] == 4
    assert srv.lookup(1) == A and srv.lookup(2) == B


@pytest.mark.req("NAT-002")
def test_rediscover_from_new_endpoint_moves_registration() -> None:
    srv = registered()
    moved = Endpoint("198.51.100.1", 40007)  # NAT rebinding
    srv.receive_datagram(encode_beacon(Discover(1)), moved, 5.0)
    assert srv.lookup(1) == moved
