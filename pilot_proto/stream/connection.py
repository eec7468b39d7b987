"""One Stream connection: handshake, reliable delivery, SACK, congestion and flow control, timers (draft 8).

A :class:`Connection` is owned by a :class:`~pilot_proto.stream.endpoint.StreamEndpoint`,
which demultiplexes packets to it and drains its output.  Sequence positions
are kept *absolute* (position 0 is our SYN, 1 the first data byte) and wrapped
to 32 bits only on the wire (:mod:`pilot_proto.stream.seq`), so every internal
comparison is wrap-safe by construction.

Rules that the draft leaves open and that this module fixes:

* A payload on a pure ACK that parses as SACK is SACK only if it names bytes we
  have sent and not had acknowledged (draft profile); otherwise it is data.
  Our sender never emits a data segment that starts with ``"SACK"`` (it sends
  the first byte alone), so Go peers never misread our data (erratum E-SACK-1).
* Closing is a full close of our send direction; data that arrives in
  FIN_WAIT/TIME_WAIT is still acknowledged and delivered (nothing acknowledged
  is ever dropped).
* ``Closed`` is always the last event of a connection (after ``Reset`` too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pilot_proto.errors import ErrorCode, LocalProtocolError, PilotError
from pilot_proto.stream._state import ACTIONS, ACTIVE_STATES, RECV_STATES, TRANSITIONS, Input, State
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.congestion import CongestionController, make_controller
from pilot_proto.stream.events import Closed, CloseReason, Connected, DataReceived, Reset, StreamEnded, Writable
from pilot_proto.stream.outbox import Outbox
from pilot_proto.stream.reassembly import Reassembly
from pilot_proto.stream.recovery import LossRecovery, SentSegment
from pilot_proto.stream.rejections import rejection
from pilot_proto.stream.rto import RttEstimator
from pilot_proto.stream.sack_rule import classify_ack_payload
from pilot_proto.stream.sendbuf import SendBuffer
from pilot_proto.stream.seq import MASK
from pilot_proto.wire.address import SocketAddr
from pilot_proto.wire.header import VERSION, Flags, Packet, PacketProtocol
from pilot_proto.wire.sack import SACK_MAGIC, encode_sack

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Connection", "ConnectionHost"]

_ACK = int(Flags.ACK)
_SYN = int(Flags.SYN)
_FIN = int(Flags.FIN)
_RST = int(Flags.RST)
_SYNACK = _SYN | _ACK
_STREAM = int(PacketProtocol.STREAM)
_HALF = 0x80000000
_INF = float("inf")
_new_tuple = tuple.__new__
_DATA_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT, State.CLOSE_WAIT, State.LAST_ACK})
_ESTABLISHED = State.ESTABLISHED  # module globals: one lookup instead of a global plus an attribute per test
_CLOSED = State.CLOSED
_TIME_WAIT = State.TIME_WAIT
_RECV_DATA = Input.RECV_DATA
_APP_INPUTS = frozenset({Input.APP_CONNECT, Input.APP_SEND, Input.APP_CLOSE, Input.APP_ABORT})
_row = TRANSITIONS.get
_new_seg = object.__new__
_new_obj = object.__new__
_set_conn_id: Callable[[object, int], None] = vars(DataReceived)["conn_id"].__set__  # the event's slot descriptors
_set_data: Callable[[object, bytes], None] = vars(DataReceived)["data"].__set__
_SACK0 = SACK_MAGIC[0]  # first byte of "SACK": an int test before slicing (no allocation per data segment)


class ConnectionHost(Protocol):
    """All a :class:`Connection` knows of the endpoint that owns it."""

    @property
    def outbox(self) -> Outbox: ...

    def connection_time_wait(self, conn: Connection) -> None:
        """``conn`` entered TIME_WAIT: it is no longer active (draft 8.13)."""

    def connection_released(self, conn: Connection) -> None:
        """``conn`` reached CLOSED: forget it."""

    def reject(self, reason: str, error: PilotError, pkt: Packet, now: float) -> None:
        """``pkt`` was refused: one InputRejected event, and the error's action is carried out there."""


