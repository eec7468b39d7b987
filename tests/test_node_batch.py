"""``Node.receive_datagrams``: a read of several datagrams is exactly ``receive_datagram`` for each in turn.

The batch looks the tunnel peer's networks up once per run of datagrams from one peer; a datagram from another
peer in the same read (two peers behind one NAT address) must still be judged by its own peer's networks
(draft 10.2: the inner source network must be one its tunnel peer may claim).
"""

from __future__ import annotations

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.node import Node
from pilot_proto.sansio import InputRejected
from pilot_proto.stream import events as sev
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.wire.address import Addr, SocketAddr

A, B, C = 0x0A, 0x0B, 0x0C
NAT = ("10.0.0.9", 4000)  # A and B behind one address
C_UDP = ("10.0.0.3", 4000)


def _three() -> tuple[Node, Node, Node]:
    ids = {n: insecure_test_identity(n) for n in (A, B, C)}
    nodes = {n: Node(n, InsecureDeterministicRng(f"batch-{n}"), identity=ids[n]) for n in (A, B, C)}
    a, b, c = nodes[A], nodes[B], nodes[C]
    a.add_peer(C, C_UDP, ids[C].public_bytes)
    b.add_peer(C, C_UDP, ids[C].public_bytes)
    c.add_peer(A, NAT, ids[A].public_bytes)
    c.add_peer(B, NAT, ids[B].public_bytes, networks=[7])  # B may only claim network 7; its packets say 0
    c.listen(9)
    return a, b, c


def _key(sender: Node, c: Node, now: float) -> None:
    """Run the key exchange between ``sender`` (behind NAT) and ``c`` to completion."""
    sender.ping(Addr(0, C), now)
    for _ in range(10):
        moved = False
        for data, _ in sender.datagrams_to_send():
            c.receive_datagram(data, NAT, now)
            moved = True
        for data, _ in c.datagrams_to_send():
            sender.receive_datagram(data, C_UDP, now)
            moved = True
        if not moved:
            break
    c.events()
    sender.events()


@pytest.mark.req("SEC-027")
@pytest.mark.parametrize("batched", [False, True])
def test_a_read_from_two_peers_judges_each_datagram_by_its_own_peer(batched: bool) -> None:
    a, b, c = _three()
    _key(a, c, 0.0)
    _key(b, c, 0.0)
    before = c.packets_in
    frames = []
    for i in range(2):
        for node in (a, b):
            node.send_datagram(SocketAddr(Addr(0, C), 9), f"{node.node_id}:{i}".encode(), 0.1)
            (frame,) = node.datagrams_to_send()
            frames.append(frame.data)
    if batched:
        c.receive_datagrams(iter(frames), NAT, 0.2)
    else:
        for data in frames:
            c.receive_datagram(data, NAT, 0.2)
    events = c.events()
    got = [e.data for e in events if isinstance(e, sev.DatagramReceived)]
    refused = [e for e in events if isinstance(e, InputRejected)]
    assert got == [b"10:0", b"10:1"]  # A's, in order
    assert [(e.layer, e.peer, e.error.code) for e in refused] == [("node", B, ErrorCode.SENDER_MISMATCH)] * 2
    assert c.packets_in - before == 2
