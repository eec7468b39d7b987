"""Interop: our whole stack (:class:`~pilot_proto.node.Node` on :class:`~pilot_proto.drivers.udp.NodeDriver`)
against the Go reference daemon (jerryfane/pilotprotocol 64c2780) on 127.0.0.1.

Runs only when ``PILOT_GO_BIN`` names a directory with locally built ``registry``, ``beacon`` and ``daemon``
binaries (see ``_go.py``).  Our node registers an Ed25519 key with the Go registry, keys the tunnel with
PILA, and then speaks the session layer in the ``go-interop`` profile through PILS:

* a Stream connection to the daemon's echo service (port 7): 64 KiB in several writes, the identical
  bytes come back, we close and both sides finish; after the close the datagrams each way stay bounded
  (no FIN|ACK storm, erratum E-OBS-1);
* a Control ping (port 0) round trip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _go import (
    LOOPBACK,
    GoNet,
    free_port,
    go_network,
    pilotctl,
    register,
    set_public,
)  # tests/interop is on sys.path (no __init__.py)

from pilot_proto.drivers.udp import NodeDriver
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.stream import CloseReason
from pilot_proto.tunnel import Identity, InputRejected, KeyEstablished
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.header import Flags, Packet

pytestmark = pytest.mark.interop
GO = Profile.GO_INTEROP
ECHO_BYTES = 64 * 1024
WRITES = (1, 1000, 4096, 4097, 9000, 17_000, 65_536)  # uneven writes, repeated until the size is queued
QUIET = 1.5  # seconds we keep listening after the close to count stray datagrams
AFTER_CLOSE_LIMIT = 12  # datagrams either way after both sides closed; a FIN|ACK loop sends thousands per second


@pytest.fixture(scope="module")
def go_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoNet]:
    with go_network(tmp_path_factory.mktemp("go-stream")) as net:
        yield net


class _Counts(Counter[str]):
    """Stream tracer that counts records by name (retransmit, loss_rto, drop, ...)."""

    def __call__(self, record: dict[str, Any]) -> None:
        self[str(record.get("name"))] += 1


class RecordingNode(Node):
    """A Node that keeps every inner packet it received and sent (for the report and the FIN checks)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.counts = _Counts()
        super().__init__(*args, tracer=self.counts, **kwargs)  # type: ignore[arg-type]
        self.inbound: list[tuple[float, Packet]] = []
        self.outbound: list[tuple[float, Packet]] = []
        stream = self.stream
        receive, packets = stream.receive_packet, stream.packets_to_send

        def receive_packet(pkt: Packet, now: float) -> None:
            self.inbound.append((now, pkt))
            receive(pkt, now)

        def packets_to_send() -> list[Packet]:
            out = packets()
            self.outbound.extend((self._now, p) for p in out)
            return out

        stream.receive_packet = receive_packet  # type: ignore[method-assign]
        stream.packets_to_send = packets_to_send  # type: ignore[method-assign]


async def _start(go: GoNet) -> NodeDriver:
    ident = Identity.from_seed(os.urandom(32))
    me = register(go, ident)
    node = RecordingNode(me, os.urandom, profile=GO, identity=ident, isn_source=_random_isn)
    node.add_peer(go.node_id, go.daemon, go.ed25519)
    drv = await NodeDriver.start(node, (LOOPBACK, 0))
    return drv


def _random_isn() -> int:
    return int.from_bytes(os.urandom(4), "big")


def _flags(pkt: Packet) -> str:
    return "|".join(f.name or "" for f in Flags if pkt.flags & f) or "-"


def _ours(conns: object, me: Addr, port: int) -> list[dict[str, object]]:
    """Rows of the Go connection table that belong to our connection (remote = our address and port)."""
    assert isinstance(conns, list)
    return [c for c in conns if c.get("remote_addr") == str(me) and c.get("remote_port") == port]


@dataclass
class EchoRun:
    drv: NodeDriver
    node: RecordingNode
    reason: CloseReason
    writes: int
    t_conn: float
    t_echo: float
    t_closed: float
    at_close: tuple[int, int, int, int]  # datagrams sent/received, inner packets out/in when Closed arrived
    go_before: list[dict[str, object]] | None
    go_after: list[dict[str, object]] | None


