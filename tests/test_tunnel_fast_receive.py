"""TunnelEndpoint.receive_packet_fast is receive_datagram without the PacketReceived event (draft 7.2, 10.2, 19.9).

Two receivers built from the same seeds get the same datagrams from one sender: one through ``receive_datagram``
(the idiom), the other through the node's fast path.  Every input -- in order, out of order, replayed, forged, from
a new address, an inner packet with a bad CRC, frames across a re-key, garbage -- must give the same packet, the
same other events, the same datagrams out and the same state (replay windows, counters, sessions, address).
"""

from __future__ import annotations

from typing import Any

import pytest

from pilot_proto.sansio import Address, Event, InputRejected, drain
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import PacketReceived, TunnelConfig, TunnelEndpoint
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

A, B = 1, 2
A_UDP, A_ROAMED, B_UDP = ("127.0.0.1", 4001), ("127.0.0.1", 4011), ("127.0.0.1", 4002)


def _tunnel(node: int) -> TunnelEndpoint:
    keys = {n: insecure_test_identity(n).public_bytes for n in (A, B) if n != node}
    return TunnelEndpoint(node, InsecureDeterministicRng(f"fast/{node}"), identity=insecure_test_identity(node),
                          config=TunnelConfig.for_profile("draft"), peer_keys=keys)  # fmt: skip


def _pkt(n: int) -> Packet:
    return Packet(0, PacketProtocol.DATAGRAM, Addr(0, A), Addr(0, B), 1000, 1001, payload=n.to_bytes(4, "big") * 9)


def _events(evs: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ev in evs:
        if isinstance(ev, InputRejected):
            out.append(("rejected", ev.code, ev.layer, ev.source, ev.size, ev.peer))
        elif isinstance(ev, PacketReceived):
            out.append(("packet", ev.peer, ev.packet, ev.address, ev.encrypted))
        else:
            out.append((type(ev).__name__, *(getattr(ev, f) for f in ev.__slots__)))  # type: ignore[attr-defined]
    return out


def _state(t: TunnelEndpoint) -> object:
    peer = t.peers[A]
    return (peer.address, peer.confirmed, peer.offer_private is None, len(peer.tentative), peer.pending,
            [(s.rx, s.first, s.sealer.counter, s.opener.snapshot(), s.peer_public) for s in peer.sessions],
            {k: v for k, v in t.stats.items()})  # fmt: skip


class Twins:
    def __init__(self) -> None:
        self.a, self.slow, self.fast = _tunnel(A), _tunnel(B), _tunnel(B)
        self.a.add_peer(B, B_UDP)
        self.slow.add_peer(A, A_UDP)
        self.fast.add_peer(A, A_UDP)
        self.fast_hits = 0

    def feed(self, data: bytes, addr: Address = A_UDP, now: float = 1.0) -> None:
        self.slow.receive_datagram(data, addr, now)
        want = _events(drain(self.slow))
        pkt = self.fast.receive_packet_fast(data, addr, now)
        got = _events(drain(self.fast))
        if pkt is not None:
            self.fast_hits += 1
            assert got == [], "the fast path reports nothing else"
            got = [("packet", A, pkt, addr, True)]
        assert got == want
        out_slow, out_fast = self.slow.datagrams_to_send(), self.fast.datagrams_to_send()
        assert out_fast == out_slow
        assert _state(self.fast) == _state(self.slow)
        for d in out_slow:  # the receivers answer identically; one answer reaches the sender
            self.a.receive_datagram(d.data, B_UDP, now)
        drain(self.a)

    def sent(self, n: int, now: float = 1.0) -> list[bytes]:
        self.a.send(B, _pkt(n), now)
        return [d.data for d in self.a.datagrams_to_send()]

    def shuttle(self, now: float = 1.0) -> None:
        for _ in range(10):
            out = self.a.datagrams_to_send()
            if not out:
                return
            for d in out:
                self.feed(d.data, A_UDP, now)


@pytest.mark.req("CONS-019", "SEC-027")
def test_fast_receive_matches_receive_datagram() -> None:
    t = Twins()
    t.a.send(B, _pkt(0), 0.0)  # key exchange first (slow path), the queued packet after it
    t.shuttle(0.0)
    assert t.slow.peers[A].active is not None
    frames = [f for n in range(1, 9) for f in t.sent(n)]
    for f in frames[:3]:
        t.feed(f)  # in order
    t.feed(frames[4])  # out of order: a gap
    t.feed(frames[3])  # fills it
    t.feed(frames[3])  # replay
    forged = bytearray(frames[5])
    forged[-1] ^= 1
    t.feed(bytes(forged))  # forged tag: refused, the genuine frame still opens afterwards
    t.feed(frames[5])
    t.feed(frames[6], A_ROAMED)  # authenticated from a new address: the peer moves
    assert t.fast.peers[A].address == A_ROAMED
    prefix = t.a.peers[B].sessions[0].sealer.prefix
    for r in (t.slow, t.fast):  # both directions under one nonce prefix (E-NONCE-3): the receiver must re-key
        sealer = r.peers[A].sessions[0].sealer
        sealer.prefix = sealer._prefix = prefix
    t.feed(frames[7])
    assert t.fast.peers[A].offer_private is not None
    t.shuttle()
    raw = bytearray(encode_packet(_pkt(99)))
    raw[30] ^= 0xFF  # a bad inner CRC, sealed by the real peer: authenticated, counter consumed, then refused
    t.a.send(B, bytes(raw), 2.0)
    (bad,) = t.a.datagrams_to_send()
    t.feed(bad.data)
    old = t.sent(10)  # sealed under the old key, delivered after the re-key
    t.a.rekey(B, 3.0)
    t.shuttle(3.0)
    for f in t.sent(11) + old:
        t.feed(f, now=3.0)
    for junk in (b"", b"PILS", bytes(40), b"PILS" + B.to_bytes(4, "big") + bytes(40), b"PILS" + bytes(60)):
        t.feed(junk, now=3.0)
    assert t.fast_hits >= 8  # the fast path was taken, not merely fallen back from
    assert len(t.slow.peers[A].sessions) >= 2  # old sessions stay for the frames in flight
