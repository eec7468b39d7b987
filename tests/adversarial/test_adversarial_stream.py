"""Issue 9, session-layer defects, probed with the independent raw-frame peer (``rawpeer``) through the
whole node -- in-process (sans-IO ``Node`` with an echo on port 7) and over real UDP on 127.0.0.1
(``NodeDriver``'s echo service).  Every wait is bounded.
"""

from __future__ import annotations

import time

import pytest
from adv_wires import Port, SansIOWire, wire_for
from rawpeer import ACK, FIN, SYN, RawPeer, packet
from test_adversarial_tunnel import PEER, QUIET, US, _alive, _handshake, _node, kind  # noqa: F401

OTHER = 3
PAYLOAD = b"every acknowledged byte comes back " * 20


def _syn_ack(peer: RawPeer, port: Port, sport: int) -> int | None:
    """Our SYN (seq 1000) to port 7; the node's ISN from its SYN-ACK, or None."""
    port.send(peer.seal(packet(src=(0, peer.node), dst=(0, US), sport=sport, dport=7, flags=SYN, seq=1000)))
    while (frame := port.recv(1.0)) is not None:
        if frame[:4] == b"PILS":
            hdr = peer.open(frame)
            if hdr.dst_port == sport and hdr.flags == SYN | ACK:
                return hdr.seq
    return None


def _segment(peer: RawPeer, sport: int, flags: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
    inner = packet(src=(0, peer.node), dst=(0, US), sport=sport, dport=7, flags=flags, seq=seq, ack=ack,
                   payload=payload)  # fmt: skip
    return peer.seal(inner)


def _echo_until_fin(peer: RawPeer, port: Port, sport: int, resend: bytes | None) -> tuple[bytes, bool]:
    """Collect the echoed bytes (by sequence number) until the node's FIN, re-sending ``resend`` once if quiet."""
    got: dict[int, bytes] = {}
    fin_seen = False
    for _ in range(40):
        frame = port.recv(QUIET * 2)
        if frame is None:
            if resend is None:
                break
            port.send(resend)  # what a real peer does with an unacknowledged FIN: send it again
            resend = None
            continue
        if frame[:4] != b"PILS":
            continue
        hdr = peer.open(frame)
        if hdr.dst_port != sport:
            continue
        if hdr.payload:
            got[hdr.seq] = hdr.payload
        if hdr.flags & FIN:
            fin_seen = True
            break
    return b"".join(got[k] for k in sorted(got)), fin_seen


@pytest.mark.req("SES-134", "SES-020", "SES-022")
@pytest.mark.parametrize("order", ["data-and-fin-in-one-segment", "fin-before-data"])
def test_acknowledged_data_with_or_before_the_fin_is_echoed(kind: str, order: str) -> None:  # noqa: F811
    peer = RawPeer(PEER)
    with wire_for(kind, _node(identity=False)) as wire:
        home = wire.port()
        _handshake(peer, home)
        sport = 45_000 if order.startswith("data") else 45_001
        isn = _syn_ack(peer, home, sport)
        assert isn is not None
        ack = (isn + 1) & 0xFFFFFFFF
        fin_seq = 1001 + len(PAYLOAD)
        fin = _segment(peer, sport, FIN | ACK, fin_seq, ack)
        if order.startswith("data"):
            home.send(_segment(peer, sport, FIN | ACK, 1001, ack, PAYLOAD))
            resend = None
        else:  # the FIN overtakes the data
            home.send(fin)
            home.send(_segment(peer, sport, ACK, 1001, ack, PAYLOAD))
            resend = fin
        echoed, fin_seen = _echo_until_fin(peer, home, sport, resend)
        assert echoed == PAYLOAD, f"{len(echoed)} of {len(PAYLOAD)} acknowledged bytes came back"
        assert fin_seen, "the node never closed its side after echoing"


@pytest.mark.req("SEC-025", "SES-004")
def test_a_syn_flood_from_one_peer_does_not_deny_another(kind: str) -> None:  # noqa: F811
    flooder, other = RawPeer(PEER), RawPeer(OTHER)
    with wire_for(kind, _node(identity=False)) as wire:
        evil, home = wire.port(), wire.port()
        _handshake(flooder, evil)
        t0, w0 = time.monotonic(), getattr(wire, "now", 0.0)
        for i in range(300):
            evil.send(flooder.seal(packet(src=(0, PEER), dst=(0, US), sport=30_000 + i, dport=7, flags=SYN,
                                          seq=1000)))  # fmt: skip
        syn_acks = 0
        while (frame := evil.recv(QUIET)) is not None:
            if frame[:4] == b"PILS" and flooder.open(frame).flags == SYN | ACK:
                syn_acks += 1
        elapsed = getattr(wire, "now", 0.0) - w0 if isinstance(wire, SansIOWire) else time.monotonic() - t0
        # the per-source burst (10) plus its refill at 10/s while the flood ran, against 300 SYNs sent
        assert syn_acks <= 10 + 10 * elapsed + 2, (syn_acks, elapsed)
        _handshake(other, home)  # another peer keys and connects at once (draft 10.8)
        _alive(other, home)
