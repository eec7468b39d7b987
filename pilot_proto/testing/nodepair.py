"""Two full :class:`~pilot_proto.node.Node` objects (or any two datagram state machines) over an
:class:`~pilot_proto.testing.link.ImpairedLink`, on a fake clock.

The node-level sibling of :class:`~pilot_proto.testing.pair.StreamPair`: both tunnel and session layers run,
so every byte crosses the link as a real PILK/PILA/PILS datagram.  :meth:`NodePair.run_until` moves
time straight to the earliest of the two nodes' timers and the link's next delivery, so seconds of
retransmission timeouts take milliseconds and a seed reproduces a run exactly.  Nothing here opens
a socket or reads a clock::

    pair = NodePair(Profile.DRAFT, link=LinkConfig(delay=0.01, loss=0.05), seed=3)
    pair.b.listen(7)
    cid = pair.a.connect(SocketAddr(pair.b.addr, 7), pair.now)
    pair.run_until(lambda: cid in pair.side("a").connected)
    pair.a.send(cid, b"hello", pair.now)

Node IDs default to 0x0A / 0x0B at UDP addresses 10.0.0.1:4000 / 10.0.0.2:4000 (opaque labels: no
socket exists).  With ``identities=True`` (default) both nodes have deterministic test Ed25519
identities and know each other's key, so the tunnel uses PILA; ``False`` gives anonymous PILK.
:meth:`NodePair.inject` hands any datagram to one node (forged, replayed, garbage) as if it came
from an address; ``tap`` sees every datagram a node sends and every one delivered.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pilot_proto.errors import ErrorCode
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.stream import events as sev
from pilot_proto.testing.clock import FakeClock
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.testing.link import ImpairedLink, LinkConfig
from pilot_proto.testing.scripted_peer import rejection_code
from pilot_proto.testing.tap import DatagramTap

__all__ = ["DatagramPair", "NodePair", "NodeSide"]

Side = Literal["a", "b"]
UdpAddr = tuple[str, int]
_MAX_STEPS_AT_ONE_TIME = 100_000


@dataclass
class NodeSide:
    """What one side's application has seen, accumulated from its events (``node`` is its state machine)."""

    node: Any
    udp: UdpAddr
    events: list[Any] = field(default_factory=list)
    received: dict[int, bytearray] = field(default_factory=dict)
    connected: set[int] = field(default_factory=set)
    accepted: list[int] = field(default_factory=list)
    ended: set[int] = field(default_factory=set)
    closed: dict[int, sev.CloseReason] = field(default_factory=dict)
    reset: set[int] = field(default_factory=set)
    rejected: list[ErrorCode] = field(default_factory=list)

    def data(self, conn_id: int) -> bytes:
        return bytes(self.received.get(conn_id, b""))


