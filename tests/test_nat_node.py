"""Two real nodes (PILA + PILS + Stream) behind simulated NATs, reached through NatNode (draft 9.4, issue 11).

The simulator drives :class:`~pilot_proto.nat.node_paths.NatNode` directly as a
:class:`~pilot_proto.sansio.DatagramEndpoint`.  Cone NATs punch through to a direct path; two
symmetric NATs (or no punching across port-restricted cones) end on the beacon relay after 3
direct attempts; either way a stream carries the exact bytes both ways.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.nat import NatConfig, PathState
from pilot_proto.nat.node_paths import NatNode, PeerRoute
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.sansio import DatagramEndpoint, InputRejected
from pilot_proto.stream import events as sev
from pilot_proto.testing.keys import InsecureDeterministicRng
from pilot_proto.testing.nat import BEACON_ENDPOINT, NatType, NodePair, run_pair
from pilot_proto.tunnel import KeyEstablished, KeyExchangeFailed, TunnelConfig
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint, PunchCommand, encode_beacon

A, B = 0x0A, 0x0B
PORT = 7
DATA = bytes(range(256)) * 80  # 20 KiB


def make_pair(type_a: NatType, type_b: NatType, profile: Profile, **nat: object) -> NodePair:
    return NodePair(type_a, type_b, NatConfig.for_profile(profile, **nat))


def _echo(pair: NodePair, seconds: float = 30.0, data: bytes = DATA) -> None:
    """A dials B, opens a stream to port 7, sends ``data``; B sends it back; both check the exact bytes."""
    now = pair.net.clock.now
    locator = pair.b.paths.beacon.endpoint
    assert locator is not None
    pair.a.dial(B, locator, now)
    cid = pair.a.node.connect(SocketAddr(Addr(0, B), PORT), now)
    pair.a.node.send(cid, data, now)
    pair.net.run_for(seconds)
    accepted = [e for e in pair.events(pair.b) if isinstance(e, sev.ConnectionRequested)]
    assert len(accepted) == 1, pair.events(pair.b)
    assert pair.received(pair.b) == data
    pair.b.node.send(accepted[0].conn_id, data[::-1], pair.net.clock.now)
    pair.net.run_for(5.0)
    assert pair.received(pair.a, cid) == data[::-1]


def test_nat_node_is_a_datagram_endpoint() -> None:
    nn: NatNode[Node] = NatNode(Node(1, InsecureDeterministicRng("x")), BEACON_ENDPOINT)
    assert isinstance(nn, DatagramEndpoint)


@pytest.mark.req("NAT-011", "NAT-013", "NAT-015", "NAT-016", "NAT-024", "NAT-034", "NAT-043")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
@pytest.mark.parametrize(
    ("type_a", "type_b"),
    [(NatType.FULL_CONE, NatType.PORT_RESTRICTED_CONE), (NatType.PORT_RESTRICTED_CONE, NatType.PORT_RESTRICTED_CONE)],
    ids=["FC-PRC", "PRC-PRC"],
)
def test_punched_direct_path_carries_a_stream(type_a: NatType, type_b: NatType, profile: Profile) -> None:
    pair = make_pair(type_a, type_b, profile)
    pair.start()
    _echo(pair)
    assert pair.a.state(B) is PathState.DIRECT and pair.b.state(A) is PathState.DIRECT
    assert pair.beacon.stats["punch"] == 1 and pair.beacon.stats["relay"] == 0
    assert [e.authenticated for e in pair.events(pair.a) if isinstance(e, KeyEstablished)] == [True]  # PILA


@pytest.mark.req("NAT-030", "NAT-031", "NAT-021", "NAT-022", "NAT-024", "NAT-034")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_symmetric_pair_falls_back_to_relay_and_carries_a_stream(profile: Profile) -> None:
    pair = make_pair(NatType.SYMMETRIC, NatType.SYMMETRIC, profile)
    pair.start()
    _echo(pair, seconds=40.0)
    assert pair.a.state(B) is PathState.RELAY and pair.b.state(A) is PathState.RELAY
    assert pair.beacon.stats["relay"] > 20  # the stream went through the beacon
    # A's first relay attempt came after its 3 direct ones went unanswered (t = 0, 1, 3 s; relay at 7 s)
    relays = [t for t, src, dst, d in pair.net.wire if dst == BEACON_ENDPOINT and d[:1] == b"\x05"
              and src.host == pair.nats[A].public_ip]  # fmt: skip
    assert relays and relays[0] >= 1.0 + 7.0 - 1e-6


@pytest.mark.req("NAT-031", "NAT-034")
def test_without_punching_port_restricted_cones_relay() -> None:
    pair = make_pair(NatType.PORT_RESTRICTED_CONE, NatType.PORT_RESTRICTED_CONE, Profile.DRAFT, use_punch=False)
    pair.start()
    _echo(pair, seconds=40.0)
    assert pair.a.state(B) is PathState.RELAY and pair.beacon.stats["punch"] == 0


def test_probe_replies_are_not_surfaced_and_routes_are_tokens() -> None:
    pair = make_pair(NatType.FULL_CONE, NatType.FULL_CONE, Profile.DRAFT)
    pair.start()
    _echo(pair)
    pair.net.run_for(120.0)  # keepalive probes (Control pings) every 25 s
    assert not [e for e in pair.events(pair.a) if isinstance(e, sev.PingReply)]
    assert pair.a.node.tunnel.peers[B].address == PeerRoute(B)
    assert pair.a.state(B) is PathState.DIRECT and pair.a.dropped == {}


@pytest.mark.req("NAT-031", "NAT-033")
def test_control_a_tunnel_that_gives_up_early_never_reaches_the_relay_phase() -> None:
    """Why the tunnel's key exchange must span the strategy: with its defaults (4 offers, 1 s apart) the
    draft tunnel falls back to plaintext before the relay phase starts at 7 s, and nothing authenticates."""
    pair = make_pair(NatType.SYMMETRIC, NatType.SYMMETRIC, Profile.DRAFT)
    for nn in pair.nodes.values():
        nn.node.tunnel.config = TunnelConfig.for_profile(Profile.DRAFT)
    pair.start()
    now = pair.net.clock.now
    pair.a.dial(B, pair.b.paths.beacon.endpoint, now)
    cid = pair.a.node.connect(SocketAddr(Addr(0, B), PORT), now)
    pair.a.node.send(cid, DATA, now)
    pair.net.run_for(40.0)
    assert pair.a.state(B) is PathState.FAILED
    assert any(isinstance(e, KeyExchangeFailed) and e.fallback for e in pair.events(pair.a))
    assert pair.received(pair.b) != DATA


@pytest.mark.req("NAT-027", "NAT-040", "NAT-042", "NAT-043")
def test_garbage_and_forgeries_during_a_transfer_change_nothing() -> None:
    pair = make_pair(NatType.FULL_CONE, NatType.FULL_CONE, Profile.GO_INTEROP)
    pair.start()
    target = pair.a.paths.beacon.endpoint
    assert target is not None
    evil = Endpoint("192.0.2.66", 6666)
    junk = [b"", b"\x00", b"PILS" + bytes(50), b"PILP", b"\x06\x00\x00\x00\x0bPILS" + bytes(40),
            encode_beacon(PunchCommand(evil)), b"PILT" + bytes(40), bytes(range(200))]  # fmt: skip
    for i, data in enumerate(junk * 5):
        pair.net.inject(data, BEACON_ENDPOINT if i % 2 else evil, target)
    _echo(pair)
    assert pair.a.state(B) is PathState.DIRECT and pair.a.paths.peers[B].direct == pair.b.paths.beacon.endpoint
    rejected = [e for e in pair.events(pair.a) if isinstance(e, InputRejected)]
    # 40 injected: all but the 5 punch commands "from" the beacon (unsolicited and within budget, they only make
    # A punch) are refused exactly once, where they were judged
    assert len(rejected) == 35
    assert {e.layer for e in rejected} <= {"path", "beacon-client", "tunnel"}


@pytest.mark.req("NAT-016", "NAT-017", "NAT-020", "NAT-030", "NAT-031", "NAT-034")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
@pytest.mark.parametrize("type_b", list(NatType), ids=lambda t: t.short)
@pytest.mark.parametrize("type_a", list(NatType), ids=lambda t: t.short)
def test_real_nodes_end_where_the_simulated_matrix_says(type_a: NatType, type_b: NatType, profile: Profile) -> None:
    """Every NAT pair: the real node (PILA + PILS + Stream) ends on the path the toy-tunnel matrix ends on
    (``pilot-proto nat-matrix``), and a stream carries exact bytes both ways on it."""
    toy = run_pair(type_a, type_b, NatConfig.for_profile(profile))
    pair = make_pair(type_a, type_b, profile)
    pair.start()
    _echo(pair, seconds=40.0, data=DATA[:4096])
    assert pair.a.state(B) is toy.state_a and pair.b.state(A) is toy.state_b, toy.outcome


_sources = st.sampled_from([BEACON_ENDPOINT, Endpoint("192.0.2.66", 6666), Endpoint("198.51.100.2", 40000)])
_crafted = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda b: b"PILS" + b, st.binary(min_size=20, max_size=120)),
    st.builds(
        lambda s, b: b"\x06" + s.to_bytes(4, "big") + b"PILS" + b,
        st.sampled_from([A, B, 99]),
        st.binary(min_size=20, max_size=80),
    ),
    st.builds(lambda s: b"PILP" + s.to_bytes(4, "big"), st.sampled_from([A, B, 99])),
    st.builds(lambda port: encode_beacon(PunchCommand(Endpoint("192.0.2.66", port))), st.integers(1, 65535)),
)


@pytest.mark.req("NAT-027", "NAT-040", "NAT-041", "NAT-042", "NAT-043")
@settings(max_examples=25, derandomize=True, deadline=None)
@given(st.lists(st.tuples(_crafted, _sources, st.booleans()), max_size=25), st.sampled_from(list(Profile)))
def test_arbitrary_datagrams_never_break_a_live_session(
    datagrams: list[tuple[bytes, Endpoint, bool]], profile: Profile
) -> None:
    """Anything an off-path attacker can put on the wire (any source, the beacon's included, plus replays of
    captured frames) neither raises, nor moves the live direct path, nor loses or corrupts stream bytes."""
    pair = make_pair(NatType.FULL_CONE, NatType.FULL_CONE, profile)
    pair.start()
    _echo(pair, data=DATA[:2048])
    target = pair.a.paths.beacon.endpoint
    assert target is not None
    captured = [d for _, _, dst, d in pair.net.wire if dst == target and d[:4] == b"PILS"]
    for data, src, replay in datagrams:
        pair.net.inject(captured[len(data) % len(captured)] if replay else data, src, target)
    pair.net.run_for(1.0)
    assert pair.a.state(B) is PathState.DIRECT and pair.a.paths.peers[B].direct == pair.b.paths.beacon.endpoint
    before = len(pair.received(pair.b))
    [req] = [e for e in pair.events(pair.b) if isinstance(e, sev.ConnectionRequested)]
    cid = next(e.conn_id for e in pair.events(pair.a) if isinstance(e, sev.Connected))
    pair.a.node.send(cid, b"after", pair.net.clock.now)
    pair.net.run_for(2.0)
    assert pair.received(pair.b, req.conn_id)[before:] == b"after"