class Connection:
    """Read-only attributes for tests and tracing: ``state``, ``cwnd``, ``ssthresh``, ``srtt``, ``rto``,
    ``bytes_in_flight``, ``snd_una``, ``snd_nxt``, ``rcv_nxt`` (absolute), ``send_buffer_size``,
    ``send_buffer_free``, ``recv_unread``, ``ooo_bytes``, ``peer_window``; counters ``retransmits``
    (segments sent again), ``rto_count`` (retransmission timeouts) and ``fast_recoveries``;
    ``last_transition`` = ``(old state, input, new state, action)`` of the latest table row taken."""

    #: the (state, input) key of the latest row taken (the row itself is TRANSITIONS[key])
    _last_key: tuple[State, Input] | None

    # slotted: a connection is ~1.5 KiB lighter without an instance dict (admission bounds count in them)
    __slots__ = (
        "_ack_now",
        "_ack_pending",
        "_auto_close_due",
        "_box",
        "_cap",
        "_close_reason",
        "_closed_reported",
        "_counted",
        "_delack_at",
        "_events",
        "_fin_pos",
        "_fin_sent",
        "_force_flush",
        "_holds_port",
        "_host",
        "_idle",
        "_keepalive",
        "_laddr",
        "_last_adv",
        "_last_data",
        "_last_key",
        "_last_tx",
        "_nagle_at",
        "_now",
        "_out",
        "_peer_fin",
        "_peer_fin_seen",
        "_persist_at",
        "_persist_backoff",
        "_quarter",
        "_raddr",
        "_rport",
        "_rto_at",
        "_rx",
        "_sbuf",
        "_sbuf_cap",
        "_sched",
        "_syn_time",
        "_syn_tx",
        "_tw_at",
        "_want_writable",
        "_writable_at",
        "cc",
        "cfg",
        "established_at",
        "fast_recoveries",
        "id",
        "irs",
        "iss",
        "local_port",
        "mss",
        "nodelay",
        "peer_window",
        "rec",
        "recv_unread",
        "remote",
        "retransmits",
        "rto_count",
        "rtt",
        "snd_nxt",
        "snd_una",
        "state",
        "version",
    )

    def __init__(
        self,
        host: ConnectionHost,
        conn_id: int,
        local_port: int,
        remote: SocketAddr,
        cfg: StreamConfig,
        iss: int,
        now: float,
        state: State = State.CLOSED,
    ) -> None:
        if state is not State.CLOSED and state is not State.LISTEN:
            raise ValueError("a connection is born CLOSED (to dial) or LISTEN (spawned by a SYN)")
        self._host = host
        box = host.outbox
        self._box = box
        self.id = conn_id
        self.local_port = local_port
        self.remote = remote
        self.cfg = cfg
        self.state: State = state
        self._last_key = None
        self.iss = iss & MASK
        self.irs = 0
        self.version = 1
        self.mss = cfg.mss
        self.nodelay = cfg.nodelay  # per-connection NoDelay option (8.9)
        self._force_flush = False
        self.cc: CongestionController = make_controller(cfg)
        self.rtt = RttEstimator(cfg)
        # send side (absolute positions; 0 = SYN)
        self.snd_una = 0
        self.snd_nxt = 0
        self._sbuf = SendBuffer(1)
        self._sbuf_cap = cfg.send_buffer_bytes
        self._writable_at = max(1, cfg.send_buffer_bytes // 2)
        self._want_writable = False  # a send() was short: emit Writable once room opens
        self.rec = LossRecovery()
        self.peer_window = cfg.recv_buf_segments  # segments, refreshed by every ACK
        self._fin_pos: int | None = None  # position of our FIN once close() was called
        self._fin_sent = False
        self._syn_tx = 0
        self._syn_time = now
        # receive side
        self._rx = Reassembly(1)
        self._cap = cfg.recv_buf_bytes
        self.recv_unread = 0
        self._peer_fin: int | None = None
        self._peer_fin_seen = False
        self._auto_close_due = False  # peer FIN consumed; close once the application has read StreamEnded
        self._ack_pending = 0
        self._ack_now = False
        self._last_adv = cfg.recv_buf_segments
        self._quarter = max(1, cfg.recv_buf_segments // 4)
        self._keepalive = cfg.keepalive_interval
        self._idle = cfg.idle_timeout
        self._out = box.packets  # the endpoint's outgoing list (drained in place by packets_to_send)
        self._events = box.events
        self._laddr = box.local_addr
        self._raddr = remote.addr
        self._rport = remote.port
        # timers
        self._rto_at: float | None = None
        self._delack_at: float | None = None
        self._nagle_at: float | None = None
        self._persist_at: float | None = None
        self._persist_backoff = cfg.persist_initial
        self._tw_at: float | None = None
        self._last_tx = now
        self._last_data = now
        self._now = now
        self._sched = _INF  # managed by the endpoint's timer heap
        self._holds_port = False
        self._counted = True
        self._closed_reported = False
        self._close_reason = CloseReason.NORMAL
        self.established_at: float | None = None
        self.retransmits = 0
        self.rto_count = 0
        self.fast_recoveries = 0

    # ------------------------------------------------------------------ views
    @property
    def last_transition(self) -> tuple[State, Input, State, str] | None:
        key = self._last_key
        if key is None:
            return None
        new, action = TRANSITIONS[key]
        return (key[0], key[1], new, action)

    @property
    def cwnd(self) -> int:
        return self.cc.cwnd

    @property
    def ssthresh(self) -> int:
        return self.cc.ssthresh

    @property
    def srtt(self) -> float | None:
        return self.rtt.srtt

    @property
    def rto(self) -> float:
        return self.rtt.rto

    @property
    def bytes_in_flight(self) -> int:
        return self.rec.flight

    @property
    def rcv_nxt(self) -> int:
        return self._rx.rcv_nxt

    @property
    def send_buffer_size(self) -> int:
        """Bytes written and not yet acknowledged."""
        return max(0, self._sbuf.end - max(self.snd_una, self._sbuf.start))

    @property
    def send_buffer_free(self) -> int:
        """How many more bytes ``send()`` would take now (``StreamConfig.send_buffer_bytes`` bounds the buffer)."""
        return max(0, self._sbuf_cap - self.send_buffer_size)

    @property
    def unsent(self) -> int:
        return max(0, self._sbuf.end - self.snd_nxt)

    @property
    def ooo_bytes(self) -> int:
        return self._rx.ooo_bytes

    @property
    def in_recovery(self) -> bool:
        return self.rec.recover is not None

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    def snapshot(self) -> dict[str, Any]:
        """The tracer's standard fields."""
        return {
            "conn": self.id,
            "state": self.state.value,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "srtt": self.rtt.srtt,
            "rto": self.rtt.rto,
            "bytes_in_flight": self.rec.flight,
            "snd_una": self.snd_una,
            "snd_nxt": self.snd_nxt,
            "rcv_nxt": self._rx.rcv_nxt,
            "peer_window": self.peer_window,
        }

    def _trace(self, name: str, **extra: Any) -> None:
        tracer = self._box.tracer
        if tracer is not None:
            rec = {"time": self._now, "name": name}
            rec.update(self.snapshot())
            rec.update(extra)
            tracer(rec)

    def _reject(self, reason: str, pkt: Packet, detail: str = "") -> None:
        self._host.reject(reason, rejection(reason, detail), pkt, self._now)

    # ------------------------------------------------------------- transitions
    def _go(self, inp: Input, now: float, pkt: Packet | None = None, data: bytes = b"") -> bool:
        """Take the table row for ``(state, inp)``: set the new state, then run the row's action.

        The only place a connection's state changes.  No row: an application input raises
        ``LocalProtocolError(INVALID_STATE)``; a packet or timer input is ignored (False).
        """
        old = self.state
        key = (old, inp)
        row = _row(key)
        if row is None:
            if inp in _APP_INPUTS:
                raise LocalProtocolError(
                    ErrorCode.INVALID_STATE, f"{inp.value} is not allowed in {old.value}",
                    field="connection.state", section="8.1", requirement="SES-001",
                )  # fmt: skip
            return False
        self._last_key = key
        new = row[0]
        if new is not old:
            self.state = new
            if self._box.tracer is not None:
                self._trace("state", old=old.value, new=new.value, input=inp.value, action=row[1])
        _DISPATCH[row[1]](self, now, pkt, data)
        return True

    def _allowed(self, inp: Input) -> None:
        """Raise as :meth:`_go` would when the application input ``inp`` has no row here."""
        if (self.state, inp) not in TRANSITIONS:
            self._go(inp, self._now)

    # -- the table's actions: _do_<action>(now, packet or None, data) --------------------------------
    def _do_none(self, now: float, pkt: Packet | None, data: bytes) -> None:
        pass

    def _do_send_syn(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self.snd_nxt = 1
        self._send_syn()

    def _do_spawn_send_syn_ack(self, now: float, pkt: Packet | None, data: bytes) -> None:
        assert pkt is not None
        self.irs = pkt.seq
        self._rx.rcv_nxt = 1
        self._set_peer_window(pkt.window)
        self.snd_nxt = 1
        self._send_syn()

    def _do_resend_syn_ack(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._wire(_SYNACK, 0)  # duplicate SYN: the SYN-ACK was lost

    def _do_establish(self, now: float, pkt: Packet | None, data: bytes) -> None:
        assert pkt is not None
        self.irs = pkt.seq
        self._rx.rcv_nxt = 1
        self._established(now, pkt.window, sample=self._syn_tx == 1)
        self._send_ack()
        if self._fin_pos is not None:  # close() was called during the handshake
            self._go(Input.APP_CLOSE, now)
        else:
            self._output(now)

    def _do_report_connected(self, now: float, pkt: Packet | None, data: bytes) -> None:
        assert pkt is not None
        self._established(now, pkt.window, sample=self._syn_tx == 1)
        if self._fin_pos is not None:  # close() was called during the handshake
            self._go(Input.APP_CLOSE, now)

    def _do_queue(self, now: float, pkt: Packet | None, data: bytes) -> None:
        pass  # send() buffered the bytes; they go once the handshake completes

    def _do_send(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._output(now)

    def _do_queue_fin(self, now: float, pkt: Packet | None, data: bytes) -> None:
        if self._fin_pos is None:
            self._fin_pos = self._sbuf.end
        st = self.state
        if st is not State.SYN_RECEIVED and st is not State.SYN_SENT:
            self._output(now)

    def _do_resend_ack(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._ack_now = True  # sent at the end of the packet's processing (maybe piggybacked on data)

    def _do_ack_fin_report_end(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._peer_fin_seen = True
        self._rx.rcv_nxt += 1
        self._ack_now = True
        self._events.append(StreamEnded(self.id))
        self._trace("peer_fin")
        st = self.state
        if st is _TIME_WAIT:
            self._report_closed(self._close_reason)
        elif st is State.CLOSE_WAIT and self.cfg.auto_close_on_peer_fin:
            # closed when the application reads StreamEnded (peer_end_read); the FIN's ACK waits as a delayed
            # ACK meanwhile, so an application that reads at once sends one FIN|ACK (with its reply before it)
            self._auto_close_due = True
            self._ack_now = False
            self._ack_pending += 1

    def _do_start_time_wait(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._tw_at = now + self.cfg.time_wait
        self._rto_at = self._persist_at = self._nagle_at = None
        if self._peer_fin_seen:
            self._report_closed(self._close_reason)
        self._host.connection_time_wait(self)

    def _do_release(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._report_closed(self._close_reason)
        self._finish()

    def _do_report_reset(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._events.append(Reset(self.id))
        self._report_closed(CloseReason.RESET)
        self._finish()

    def _do_report_timeout(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._trace("handshake_timeout")
        self._report_closed(CloseReason.CONNECT_TIMEOUT)
        self._finish()

    def _do_send_rst(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._send_rst()
        self._report_closed(CloseReason.ABORTED)
        self._finish()

    def _do_send_rst_report_timeout(self, now: float, pkt: Packet | None, data: bytes) -> None:
        self._trace("retransmit_limit")
        self._send_rst()
        self._report_closed(CloseReason.TIMEOUT)
        self._finish()

    # ------------------------------------------------------------ lifecycle
    def _report_closed(self, reason: CloseReason) -> None:
        if not self._closed_reported:
            self._closed_reported = True
            self._events.append(Closed(self.id, reason))

    def _finish(self) -> None:
        """The connection reached CLOSED: drop what it holds and release it from the endpoint."""
        self._rto_at = self._delack_at = self._nagle_at = self._persist_at = self._tw_at = None
        self._report_closed(self._close_reason)
        self._box.ooo_used -= self._rx.ooo_bytes
        self._rx = Reassembly(self._rx.rcv_nxt)  # held out-of-order bytes can never be delivered now
        self._want_writable = False
        self._host.connection_released(self)

    # -------------------------------------------------------------- packets out
    def _wire(self, flags: int, seq: int, payload: bytes = b"") -> None:
        # the advertised window, as _adv_window() computes it (inlined: this runs for every packet we send)
        free = self._cap - self.recv_unread
        window = free // self.mss if free > 0 else 0
        if window > 0xFFFF:
            window = 0xFFFF
        elif window == 0 and self.cfg.zero_window_means_unlimited:
            window = 1
        self._last_adv = window
        # tuple.__new__ skips the NamedTuple constructor's Python-level argument handling (one per packet)
        self._out.append(
            _new_tuple(
                Packet,
                (flags, _STREAM, self._laddr, self._raddr, self.local_port, self._rport, (self.iss + seq) & MASK,
                 (self.irs + self._rx.rcv_nxt) & MASK if flags & _ACK else 0, window, payload, VERSION, 0),
            )
        )  # fmt: skip
        self._last_tx = self._now
        if flags & _ACK:
            self._ack_pending = 0
            self._ack_now = False
            self._delack_at = None

    def _adv_window(self) -> int:
        free = self._cap - self.recv_unread
        w = free // self.mss if free > 0 else 0
        if w > 0xFFFF:
            w = 0xFFFF
        if w == 0 and self.cfg.zero_window_means_unlimited:
            w = 1  # a Go peer reads 0 as "no limit" (E-SES-3); the receive bound still holds
        return w

    def _send_syn(self) -> None:
        flags = _SYNACK if self.state is State.SYN_RECEIVED else _SYN
        self._wire(flags, 0)
        self._syn_tx += 1
        idx = min(self._syn_tx, len(self.cfg.syn_schedule)) - 1
        self._rto_at = self._now + self.cfg.syn_schedule[idx]
        self._trace("syn_sent", attempt=self._syn_tx)

    def _send_ack(self) -> None:
        rx = self._rx
        blocks = rx.blocks(self.cfg.max_sack_blocks) if rx._starts else None  # rx.has_gap, without the property
        payload = b""
        if blocks:
            irs = self.irs
            payload = encode_sack([((irs + s) & MASK, (irs + e) & MASK) for s, e in blocks])
        self._wire(_ACK, self.snd_nxt, payload)

    def _send_rst(self) -> None:
        zero = self.cfg.rst_zero_fields
        self._out.append(
            Packet(_RST, _STREAM, self._laddr, self._raddr, self.local_port, self._rport,
                   0 if zero else (self.iss + self.snd_nxt) & MASK, 0 if zero else (self.irs + self._rx.rcv_nxt) & MASK,
                   0)
        )  # fmt: skip

    # ---------------------------------------------------------------- app calls
    def start_connect(self, now: float) -> None:
        """CLOSED -> SYN_SENT."""
        self._now = now
        self._go(Input.APP_CONNECT, now)

    def start_accept(self, pkt: Packet, now: float) -> None:
        """Spawned by a SYN at a listening port (LISTEN -> SYN_RECEIVED)."""
        self._now = now
        self._go(Input.RECV_SYN, now, pkt)

    def reuse(self, now: float) -> None:
        """A new incarnation of this 4-tuple replaces it (TIME_WAIT -> CLOSED, E-SES-10)."""
        self._now = now
        self._go(Input.REUSE, now)

    def send(self, data: bytes | bytearray | memoryview, now: float) -> int:
        """Queue as much of ``data`` as the send buffer takes; returns that count (short write when full)."""
        self._now = now
        if self._fin_pos is not None:
            raise LocalProtocolError(ErrorCode.CONNECTION_CLOSED, "send after close", field="connection",
                                     section="8.3", requirement="SES-005")  # fmt: skip
        self._allowed(Input.APP_SEND)
        n = len(data)
        room = self._sbuf_cap - self.send_buffer_size
        if n > room:
            n = room if room > 0 else 0
            data = memoryview(data)[:n]
            self._want_writable = True
        if n:
            self._sbuf.append(data)
        self._go(Input.APP_SEND, now)
        return n

    def close(self, now: float) -> None:
        self._now = now
        self._go(Input.APP_CLOSE, now)

    def abort(self, now: float) -> None:
        self._now = now
        if self.state is State.CLOSED or self.state is State.LISTEN:
            return
        self._go(Input.APP_ABORT, now)

    def peer_end_read(self, now: float) -> None:
        """The application read StreamEnded: a pending automatic close (auto_close_on_peer_fin) happens now.

        Deferred until then so a reply written for data that arrived with (or before) the FIN goes out
        before our FIN -- an echo answers every byte it acknowledged.  An application whose last ``send``
        was short (it still holds bytes to write) closes by itself: no automatic close then.
        """
        if self._auto_close_due:
            self._auto_close_due = False
            if self.state is State.CLOSE_WAIT and self._fin_pos is None and not self._want_writable:
                self._now = now
                self._go(Input.APP_CLOSE, now)

    def consumed(self, n: int) -> None:
        """The application pulled ``n`` bytes; reopen the window and tell the peer if it had closed."""
        self.recv_unread -= n
        st = self.state
        if st is not _ESTABLISHED and (st not in RECV_STATES or st is _TIME_WAIT):
            return
        # window update: when the peer's view is below a quarter of the buffer, or has fallen a quarter behind
        last = self._last_adv
        quarter = self._quarter
        if last >= quarter and (self._cap - self.recv_unread) // self.mss - last < quarter:
            return  # cheap early exit (one event per segment): no update can be due
        new = self._adv_window()
        if new > last and (last < quarter or new - last >= quarter):
            self._send_ack()

    def consumed_parts(self, parts: list[bytes], total: int) -> None:
        """The application pulled one event made of ``parts`` (``total`` bytes): the same window updates as
        :meth:`consumed` once per part.  When none is due for the whole ``total`` none is due part by part either
        (the offered window only grows as bytes are read), so the parts are replayed only when one may be."""
        last = self._last_adv
        if last >= self._quarter and (self._cap - self.recv_unread + total) // self.mss - last < self._quarter:
            self.recv_unread -= total  # consumed()'s early exit, for the whole event
            return
        for part in parts:
            self.consumed(len(part))

    def retain(self, n: int) -> None:
        """The application holds ``n`` delivered bytes it could not process yet: keep them in the window."""
        if n < 0 or self.recv_unread + n > self._cap:
            raise LocalProtocolError(ErrorCode.OUT_OF_RANGE, f"cannot retain {n} bytes", field="nbytes",
                                     section="8.8")  # fmt: skip
        self.recv_unread += n

    # ------------------------------------------------------------- output path
    def _set_peer_window(self, window: int) -> None:
        if window == 0 and self.cfg.zero_window_means_unlimited:
            window = 0x10000  # E-SES-3: Go reads 0 as "no limit"
        self.peer_window = window

    def _output(self, now: float) -> None:
        """Send retransmissions and new data as the windows allow, then the FIN."""
        rec = self.rec
        if not rec.lost and self.snd_nxt >= self._sbuf.end and (self._fin_pos is None or self._fin_sent):
            if rec.segs and self._rto_at is None and self._persist_at is None:
                self._rto_at = now + self.rtt.rto
            self._nagle_at = None
            return  # nothing to send (the common case on the receiving side)
        mss = self.mss
        cwnd = self.cc.cwnd
        while rec.lost and (seg := rec.next_lost()) is not None:
            n = seg.end - seg.start
            if rec.flight and rec.flight + n > cwnd:
                break
            rec.lost.popleft()
            self._retransmit(seg, now)
        data_end = self._sbuf.end
        right = self.snd_una + self.peer_window * mss
        nxt = self.snd_nxt  # _send_new advances snd_nxt and the flight; re-read after each call
        full = False
        if nxt < data_end and self._box.tracer is None:
            full = self._send_run(nxt, data_end, right, now)
        while not full and self.snd_nxt < data_end:  # with a tracer (one record per segment), or what _send_run left
            n = self._room(self.snd_nxt, data_end, right, rec.flight)
            if n <= 0:
                if n < 0 and self._nagle_at is None:  # Nagle (8.9): small tail while data is unacknowledged
                    self._nagle_at = now + self.cfg.nagle_timeout
                break
            self._send_new(n, now)
        if self.snd_nxt >= data_end:
            self._nagle_at = None
        fin = self._fin_pos
        if fin is not None and not self._fin_sent and self.snd_nxt == fin:
            self._fin_sent = True
            flags = _FIN | _ACK if (self.cfg.fin_has_ack or self._peer_fin_seen) else _FIN
            self._wire(flags, fin)
            rec.sent(fin, fin + 1, now)
            self.snd_nxt = fin + 1
            self._trace("fin_sent", seq=fin)
        if rec.segs:
            if self._rto_at is None and self._persist_at is None:
                self._rto_at = now + self.rtt.rto
        elif self.snd_nxt < data_end and self.snd_nxt >= right and self._persist_at is None:
            self._persist_at = now + self._persist_backoff  # zero window: persist mode (8.8.1)
            self._trace("persist_enter")

    def _room(self, nxt: int, data_end: int, right: int, flight: int) -> int:
        """How many bytes the next new segment at ``nxt`` may carry (8.7-8.9): the congestion window, the peer's
        window (``right``), silly-window avoidance and Nagle decide.  ``> 0``: send that many; ``0``: stop, a
        window is full; ``-1``: stop for Nagle (the caller arms its timer).  The one rule both send loops use."""
        mss = self.mss
        unsent = data_end - nxt
        avail = self.cc.cwnd - flight
        if right - nxt < avail:
            avail = right - nxt
        if avail <= 0:
            return 0
        n = mss if mss < unsent else unsent
        if avail < n:
            return 0 if flight else avail  # silly-window avoidance: wait for a full segment's room
        if n < mss and self.snd_una != nxt and not self.nodelay and not self._force_flush:
            return -1
        return n

    def _send_run(self, nxt: int, data_end: int, right: int, now: float) -> bool:
        """The new-data loop of :meth:`_output` without a tracer: what repeated :meth:`_send_new` / :meth:`_wire`
        calls do, with what the segments of one run share (window, ACK field, addresses) computed once.

        Stops where :meth:`_output`'s loop would (congestion window, the peer's window, silly-window
        avoidance, Nagle); that loop then finds nothing more to send, or the one case this leaves to it.
        True: it stopped because a window is full (``_room`` would answer 0 again), so that loop need not ask.
        """
        rec = self.rec
        flight = rec.flight
        room = self._room
        read = self._sbuf.read
        out = self._out
        segs = rec.segs
        split = self.cfg.split_sack_lookalike
        # _wire's header fields, the same for every segment of the run
        window = self._adv_window()
        iss = self.iss
        ackno = (self.irs + self._rx.rcv_nxt) & MASK
        laddr, raddr, lport, rport = self._laddr, self._raddr, self.local_port, self._rport
        start = nxt
        mss, cwnd = self.mss, self.cc.cwnd
        full = False
        while nxt < data_end:
            if data_end - nxt >= mss and right - nxt >= mss and cwnd - flight >= mss:
                n = mss  # a full segment fits both windows: what _room() answers then, without its frame
            elif cwnd - flight <= 0 or right - nxt <= 0:
                full = True  # no room in one of the windows: _room() answers 0, without its frame
                break
            else:
                n = room(nxt, data_end, right, flight)
            if n <= 0:
                break  # a full window, silly-window avoidance or Nagle (whose timer _output's loop then arms)
            payload = read(nxt, n)
            if split and n > 1 and payload[0] == _SACK0 and payload[:4] == SACK_MAGIC:
                n = 1  # E-SACK-1: never emit a data segment a Go receiver would take for SACK
                payload = payload[:1]
            out.append(_new_tuple(Packet, (_ACK, _STREAM, laddr, raddr, lport, rport, (iss + nxt) & MASK, ackno,
                                           window, payload, VERSION, 0)))  # fmt: skip
            seg = _new_seg(SentSegment)
            seg.start = nxt
            seg.end = nxt + n
            seg.sent_at = now
            seg.retransmits = 0
            seg.sacked = seg.lost = False
            segs.append(seg)
            flight += n
            nxt += n
        if nxt != start:
            rec.flight = flight
            self.snd_nxt = nxt
            self._last_data = now
            self._last_adv = window
            self._last_tx = self._now
            self._ack_pending = 0
            self._ack_now = False
            self._delack_at = None
        return full

    def _send_new(self, n: int, now: float) -> None:
        seq = self.snd_nxt
        payload = self._sbuf.read(seq, n)
        if payload[:4] == SACK_MAGIC and n > 1 and self.cfg.split_sack_lookalike:
            n = 1  # E-SACK-1: never emit a data segment a Go receiver would take for SACK
            payload = payload[:1]
        self._wire(_ACK, seq, payload)
        # LossRecovery.sent(), inlined (once per segment): a bare slotted record, no __init__ frame
        rec = self.rec
        seg = _new_seg(SentSegment)
        seg.start = seq
        seg.end = seq + n
        seg.sent_at = now
        seg.retransmits = 0
        seg.sacked = seg.lost = False
        rec.segs.append(seg)
        rec.flight += n
        self.snd_nxt = seq + n
        self._last_data = now
        if self._box.tracer is not None:
            self._trace("data_sent", seq=seq, len=n)

    def _retransmit(self, seg: SentSegment, now: float) -> None:
        self.rec.retransmitted(seg, now)
        self.retransmits += 1
        self._resend(seg)
        self._trace("retransmit", seq=seg.start, len=seg.end - seg.start, attempt=seg.retransmits)

    def _resend(self, seg: SentSegment) -> None:
        s, e = seg.start, seg.end
        if self._fin_pos is not None and s == self._fin_pos:
            flags = _FIN | _ACK if (self.cfg.fin_has_ack or self._peer_fin_seen) else _FIN
            self._wire(flags, s)
        else:
            self._wire(_ACK, s, self._sbuf.read(s, e - s))

    # -------------------------------------------------------------- input path
    def on_packet(self, pkt: Packet, now: float) -> None:
        self._now = now
        flags = pkt.flags
        if flags & _RST:
            self._on_rst(pkt, now)
            return
        if flags & _SYN:
            if flags & _ACK:
                self._on_syn_ack(pkt, now)
            else:
                self._on_syn(pkt, now)
            if self._ack_now and self.state is not _CLOSED:
                self._send_ack()
            return
        st = self.state
        if st is not _ESTABLISHED:
            if st is State.SYN_SENT:
                return
            if st is State.SYN_RECEIVED:
                if not flags & _ACK or pkt.ack != (self.iss + 1) & MASK:
                    return
                self._go(Input.RECV_HANDSHAKE_ACK, now, pkt)
        payload = pkt.payload
        sack: list[tuple[int, int]] | None = None
        if flags & _ACK:
            if payload and flags == _ACK and payload[0] == _SACK0 and payload[:4] == SACK_MAGIC:
                sack = self._parse_sack(payload)
                if sack is not None:
                    payload = b""
            if (
                sack is None
                and pkt.ack == (self.iss + self.snd_una) & MASK
                and pkt.window == self.peer_window
                and not self.rec.segs
                and self._persist_at is None
            ):
                pass  # nothing outstanding, nothing new (a data segment to a receiver): _on_ack would change nothing
            elif not self._on_ack(pkt, sack, payload, now):
                return
        if payload:
            # _go(RECV_DATA) without its frame (once per data segment): the same rows, pre-resolved
            entry = _DATA_ROWS.get(self.state)
            if entry is not None:
                self._last_key = entry[0]
                entry[1](self, now, pkt, payload)
            else:
                self._go(_RECV_DATA, now, pkt, payload)
        if flags & _FIN:
            self._on_fin(pkt, pkt.seq + len(payload), now)
        st = self.state
        if st is _CLOSED:
            return
        if st is _ESTABLISHED or st in _DATA_STATES:
            rec = self.rec
            if (
                rec.lost
                or rec.segs
                or self.snd_nxt < self._sbuf.end
                or (self._fin_pos is not None and not self._fin_sent)
            ):
                self._output(now)
            else:  # _output's nothing-to-send exit, without its frame (every data segment a receiver gets)
                self._nagle_at = None
            self._force_flush = False
        if self._ack_now:
            self._send_ack()
        elif self._ack_pending and self._delack_at is None:
            self._delack_at = now + self.cfg.delayed_ack_timeout

    def _on_syn(self, pkt: Packet, now: float) -> None:
        if self.state is State.SYN_RECEIVED:
            if pkt.seq == self.irs:
                self._go(Input.RECV_SYN, now, pkt)  # resend_syn_ack
            return
        self._go(Input.RECV_SYN, now, pkt)  # resend_ack where the table has a row; ignored elsewhere

    def _on_syn_ack(self, pkt: Packet, now: float) -> None:
        if self.state is State.SYN_SENT:
            if pkt.ack != (self.iss + 1) & MASK:
                self._reject("syn_ack_bad_ack", pkt, f"ack {pkt.ack}, our ISN {self.iss}")
                return
            self._go(Input.RECV_SYN_ACK, now, pkt)  # establish
        elif pkt.seq == self.irs:
            self._go(Input.RECV_SYN_ACK, now, pkt)  # our handshake ACK was lost: resend_ack

    def _established(self, now: float, window: int, sample: bool) -> None:
        if sample:
            self.rtt.sample(now - self._syn_time)
        self.snd_una = 1
        self._rto_at = None
        self._set_peer_window(window)
        self._last_data = now
        self.established_at = now
        self._events.append(Connected(self.id, self.remote, self.local_port))

    def _on_rst(self, pkt: Packet, now: float) -> None:
        st = self.state
        if self.cfg.rst_requires_in_window:
            if st is State.SYN_SENT:
                if pkt.ack != (self.iss + 1) & MASK:
                    self._reject("rst_bad_ack", pkt, f"ack {pkt.ack}")
                    return
            elif st is not State.LISTEN:
                d = ((pkt.seq - self.irs - self._rx.rcv_nxt + _HALF) & MASK) - _HALF
                if not 0 <= d <= max(self._cap - self.recv_unread, 1):
                    self._reject("rst_out_of_window", pkt, f"seq {pkt.seq} is {d} from rcv_nxt")
                    return
        self._go(Input.RECV_RST, now, pkt)

    def _parse_sack(self, payload: bytes) -> list[tuple[int, int]] | None:
        """E-SACK-1 (see :mod:`pilot_proto.stream.sack_rule`): useful SACK blocks, or ``None`` for user data."""
        got = classify_ack_payload(payload, self.iss, self.snd_una, self.snd_nxt, strict=self.cfg.strict_sack_length,
                                   fallback_to_data=self.cfg.sack_fallback_to_data)  # fmt: skip
        if got is None:
            return None
        if got[1]:
            self._trace("drop", reason="bogus_sack_blocks", count=got[1])
        return got[0]

    def _on_ack(self, pkt: Packet, sack: list[tuple[int, int]] | None, data: bytes, now: float) -> bool:
        """Process the ACK field (``data``: the packet's payload unless it was SACK); False: drop the rest."""
        una = self.snd_una
        ack = una + (((pkt.ack - self.iss - una + _HALF) & MASK) - _HALF)
        if ack > self.snd_nxt:
            self._reject("ack_of_unsent_data", pkt, f"ack {ack} beyond snd_nxt {self.snd_nxt}")
            self._ack_now = True
            self._send_ack()
            return False
        rec = self.rec
        old_window = self.peer_window
        if ack >= una:
            window = pkt.window
            if window or not self.cfg.zero_window_means_unlimited:
                self.peer_window = window
            else:
                self._set_peer_window(window)
        if self._persist_at is not None and self.peer_window > 0:
            self._persist_at = None
            self._persist_backoff = self.cfg.persist_initial
            self._trace("persist_exit")
            rec.requeue_from(ack)  # resend refused probe bytes now and flush what waited
            self._force_flush = True
        if sack:
            rec.apply_sack(sack)
            if rec.recover is not None:
                rec.mark_holes(now, self.rtt.rto)
            elif ack == una and rec.sacked_bytes >= self.cfg.dupack_threshold * self.mss:
                # RFC 6675 loss detection: dupack_threshold segments SACKed above the hole.  Also works with peers
                # whose SACK-bearing ACKs do not count as duplicates (go-interop, E-SES-6).
                self._enter_recovery(now)
        if ack > una:
            self._ack_advanced(ack, now)
        elif (
            ack == una
            and rec.segs
            and not data
            and not pkt.flags & _FIN
            and (sack is None or self.cfg.sack_acks_count_as_dup)
            and (sack is not None or self.peer_window == old_window)
        ):
            if rec.dupack(self.cfg.dupack_threshold):
                self._enter_recovery(now)
            elif rec.recover is not None:
                self.cc.on_dupack_in_recovery()
        return True

    def _ack_advanced(self, ack: int, now: float) -> None:
        rec = self.rec
        acked = ack - self.snd_una
        sample_t = rec.acked(ack)
        self.snd_una = ack
        self._sbuf.release(ack)
        if sample_t is not None:
            self.rtt.sample(now - sample_t)
        if rec.recover is not None:
            if rec.exit_point_reached(ack):
                self.cc.on_recovery_exit()
                self._trace("recovery_exit")
            else:
                rec.mark_holes(now, self.rtt.rto)  # NewReno partial ACK: the next hole is lost too
        else:
            self.cc.on_ack(acked, rec.flight)
        self._rto_at = now + self.rtt.rto if rec.segs else None
        if self.snd_nxt == self._sbuf.end:
            self._nagle_at = None
        if self._want_writable:
            sbuf = self._sbuf  # send_buffer_free, without its two property frames (once per ACK of a big write)
            free = self._sbuf_cap - max(0, sbuf.end - max(ack, sbuf.start))
            if free >= self._writable_at:
                self._want_writable = False
                self._events.append(Writable(self.id, free))
        if self._box.tracer is not None:
            self._trace("ack", acked=acked)
        if self._fin_sent and self._fin_pos is not None and ack > self._fin_pos:
            self._go(Input.RECV_FIN_ACK, now)  # start_time_wait (FIN_WAIT) or release (LAST_ACK)

    def _enter_recovery(self, now: float) -> None:
        """Fast retransmit (8.7): halve via the controller, mark the holes, resend the first one now."""
        self.cc.on_fast_retransmit(self.rec.flight)
        self.fast_recoveries += 1
        self._trace("loss_fast_retransmit")
        first = self.rec.enter(self.snd_nxt, now, self.rtt.rto)
        if first is not None:  # the first retransmission goes at once, whatever the window (RFC 5681 3.2)
            self._retransmit(first, now)

    def _do_deliver(self, now: float, pkt: Packet | None, payload: bytes) -> None:
        """The ``deliver`` action: accept in-window bytes, hold out-of-order ones, hand in-order ones up."""
        assert pkt is not None
        rx = self._rx
        nxt = rx.rcv_nxt
        start = nxt + (((pkt.seq - self.irs - nxt + _HALF) & MASK) - _HALF)
        n = len(payload)
        end = start + n
        if start == nxt and end - nxt <= self._cap - self.recv_unread and self._peer_fin is None and not rx._starts:
            # fast path: the next bytes, within the window, nothing held out of order (rx.has_gap, read without the
            # property's frame), no FIN to clip at --
            # the general path below does exactly this, with more tests
            rx.rcv_nxt = end
            self.recv_unread += n
            box = self._box
            ev = box.rx_event
            if ev is not None and self._events[-1] is ev and ev.conn_id == self.id:  # type: ignore[attr-defined]
                parts = box.rx_parts  # coalesce_received: the queued event takes these bytes too (joined once)
                if parts is None:
                    box.rx_parts = [ev.data, payload]  # type: ignore[attr-defined]
                else:
                    parts.append(payload)
            else:
                ev = _new_obj(DataReceived)  # DataReceived(self.id, payload) without the frozen __init__'s frame
                _set_conn_id(ev, self.id)
                _set_data(ev, payload)
                self._events.append(ev)
                if box.coalesce:
                    self._coalesce_into(ev)
            self._last_data = now
            self._ack_pending += 1
            if self._ack_pending >= self.cfg.delayed_ack_segments:
                self._ack_now = True
            return
        right = nxt + max(self._cap - self.recv_unread, 0)
        if self._peer_fin is not None and self._peer_fin < right:
            right = self._peer_fin  # nothing is accepted past the peer's FIN
        if end <= nxt or start >= right:
            self._trace("drop", reason="duplicate" if end <= nxt else "beyond_window", seq=start)
            self._ack_now = True
            return
        if end > right:
            payload = payload[: right - start]
            end = right
        if start > nxt:
            box = self._box
            cap = self.cfg.max_ooo_segments
            if (cap is not None and rx.ooo_segments >= cap) or (
                box.ooo_limit is not None and box.ooo_used + (end - start) > box.ooo_limit
            ):
                self._reject("ooo_buffer_full", pkt, f"{rx.ooo_segments} segments here, {box.ooo_used} B node-wide")
                self._ack_now = True
                return
        had_gap = rx.has_gap
        before = rx.ooo_bytes
        data = rx.add(start, payload)
        self._box.ooo_used += rx.ooo_bytes - before
        if data:
            self.recv_unread += len(data)
            self._deliver_up(data)
            self._last_data = now
        if had_gap or rx.has_gap or start < nxt:
            self._ack_now = True  # out of order or gap filled: ACK now, with SACK (8.11)
        else:
            self._ack_pending += 1
            if self._ack_pending >= self.cfg.delayed_ack_segments:
                self._ack_now = True
        if self._peer_fin is not None and rx.rcv_nxt == self._peer_fin:
            self._go(Input.RECV_FIN, now, pkt)

    def _deliver_up(self, data: bytes) -> None:
        """Hand in-order ``data`` to the application: a new ``DataReceived``, or (``coalesce_received``) more bytes
        of the queued one when that is this connection's and still the newest event."""
        box = self._box
        ev = box.rx_event
        if ev is not None and self._events[-1] is ev and ev.conn_id == self.id:  # type: ignore[attr-defined]
            parts = box.rx_parts
            if parts is None:
                box.rx_parts = [ev.data, data]  # type: ignore[attr-defined]
            else:
                parts.append(data)
            return
        ev = DataReceived(self.id, data)
        self._events.append(ev)
        if box.coalesce:
            self._coalesce_into(ev)

    def _coalesce_into(self, ev: DataReceived) -> None:
        """``ev`` (just queued) is the event later in-order bytes may join; the one it replaces, if it took more
        bytes, waits in ``rx_held`` with its parts until popped (joined then, the window freed part by part)."""
        box = self._box
        parts = box.rx_parts
        if parts is not None:
            assert box.rx_event is not None
            box.rx_held.append((box.rx_event, parts))
            box.rx_parts = None
        box.rx_event = ev

    def _on_fin(self, pkt: Packet, seq: int, now: float) -> None:
        if self.state not in RECV_STATES:
            return
        nxt = self._rx.rcv_nxt
        self._ack_now = True
        if self._peer_fin_seen:
            self._go(Input.RECV_FIN_AGAIN, now, pkt)  # retransmitted FIN: re-ACK
            return
        pos = nxt + (((seq - self.irs - nxt + _HALF) & MASK) - _HALF)
        if pos < nxt or pos > nxt + self._cap:
            return
        if self._peer_fin is not None and pos != self._peer_fin:
            return  # a FIN elsewhere than the one already held: the first stands
        self._peer_fin = pos
        if pos == nxt:
            self._go(Input.RECV_FIN, now, pkt)  # ack_fin_report_end

    # -------------------------------------------------------------------- timers
    def next_deadline(self) -> float:
        d = _INF
        t = self._rto_at
        if t is not None:
            d = t
        t = self._delack_at
        if t is not None and t < d:
            d = t
        t = self._nagle_at
        if t is not None and t < d:
            d = t
        t = self._persist_at
        if t is not None and t < d:
            d = t
        t = self._tw_at
        if t is not None and t < d:
            d = t
        st = self.state
        if st is State.ESTABLISHED or st is State.CLOSE_WAIT:
            t = self._last_tx + self._keepalive
            if t < d:
                d = t
            t = self._last_data + self._idle
            if t < d:
                d = t
        return d

    def on_timer(self, now: float) -> None:
        self._now = now
        st = self.state
        if self._tw_at is not None and now >= self._tw_at:
            self._tw_at = None
            self._go(Input.TIMEOUT_TIME_WAIT, now)  # release
            return
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            if st is State.SYN_SENT or st is State.SYN_RECEIVED:
                if self._syn_tx >= len(self.cfg.syn_schedule):
                    self._go(Input.TIMEOUT_HANDSHAKE, now)  # report_timeout
                    return
                self._send_syn()
            elif self.rec.segs and not self._on_rto(now):
                return
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self._probe(now)
        if self._nagle_at is not None and now >= self._nagle_at:
            self._nagle_at = None
            self._flush_nagle(now)
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            if self._ack_pending:
                self._send_ack()
        st = self.state
        if st is State.ESTABLISHED or st is State.CLOSE_WAIT:
            if now >= self._last_data + self.cfg.idle_timeout and (self.rec.segs or self.unsent):
                self._last_data = now  # data waiting (e.g. zero window) is not idleness
            if now >= self._last_data + self.cfg.idle_timeout:
                self._close_reason = CloseReason.IDLE
                self._trace("idle_timeout")
                self._go(Input.TIMEOUT_IDLE, now)  # queue_fin
            elif now >= self._last_tx + self.cfg.keepalive_interval:
                self._trace("keepalive")
                self._send_ack()

    def _on_rto(self, now: float) -> bool:
        rec = self.rec
        if self.peer_window == 0 and self.cfg.zero_window_probe_bytes:
            # the peer closed its window under data in flight: probe (persist) instead of counting retransmissions
            self._persist_at = now + self._persist_backoff
            self._trace("persist_enter")
            return True
        if rec.first_unsacked().retransmits >= self.cfg.max_retransmits:
            self._go(Input.TIMEOUT_RETRANSMIT, now)  # send_rst_report_timeout
            return False
        self.cc.on_rto(rec.flight)
        self.rto_count += 1
        self.rtt.backoff()
        self._trace("loss_rto")
        rec.go_back()
        self._output(now)
        self._rto_at = now + self.rtt.rto
        return True

    def _probe(self, now: float) -> None:
        """Zero-window probe (8.8.1): 1 byte beyond the window (draft) or an empty ACK (Go)."""
        self._trace("zero_window_probe")
        segs = self.rec.segs
        if self.cfg.zero_window_probe_bytes and self.snd_nxt < self._sbuf.end and not segs:
            self._send_new(1, now)
        elif segs:
            self._resend(segs[0])
        else:
            self._send_ack()
        self._persist_backoff = min(self._persist_backoff * 2, self.cfg.persist_max)
        if self.peer_window == 0:
            self._persist_at = now + self._persist_backoff
            self._rto_at = None

    def _flush_nagle(self, now: float) -> None:
        self._force_flush = True
        try:
            self._output(now)
        finally:
            self._force_flush = False


#: action name -> the method that carries it out (every table action except the port's own "unlisten").
_DISPATCH: dict[str, Callable[[Connection, float, Packet | None, bytes], None]] = {
    name: getattr(Connection, f"_do_{name}") for name in ACTIONS if name != "unlisten"
}
#: state -> ((state, RECV_DATA), action method) for the RECV_DATA rows that keep the state: what ``_go`` would do
#: for a data segment, resolved once from the table (rows that change state go through ``_go`` itself).
_DATA_ROWS: dict[State, tuple[tuple[State, Input], Callable[[Connection, float, Packet | None, bytes], None]]] = {
    st: ((st, inp), _DISPATCH[action])
    for (st, inp), (new, action) in TRANSITIONS.items()
    if inp is _RECV_DATA and new is st
}
