"""Sans-IO :class:`~pilot_proto.node.Node`: tunnel + session layers composed, two nodes on an in-memory wire.

The "network" is a FIFO of ``(datagram, from, to)`` with a fixed one-way delay in virtual time; nothing
here reads a clock or opens a socket.  Keys and randomness come from the deterministic test RNG.
"""

from __future__ import annotations

import heapq
import itertools

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.node import Node, NodeEvent
from pilot_proto.profile import Profile
from pilot_proto.stream import CloseReason
from pilot_proto.stream import events as sev
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import InputRejected, KeyEstablished
from pilot_proto.wire.address import Addr, SocketAddr

A, B = 0x0A, 0x0B
UDP = {A: ("10.0.0.1", 4000), B: ("10.0.0.2", 4000)}
DELAY = 0.005
MIB = 1 << 20


def _pair(profile: Profile) -> tuple[Node, Node]:
    ia, ib = insecure_test_identity(A), insecure_test_identity(B)
    a = Node(A, InsecureDeterministicRng(f"node-a/{profile.value}"), profile=profile, identity=ia)
    b = Node(B, InsecureDeterministicRng(f"node-b/{profile.value}"), profile=profile, identity=ib)
    a.add_peer(B, UDP[B], ib.public_bytes)
    b.add_peer(A, UDP[A], ia.public_bytes)
    return a, b


class Wire:
    """Delivers every datagram after ``DELAY`` seconds of virtual time; advances time to the next event."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = {n.node_id: n for n in nodes}
        self.by_udp = {UDP[n.node_id]: n for n in nodes}
        self.now = 0.0
        self._q: list[tuple[float, int, bytes, tuple[str, int], Node]] = []
        self._seq = itertools.count()
        self.datagrams = 0
        self.events: dict[int, list[NodeEvent]] = {n.node_id: [] for n in nodes}
        self.inject: list[tuple[bytes, Node]] = []

    def flush(self) -> None:
        for node in self.nodes.values():
            for data, addr in node.datagrams_to_send():
                dst = self.by_udp[addr]  # type: ignore[index]
                self.datagrams += 1
                heapq.heappush(self._q, (self.now + DELAY, next(self._seq), data, UDP[node.node_id], dst))

    def step(self) -> bool:
        """Advance to the next delivery or timer; False when nothing is left to do."""
        self.flush()
        timers = [(t, n) for n in self.nodes.values() if (t := n.get_timer()) is not None]
        next_timer = min(timers, key=lambda x: x[0]) if timers else None
        if self._q and (next_timer is None or self._q[0][0] <= next_timer[0]):
            t, _, data, src, dst = heapq.heappop(self._q)
            self.now = max(self.now, t)
            dst.receive_datagram(data, src, self.now)
        elif next_timer is not None:
            self.now = max(self.now, next_timer[0])
            next_timer[1].handle_timer(self.now)
        else:
            return False
        return True

    def drain_events(self, node: Node) -> list[NodeEvent]:
        evs = node.events()
        self.events[node.node_id] += evs
        return evs


def _run_exchange(profile: Profile, size: int, forge_at: int | None = None) -> tuple[Wire, Node, Node]:
    """A dials B:7, both send ``size`` bytes and close; B echoes nothing, each side just collects."""
    a, b = _pair(profile)
    b.listen(7)
    wire = Wire(a, b)
    payload_a = bytes(i * 7 % 251 for i in range(size))
    payload_b = bytes(i * 13 % 253 for i in range(size))
    cid_a = a.connect(SocketAddr(b.addr, 7), wire.now)
    a.send(cid_a, payload_a, wire.now)
    a.close(cid_a, wire.now)
    got = {A: bytearray(), B: bytearray()}
    closed: dict[int, CloseReason] = {}
    cid_b: int | None = None
    forged = False
    steps = 0
    while wire.step():
        steps += 1
        assert steps < 200_000, "exchange did not finish"
        if forge_at is not None and not forged and len(got[B]) >= forge_at:
            forged = True
            _inject_garbage(wire, a, b)
        for node in (a, b):
            for ev in wire.drain_events(node):
                if isinstance(ev, sev.DataReceived):
                    got[node.node_id] += ev.data
                elif isinstance(ev, sev.ConnectionRequested):
                    cid_b = ev.conn_id
                    b.send(cid_b, payload_b, wire.now)
                    b.close(cid_b, wire.now)
                elif isinstance(ev, sev.Closed):
                    closed[node.node_id] = ev.reason
    assert cid_b is not None
    assert bytes(got[B]) == payload_a and bytes(got[A]) == payload_b
    assert closed == {A: CloseReason.NORMAL, B: CloseReason.NORMAL}
    assert forge_at is None or forged
    return wire, a, b


def _inject_garbage(wire: Wire, a: Node, b: Node) -> None:
    """A forged PILS from A's ID with a fresh counter, a truncated frame, an unknown magic and a PILK downgrade."""
    pils_a = b"PILS" + A.to_bytes(4, "big") + bytes(4) + (1 << 40).to_bytes(8, "big") + bytes(60)
    junk = [pils_a, b"PIL", b"XXXX" + bytes(40), b"PILK" + A.to_bytes(4, "big") + bytes(range(32))]
    for data in junk:
        b.receive_datagram(data, UDP[A], wire.now)
        a.receive_datagram(data.replace(A.to_bytes(4, "big"), B.to_bytes(4, "big"), 1), UDP[B], wire.now)