async def _echo(go_net: GoNet, size: int) -> EchoRun:
    drv = await _start(go_net)
    node = drv.node
    assert isinstance(node, RecordingNode)
    try:
        t0 = time.monotonic()
        cid = await drv.connect(SocketAddr(Addr(0, go_net.node_id), 7), timeout=10.0)
        t_conn = time.monotonic() - t0
        data = os.urandom(size)
        off, writes = 0, 0
        while off < size:
            n = WRITES[writes % len(WRITES)]
            drv.send(cid, data[off : off + n])
            off += n
            writes += 1
        echoed = await drv.recv_exactly(cid, size, timeout=10.0)
        t_echo = time.monotonic() - t0
        assert echoed == data
        go_before = await asyncio.to_thread(go_net.connections)
        drv.close(cid)
        reason = await drv.wait_closed(cid, timeout=10.0)
        t_closed = time.monotonic() - t0
        at_close = (drv.datagrams_sent, drv.datagrams_received, len(node.outbound), len(node.inbound))
        await asyncio.sleep(QUIET)
        go_after = await asyncio.to_thread(go_net.connections)
        return EchoRun(drv, node, reason, writes, t_conn, t_echo, t_closed, at_close, go_before, go_after)
    finally:
        drv.shutdown()


@pytest.mark.req("SES-002", "SES-003", "SES-005", "SES-020", "SES-040", "SES-093", "TUN-012", "SEC-005", "SEC-011")
@pytest.mark.parametrize("size", [ECHO_BYTES, 1 << 20], ids=["64KiB", "1MiB"])
def test_stream_echo_through_full_stack(go_net: GoNet, size: int) -> None:
    r = asyncio.run(asyncio.wait_for(_echo(go_net, size), timeout=30.0))
    drv, node = r.drv, r.node
    keys = [e for e in drv.notices if isinstance(e, KeyEstablished)]
    assert [(k.peer, k.authenticated) for k in keys] == [(go_net.node_id, True)]
    assert not [e for e in drv.notices if isinstance(e, InputRejected)]
    assert r.reason is CloseReason.NORMAL
    sent0, recv0, out0, in0 = r.at_close
    after_sent, after_recv = drv.datagrams_sent - sent0, drv.datagrams_received - recv0
    tail = [("<", t, p) for t, p in node.inbound[in0 - 3 :]] + [(">", t, p) for t, p in node.outbound[out0 - 3 :]]
    tail.sort(key=lambda x: x[1])
    fins_in = [p for _, p in node.inbound if p.flags & Flags.FIN]
    sacks_in = sum(1 for _, p in node.inbound if p.payload[:4] == b"SACK" and p.flags == Flags.ACK)
    sacks_out = sum(1 for _, p in node.outbound if p.payload[:4] == b"SACK" and p.flags == Flags.ACK)
    print(
        f"\nGo echo: {size} B in {r.writes} writes; connected {r.t_conn * 1000:.1f} ms, "
        f"echo complete {r.t_echo * 1000:.1f} ms, closed ({r.reason.value}) {r.t_closed * 1000:.1f} ms; "
        f"datagrams sent {drv.datagrams_sent} / received {drv.datagrams_received} "
        f"(after close: {after_sent} / {after_recv} in {QUIET} s); "
        f"inner packets out {len(node.outbound)} / in {len(node.inbound)}, SACK ACKs out {sacks_out} / in {sacks_in}; "
        f"FINs from Go: {[_flags(p) for p in fins_in]}; dropped {node.stream.dropped}; "
        f"tracer {dict(node.counts)}\n"
        "close tail: " + "; ".join(f"{d}{_flags(p)} seq={p.seq} ack={p.ack} win={p.window}" for d, _, p in tail)
    )
    if r.go_before is not None and r.go_after is not None:  # pilotctl available: Go's side must be finishing too
        local_port = node.outbound[0][1].src_port  # our SYN's source port
        before = _ours(r.go_before, node.addr, local_port)
        after = _ours(r.go_after, node.addr, local_port)
        print(f"Go connection table: while open {before}; {QUIET} s after our close {after}")
        assert [c.get("state") for c in before] == ["ESTABLISHED"]
        assert all(c.get("state") in ("TIME_WAIT", "CLOSED") for c in after)
    assert after_sent <= AFTER_CLOSE_LIMIT and after_recv <= AFTER_CLOSE_LIMIT, "FIN|ACK storm (E-OBS-1)"
    assert b"panic" not in go_net.daemon_log()


