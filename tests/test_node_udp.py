"""Two :class:`~pilot_proto.drivers.udp.NodeDriver` on real UDP sockets bound to 127.0.0.1 (ephemeral ports).

Node B runs an echo service on port 7; node A dials it through PILA + PILS, writes 256 KiB in chunks
and reads back the identical bytes (so 256 KiB cross each way), then both sides close cleanly.
Every wait is bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from pilot_proto.drivers.udp import LOOPBACK, NodeDriver
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.stream import CloseReason
from pilot_proto.testing.keys import insecure_test_identity
from pilot_proto.tunnel import InputRejected, KeyEstablished
from pilot_proto.wire.address import SocketAddr

A, B = 0x101, 0x202
SIZE = 256 * 1024
CHUNK = 10_000


async def _echo_run(profile: Profile) -> tuple[NodeDriver, NodeDriver, float]:
    ia, ib = insecure_test_identity(A), insecure_test_identity(B)
    a = await NodeDriver.start(Node(A, os.urandom, profile=profile, identity=ia))
    b = await NodeDriver.start(Node(B, os.urandom, profile=profile, identity=ib), echo_ports=[7])
    try:
        assert a.address[0] == LOOPBACK and b.address[0] == LOOPBACK
        a.node.add_peer(B, b.address, ib.public_bytes)
        b.node.add_peer(A, a.address, ia.public_bytes)
        t0 = a.now()
        cid = await a.connect(SocketAddr(b.node.addr, 7))
        data = os.urandom(SIZE)
        for i in range(0, SIZE, CHUNK):
            a.send(cid, data[i : i + CHUNK])
        echoed = await a.recv_exactly(cid, SIZE, timeout=8.0)
        assert echoed == data
        a.close(cid)
        assert await a.wait_closed(cid, timeout=5.0) is CloseReason.NORMAL
        (bcid,) = b.conns
        assert await b.wait_closed(bcid, timeout=5.0) is CloseReason.NORMAL
        elapsed = a.now() - t0
    finally:
        a.shutdown()
        b.shutdown()
    return a, b, elapsed


@pytest.mark.req("TUN-007", "TUN-012", "SEC-005", "SEC-011", "SES-002", "SES-004", "SES-040", "SES-020", "SES-022")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP])
def test_echo_256k_over_loopback_udp(profile: Profile) -> None:
    a, b, elapsed = asyncio.run(asyncio.wait_for(_echo_run(profile), timeout=9.5))
    for drv, peer in ((a, B), (b, A)):
        keys = [e for e in drv.notices if isinstance(e, KeyEstablished)]
        assert [(k.peer, k.authenticated) for k in keys] == [(peer, True)]
        assert not [e for e in drv.notices if isinstance(e, InputRejected)]
        assert drv.node.dropped == {}
    assert a.bytes_sent > SIZE and b.bytes_sent > SIZE
    print(
        f"\n{profile.value}: 256 KiB echoed in {elapsed * 1000:.0f} ms; A sent {a.datagrams_sent} datagrams "
        f"({a.bytes_sent} B), B sent {b.datagrams_sent} ({b.bytes_sent} B)"
    )


@pytest.mark.req("SES-152")
def test_ping_over_loopback_udp() -> None:
    async def run() -> float:
        a = await NodeDriver.start(Node(A, os.urandom))
        b = await NodeDriver.start(Node(B, os.urandom))
        try:
            a.node.add_peer(B, b.address)
            b.node.add_peer(A, a.address)
            reply = await a.ping(b.node.addr, b"udp ping", timeout=3.0)
            assert reply.payload == b"udp ping" and reply.src == b.node.addr
            return reply.rtt
        finally:
            a.shutdown()
            b.shutdown()

    rtt = asyncio.run(asyncio.wait_for(run(), timeout=5.0))
    assert rtt >= 0.0
