"""The NAT simulator itself: RFC 4787 mapping and filtering, mapping timeouts, keepalives over time."""

from __future__ import annotations

import pytest

from pilot_proto.nat import EndpointDiscovered, NatConfig, PathState
from pilot_proto.profile import Profile
from pilot_proto.testing.nat import BEACON_ENDPOINT, NatBox, NatType, Scenario, SimNetwork, SimSink
from pilot_proto.wire.beacon import Endpoint

INSIDE = Endpoint("10.0.0.2", 4000)
X = Endpoint("192.0.2.10", 1000)
X2 = Endpoint("192.0.2.10", 2000)  # same IP as X, other port
Y = Endpoint("192.0.2.20", 1000)


@pytest.mark.req("NAT-017", "NAT-020")
@pytest.mark.parametrize("nat_type", list(NatType), ids=lambda t: t.short)
def test_mapping_and_filtering_per_rfc4787(nat_type: NatType) -> None:
    nat = NatBox("198.51.100.1", nat_type)
    to_x = nat.outbound(INSIDE, X, 0.0)
    to_y = nat.outbound(INSIDE, Y, 0.0)
    assert (to_x == to_y) is nat_type.endpoint_independent_mapping  # EIM vs APDM
    assert nat.inbound(to_x.port, X, 0.1) == INSIDE  # the endpoint we sent to always gets back in
    admits_other_port = nat.inbound(to_x.port, X2, 0.1) is not None
    admits_other_host = nat.inbound(to_x.port, Endpoint("192.0.2.99", 5), 0.1) is not None
    assert admits_other_port is (nat_type in (NatType.FULL_CONE, NatType.RESTRICTED_CONE))
    assert admits_other_host is (nat_type is NatType.FULL_CONE)
    assert nat.inbound(65000, X, 0.1) is None  # no mapping, no entry


@pytest.mark.req("NAT-036")
def test_mapping_expires_without_outbound_refresh() -> None:
    nat = NatBox("198.51.100.1", NatType.FULL_CONE, mapping_timeout=30.0)
    ext = nat.outbound(INSIDE, X, 0.0)
    assert nat.inbound(ext.port, X, 29.0) == INSIDE
    assert nat.inbound(ext.port, X, 29.5) == INSIDE  # inbound traffic does not refresh ...
    assert nat.inbound(ext.port, X, 30.5) is None  # ... so the mapping dies 30 s after the last outbound
    again = nat.outbound(INSIDE, X, 31.0)
    assert again != ext  # a new mapping, a new port
    nat.outbound(INSIDE, X, 50.0)  # outbound refreshes
    assert nat.inbound(again.port, X, 75.0) == INSIDE


@pytest.mark.req("NAT-001", "NAT-002", "NAT-003")
@pytest.mark.parametrize("nat_type", list(NatType), ids=lambda t: t.short)
def test_discovery_reports_the_nat_mapping(nat_type: NatType) -> None:
    sc = Scenario.build(nat_type, None, NatConfig())
    sc.discover()
    assert sc.nat_a is not None
    mapped = sc.nat_a.outbound(sc.a.local, BEACON_ENDPOINT, sc.net.clock.now)  # the mapping towards the beacon
    assert [e for _, e in sc.net.events_of(sc.a) if isinstance(e, EndpointDiscovered)] == [EndpointDiscovered(mapped)]
    assert sc.beacon.lookup(1) == mapped and sc.beacon.lookup(2) == sc.b.local


@pytest.mark.req("NAT-036", "NAT-009", "NAT-016")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_keepalives_hold_a_punched_path_open(profile: Profile) -> None:
    sc = Scenario.build(NatType.PORT_RESTRICTED_CONE, NatType.PORT_RESTRICTED_CONE, NatConfig.for_profile(profile))
    sc.discover()
    sc.connect()
    assert sc.a.paths.state(2) is PathState.DIRECT
    sc.net.run_for(300.0)  # 5 minutes without application data, 30 s mapping timeouts
    assert sc.exchange(b"late") == (True, True)
    assert sc.a.paths.state(2) is PathState.DIRECT and sc.b.paths.state(1) is PathState.DIRECT