@pytest.mark.req("SES-152", "TUN-012")
def test_control_ping_through_full_stack(go_net: GoNet) -> None:
    async def run() -> tuple[bytes, float, int]:
        drv = await _start(go_net)
        try:
            reply = await drv.ping(Addr(0, go_net.node_id), b"pilot-proto node ping", timeout=10.0)
            return reply.payload, reply.rtt, reply.src.node
        finally:
            drv.shutdown()

    payload, rtt, src = asyncio.run(asyncio.wait_for(run(), timeout=15.0))
    assert payload == b"pilot-proto node ping" and src == go_net.node_id
    print(f"\nGo ping through Node: rtt {rtt * 1000:.2f} ms (includes the PILA exchange)")


@pytest.mark.req("SES-004", "SES-011", "SES-022", "SES-131", "TUN-019", "SEC-011")
def test_go_dials_our_echo_service(go_net: GoNet) -> None:
    """The other direction: ``pilotctl connect`` makes the Go daemon resolve us, key the tunnel (Go's PILA) and
    open a Stream to our echo port 7; Go closes first, our echo answers with its FIN."""
    if pilotctl(go_net, "info") is None:
        pytest.skip("PILOT_GO_BIN has no pilotctl")
    message = "pilot-proto echo service says hello " * 5

    async def run() -> tuple[dict[str, object] | None, NodeDriver, int, int, int]:
        ident = Identity.from_seed(os.urandom(32))
        port = free_port(socket.SOCK_DGRAM)
        me = register(go_net, ident, port)
        set_public(go_net, ident, me)
        node = RecordingNode(me, os.urandom, profile=GO, identity=ident, peer_keys={go_net.node_id: go_net.ed25519},
                             isn_source=_random_isn)  # fmt: skip
        drv = await NodeDriver.start(node, (LOOPBACK, port), echo_ports=[7])
        try:
            doc = await asyncio.to_thread(
                pilotctl, go_net, "connect", str(node.addr), "7", "--message", message, "--timeout", "10s"
            )
            cid = next(iter(drv.conns))
            await drv.wait_closed(cid, timeout=10.0)
            sent0, recv0 = drv.datagrams_sent, drv.datagrams_received
            await asyncio.sleep(QUIET)
            return doc, drv, cid, drv.datagrams_sent - sent0, drv.datagrams_received - recv0
        finally:
            drv.shutdown()

    doc, drv, cid, after_sent, after_recv = asyncio.run(asyncio.wait_for(run(), timeout=30.0))
    node = drv.node
    assert isinstance(node, RecordingNode)
    trace = [("<", t, p) for t, p in node.inbound] + [(">", t, p) for t, p in node.outbound]
    trace.sort(key=lambda x: x[1])
    print(
        f"\nGo dialled us: pilotctl {doc}; our conn {drv.conns[cid]}; dropped {node.stream.dropped}; "
        f"after close {after_sent} / {after_recv} datagrams in {QUIET} s\n"
        + "\n".join(
            f"  {d}{_flags(p)} seq={p.seq} ack={p.ack} win={p.window} len={len(p.payload)}" for d, _, p in trace
        )
    )
    assert doc is not None and doc.get("status") == "ok", doc
    data = doc.get("data")
    assert isinstance(data, dict) and data.get("response") == message
    st = drv.conns[cid]
    assert st.echo and st.ended and st.closed is CloseReason.NORMAL
    keys = [e for e in drv.notices if isinstance(e, KeyEstablished)]
    assert [(k.peer, k.authenticated) for k in keys] == [(go_net.node_id, True)]
    assert after_sent <= AFTER_CLOSE_LIMIT and after_recv <= AFTER_CLOSE_LIMIT, "FIN|ACK storm (E-OBS-1)"
