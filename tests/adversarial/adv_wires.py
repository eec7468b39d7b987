"""Two ways to put raw frames in front of one of our nodes: the sans-IO :class:`~pilot_proto.node.Node`
directly, or the same node behind :class:`~pilot_proto.drivers.udp.NodeDriver` on real UDP (127.0.0.1 only).

A *port* is one underlay address the test speaks from; ``send`` delivers a datagram from it to the node,
``recv`` returns the next datagram the node sent to it (or ``None`` after ``timeout``).  The sans-IO wire
runs the node's clock forward to its next timer while waiting; the UDP wire waits on a real socket.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from pilot_proto.drivers.udp import BackgroundNode
from pilot_proto.node import Node
from pilot_proto.sansio import Event


class Port(Protocol):
    address: tuple[str, int]

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float = 1.0) -> bytes | None: ...


class SansIOPort:
    def __init__(self, wire: SansIOWire, address: tuple[str, int]) -> None:
        self.wire, self.address = wire, address
        self.inbox: deque[bytes] = deque()

    def send(self, data: bytes) -> None:
        self.wire.deliver(data, self.address)

    def recv(self, timeout: float = 1.0) -> bytes | None:
        return self.wire.wait(self, timeout)


class SansIOWire:
    """The node in-process; every datagram it sends is routed to the port of its destination address."""

    kind = "sansio"

    def __init__(self, node: Node, *, echo: bool = False) -> None:
        self.node = node
        #: answer stream data with the same bytes, as the UDP driver's echo service does (our FIN follows by
        #: the stream's own auto-close once the peer's FIN has been read)
        self.echo = echo
        self.now = 0.0
        self.ports: dict[tuple[str, int], SansIOPort] = {}
        self.elsewhere: list[tuple[bytes, object]] = []  # datagrams to addresses no port owns
        self.events: deque[Event] = deque(maxlen=10_000)
        self._next = 50_000

    def port(self) -> SansIOPort:
        self._next += 1
        p = self.ports[("127.0.0.1", self._next)] = SansIOPort(self, ("127.0.0.1", self._next))
        return p

    def deliver(self, data: bytes, source: tuple[str, int]) -> None:
        self.now += 0.001
        self.node.receive_datagram(data, source, self.now)
        self._collect()

    def wait(self, port: SansIOPort, timeout: float) -> bytes | None:
        deadline = self.now + timeout
        while not port.inbox:
            t = self.node.get_timer()
            if t is None or t > deadline:
                self.now = max(self.now, deadline)
                return None
            self.now = max(self.now, t)
            self.node.handle_timer(self.now)
            self._collect()
        return port.inbox.popleft()

    def _collect(self) -> None:
        while (ev := self.node.next_event()) is not None:
            self.events.append(ev)
            if self.echo and type(ev).__name__ == "DataReceived":
                self.node.send(ev.conn_id, ev.data, self.now)
        for dgram in self.node.datagrams_to_send():
            port = self.ports.get(dgram.addr)  # type: ignore[call-overload]
            if port is not None:
                port.inbox.append(dgram.data)
            else:
                self.elsewhere.append((dgram.data, dgram.addr))

    def sent_to(self, address: tuple[str, int]) -> bool:
        """Whether the node has sent anything to ``address`` (a port's inbox, read or not, or elsewhere)."""
        return any(addr == address for _, addr in self.elsewhere)


class UdpPort:
    def __init__(self, target: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.target = target

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def recv(self, timeout: float = 1.0) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return data

    def close(self) -> None:
        self.sock.close()


class UdpWire:
    """The node behind a NodeDriver on its own loop thread, bound to 127.0.0.1."""

    kind = "udp"

    def __init__(self, bg: BackgroundNode) -> None:
        self.bg = bg
        self.node = bg.node
        self.address = bg.address
        self.opened: list[UdpPort] = []

    def port(self) -> UdpPort:
        p = UdpPort(self.address)
        self.opened.append(p)
        return p

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        return self.bg.call(fn, *args)


@contextmanager
def wire_for(kind: str, node: Node, echo_ports: tuple[int, ...] = (7,)) -> Iterator[SansIOWire | UdpWire]:
    if kind == "sansio":
        for port in echo_ports:
            node.listen(port)
        yield SansIOWire(node, echo=bool(echo_ports))
        return
    with BackgroundNode(node, echo_ports=echo_ports, timeout=5.0) as bg:
        wire = UdpWire(bg)
        try:
            yield wire
        finally:
            for p in wire.opened:
                p.close()
