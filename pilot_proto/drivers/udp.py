"""A thin asyncio UDP driver running one sans-IO :class:`~pilot_proto.node.Node` (draft 7: one frame per datagram).

The only I/O around the node: a datagram socket (127.0.0.1 unless the caller binds elsewhere),
``loop.time()`` as ``now`` and ONE timer handle kept at ``node.get_timer()``, re-armed after every
input.  Events are pulled from the node after each input and routed to small per-connection buffers,
so tests and tools can ``await`` them::

    drv = await NodeDriver.start(Node(1, os.urandom), ("127.0.0.1", 0))
    drv.node.add_peer(2, ("127.0.0.1", 4002))
    cid = await drv.connect(SocketAddr(Addr(0, 2), 7))
    drv.send(cid, b"hello"); data = await drv.recv(cid)
    drv.close(cid); await drv.wait_closed(cid)
    drv.shutdown()

The driver pops ``DataReceived`` as soon as it arrives (freeing receive window) and keeps the bytes
in an unbounded per-connection buffer: fine for tests and the echo service, not a flow-controlled API.
``echo_ports`` turns listening ports into echo services (data is written back, FIN answered by close).

:class:`BackgroundNode` runs a driver on its own event loop in a daemon thread, for blocking test
code (e.g. :class:`pilot_proto.testing.scripted_peer.ScriptedPeer`) that needs a live node to talk to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from pilot_proto.drivers._socket import allow_fragmentation
from pilot_proto.node import Node, NodeEvent
from pilot_proto.sansio import InputRejected
from pilot_proto.stream import CloseReason
from pilot_proto.stream import events as sev
from pilot_proto.testing.link import ImpairedLink, LinkConfig, LinkStats
from pilot_proto.testing.tap import DatagramTap
from pilot_proto.tunnel import KeyEstablished
from pilot_proto.wire.address import Addr, SocketAddr

__all__ = ["BackgroundNode", "ConnState", "DriverFault", "ImpairedSides", "Impairment", "NodeDriver"]

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT = 5.0
_RCVBUF = 4 << 20
_log = logging.getLogger(__name__)


@dataclass
class ConnState:
    """What the driver has seen of one connection."""

    data: bytearray = field(default_factory=bytearray)
    connected: bool = False
    ended: bool = False  # peer FIN seen
    closed: CloseReason | None = None
    reset: bool = False
    echo: bool = False
    #: Echo only: bytes received and not yet handed to the stream (waiting for send-buffer room).
    pending: bytearray = field(default_factory=bytearray)
    #: Echo only: the peer ended its stream; close once ``pending`` is written.
    close_when_drained: bool = False
    #: Echo only: bytes of ``pending`` the stream counts as unread (keeping the peer's window closed).
    retained: int = 0
    #: ``Writable`` events seen (the stream had room again after a short send).
    writable_events: int = 0


@dataclass
class Impairment:
    """Seeded impairments on the driver's own side, in :class:`~pilot_proto.testing.link.ImpairedLink`'s model.

    ``outbound`` applies to datagrams the node sends (before they reach the socket), ``inbound`` to
    datagrams read from the socket (before they reach the node); ``None`` leaves that side alone.
    Times are the event loop's clock; ``rng`` makes a run repeatable.
    """

    outbound: LinkConfig | None = None
    inbound: LinkConfig | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))


class ImpairedSides:
    """A socket's two impaired sides (``out``, ``inbound``: :class:`ImpairedLink` or ``None``) and the one
    loop timer that releases what they hold back; ``on_due`` runs when it fires.  Shared by
    :class:`NodeDriver` and :class:`pilot_proto.daemon.driver.DaemonDriver`."""

    def __init__(self, impairment: Impairment | None, on_due: Callable[[], None]) -> None:
        imp = impairment
        self.out: ImpairedLink[bytes, Any] | None = (
            ImpairedLink(imp.outbound, rng=imp.rng) if imp is not None and imp.outbound is not None else None
        )
        self.inbound: ImpairedLink[bytes, Any] | None = (
            ImpairedLink(imp.inbound, rng=imp.rng) if imp is not None and imp.inbound is not None else None
        )
        self._on_due = on_due
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def arm(self, running: bool) -> None:
        """(Re)arm the timer for the earliest held datagram; none once the socket is no longer ``running``."""
        times = [t for link in (self.out, self.inbound) if link is not None and (t := link.next_delivery_time())
                 is not None]  # fmt: skip
        deadline = min(times) if times else None
        if deadline == self._timer_at:
            return
        self.cancel()
        if deadline is not None and running:
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self._on_due()

    @property
    def stats(self) -> dict[str, LinkStats]:
        """What the impairment did per side (``outbound``/``inbound``), when configured."""
        out: dict[str, LinkStats] = {}
        if self.out is not None:
            out["outbound"] = self.out.stats
        if self.inbound is not None:
            out["inbound"] = self.inbound.stats
        return out

    def reconfigure(self, impairment: Impairment | None) -> None:
        """Change the impairments from now on (``None``: none); datagrams already delayed keep their fate."""
        for side in ("out", "inbound"):
            cfg = (impairment.outbound if side == "out" else impairment.inbound) if impairment is not None else None
            link: ImpairedLink[bytes, Any] | None = getattr(self, side)
            if link is None:
                if cfg is not None and impairment is not None:
                    setattr(self, side, ImpairedLink(cfg, rng=impairment.rng))
                continue
            link.configure(cfg or LinkConfig())
            if impairment is not None:
                link.rng = impairment.rng


@dataclass(frozen=True, slots=True)
class DriverFault:
    """An exception the driver caught instead of letting it escape into asyncio (issue 9).

    ``stage`` is ``receive`` (inside ``node.receive_datagram``), ``dispatch`` (routing an event,
    e.g. echoing), ``flush`` or ``timer``; ``source`` and ``size`` describe the datagram, if any.
    """

    time: float
    stage: str
    error: str
    source: tuple[str, int] | None = None
    size: int = 0


class NodeDriver(asyncio.DatagramProtocol):
    """Runs one :class:`Node` on a UDP socket of the running asyncio loop.

    Options: ``tap`` (told about every datagram crossing the socket, see
    :class:`pilot_proto.testing.tap.Tap`), ``impairment`` (:class:`Impairment`), ``max_notices``
    (bound of the :attr:`notices` ring), ``max_closed`` (closed connections whose state is kept for
    the application to read before the oldest is forgotten), ``echo_buffer`` (send-buffer bytes an
    echo connection may have outstanding before the echo waits; default: the stream's own
    send-buffer bound) and ``echo_pending_limit`` (bytes an
    echo connection may hold back while waiting; default one receive window plus 64 KiB; beyond it
    the connection is aborted).  Where the stream can keep held-back bytes counted as unread
    (``retain_received``), the echo does so, so its receive window closes on a peer that sends
    faster than it reads.

    A node whose stream config has ``auto_close_on_peer_fin`` gets it switched off: the driver closes
    such connections itself after routing the events of the peer's FIN, so data that arrived with or
    just before the FIN is delivered (and echoed) first.

    Peer input never raises out of :meth:`datagram_received`: any exception is logged, kept in
    :attr:`faults` (a ring) and counted in :attr:`fault_count`, and the flush and the timer re-arm
    still happen.
    """

    def __init__(
        self,
        node: Node,
        echo_ports: Iterable[int] = (),
        *,
        tap: DatagramTap | None = None,
        impairment: Impairment | None = None,
        max_notices: int = 1024,
        max_closed: int = 1024,
        echo_buffer: int | None = None,
        echo_pending_limit: int | None = None,
    ) -> None:
        self.node = node
        self.echo_ports = frozenset(echo_ports)
        for port in self.echo_ports:
            node.listen(port)
        # The stream's auto_close_on_peer_fin queues our FIN while the peer's FIN is processed, before the
        # data that came with it has reached the application -- so an echo could never write it back (issue 9).
        # The driver closes instead, once the whole batch of events has been routed (see _dispatch).
        #: The stream's "count these popped bytes as unread again" hook, where it has one (backpressure).
        self._retain: Callable[[int, int], None] | None = getattr(node.stream, "retain_received", None)
        cfg = node.stream.config
        self._close_on_peer_fin = bool(getattr(cfg, "auto_close_on_peer_fin", False))
        if self._close_on_peer_fin:
            node.stream.config = dataclasses.replace(cfg, auto_close_on_peer_fin=False)
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("0.0.0.0", 0)
        self.conns: dict[int, ConnState] = {}
        self.accepted: deque[int] = deque()
        #: Tunnel notices and datagram/ping/control events, in order; the newest ``max_notices`` are kept.
        self.notices: deque[NodeEvent] = deque(maxlen=max_notices)
        #: Peers a tunnel key was ever established with (kept apart from the bounded notices).
        self.keyed: set[int] = set()
        self.ping_replies: deque[sev.PingReply] = deque(maxlen=256)
        self.faults: deque[DriverFault] = deque(maxlen=256)
        self.fault_count = 0
        self.tap = tap
        self.max_closed = max_closed
        self.echo_buffer = echo_buffer
        scfg = node.stream.config
        #: Default: one full receive window (what a peer may legitimately have in flight) plus 64 KiB.
        self.echo_pending_limit = (
            echo_pending_limit if echo_pending_limit is not None else scfg.recv_buf_segments * scfg.mss + (64 << 10)
        )
        self._closed_order: deque[int] = deque()
        self._echo_waiting: set[int] = set()
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._changed: asyncio.Event | None = None
        self._links = ImpairedSides(impairment, self._on_link_timer)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    async def start(
        cls, node: Node, local: tuple[str, int] = (LOOPBACK, 0), echo_ports: Iterable[int] = (), **options: Any
    ) -> NodeDriver:
        """Bind ``local`` (127.0.0.1, ephemeral port by default) and start serving ``node``.

        ``options`` go to the constructor (``tap``, ``impairment``, bounds).
        """
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(node, echo_ports, **options), local_addr=local)
        return proto

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else asyncio.get_running_loop().time()

    # -- asyncio.DatagramProtocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            allow_fragmentation(sock)  # draft 13.3: no DF bit, so full-MSS frames may fragment (MTU-008)
            with contextlib.suppress(OSError):  # the kernel default still works, with more loss under bursts
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self.local = self.address
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        if self.tap is not None:
            self._tap("in", peer, data)
        if self._links.inbound is not None:
            self._links.inbound.send(peer, self.local, data, self.now())
            self._arm_link()
            return
        self._deliver(data, peer)

    def _deliver(self, data: bytes, peer: tuple[str, int]) -> None:
        """One datagram into the node; whatever happens, events are routed, output flushed, the timer re-armed."""
        self.datagrams_received += 1
        self.bytes_received += len(data)
        try:
            self.node.receive_datagram(data, peer, self.now())
        except Exception as exc:  # a bug below must not escape into asyncio or skip the flush (issue 9)
            self._fault("receive", exc, peer, len(data))
        self._after_input()

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.: UDP is best effort
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._links.cancel()

    def shutdown(self) -> None:
        """Stop the timers and close the socket (connections are simply dropped)."""
        self._cancel_timer()
        self._links.cancel()
        if self.transport is not None:
            self.transport.close()

    # -- the sans-IO loop -----------------------------------------------------------------------------

    def _after_input(self) -> None:
        try:
            self._dispatch()
        except Exception as exc:
            self._fault("dispatch", exc)
        try:
            self._flush()
        except Exception as exc:
            self._fault("flush", exc)
        self._arm()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        try:
            self.node.handle_timer(self.now())
        except Exception as exc:
            self._fault("timer", exc)
        self._after_input()

    def _fault(self, stage: str, exc: BaseException, source: tuple[str, int] | None = None, size: int = 0) -> None:
        self.fault_count += 1
        self.faults.append(DriverFault(self.now(), stage, f"{type(exc).__name__}: {exc}", source, size))
        if self.fault_count <= 10 or self.fault_count % 1000 == 0:  # a fault storm must not become a log storm
            _log.warning("node %s: %s raised %s: %s (fault %d)", self.node.node_id, stage, type(exc).__name__, exc,
                         self.fault_count)  # fmt: skip

    def _tap(self, direction: Literal["in", "out"], remote: tuple[str, int], data: bytes) -> None:
        assert self.tap is not None
        try:
            self.tap.record(direction, self.local, remote, data)
        except Exception as exc:  # a broken tap must not break the node
            self._fault("tap", exc, remote, len(data))

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        out = self.node.datagrams_to_send()
        link = self._links.out
        if link is None:
            for data, addr in out:
                self._sendto(data, addr)
            return
        now = self.now()
        for data, addr in out:
            link.send(self.local, addr, data, now)
        self._arm_link()

    def _sendto(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        self.datagrams_sent += 1
        self.bytes_sent += len(data)
        if self.tap is not None:
            self._tap("out", (str(addr[0]), int(addr[1])), data)
        self.transport.sendto(data, addr)

    def _arm(self) -> None:
        deadline = self.node.get_timer()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None and self.transport is not None and not self.transport.is_closing():
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    # -- impairment ------------------------------------------------------------------------------------

    def _arm_link(self) -> None:
        self._links.arm(self.transport is not None and not self.transport.is_closing())

    def _on_link_timer(self) -> None:
        now = self.now()
        links = self._links
        if links.out is not None:
            for d in links.out.deliverable(now):
                self._sendto(d.datagram, d.dst)
        if links.inbound is not None:
            for d in links.inbound.deliverable(now):
                self._deliver(d.datagram, d.src)
        self._arm_link()

    def set_impairment(self, impairment: Impairment | None) -> None:
        """Change the impairments from now on (``None``: none); datagrams already delayed keep their fate."""
        self._links.reconfigure(impairment)

    @property
    def impairment_stats(self) -> dict[str, LinkStats]:
        """What the impairment did per side (``outbound``/``inbound``), when configured."""
        return self._links.stats

    # -- events ----------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        node = self.node
        changed = False
        ended: list[int] = []  # peer FINs of this batch
        while (ev := node.next_event()) is not None:
            changed = True
            try:
                self._route(ev, ended)
            except Exception as exc:  # one bad event must not stop the others being routed
                self._fault("dispatch", exc)
        for cid in ended:  # after the whole batch: data that arrived with (or after) the FIN is handled first
            st = self._conn(cid)
            if st.echo:
                self._echo_end(cid)
            elif self._close_on_peer_fin and st.closed is None:
                node.close(cid, self.now())  # what auto_close_on_peer_fin would have done, in the right order
        if self._echo_waiting:
            self._echo_drain()
        if changed and self._changed is not None:
            self._changed.set()

    def _route(self, ev: NodeEvent, ended: list[int]) -> None:
        if isinstance(ev, sev.DataReceived):
            st = self._conn(ev.conn_id)
            if st.echo:
                self._echo(ev.conn_id, st, ev.data)
            else:
                st.data += ev.data
        elif isinstance(ev, sev.ConnectionRequested):
            st = self._conn(ev.conn_id)
            st.echo = ev.local_port in self.echo_ports
            if not st.echo:
                self.accepted.append(ev.conn_id)
        elif isinstance(ev, sev.Connected):
            self._conn(ev.conn_id).connected = True
        elif isinstance(ev, sev.StreamEnded):
            self._conn(ev.conn_id).ended = True
            ended.append(ev.conn_id)
        elif isinstance(ev, sev.Reset):
            self._conn(ev.conn_id).reset = True
        elif isinstance(ev, sev.Closed):
            self._on_closed(ev.conn_id, ev.reason)
        elif isinstance(ev, sev.Writable):
            st = self._conn(ev.conn_id)
            st.writable_events += 1  # an echo waiting for room is retried after every batch anyway
            if st.echo and st.pending:
                self._echo_waiting.add(ev.conn_id)
        else:
            if isinstance(ev, KeyEstablished):
                self.keyed.add(ev.peer)
            elif isinstance(ev, sev.PingReply):
                self.ping_replies.append(ev)
            elif isinstance(ev, InputRejected):
                ev.error.__traceback__ = None  # the frames it pins (and their locals) would dwarf the notice
            self.notices.append(ev)

    def _conn(self, cid: int) -> ConnState:
        st = self.conns.get(cid)
        if st is None:
            st = self.conns[cid] = ConnState()
        return st

    def _on_closed(self, cid: int, reason: CloseReason) -> None:
        """Keep the closed connection's state for the application, forgetting the oldest beyond ``max_closed``."""
        st = self._conn(cid)
        if st.closed is not None:
            return
        st.closed = reason
        st.pending.clear()
        st.retained = 0
        self._echo_waiting.discard(cid)
        self._closed_order.append(cid)
        while len(self._closed_order) > self.max_closed:
            self.conns.pop(self._closed_order.popleft(), None)

    # -- the echo service (backpressure: at most ``echo_buffer`` bytes outstanding per connection) -----

    def _send_room(self, cid: int) -> int:
        try:
            conn = self.node.stream.connection(cid)
        except Exception:
            return 0
        free = getattr(conn, "send_buffer_free", None)  # the stream's own bound, where it has one
        limit = self.echo_buffer
        if limit is None:
            return free if isinstance(free, int) else 1 << 30
        room = limit - conn.send_buffer_size
        if isinstance(free, int) and free < room:
            room = free
        return room if room > 0 else 0

    def _echo(self, cid: int, st: ConnState, data: bytes) -> None:
        if st.closed is not None or st.close_when_drained:
            return
        if not st.pending and len(data) <= self._send_room(cid):  # fast path: room for all of it, nothing queued
            send: Any = self.node.send
            taken = send(cid, data, self.now())
            if not isinstance(taken, int) or taken == len(data):
                return
            data = data[taken:]
        st.pending += data
        self._echo_flush(cid, st)
        if not st.pending:
            return
        retain = self._retain
        if retain is not None and len(st.pending) > st.retained:
            # what we hold back still counts as unread, so our receive window closes on the peer (backpressure)
            retain(cid, len(st.pending) - st.retained)
            st.retained = len(st.pending)
        if len(st.pending) > self.echo_pending_limit:
            self._fault("dispatch", BufferError(f"echo connection {cid}: peer does not read; aborting"))
            st.pending.clear()
            st.retained = 0
            self._echo_waiting.discard(cid)
            self.node.abort(cid, self.now())
            return
        self._echo_waiting.add(cid)

    def _echo_flush(self, cid: int, st: ConnState) -> None:
        room = self._send_room(cid)
        if room and st.pending:
            chunk = bytes(st.pending[:room])
            send: Any = self.node.send  # returns the bytes taken once the stream reports short writes
            taken = send(cid, chunk, self.now())
            n = taken if isinstance(taken, int) else len(chunk)  # send() may report a short write
            del st.pending[:n]
            if st.retained and n:
                freed = min(n, st.retained)
                st.retained -= freed
                stream: Any = self.node.stream
                stream.release_received(cid, freed, self.now())
        if not st.pending:
            self._echo_waiting.discard(cid)
            if st.close_when_drained and st.closed is None:
                st.close_when_drained = False
                self.node.close(cid, self.now())

    def _echo_end(self, cid: int) -> None:
        st = self._conn(cid)
        if st.closed is not None:
            return
        st.close_when_drained = True
        self._echo_flush(cid, st)
        if st.pending:
            self._echo_waiting.add(cid)

    def _echo_drain(self) -> None:
        for cid in list(self._echo_waiting):
            st = self.conns.get(cid)
            if st is None or st.closed is not None:
                self._echo_waiting.discard(cid)
                continue
            try:
                self._echo_flush(cid, st)
            except Exception as exc:
                self._echo_waiting.discard(cid)
                self._fault("dispatch", exc)

    async def _until(self, pred: object, timeout: float, what: str) -> None:
        """Wait until ``pred()`` holds, re-checking after every batch of events; TimeoutError names ``what``."""
        assert callable(pred) and self._changed is not None
        changed = self._changed

        async def wait() -> None:
            while not pred():
                changed.clear()
                await changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None

    # -- application helpers (all bounded by timeouts) -------------------------------------------------

    def _input(self) -> None:
        """After an application call: pull events, send what the node queued, re-arm the timer."""
        self._after_input()

    async def wait_key(self, peer: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait for the tunnel to ``peer`` to be keyed."""
        await self._until(lambda: peer in self.keyed, timeout, f"a tunnel key with node {peer}")

    async def connect(self, remote: SocketAddr, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Dial ``remote`` and wait for ESTABLISHED; ConnectionError if it is reset or times out."""
        cid = self.node.connect(remote, self.now())
        st = self._conn(cid)
        self._input()
        await self._until(lambda: st.connected or st.closed is not None, timeout, f"connect to {remote}")
        if not st.connected:
            raise ConnectionError(f"connect to {remote} failed: {st.closed}")
        return cid

    def dial(self, remote: SocketAddr) -> int:
        """Start a connection to ``remote`` without waiting (the SYN, or a key exchange first, goes out now)."""
        cid = self.node.connect(remote, self.now())
        self._conn(cid)
        self._input()
        return cid

    async def accept(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Next connection that reached a (non-echo) listening port."""
        await self._until(lambda: bool(self.accepted), timeout, "an incoming connection")
        return self.accepted.popleft()

    def send(self, cid: int, data: bytes | bytearray | memoryview) -> int:
        """Write to connection ``cid``; returns the bytes taken (fewer when its send buffer is full: wait for room)."""
        send: Any = self.node.send
        taken = send(cid, data, self.now())
        self._input()
        return taken if isinstance(taken, int) else len(data)

    def close(self, cid: int) -> None:
        self.node.close(cid, self.now())
        self._input()

    async def recv(self, cid: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Whatever has arrived (at least one byte), or ``b""`` once the peer ended the stream."""
        st = self._conn(cid)
        await self._until(lambda: bool(st.data) or st.ended or st.closed is not None, timeout, f"data on {cid}")
        out = bytes(st.data)
        st.data.clear()
        return out

    async def recv_exactly(self, cid: int, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        st = self._conn(cid)
        await self._until(lambda: len(st.data) >= n or st.closed is not None, timeout, f"{n} bytes on {cid}")
        if len(st.data) < n:
            raise ConnectionError(f"connection {cid} closed ({st.closed}) after {len(st.data)} of {n} bytes")
        out = bytes(st.data[:n])
        del st.data[:n]
        return out

    async def wait_ended(self, cid: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        st = self._conn(cid)
        await self._until(lambda: st.ended or st.closed is not None, timeout, f"peer FIN on {cid}")

    async def wait_closed(self, cid: int, timeout: float = DEFAULT_TIMEOUT) -> CloseReason:
        st = self._conn(cid)
        await self._until(lambda: st.closed is not None, timeout, f"close of {cid}")
        assert st.closed is not None
        return st.closed

    async def ping(self, dst: Addr, payload: bytes = b"", timeout: float = DEFAULT_TIMEOUT) -> sev.PingReply:
        """Control ping to port 0 of ``dst``; returns the matching ``PingReply``."""
        seq = self.node.ping(dst, self.now(), payload)
        self._input()

        def reply() -> sev.PingReply | None:
            for e in self.ping_replies:
                if e.seq == seq and e.src.node == dst.node:
                    return e
            return None

        await self._until(lambda: reply() is not None, timeout, f"ping reply from {dst}")
        found = reply()
        assert found is not None
        return found


class BackgroundNode:
    """A :class:`NodeDriver` on its own asyncio loop in a daemon thread (127.0.0.1 by default).

    For blocking test code: ``call(fn, *args)`` runs ``fn`` on the loop thread and returns its result,
    ``run(coro)`` runs a coroutine there; both wait at most ``timeout`` seconds.  ``stop()`` (or
    leaving the ``with`` block) shuts the driver down and joins the thread::

        with BackgroundNode(Node(2, os.urandom), echo_ports=[7]) as bg:
            peer = ScriptedPeer(1, bg.address)
            ...
            notices = bg.call(lambda: list(bg.driver.notices))
    """

    def __init__(
        self,
        node: Node,
        local: tuple[str, int] = (LOOPBACK, 0),
        echo_ports: Iterable[int] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **driver_options: Any,
    ) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"pilot-node-{node.node_id}", daemon=True)
        self._thread.start()
        try:
            self.driver: NodeDriver = self.run(NodeDriver.start(node, local, echo_ports, **driver_options))
        except BaseException:
            self._halt()
            raise

    @property
    def address(self) -> tuple[str, int]:
        return self.driver.address

    @property
    def node(self) -> Node:
        return self.driver.node

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the node's loop and wait for its result (TimeoutError after ``timeout``)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(self.timeout if timeout is None else timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run the plain function ``fn(*args)`` on the node's loop thread (the driver is not thread-safe)."""

        async def invoke() -> T:
            return fn(*args)

        return self.run(invoke(), timeout)

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self.call(self.driver.shutdown, timeout=2.0)
        self._halt()

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> BackgroundNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
