"""The session-layer endpoint of one node: ports, demux, listeners, datagrams and ping (draft 5, 6.3, 8, 12).

One object per virtual address.  Packets go in (:meth:`StreamEndpoint.receive_packet`
or :meth:`~StreamEndpoint.receive_bytes`), packets and events come out
(:meth:`~StreamEndpoint.packets_to_send`, :meth:`~StreamEndpoint.next_event`);
time only moves through the ``now`` arguments and
:meth:`~StreamEndpoint.get_timer` / :meth:`~StreamEndpoint.handle_timer`.

Demultiplexing is one dict lookup on ``(remote addr, remote port, local port)``
and timers live in a heap with lazy invalidation, so per-packet cost does not
grow with the number of connections.

Every refused input goes through :meth:`StreamEndpoint.reject`, the one place that emits the
:class:`~pilot_proto.sansio.InputRejected` event and carries out the error's action.  New
connections pass admission control first (:mod:`pilot_proto.stream.admission`, draft 10.8).
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator

from pilot_proto.errors import Action, ErrorCode, LocalProtocolError, PilotError
from pilot_proto.profile import Profile
from pilot_proto.sansio import Event, InputRejected
from pilot_proto.stream._state import ACTIVE_STATES, Input, State, next_state
from pilot_proto.stream.admission import SynAdmission
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.connection import Connection
from pilot_proto.stream.events import (
    ConnectionRequested,
    ControlReceived,
    DatagramReceived,
    DataReceived,
    PingReply,
    PingRequestAnswered,
    StreamEnded,
)
from pilot_proto.stream.outbox import Outbox, Tracer
from pilot_proto.stream.rejections import rejection
from pilot_proto.stream.seq import MASK
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.header import VERSION, Flags, Packet, PacketProtocol, decode_packet

__all__ = ["StreamEndpoint", "Tracer"]

log = logging.getLogger("pilot_proto.stream")

_STREAM = int(PacketProtocol.STREAM)
_DATAGRAM = int(PacketProtocol.DATAGRAM)
_CONTROL = int(PacketProtocol.CONTROL)
_SYN, _ACK, _FIN, _RST = int(Flags.SYN), int(Flags.ACK), int(Flags.FIN), int(Flags.RST)
_INF = float("inf")
_CLOSED, _TIME_WAIT = State.CLOSED, State.TIME_WAIT  # module globals: no attribute lookup on the packet path
_MAX_PINGS = 1024
_set_data: Callable[[object, bytes], None] = vars(DataReceived)["data"].__set__


def _zero_isn() -> int:
    return 0


class StreamEndpoint:
    """Ports, connections, datagrams and control ping of one virtual address."""

    def __init__(
        self,
        local_addr: Addr,
        config: StreamConfig | None = None,
        isn_source: Callable[[], int] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.local_addr = local_addr
        self.config = config if config is not None else StreamConfig.for_profile(Profile.DRAFT)
        self._isn = isn_source if isn_source is not None else _zero_isn
        cfg = self.config
        self.outbox = Outbox(local_addr, tracer, cfg.max_ooo_bytes_total, cfg.coalesce_received)
        self._conns: dict[tuple[Addr, int, int], Connection] = {}
        self._by_id: dict[int, Connection] = {}
        self._listening: set[int] = set()
        self._port_use: dict[int, int] = {}
        self._peer_use: dict[Addr, int] = {}  # active connections per remote address
        self._admission = SynAdmission(cfg.syn_rate_per_source, cfg.syn_burst_per_source, cfg.syn_rate_global,
                                       cfg.syn_burst_global, cfg.max_syn_sources)  # fmt: skip
        self._out = self.outbox.packets
        self._events = self.outbox.events
        self._heap: list[tuple[float, int]] = []
        #: The connection the latest packet went to, whose deadline is put in the heap lazily: when a packet for
        #: another connection comes, or before the heap is read (get_timer, handle_timer) -- a run of segments of
        #: one connection costs one next_deadline(), not one per segment.
        self._stale: Connection | None = None
        #: The connection the latest Stream packet was for (None after any change to the table): a run of segments
        #: of one connection finds it with three compares instead of building and hashing the 3-tuple key.
        self._hot: Connection | None = None
        self._next_id = 1
        self._next_eph = self.config.ephemeral_start
        self._pings: OrderedDict[int, float] = OrderedDict()
        self._ping_seq = 1
        self.active_count = 0
        self.dropped: dict[str, int] = {}
        #: Asked first about every packet handed in (the daemon's trust gate, draft 10.7): False drops it silently
        #: (counted in ``dropped["untrusted"]``, no event, no RST).  None (the default) lets everything in.
        self.gate: Callable[[Packet], bool] | None = None

    @property
    def tracer(self) -> Tracer | None:
        return self.outbox.tracer

    @tracer.setter
    def tracer(self, tracer: Tracer | None) -> None:
        self.outbox.tracer = tracer

    # ------------------------------------------------------------------ queries
    def connection(self, conn_id: int) -> Connection:
        conn = self._by_id.get(conn_id)
        if conn is None:
            raise LocalProtocolError(ErrorCode.CONNECTION_CLOSED, f"no connection {conn_id}", field="conn_id",
                                     section="8.1")  # fmt: skip
        return conn

    def connections(self) -> Iterator[Connection]:
        return iter(list(self._by_id.values()))

    def find(self, remote: SocketAddr, local_port: int) -> Connection | None:
        return self._conns.get((remote.addr, remote.port, local_port))

    def port_in_use(self, port: int) -> bool:
        return port in self._listening or self._port_use.get(port, 0) > 0

    # ------------------------------------------------------------- application
    def listen(self, port: int) -> None:
        if not 0 <= port <= 0xFFFF:
            raise LocalProtocolError(ErrorCode.OUT_OF_RANGE, f"port {port}", field="port", section="5.1")
        self._listening.add(port)

    def unlisten(self, port: int) -> None:
        """Stop accepting on ``port``: the port's (LISTEN, APP_CLOSE) row, action ``unlisten``."""
        if port in self._listening:
            row = next_state(State.LISTEN, Input.APP_CLOSE)
            assert row is not None and row[1] == "unlisten"
            self._listening.discard(port)

    def connect(self, remote: SocketAddr, now: float, local_port: int | None = None) -> int:
        """Dial ``remote`` (CLOSED -> SYN_SENT); returns the connection id."""
        if self.active_count >= self.config.max_connections:
            raise LocalProtocolError(ErrorCode.TABLE_FULL, "connection limit reached", field="connections",
                                     section="8.1")  # fmt: skip
        port = self._alloc_port() if local_port is None else local_port
        key = (remote.addr, remote.port, port)
        old = self._conns.get(key)
        if old is not None:
            if old.state is not State.TIME_WAIT or self.config.time_wait_holds_port:
                raise LocalProtocolError(ErrorCode.INVALID_STATE, f"{remote} already connected from port {port}",
                                         field="local_port", section="8.13", requirement="SES-121")  # fmt: skip
            old.reuse(now)
        conn = self._new_conn(port, remote, now)
        conn.start_connect(now)
        self._resched(conn)
        return conn.id

    def send(self, conn_id: int, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue ``data``; returns how many bytes were taken (fewer when the send buffer is full).

        After a short write a :class:`~pilot_proto.stream.events.Writable` event says when there is room again.
        """
        conn = self.connection(conn_id)
        n = conn.send(data, now)
        self._resched(conn)
        return n

    def retain_received(self, conn_id: int, nbytes: int) -> None:
        """Count ``nbytes`` already delivered (popped) as unread again: they keep the window closed.

        For an application that could not process what it read (e.g. an echo whose ``send`` was short);
        :meth:`release_received` gives them back.
        """
        self.connection(conn_id).retain(nbytes)

    def release_received(self, conn_id: int, nbytes: int, now: float) -> None:
        """The application processed ``nbytes`` it retained: reopen the window (may send an update)."""
        conn = self.connection(conn_id)
        if not 0 <= nbytes <= conn.recv_unread:
            raise LocalProtocolError(ErrorCode.OUT_OF_RANGE, f"cannot release {nbytes} bytes", field="nbytes",
                                     section="8.8")  # fmt: skip
        conn._now = now
        conn.consumed(nbytes)
        self._resched(conn)

    def close(self, conn_id: int, now: float) -> None:
        conn = self.connection(conn_id)
        conn.close(now)
        self._resched(conn)

    def abort(self, conn_id: int, now: float) -> None:
        conn = self.connection(conn_id)
        conn.abort(now)

    def set_nodelay(self, conn_id: int, nodelay: bool = True) -> None:
        self.connection(conn_id).nodelay = nodelay

    def send_datagram(self, dst: SocketAddr, data: bytes, now: float, src_port: int | None = None) -> None:
        """One Datagram packet (draft 6.3): flags, seq, ack and window are zero."""
        sp = self._alloc_port(occupy=False) if src_port is None else src_port
        self._out.append(Packet(0, _DATAGRAM, self.local_addr, dst.addr, sp, dst.port, 0, 0, 0, bytes(data)))

    def ping(self, dst: Addr, now: float, payload: bytes = b"") -> int:
        """Send a Control ping to port 0 of ``dst``; returns the sequence number the reply will carry."""
        seq = self._ping_seq
        self._ping_seq = (seq + 1) & MASK or 1
        self._pings[seq] = now
        while len(self._pings) > _MAX_PINGS:
            self._pings.popitem(last=False)
        sp = self._alloc_port(occupy=False)
        self._out.append(Packet(0, _CONTROL, self.local_addr, dst, sp, 0, seq, 0, 0, bytes(payload)))
        return seq

    # --------------------------------------------------------------- outputs
    def packets_to_send(self) -> list[Packet]:
        """Drain the outgoing packets (the list object itself is kept: connections hold a reference to it)."""
        out = self._out
        if not out:
            return []
        sent = out.copy()
        out.clear()
        return sent

    def next_event(self) -> Event | None:
        """Pop the next event; popping ``DataReceived`` frees receive window (which may send an update);
        popping ``StreamEnded`` lets a pending automatic close (``auto_close_on_peer_fin``) happen."""
        if not self._events:
            return None
        ev = self._events.popleft()
        tp = type(ev)
        if tp is DataReceived:
            box = self.outbox
            parts = None
            if ev is box.rx_event:
                box.rx_event = None
                parts = box.rx_parts
                box.rx_parts = None
            elif box.rx_held and box.rx_held[0][0] is ev:  # replaced by a newer event while queued (FIFO order)
                parts = box.rx_held.popleft()[1]
            if parts is not None:  # the bytes of several segments: joined once, now
                _set_data(ev, b"".join(parts))
            conn = self._by_id.get(ev.conn_id)  # type: ignore[attr-defined]
            if conn is not None:
                if parts is None:
                    conn.consumed(len(ev.data))  # type: ignore[attr-defined]
                else:
                    conn.consumed_parts(parts, len(ev.data))  # type: ignore[attr-defined]
        elif tp is StreamEnded:
            conn = self._by_id.get(ev.conn_id)  # type: ignore[attr-defined]
            if conn is not None:
                conn.peer_end_read(conn._now)
                self._resched(conn)
        return ev

    def events(self) -> list[Event]:
        """Drain every pending event."""
        out: list[Event] = []
        while (ev := self.next_event()) is not None:
            out.append(ev)
        return out

    # ------------------------------------------------------------------ timers
    def get_timer(self) -> float | None:
        if self._stale is not None:
            self._resched_stale()
        heap = self._heap
        by_id = self._by_id
        while heap:
            d, cid = heap[0]
            conn = by_id.get(cid)
            if conn is None or conn._sched != d:
                heapq.heappop(heap)
                continue
            return d
        return None

    def handle_timer(self, now: float) -> None:
        if self._stale is not None:
            self._resched_stale()
        heap = self._heap
        by_id = self._by_id
        while heap and heap[0][0] <= now:
            d, cid = heapq.heappop(heap)
            conn = by_id.get(cid)
            if conn is None or conn._sched != d:
                continue
            conn._sched = _INF
            conn.on_timer(now)
            self._resched(conn)

    def _resched_stale(self) -> None:
        conn = self._stale
        if conn is not None:
            self._stale = None
            self._resched(conn)

    def _resched(self, conn: Connection) -> None:
        if conn.state is _CLOSED:
            return
        d = conn.next_deadline()
        if d < conn._sched:
            conn._sched = d
            heapq.heappush(self._heap, (d, conn.id))

    # ------------------------------------------------------------------ input
    def receive_bytes(self, raw: bytes | bytearray | memoryview, now: float) -> None:
        """Decode one packet and process it; undecodable bytes become one InputRejected (nothing raises)."""
        try:
            pkt = decode_packet(raw, self.config.profile, check_version=False)
        except PilotError as exc:
            self.reject("undecodable", exc, None, now, size=len(raw))
            return
        self.receive_packet(pkt, now)

    def receive_packet(self, packet: Packet, now: float) -> None:
        """One decoded inner packet for this address (sansio.PacketEndpoint); refusals become InputRejected."""
        pkt = packet
        gate = self.gate
        if gate is not None and not gate(pkt):
            self.dropped["untrusted"] = self.dropped.get("untrusted", 0) + 1
            return
        if pkt.dst != self.local_addr and not (pkt.dst.is_broadcast and pkt.protocol == _DATAGRAM):
            self._drop("wrong_destination", pkt, now)
            return
        proto = pkt.protocol
        if proto == _STREAM:
            conn = self._hot
            if conn is None or pkt.src_port != conn._rport or pkt.dst_port != conn.local_port or pkt.src != conn._raddr:
                conn = self._hot = self._conns.get((pkt.src, pkt.src_port, pkt.dst_port))
            if pkt.version != VERSION:
                self._bad_version(pkt, conn, now)
                return
            if conn is not None:
                if (
                    conn.state is _TIME_WAIT
                    and pkt.flags & (_SYN | _ACK | _RST) == _SYN
                    and not self.config.time_wait_holds_port
                    and pkt.dst_port in self._listening
                ):
                    conn.reuse(now)  # E-SES-10: a Go peer reuses TIME_WAIT ports, so a new SYN starts afresh
                else:
                    conn.on_packet(pkt, now)
                    stale = self._stale
                    if stale is not conn:  # its deadline goes in the heap later (see _stale)
                        if stale is not None:
                            self._resched(stale)
                        self._stale = conn
                    return
            self._no_connection(pkt, now)
        elif pkt.version != VERSION:
            self._drop("version_mismatch", pkt, now)
        elif proto == _DATAGRAM:
            if pkt.payload:
                self._events.append(DatagramReceived(pkt.src, pkt.src_port, pkt.dst_port, pkt.payload))
            else:
                self._drop("empty_datagram", pkt, now)
        elif proto == _CONTROL:
            self._control(pkt, now)
        else:
            self._drop("unknown_protocol", pkt, now, f"protocol {proto}")

    def _bad_version(self, pkt: Packet, conn: Connection | None, now: float) -> None:
        """Draft 12.2: RST a SYN with an unsupported version; drop anything else silently."""
        log.debug("dropping stream packet with version %d: %s", pkt.version, pkt.describe())
        if pkt.flags & _SYN and not pkt.flags & _ACK and conn is None and self.config.rst_on_bad_version_syn:
            self._drop("unsupported_version_syn", pkt, now, f"version {pkt.version}")  # action RST
        else:
            self._drop("version_mismatch", pkt, now, f"version {pkt.version}")

    def _no_connection(self, pkt: Packet, now: float) -> None:
        flags = pkt.flags
        if flags & _RST:
            self._drop("rst_no_connection", pkt, now)
            return
        if flags & _SYN and not flags & _ACK and pkt.dst_port in self._listening:
            reason = self._admit(pkt, now)
            if reason is not None:
                self._drop(reason, pkt, now)
                return
            remote = SocketAddr(pkt.src, pkt.src_port)
            conn = self._new_conn(pkt.dst_port, remote, now, State.LISTEN)
            self._events.append(ConnectionRequested(conn.id, remote, pkt.dst_port))
            conn.start_accept(pkt, now)
            self._resched(conn)
            return
        self._drop("no_connection", pkt, now)  # action RST

    def _admit(self, pkt: Packet, now: float) -> str | None:
        """Admission control for a SYN at a listening port (draft 8.1, 10.8): None, or why it is refused.

        Caps first (they cost nothing to check), then the SYN rate limits, per source before node-wide.
        """
        cfg = self.config
        if self._peer_use.get(pkt.src, 0) >= cfg.max_connections_per_peer:
            return "peer_connection_limit"
        if self.active_count >= cfg.max_connections or self._port_use.get(pkt.dst_port, 0) >= (
            cfg.max_connections_per_port
        ):
            return "connection_limit"
        return self._admission.admit(pkt.src, now)

    def _control(self, pkt: Packet, now: float) -> None:
        """Control (0x03): an ACK from port 0 answers our ping; a packet to port 0 is a ping (wire-notes 1.13)."""
        if pkt.flags & _ACK and pkt.src_port == 0:
            seq = (pkt.ack - 1) & MASK
            sent = self._pings.pop(seq, None)
            if sent is None:
                self._drop("unsolicited_ping_reply", pkt, now, f"seq {seq}")
                return
            self._events.append(PingReply(pkt.src, seq, pkt.payload, now - sent))
            return
        if pkt.dst_port != 0:
            self._events.append(
                ControlReceived(pkt.src, pkt.src_port, pkt.dst_port, pkt.flags, pkt.seq, pkt.ack, pkt.payload)
            )
            return
        self._out.append(Packet(_ACK, _CONTROL, self.local_addr, pkt.src, 0, pkt.src_port, pkt.seq,
                                (pkt.seq + 1) & MASK, 0, pkt.payload))  # fmt: skip
        self._events.append(PingRequestAnswered(pkt.src, pkt.seq))

    # ------------------------------------------------------------- internals
    def _drop(self, reason: str, pkt: Packet, now: float, detail: str = "") -> None:
        self.reject(reason, rejection(reason, detail), pkt, now)

    def reject(self, reason: str, error: PilotError, pkt: Packet | None, now: float, size: int | None = None) -> None:
        """Refuse one input: the one place a refusal is reported and its action carried out.

        Emits exactly one ``InputRejected(layer="stream")`` with the whole error, counts ``dropped[reason]``
        (statistics), traces it, then acts: ``Action.RST`` answers ``pkt`` with a Stream RST (never an RST to
        an RST); every other action drops it.  Connections report their refusals here too.
        """
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        tracer = self.outbox.tracer
        if tracer is not None:
            conn = "-" if pkt is None else f"{pkt.dst_port}>{pkt.src_port}"
            tracer({"time": now, "name": "drop", "conn": conn, "reason": reason,
                    "packet": None if pkt is None else pkt.describe()})  # fmt: skip
        if size is None:
            size = 0 if pkt is None else 34 + len(pkt.payload)
        peer = None if pkt is None else pkt.src.node
        self._events.append(InputRejected(error, "stream", None, size, peer))
        if error.action is Action.RST and pkt is not None:
            self._reply_rst(pkt)

    def _reply_rst(self, pkt: Packet) -> None:
        """Mirror an RST to an offending packet (never to an RST)."""
        if pkt.flags & _RST:
            return
        if self.config.rst_zero_fields:
            seq = ack = 0
        else:
            seq = pkt.ack if pkt.flags & _ACK else 0
            ack = (pkt.seq + len(pkt.payload) + (1 if pkt.flags & _SYN else 0) + (1 if pkt.flags & _FIN else 0)) & MASK
        self._out.append(Packet(_RST, _STREAM, self.local_addr, pkt.src, pkt.dst_port, pkt.src_port, seq, ack, 0))

    def _new_conn(self, port: int, remote: SocketAddr, now: float, state: State = State.CLOSED) -> Connection:
        cid = self._next_id
        self._next_id += 1
        conn = Connection(self, cid, port, remote, self.config, self._isn(), now, state)
        self._conns[(remote.addr, remote.port, port)] = conn
        self._hot = None
        self._by_id[cid] = conn
        self._port_use[port] = self._port_use.get(port, 0) + 1
        self._peer_use[remote.addr] = self._peer_use.get(remote.addr, 0) + 1
        conn._holds_port = True
        self.active_count += 1
        return conn

    def _alloc_port(self, occupy: bool = True) -> int:
        start, end = self.config.ephemeral_start, self.config.ephemeral_end
        span = end - start + 1
        for _ in range(span):
            port = self._next_eph
            self._next_eph = port + 1 if port < end else start
            if not occupy or not self.port_in_use(port):
                return port
        raise LocalProtocolError(ErrorCode.TABLE_FULL, "no free ephemeral port", field="local_port", section="5.1")

    # ------------------------------------------------- ConnectionHost (what connections call back)
    def connection_time_wait(self, conn: Connection) -> None:
        """TIME_WAIT: no longer active; keeps its port only if the profile says so (draft 8.13, E-SES-10)."""
        self._uncount(conn)
        if not self.config.time_wait_holds_port:
            self._unuse_port(conn)

    def _uncount(self, conn: Connection) -> None:
        if conn._counted:
            conn._counted = False
            self.active_count -= 1
            peer = conn.remote.addr
            left = self._peer_use.get(peer, 0) - 1
            if left > 0:
                self._peer_use[peer] = left
            else:
                self._peer_use.pop(peer, None)

    def _unuse_port(self, conn: Connection) -> None:
        if conn._holds_port:
            conn._holds_port = False
            left = self._port_use.get(conn.local_port, 0) - 1
            if left > 0:
                self._port_use[conn.local_port] = left
            else:
                self._port_use.pop(conn.local_port, None)

    def connection_released(self, conn: Connection) -> None:
        """``conn`` reached CLOSED (through its table): forget it."""
        key = (conn.remote.addr, conn.remote.port, conn.local_port)
        if self._conns.get(key) is conn:
            del self._conns[key]
        self._hot = None
        if self._by_id.pop(conn.id, None) is None:
            return
        self._uncount(conn)
        self._unuse_port(conn)
        tracer = self.outbox.tracer
        if tracer is not None:
            tracer({"time": conn._now, "name": "released", "conn": conn.id})

    @property
    def time_wait_count(self) -> int:
        return sum(1 for c in self._by_id.values() if c.state is State.TIME_WAIT)

    @staticmethod
    def is_active_state(state: State) -> bool:
        return state in ACTIVE_STATES
