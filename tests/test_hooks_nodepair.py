"""NodePair: two full Nodes over an ImpairedLink on a fake clock (PILA/PILK + PILS + stream)."""

from __future__ import annotations

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.stream import CloseReason
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.nodepair import DatagramPair, NodePair
from pilot_proto.testing.tap import Tap
from pilot_proto.tunnel import KeyEstablished, PacketReceived, TunnelEndpoint
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.header import Packet

SIZE = 200_000


def _exchange(pair: NodePair) -> tuple[int, int]:
    """A dials B:7, both send SIZE bytes and close; returns (A's conn, B's conn)."""
    a, b = pair.a, pair.b
    b.listen(7)
    data_a, data_b = bytes(i % 251 for i in range(SIZE)), bytes(i % 241 for i in range(SIZE))
    cid = a.connect(SocketAddr(b.addr, 7), pair.now)
    a.send(cid, data_a, pair.now)
    a.close(cid, pair.now)
    assert pair.run_until(lambda: bool(pair.side("b").accepted), max_time=30)
    (bcid,) = pair.side("b").accepted
    b.send(bcid, data_b, pair.now)
    b.close(bcid, pair.now)
    done = pair.run_until(lambda: cid in pair.side("a").closed and bcid in pair.side("b").closed, max_time=300)
    assert done, (pair.now, pair.link.stats)
    assert pair.side("b").data(bcid) == data_a and pair.side("a").data(cid) == data_b
    assert pair.side("a").closed[cid] is CloseReason.NORMAL and pair.side("b").closed[bcid] is CloseReason.NORMAL
    return cid, bcid


@pytest.mark.req("TUN-012", "SES-002", "SES-040", "CONS-016")
@pytest.mark.parametrize("profile", list(Profile))
def test_transfer_both_ways_over_a_lossy_reordering_link(profile: Profile) -> None:
    cfg = LinkConfig(delay=0.01, jitter=0.002, loss=0.02, reorder=0.02, duplicate=0.01)
    pair = NodePair(profile, link=cfg, seed=5)
    _exchange(pair)
    keys = pair.events_of("a", KeyEstablished)
    assert [(k.peer, k.authenticated) for k in keys] == [(pair.b.node_id, True)]
    stats = pair.link.stats
    assert stats.lost > 0 and stats.duplicated > 0
    # every duplicated PILS copy is refused as a replay (CONS-016), nothing else is refused
    rejected = pair.side("a").rejected + pair.side("b").rejected
    assert rejected == [ErrorCode.REPLAY] * stats.duplicated
    # the same seed replays the same run, datagram for datagram
    again = NodePair(profile, link=cfg, seed=5)
    _exchange(again)
    assert (again.datagrams, again.now, again.link.stats) == (pair.datagrams, pair.now, pair.link.stats)


def test_anonymous_pilk_and_the_echo_helper() -> None:
    pair = NodePair(identities=False, link=LinkConfig(delay=0.005))
    pair.echo("b")
    cid = pair.a.connect(SocketAddr(pair.b.addr, 7), pair.now)
    pair.a.send(cid, b"echo me" * 1000, pair.now)
    assert pair.run_until(lambda: len(pair.side("a").data(cid)) == 7000, max_time=10)
    assert pair.side("a").data(cid) == b"echo me" * 1000
    keys = pair.events_of("b", KeyEstablished)
    assert [(k.peer, k.authenticated) for k in keys] == [(pair.a.node_id, False)]


@pytest.mark.req("CONS-019")
def test_injected_garbage_is_rejected_and_the_transfer_still_completes() -> None:
    pair = NodePair(link=LinkConfig(delay=0.01))
    pair.b.listen(7)
    cid = pair.a.connect(SocketAddr(pair.b.addr, 7), pair.now)
    assert pair.run_until(lambda: cid in pair.side("a").connected)
    a_id = pair.a.node_id.to_bytes(4, "big")
    forged = b"PILS" + a_id + bytes(4) + (1 << 40).to_bytes(8, "big") + bytes(60)
    for junk in (forged, b"PIL", b"XXXX" + bytes(40)):
        pair.inject("b", junk)
    assert pair.side("b").rejected == [ErrorCode.AUTH_FAILED, ErrorCode.TRUNCATED, ErrorCode.BAD_MAGIC]
    pair.a.send(cid, b"after", pair.now)
    (bcid,) = pair.side("b").accepted
    assert pair.run_until(lambda: pair.side("b").data(bcid) == b"after")


def test_a_tap_on_the_pair_sees_every_datagram_on_the_fake_clock() -> None:
    pair = NodePair(link=LinkConfig(delay=0.02))
    tap = Tap(clock=pair.clock)
    pair.tap = tap
    pair.b.listen(7)
    cid = pair.a.connect(SocketAddr(pair.b.addr, 7), pair.now)
    assert pair.run_until(lambda: cid in pair.side("a").connected)
    # lossless: every datagram sent has arrived or is still on the wire
    assert tap.counts["out"] == pair.datagrams == tap.counts["in"] + pair.link.in_flight
    first_in = tap.entries("in")[0]
    assert first_in.time == pytest.approx(0.02) and first_in.data[:4] == b"PILA"


@pytest.mark.req("TUN-012")
def test_datagram_pair_runs_two_bare_tunnel_endpoints_over_loss() -> None:
    """The same harness for any sans-IO datagram machine: two TunnelEndpoints key over a lossy link."""
    udp = (("10.0.0.1", 4000), ("10.0.0.2", 4000))
    a = TunnelEndpoint(1, InsecureDeterministicRng("dp/1"), identity=insecure_test_identity(1))
    b = TunnelEndpoint(2, InsecureDeterministicRng("dp/2"), identity=insecure_test_identity(2))
    a.set_peer_key(2, insecure_test_identity(2).public_bytes)
    b.set_peer_key(1, insecure_test_identity(1).public_bytes)
    a.add_peer(2, udp[1])
    b.add_peer(1, udp[0])
    pair = DatagramPair(a, b, udp=udp, link=LinkConfig(delay=0.01, loss=0.1), seed=4)
    for i in range(20):
        a.send(2, Packet(0, 2, Addr(0, 1), Addr(0, 2), 1, 2, seq=i, payload=b"x"), pair.now)
        pair.run(0.05)
    assert pair.run_until(lambda: bool(pair.events_of("b", PacketReceived)), max_time=30)
    got = {e.packet.seq for e in pair.events_of("b", PacketReceived)}
    assert 0 < len(got) <= 20 and pair.link.stats.lost > 0  # lossy: some arrive, none twice
    assert [e.authenticated for e in pair.events_of("b", KeyEstablished)] == [True]