@pytest.mark.req(
    "SES-002", "SES-004", "SES-040", "SES-005", "SES-020", "SES-022", "TUN-007", "TUN-012", "SEC-005", "SEC-011"
)
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP])
def test_one_mib_both_ways_through_pila_and_pils(profile: Profile) -> None:
    wire, a, b = _run_exchange(profile, MIB)
    for node, peer in ((a, B), (b, A)):
        established = [e for e in wire.events[node.node_id] if isinstance(e, KeyEstablished)]
        assert established == [KeyEstablished(peer, True, UDP[peer])]  # PILA, verified against the known key
        assert not [e for e in wire.events[node.node_id] if isinstance(e, InputRejected)]
        assert node.dropped == {} and node.packets_in > MIB // 4096 and node.packets_out > MIB // 4096
        assert not node.stream.active_count
    # all traffic after the key exchange was PILS (SEC-005): no PILT, and only the one PILA each way
    print(f"\n{profile.value}: {wire.datagrams} datagrams, {wire.now:.3f} s virtual time for 1 MiB each way")


@pytest.mark.req("CONS-019", "SEC-006", "SEC-029", "TUN-009", "SES-134")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP])
def test_forged_and_garbage_datagrams_mid_transfer_change_nothing(profile: Profile) -> None:
    clean, _, _ = _run_exchange(profile, MIB // 4)
    wire, a, b = _run_exchange(profile, MIB // 4, forge_at=MIB // 8)
    for node in (a, b):
        rejected = [e for e in wire.events[node.node_id] if isinstance(e, InputRejected)]
        assert len(rejected) == 4  # one InputRejected per junk datagram, none for real traffic
        assert {e.code for e in rejected} >= {ErrorCode.AUTH_FAILED, ErrorCode.AUTH_REQUIRED}
        print(f"\n{profile.value} node {node.node_id}: {sorted(e.code.value for e in rejected)}")
    # the same datagrams crossed the wire as in the clean run: the garbage changed no state and caused no reply
    assert wire.datagrams == clean.datagrams
    assert wire.now == clean.now


@pytest.mark.req("SES-152", "TUN-012")
def test_ping_and_unroutable_destination() -> None:
    a, b = _pair(Profile.DRAFT)
    wire = Wire(a, b)
    seq = a.ping(b.addr, wire.now, b"hello")
    a.ping(Addr(0, 0x77), wire.now)  # no underlay address for node 0x77: counted, not sent
    while wire.step():
        pass
    replies = [e for e in wire.drain_events(a) if isinstance(e, sev.PingReply)]
    assert [(r.src, r.seq, r.payload) for r in replies] == [(b.addr, seq, b"hello")]
    assert a.dropped == {"no_route": 1}
    assert any(isinstance(e, sev.PingRequestAnswered) for e in wire.drain_events(b))