class DatagramPair:
    """Any two :class:`~pilot_proto.sansio.DatagramEndpoint` state machines joined by one impaired link.

    ``a`` and ``b`` may be nodes, tunnel endpoints, beacon clients ... anything with
    ``receive_datagram`` / ``datagrams_to_send`` / ``next_event`` / ``get_timer`` / ``handle_timer``.
    Datagrams addressed to ``udp[0]`` go to ``a``, to ``udp[1]`` to ``b``; others are counted in
    :attr:`unroutable`.  Events are pulled after every input and accounted per side
    (:class:`NodeSide`; stream events fill its connection fields, rejections its ``rejected``).
    """

    def __init__(
        self,
        a: Any,
        b: Any,
        *,
        udp: tuple[UdpAddr, UdpAddr] = (("10.0.0.1", 4000), ("10.0.0.2", 4000)),
        link: LinkConfig | None = None,
        seed: int = 0,
        tap: DatagramTap | None = None,
        keep_events: bool = True,
        on_event: Callable[[Side, Any], None] | None = None,
    ) -> None:
        self.a, self.b = a, b
        self.clock = FakeClock()
        self.link: ImpairedLink[bytes, UdpAddr] = ImpairedLink(link, rng=random.Random(seed))
        self.tap = tap
        self.keep_events = keep_events
        self.on_event = on_event
        self._sides: dict[Side, NodeSide] = {"a": NodeSide(a, udp[0]), "b": NodeSide(b, udp[1])}
        self._by_udp: dict[UdpAddr, Side] = {udp[0]: "a", udp[1]: "b"}
        #: Datagrams a side sent to an address that is neither side (counted, dropped).
        self.unroutable = 0
        self.datagrams = 0

    # -- access ----------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def side(self, which: Side) -> NodeSide:
        return self._sides[which]

    def node(self, which: Side) -> Any:
        return self._sides[which].node

    def other(self, which: Side) -> Side:
        return "b" if which == "a" else "a"

    # -- moving datagrams ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Put every datagram either node has queued onto the link; collect both nodes' events."""
        now = self.clock.now
        for which, st in self._sides.items():
            self._collect(which, st)
            for data, dst in st.node.datagrams_to_send():
                self.datagrams += 1
                addr = self._udp(dst)
                if self.tap is not None:
                    self.tap.record("out", st.udp, addr, data)
                if addr not in self._by_udp:
                    self.unroutable += 1
                    continue
                self.link.send(st.udp, addr, data, now)
            self._collect(which, st)

    @staticmethod
    def _udp(addr: object) -> UdpAddr:
        if isinstance(addr, tuple) and len(addr) == 2:
            return (str(addr[0]), int(addr[1]))
        return (str(addr), 0)

    def inject(self, which: Side, data: bytes, source: UdpAddr | None = None) -> None:
        """Deliver ``data`` to node ``which`` now, as if from ``source`` (default: the other node's address)."""
        st = self._sides[which]
        src = source or self._sides[self.other(which)].udp
        if self.tap is not None:
            self.tap.record("in", st.udp, src, data)
        st.node.receive_datagram(bytes(data), src, self.clock.now)
        self.flush()

    def step(self) -> bool:
        """Advance to the next delivery or timer and process it; False when nothing is left to do."""
        self.flush()
        t_link = self.link.next_delivery_time()
        timers = [(t, w) for w, st in self._sides.items() if (t := st.node.get_timer()) is not None]
        t_timer, which = min(timers) if timers else (None, None)
        if t_link is not None and (t_timer is None or t_link <= t_timer):
            self.clock.advance_to(t_link)
            for d in self.link.deliverable(self.clock.now):
                dst = self._by_udp[d.dst]
                st = self._sides[dst]
                if self.tap is not None:
                    self.tap.record("in", st.udp, d.src, d.datagram)
                st.node.receive_datagram(d.datagram, d.src, self.clock.now)
        elif t_timer is not None and which is not None:
            self.clock.advance_to(t_timer)
            self._sides[which].node.handle_timer(self.clock.now)
        else:
            return False
        self.flush()
        return True

    def run_until(self, predicate: Callable[[], bool], max_time: float = 120.0) -> bool:
        """Step until ``predicate()`` holds (True) or nothing is left / ``max_time`` of virtual time passed (False).

        A timer that keeps firing without the clock moving (a livelock bug) raises RuntimeError.
        """
        deadline = self.clock.now + max_time
        same_time_steps, last = 0, self.clock.now
        self.flush()
        while not predicate():
            if self.clock.now > deadline or not self.step():
                return predicate()
            if self.clock.now == last:
                same_time_steps += 1
                if same_time_steps > _MAX_STEPS_AT_ONE_TIME:
                    raise RuntimeError(f"no progress of time after {same_time_steps} steps at t={last}")
            else:
                same_time_steps, last = 0, self.clock.now
        return True

    def run(self, duration: float) -> None:
        """Let ``duration`` seconds of virtual time pass, processing everything due in them."""
        end = self.clock.now + duration
        self.run_until(lambda: False, max_time=duration)
        self.clock.advance_to(end)

    # -- events ----------------------------------------------------------------------------------------

    def _collect(self, which: Side, st: NodeSide) -> None:
        while (ev := st.node.next_event()) is not None:
            if self.keep_events:
                st.events.append(ev)
            if isinstance(ev, sev.DataReceived):
                st.received.setdefault(ev.conn_id, bytearray()).extend(ev.data)
            elif isinstance(ev, sev.ConnectionRequested):
                st.accepted.append(ev.conn_id)
            elif isinstance(ev, sev.Connected):
                st.connected.add(ev.conn_id)
            elif isinstance(ev, sev.StreamEnded):
                st.ended.add(ev.conn_id)
            elif isinstance(ev, sev.Closed):
                st.closed[ev.conn_id] = ev.reason
            elif isinstance(ev, sev.Reset):
                st.reset.add(ev.conn_id)
            elif (code := rejection_code(ev)) is not None:
                st.rejected.append(code)
            if self.on_event is not None:
                self.on_event(which, ev)

    def events_of(self, which: Side, kind: type | tuple[type, ...]) -> list[Any]:
        return [e for e in self._sides[which].events if isinstance(e, kind)]

    def echo(self, which: Side, ports: Iterable[int] = (7,)) -> None:
        """Serve a (simple, unbounded) echo on ``ports`` of node ``which`` through :attr:`on_event`."""
        node = self.node(which)
        wanted = set(ports)
        for port in wanted:
            node.listen(port)
        echo_conns: set[int] = set()
        previous = self.on_event

        def handler(side: Side, ev: Any) -> None:
            if side == which:
                if isinstance(ev, sev.ConnectionRequested) and ev.local_port in wanted:
                    echo_conns.add(ev.conn_id)
                elif isinstance(ev, sev.DataReceived) and ev.conn_id in echo_conns:
                    node.send(ev.conn_id, ev.data, self.clock.now)
                elif isinstance(ev, sev.StreamEnded) and ev.conn_id in echo_conns:
                    node.close(ev.conn_id, self.clock.now)
            if previous is not None:
                previous(side, ev)

        self.on_event = handler


class NodePair(DatagramPair):
    """Nodes ``a`` and ``b`` (full tunnel + stream stacks) over one impaired link, stepped on a fake clock."""

    a: Node
    b: Node

    def __init__(
        self,
        profile: Profile | str = Profile.DRAFT,
        *,
        link: LinkConfig | None = None,
        seed: int = 0,
        identities: bool = True,
        ids: tuple[int, int] = (0x0A, 0x0B),
        udp: tuple[UdpAddr, UdpAddr] = (("10.0.0.1", 4000), ("10.0.0.2", 4000)),
        node_options: dict[str, Any] | None = None,
        tap: DatagramTap | None = None,
        keep_events: bool = True,
        on_event: Callable[[Side, Any], None] | None = None,
    ) -> None:
        prof = Profile.parse(profile)
        self.profile = prof
        opts = node_options or {}
        nodes: list[Node] = []
        for node_id in ids:
            ident = insecure_test_identity(node_id) if identities else None
            rng = InsecureDeterministicRng(f"nodepair/{seed}/{node_id}")
            nodes.append(Node(node_id, rng, profile=prof, identity=ident, **opts))
        a, b = nodes
        for me, other, other_udp in ((a, ids[1], udp[1]), (b, ids[0], udp[0])):
            key = insecure_test_identity(other).public_bytes if identities else None
            me.add_peer(other, other_udp, key)
        super().__init__(a, b, udp=udp, link=link, seed=seed, tap=tap, keep_events=keep_events, on_event=on_event)
