"""The shape every built-in service shares (draft 14): sans-IO, fed per-connection bytes, pulled for bytes to send.

A service never touches a socket, a clock or the stream layer.  The daemon tells it what happened on
each connection of its port and pulls what it wants written::

    svc.open(cid, remote, now)          # a connection to the service's port is ESTABLISHED
    svc.receive(cid, data, now)         # in-order stream bytes (DataReceived)
    svc.end(cid, now)                   # the peer sent FIN (StreamEnded)
    svc.closed(cid)                     # the connection is gone (Closed)

    for cid in svc.connections_with_output():
        n = stream.send(cid, svc.output(cid))   # the stream may take less than offered (backpressure)
        svc.sent(cid, n)
        if svc.wants_close(cid): stream.close(cid)   # FIN once everything queued went out
        if svc.wants_abort(cid): stream.abort(cid)   # RST: the peer broke the service's protocol

Backpressure: bytes the stream has not taken stay queued in the service; :meth:`StreamService.paused`
says a connection has more than ``max_pending`` queued, so the daemon stops handing it input until
it drains.  Bad peer input never raises out of :meth:`receive`: it becomes one
:class:`~pilot_proto.sansio.InputRejected` event (``layer`` = the service name) and the connection is
aborted; other connections are untouched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pilot_proto.errors import PilotError
from pilot_proto.sansio import Event, InputRejected
from pilot_proto.wire.address import SocketAddr

__all__ = ["DEFAULT_MAX_PENDING", "ServiceConn", "StreamService"]

#: Bytes a service queues for one connection before it reports the connection paused.
DEFAULT_MAX_PENDING = 1 << 20
#: Events a service keeps for the application before dropping the oldest.
MAX_EVENTS = 4096


@dataclass
class ServiceConn:
    """What a service keeps per connection."""

    remote: SocketAddr
    out: bytearray = field(default_factory=bytearray)
    close_when_drained: bool = False
    close_sent: bool = False
    abort: bool = False
    ended: bool = False  # peer FIN seen


class StreamService:
    """Base class: per-connection output queues, close/abort requests and events for one virtual port."""

    #: Service name, used as ``InputRejected.layer``.
    name = "service"

    def __init__(self, port: int, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.port = port
        self.max_pending = max_pending
        self.conns: dict[int, ServiceConn] = {}
        self._events: deque[Event] = deque()
        self.rejected = 0

    # -- inputs -------------------------------------------------------------------------------------

    def open(self, conn_id: int, remote: SocketAddr, now: float) -> None:
        """A connection to this service's port is established."""
        self.conns[conn_id] = ServiceConn(remote)
        self.on_open(conn_id, now)

    def receive(self, conn_id: int, data: bytes, now: float) -> None:
        """In-order stream bytes from the peer; bad input aborts this connection and is reported."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.abort or not data:
            return
        try:
            self.on_data(conn_id, conn, data, now)
        except PilotError as exc:
            self.refuse(conn_id, exc)

    def end(self, conn_id: int, now: float) -> None:
        """The peer sent FIN."""
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        conn.ended = True
        try:
            self.on_end(conn_id, conn, now)
        except PilotError as exc:
            self.refuse(conn_id, exc)

    def closed(self, conn_id: int) -> None:
        """The connection is finished; forget it."""
        if self.conns.pop(conn_id, None) is not None:
            self.on_closed(conn_id)

    # -- outputs ------------------------------------------------------------------------------------

    def connections_with_output(self) -> list[int]:
        """Connections with bytes queued or a close/abort to carry out."""
        return [cid for cid, c in self.conns.items()
                if c.out or c.abort or (c.close_when_drained and not c.close_sent)]  # fmt: skip

    def output(self, conn_id: int) -> bytes:
        """Everything queued for ``conn_id`` (the caller reports with :meth:`sent` how much the stream took)."""
        conn = self.conns.get(conn_id)
        return bytes(conn.out) if conn is not None and not conn.abort else b""

    def sent(self, conn_id: int, n: int) -> None:
        conn = self.conns.get(conn_id)
        if conn is not None:
            del conn.out[:n]

    def wants_close(self, conn_id: int) -> bool:
        """True once, when a requested close may go out (nothing left queued)."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.abort or conn.out or not conn.close_when_drained or conn.close_sent:
            return False
        conn.close_sent = True
        return True

    def wants_abort(self, conn_id: int) -> bool:
        """True once, when the connection should be reset."""
        conn = self.conns.get(conn_id)
        if conn is None or not conn.abort:
            return False
        self.conns.pop(conn_id, None)
        self.on_closed(conn_id)
        return True

    def paused(self, conn_id: int) -> bool:
        """More than ``max_pending`` bytes wait for the stream: hold further input for this connection."""
        conn = self.conns.get(conn_id)
        return conn is not None and len(conn.out) > self.max_pending

    def queued(self) -> int:
        """Bytes queued over all connections."""
        return sum(len(c.out) for c in self.conns.values())

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- for subclasses -----------------------------------------------------------------------------

    def write(self, conn_id: int, data: bytes) -> None:
        conn = self.conns.get(conn_id)
        if conn is not None and not conn.abort and not conn.close_sent:
            conn.out += data

    def finish(self, conn_id: int) -> None:
        """Close ``conn_id`` once its queued bytes are out."""
        conn = self.conns.get(conn_id)
        if conn is not None:
            conn.close_when_drained = True

    def refuse(self, conn_id: int, error: PilotError) -> None:
        """Peer input broke the protocol: report it once and reset the connection."""
        self.rejected += 1
        conn = self.conns.get(conn_id)
        peer = conn.remote.addr.node if conn is not None else None
        self.emit(InputRejected(error, self.name, None, 0, peer))
        if conn is not None:
            conn.abort = True
            conn.out.clear()

    def emit(self, event: Event) -> None:
        self._events.append(event)
        while len(self._events) > MAX_EVENTS:
            self._events.popleft()

    def on_open(self, conn_id: int, now: float) -> None:
        pass

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        raise NotImplementedError

    def on_end(self, conn_id: int, conn: ServiceConn, now: float) -> None:
        self.finish(conn_id)

    def on_closed(self, conn_id: int) -> None:
        pass