@pytest.mark.req("NAT-036")
def test_without_keepalives_the_mapping_dies() -> None:
    cfg = NatConfig(keepalive_interval=None, rediscover_interval=None, relay_probe_interval=1e9)
    sc = Scenario.build(NatType.PORT_RESTRICTED_CONE, NatType.PORT_RESTRICTED_CONE, cfg)
    sc.discover()
    sc.connect()
    assert sc.a.paths.state(2) is PathState.DIRECT
    sc.net.run_for(120.0)
    assert sc.exchange(b"late") == (False, False)  # the control: the simulator's timeouts bite


@pytest.mark.req("NAT-024")
def test_network_counts_and_latency() -> None:
    net = SimNetwork(latency=0.25)
    sink = SimSink()
    net.add(sink, X)
    net.inject(b"hello", Y, X)
    net.inject(b"lost", Y, Endpoint("192.0.2.250", 1))
    net.run_for(0.2)
    assert sink.received == []
    net.run_for(0.1)
    assert sink.received == [(b"hello", Y)] and net.delivered == 1 and net.dropped == 1


@pytest.mark.req("NAT-035", "NAT-024")
def test_relayed_pair_moves_to_a_direct_path_found_later() -> None:
    """go-interop, full cone dials symmetric: RELAY (E-NAT-1). Once B knows A's locator, its relay->direct
    probe (60 s) leaves B from a new symmetric port that A's full cone admits; A authenticates it and
    answers, and both sides prefer the direct path again."""
    sc = Scenario.build(NatType.FULL_CONE, NatType.SYMMETRIC, NatConfig.for_profile(Profile.GO_INTEROP))
    sc.discover()
    sc.connect()
    assert sc.a.paths.state(2) is PathState.RELAY and sc.b.paths.state(1) is PathState.RELAY
    assert sc.exchange(b"relayed") == (True, True) and all(via for _, _, via in sc.a.inbox[-1:])
    sc.b.connect(1, sc.a.paths.beacon.endpoint, sc.net.clock.now)  # B learns A's locator (registry)
    assert sc.b.paths.state(1) is PathState.RELAY  # connect() is idempotent while connected
    sc.net.run_for(65.0)
    assert sc.a.paths.state(2) is PathState.DIRECT and sc.b.paths.state(1) is PathState.DIRECT
    seen_a, seen_b = len(sc.a.inbox), len(sc.b.inbox)
    assert sc.exchange(b"direct-again") == (True, True)
    assert not any(via for _, _, via in sc.a.inbox[seen_a:] + sc.b.inbox[seen_b:])


@pytest.mark.req("NAT-036", "NAT-009", "NAT-030", "NAT-011")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_session_survives_a_nat_reboot(profile: Profile) -> None:
    """B's NAT forgets every mapping. B re-registers at the beacon (re-discovery), the direct path goes
    silent, and after ``direct_dead_after`` the strategy (punch included) runs again and reconnects."""
    sc = Scenario.build(NatType.PORT_RESTRICTED_CONE, NatType.PORT_RESTRICTED_CONE, NatConfig.for_profile(profile))
    sc.discover()
    sc.connect()
    assert sc.a.paths.state(2) is PathState.DIRECT
    old = sc.b.paths.beacon.endpoint
    assert sc.nat_b is not None
    sc.nat_b.reset()
    sc.net.run_for(150.0)
    assert sc.b.paths.beacon.endpoint != old  # re-discovery found the new mapping
    assert sc.a.paths.state(2) in (PathState.DIRECT, PathState.RELAY)
    assert sc.a.paths.state(2) is sc.b.paths.state(1)
    assert sc.exchange(b"after-reboot") == (True, True)
