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

from bisect import bisect_left, bisect_right
from collections import deque
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from pilot_proto.errors import ErrorCode, LocalProtocolError
from pilot_proto.stream._state import ACTIVE_STATES, Input, State, next_state
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.congestion import CongestionController, make_controller
from pilot_proto.stream.events import Closed, CloseReason, Connected, DataReceived, Reset, StreamEnded
from pilot_proto.stream.reassembly import Reassembly
from pilot_proto.stream.rto import RttEstimator
from pilot_proto.stream.sack_rule import classify_ack_payload
from pilot_proto.stream.sendbuf import SendBuffer
from pilot_proto.stream.seq import MASK
from pilot_proto.wire.address import SocketAddr
from pilot_proto.wire.header import VERSION, Flags, Packet, PacketProtocol
from pilot_proto.wire.sack import SACK_MAGIC, encode_sack

if TYPE_CHECKING:
    from pilot_proto.stream.endpoint import StreamEndpoint

__all__ = ["Connection"]

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
_RECV_STATES = frozenset({State.ESTABLISHED, State.FIN_WAIT, State.CLOSE_WAIT, State.LAST_ACK, State.TIME_WAIT})
_ESTABLISHED = State.ESTABLISHED  # module globals: one lookup instead of a global plus an attribute per test
_CLOSED = State.CLOSED

# indices into a sent-segment record (a list, for speed)
_S, _E, _T, _RX, _SACKED, _LOST = 0, 1, 2, 3, 4, 5
_seg_start = itemgetter(_S)
_seg_end = itemgetter(_E)


class Connection:
    """Read-only attributes for tests and tracing: ``state``, ``cwnd``, ``ssthresh``, ``srtt``, ``rto``,
    ``bytes_in_flight``, ``snd_una``, ``snd_nxt``, ``rcv_nxt`` (absolute), ``send_buffer_size``,
    ``recv_unread``, ``ooo_bytes``, ``peer_window``; counters ``retransmits`` (segments sent again),
    ``rto_count`` (retransmission timeouts) and ``fast_recoveries``."""

    def __init__(
        self,
        ep: StreamEndpoint,
        conn_id: int,
        local_port: int,
        remote: SocketAddr,
        cfg: StreamConfig,
        iss: int,
        now: float,
    ) -> None:
        self._ep = ep
        self.id = conn_id
        self.local_port = local_port
        self.remote = remote
        self.cfg = cfg
        self.state = State.CLOSED
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
        self._segs: deque[list[Any]] = deque()
        self._lost: deque[list[Any]] = deque()
        self._flight = 0
        self._sacked_bytes = 0
        self._prev_sack: list[tuple[int, int]] = []  # the blocks of the last SACK applied (see _apply_sack)
        self.peer_window = cfg.recv_buf_segments  # segments, refreshed by every ACK
        self._fin_pos: int | None = None  # position of our FIN once close() was called
        self._fin_sent = False
        self._dupacks = 0
        self._recover: int | None = None  # recovery point while in fast recovery
        self._syn_tx = 0
        self._syn_time = now
        # receive side
        self._rx = Reassembly(1)
        self._cap = cfg.recv_buf_bytes
        self.recv_unread = 0
        self._peer_fin: int | None = None
        self._peer_fin_seen = False
        self._ack_pending = 0
        self._ack_now = False
        self._last_adv = cfg.recv_buf_segments
        self._quarter = max(1, cfg.recv_buf_segments // 4)
        self._keepalive = cfg.keepalive_interval
        self._idle = cfg.idle_timeout
        self._out = ep._out  # the endpoint's outgoing list (drained in place by packets_to_send)
        self._laddr = ep.local_addr
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
        return self._flight

    @property
    def rcv_nxt(self) -> int:
        return self._rx.rcv_nxt

    @property
    def send_buffer_size(self) -> int:
        """Bytes written and not yet acknowledged."""
        return max(0, self._sbuf.end - max(self.snd_una, self._sbuf.start))

    @property
    def unsent(self) -> int:
        return max(0, self._sbuf.end - self.snd_nxt)

    @property
    def ooo_bytes(self) -> int:
        return self._rx.ooo_bytes

    @property
    def in_recovery(self) -> bool:
        return self._recover is not None

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
            "bytes_in_flight": self._flight,
            "snd_una": self.snd_una,
            "snd_nxt": self.snd_nxt,
            "rcv_nxt": self._rx.rcv_nxt,
            "peer_window": self.peer_window,
        }

    def _trace(self, name: str, **extra: Any) -> None:
        tracer = self._ep.tracer
        if tracer is not None:
            rec = {"time": self._now, "name": name}
            rec.update(self.snapshot())
            rec.update(extra)
            tracer(rec)

    # ------------------------------------------------------------- transitions
    def _go(self, inp: Input) -> str:
        row = next_state(self.state, inp)
        if row is None:
            raise LocalProtocolError(
                ErrorCode.INVALID_STATE, f"{inp.value} is not allowed in {self.state.value}",
                field="connection.state", section="8.1", requirement="SES-001",
            )  # fmt: skip
        old = self.state
        self.state = row[0]
        if old is not row[0]:
            self._trace("state", old=old.value, new=row[0].value, input=inp.value)
        return row[1]

    def _report_closed(self, reason: CloseReason) -> None:
        if not self._closed_reported:
            self._closed_reported = True
            self._ep._events.append(Closed(self.id, reason))

    def _finish(self) -> None:
        """The connection reached CLOSED: release it from the endpoint."""
        self._rto_at = self._delack_at = self._nagle_at = self._persist_at = self._tw_at = None
        self._report_closed(self._close_reason)
        self._ep._release(self)

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
        blocks = self._rx.blocks(self.cfg.max_sack_blocks) if self._rx.has_gap else None
        payload = b""
        if blocks:
            irs = self.irs
            payload = encode_sack([((irs + s) & MASK, (irs + e) & MASK) for s, e in blocks])
        self._wire(_ACK, self.snd_nxt, payload)

    def _send_rst(self) -> None:
        self._ep._out.append(
            Packet(
                _RST,
                _STREAM,
                self._ep.local_addr,
                self.remote.addr,
                self.local_port,
                self.remote.port,
                0 if self.cfg.rst_zero_fields else (self.iss + self.snd_nxt) & MASK,
                0 if self.cfg.rst_zero_fields else (self.irs + self._rx.rcv_nxt) & MASK,
                0,
            )
        )

    # ---------------------------------------------------------------- app calls
    def start_connect(self, now: float) -> None:
        self._now = now
        self._go(Input.APP_CONNECT)
        self.snd_nxt = 1
        self._send_syn()

    def start_accept(self, pkt: Packet, now: float) -> None:
        """Spawned by a SYN at a listening port (LISTEN -> SYN_RECEIVED)."""
        self._now = now
        self.state = State.SYN_RECEIVED
        self.irs = pkt.seq
        self._rx.rcv_nxt = 1
        self._set_peer_window(pkt.window)
        self.snd_nxt = 1
        self._send_syn()

    def send(self, data: bytes | bytearray | memoryview, now: float) -> None:
        self._now = now
        if self._fin_pos is not None:
            raise LocalProtocolError(ErrorCode.CONNECTION_CLOSED, "send after close", field="connection",
                                     section="8.3", requirement="SES-005")  # fmt: skip
        self._go(Input.APP_SEND)
        if not data:
            return
        self._sbuf.append(data)
        st = self.state
        if st is _ESTABLISHED or st in _DATA_STATES:
            self._output(now)

    def close(self, now: float) -> None:
        self._now = now
        action = self._go(Input.APP_CLOSE)
        if action == "queue_fin":
            self._queue_fin(now)

    def _queue_fin(self, now: float) -> None:
        if self._fin_pos is None:
            self._fin_pos = self._sbuf.end
        if self.state is not State.SYN_RECEIVED and self.state is not State.SYN_SENT:
            self._output(now)

    def abort(self, now: float) -> None:
        self._now = now
        if self.state in (State.CLOSED, State.LISTEN):
            return
        self._go(Input.APP_ABORT)
        self._send_rst()
        self._report_closed(CloseReason.ABORTED)
        self._finish()

    def consumed(self, n: int) -> None:
        """The application pulled ``n`` bytes; reopen the window and tell the peer if it had closed."""
        self.recv_unread -= n
        st = self.state
        if st is not _ESTABLISHED and (st not in _RECV_STATES or st is State.TIME_WAIT):
            return
        # window update: when the peer's view is below a quarter of the buffer, or has fallen a quarter behind
        last = self._last_adv
        quarter = self._quarter
        if last >= quarter and (self._cap - self.recv_unread) // self.mss - last < quarter:
            return  # cheap early exit (one event per segment): no update can be due
        new = self._adv_window()
        if new > last and (last < quarter or new - last >= quarter):
            self._send_ack()

    # ------------------------------------------------------------- output path
    def _set_peer_window(self, window: int) -> None:
        if window == 0 and self.cfg.zero_window_means_unlimited:
            window = 0x10000  # E-SES-3: Go reads 0 as "no limit"
        self.peer_window = window

    def _output(self, now: float) -> None:
        """Send retransmissions and new data as the windows allow, then the FIN."""
        if not self._lost and self.snd_nxt >= self._sbuf.end and (self._fin_pos is None or self._fin_sent):
            if self._segs and self._rto_at is None and self._persist_at is None:
                self._rto_at = now + self.rtt.rto
            self._nagle_at = None
            return  # nothing to send (the common case on the receiving side)
        mss = self.mss
        cwnd = self.cc.cwnd
        lost = self._lost
        while lost:
            seg = lost[0]
            if not seg[_LOST]:
                lost.popleft()
                continue
            n = seg[_E] - seg[_S]
            if self._flight and self._flight + n > cwnd:
                break
            lost.popleft()
            self._retransmit(seg, now)
        data_end = self._sbuf.end
        right = self.snd_una + self.peer_window * mss
        nxt = self.snd_nxt  # _send_new advances snd_nxt and _flight; re-read after each call
        while nxt < data_end:
            unsent = data_end - nxt
            avail = cwnd - self._flight
            if right - nxt < avail:
                avail = right - nxt
            if avail <= 0:
                break
            n = mss if mss < unsent else unsent
            if avail < n:
                if self._flight:
                    break  # silly-window avoidance: wait for a full segment's room
                n = avail
            elif n < mss and self.snd_una != nxt and not self.nodelay and not self._force_flush:
                # Nagle (8.9): small tail while data is unacknowledged
                if self._nagle_at is None:
                    self._nagle_at = now + self.cfg.nagle_timeout
                break
            self._send_new(n, now)
            nxt = self.snd_nxt
        if self.snd_nxt >= data_end:
            self._nagle_at = None
        if self._fin_pos is not None and not self._fin_sent and self.snd_nxt == self._fin_pos:
            self._fin_sent = True
            flags = _FIN | _ACK if (self.cfg.fin_has_ack or self._peer_fin_seen) else _FIN
            self._wire(flags, self._fin_pos)
            self._segs.append([self._fin_pos, self._fin_pos + 1, now, 0, False, False])
            self.snd_nxt = self._fin_pos + 1
            self._flight += 1
            self._trace("fin_sent", seq=self._fin_pos)
        if self._segs:
            if self._rto_at is None and self._persist_at is None:
                self._rto_at = now + self.rtt.rto
        elif self.snd_nxt < data_end and self.snd_nxt >= right and self._persist_at is None:
            self._persist_at = now + self._persist_backoff  # zero window: persist mode (8.8.1)
            self._trace("persist_enter")

    def _send_new(self, n: int, now: float) -> None:
        seq = self.snd_nxt
        payload = self._sbuf.read(seq, n)
        if payload[:4] == SACK_MAGIC and n > 1 and self.cfg.split_sack_lookalike:
            n = 1  # E-SACK-1: never emit a data segment a Go receiver would take for SACK
            payload = payload[:1]
        self._wire(_ACK, seq, payload)
        self._segs.append([seq, seq + n, now, 0, False, False])
        self.snd_nxt = seq + n
        self._flight += n
        self._last_data = now
        if self._ep.tracer is not None:
            self._trace("data_sent", seq=seq, len=n)

    def _retransmit(self, seg: list[Any], now: float) -> None:
        s, e = seg[_S], seg[_E]
        seg[_LOST] = False
        seg[_RX] += 1
        seg[_T] = now
        self.retransmits += 1
        self._flight += e - s
        self._resend(seg)
        self._trace("retransmit", seq=s, len=e - s, attempt=seg[_RX])

    def _resend(self, seg: list[Any]) -> None:
        s, e = seg[_S], seg[_E]
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
            self._on_rst(pkt)
            return
        if flags & _SYN:
            if flags & _ACK:
                self._on_syn_ack(pkt, now)
            else:
                self._on_syn(pkt)
            return
        st = self.state
        if st is not _ESTABLISHED:
            if st is State.SYN_SENT:
                return
            if st is State.SYN_RECEIVED:
                if not flags & _ACK or pkt.ack != (self.iss + 1) & MASK:
                    return
                self._go(Input.RECV_HANDSHAKE_ACK)
                self._established(now, pkt.window, sample=self._syn_tx == 1)
        payload = pkt.payload
        sack: list[tuple[int, int]] | None = None
        if flags & _ACK:
            if payload and flags == _ACK and payload[:4] == SACK_MAGIC:
                sack = self._parse_sack(payload)
                if sack is not None:
                    payload = b""
            if not self._on_ack(pkt, sack, payload, now):
                return
        if payload:
            self._on_data(pkt.seq, payload, now)
        if flags & _FIN:
            self._on_fin(pkt.seq + len(payload), now)
        st = self.state
        if st is _CLOSED:
            return
        if st is _ESTABLISHED or st in _DATA_STATES:
            self._output(now)
            self._force_flush = False
        if self._ack_now:
            self._send_ack()
        elif self._ack_pending and self._delack_at is None:
            self._delack_at = now + self.cfg.delayed_ack_timeout

    def _on_syn(self, pkt: Packet) -> None:
        if self.state is State.SYN_RECEIVED:
            if pkt.seq == self.irs:
                self._go(Input.RECV_SYN)
                self._wire(_SYNACK, 0)  # duplicate SYN: the SYN-ACK was lost
            return
        if next_state(self.state, Input.RECV_SYN) is not None:
            self._go(Input.RECV_SYN)
            self._ack_now = True
            self._send_ack()

    def _on_syn_ack(self, pkt: Packet, now: float) -> None:
        st = self.state
        if st is State.SYN_SENT:
            if pkt.ack != (self.iss + 1) & MASK:
                self._ep._reply_rst(pkt)
                return
            self._go(Input.RECV_SYN_ACK)
            self.irs = pkt.seq
            self._rx.rcv_nxt = 1
            self._established(now, pkt.window, sample=self._syn_tx == 1)
            self._send_ack()
            self._output(now)
        elif next_state(st, Input.RECV_SYN_ACK) is not None and pkt.seq == self.irs:
            self._go(Input.RECV_SYN_ACK)
            self._send_ack()  # our handshake ACK was lost

    def _established(self, now: float, window: int, sample: bool) -> None:
        if sample:
            self.rtt.sample(now - self._syn_time)
        self.snd_una = 1
        self._rto_at = None
        self._set_peer_window(window)
        self._last_data = now
        self.established_at = now
        self._ep._events.append(Connected(self.id, self.remote, self.local_port))
        self._ep._on_established(self)
        if self._fin_pos is not None:  # close() was called during the handshake
            self._go(Input.APP_CLOSE)

    def _on_rst(self, pkt: Packet) -> None:
        st = self.state
        if self.cfg.rst_requires_in_window:
            if st is State.SYN_SENT:
                if pkt.ack != (self.iss + 1) & MASK:
                    self._trace("drop", reason="rst_bad_ack")
                    return
            else:
                d = ((pkt.seq - self.irs - self._rx.rcv_nxt + _HALF) & MASK) - _HALF
                if not 0 <= d <= max(self._cap - self.recv_unread, 1):
                    self._trace("drop", reason="rst_out_of_window")
                    return
        row = next_state(st, Input.RECV_RST)
        if row is None:
            return
        action = self._go(Input.RECV_RST)
        if action == "report_reset":
            self._ep._events.append(Reset(self.id))
            self._report_closed(CloseReason.RESET)
        else:
            self._report_closed(self._close_reason)
        self._finish()

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
            self._trace("drop", reason="ack_of_unsent_data", ack=ack)
            self._ack_now = True
            self._send_ack()
            return False
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
            for seg in self._segs:  # resend refused probe bytes now and flush what waited
                if not seg[_SACKED] and not seg[_LOST] and seg[_S] >= ack:
                    seg[_LOST] = True
                    self._flight -= seg[_E] - seg[_S]
                    self._lost.append(seg)
            self._force_flush = True
        if sack:
            self._apply_sack(sack)
            if self._recover is None and ack == una and self._sacked_bytes >= self.cfg.dupack_threshold * self.mss:
                # RFC 6675 loss detection: dupack_threshold segments SACKed above the hole.  Also works with peers
                # whose SACK-bearing ACKs do not count as duplicates (go-interop, E-SES-6).
                self._enter_recovery(now)
        if ack > una:
            self._ack_advanced(ack, now)
        elif (
            ack == una
            and self._segs
            and not data
            and not pkt.flags & _FIN
            and (sack is None or self.cfg.sack_acks_count_as_dup)
            and (sack is not None or self.peer_window == old_window)
        ):
            self._dupack(now)
        return True

    def _ack_advanced(self, ack: int, now: float) -> None:
        segs = self._segs
        acked = ack - self.snd_una
        sample_t: float | None = None
        flight = self._flight
        while segs and segs[0][_E] <= ack:
            seg = segs.popleft()
            if seg[_SACKED]:
                self._sacked_bytes -= seg[_E] - seg[_S]
            elif seg[_LOST]:
                seg[_LOST] = False
            else:
                flight -= seg[_E] - seg[_S]
            if seg[_RX] == 0:
                sample_t = seg[_T]
        self._flight = flight
        if segs and segs[0][_S] < ack:  # partial acknowledgement of a segment
            seg = segs[0]
            part = ack - seg[_S]
            if not seg[_SACKED] and not seg[_LOST]:
                self._flight -= part
            seg[_S] = ack
        self.snd_una = ack
        self._sbuf.release(ack)
        if sample_t is not None:
            self.rtt.sample(now - sample_t)
        self._dupacks = 0
        if self._recover is not None:
            if ack >= self._recover:
                self._recover = None
                self.cc.on_recovery_exit()
                self._trace("recovery_exit")
            else:
                self._mark_holes()  # NewReno partial ACK: the next hole is lost too
        else:
            self.cc.on_ack(acked, self._flight)
        self._rto_at = now + self.rtt.rto if segs else None
        if self.snd_nxt == self._sbuf.end:
            self._nagle_at = None
        if self._ep.tracer is not None:
            self._trace("ack", acked=acked)
        if self._fin_sent and self._fin_pos is not None and ack > self._fin_pos:
            self._on_fin_acked()

    def _apply_sack(self, blocks: list[tuple[int, int]]) -> None:
        """Mark the segments that lie wholly inside one SACK block.

        Segments inside a block of the previous SACK are marked already (marks are never undone while a
        segment is held), so for each block the walk starts past the part a previous block covered:
        during recovery each ACK looks only at the segments its blocks newly cover.
        """
        segs = self._segs
        if segs and blocks:
            prev = self._prev_sack
            flight, sacked = self._flight, self._sacked_bytes
            for ls, rs in blocks:
                covered = ls
                for pl, pr in prev:
                    if pl <= ls < pr and pr > covered:
                        covered = pr  # segments in [ls, pr) were inside that earlier block
                i = bisect_left(segs, ls, key=_seg_start)
                if covered > ls:
                    i = max(i, bisect_right(segs, covered, key=_seg_end))
                for seg in islice(segs, i, None):
                    e = seg[_E]
                    if e > rs:
                        break  # segments are sorted and disjoint: none further can be inside
                    if not seg[_SACKED]:
                        seg[_SACKED] = True
                        sacked += e - seg[_S]
                        if seg[_LOST]:
                            seg[_LOST] = False
                        else:
                            flight -= e - seg[_S]
            self._flight, self._sacked_bytes = flight, sacked
            self._prev_sack = blocks
        if self._recover is not None:
            self._mark_holes()

    def _mark_holes(self) -> None:
        """Mark as lost the un-SACKed segments below the highest SACKed byte (or the first one)."""
        segs = self._segs
        if not segs:
            return
        high = -1
        for seg in reversed(segs):
            if seg[_SACKED]:
                high = seg[_E]
                break
        now = self._now
        # a hole already retransmitted is sent again only if that copy looks lost too (an RTO without news)
        stale = now - self.rtt.rto
        first = segs[0]
        if high < 0:  # nothing SACKed: only the first segment can be a hole
            if not first[_LOST] and first[_T] < now and (first[_RX] == 0 or first[_T] <= stale):
                self._mark_lost(first)
            return
        # Walk the gaps below `high` only: segments wholly inside a block of the last SACK are SACKed
        # (see _apply_sack), so each block is stepped over by bisection.  The sentinel block at `high`
        # ends the last gap.
        pos = 0
        for ls, rs in [*sorted(self._prev_sack), (high, high)]:
            stop = bisect_left(segs, ls if ls < high else high, key=_seg_start)
            if stop > pos:
                for seg in islice(segs, pos, stop):
                    if seg[_SACKED] or seg[_LOST]:
                        continue
                    t = seg[_T]
                    if t < now and (seg[_RX] == 0 or (seg is first and t <= stale)):
                        self._mark_lost(seg)
            pos = max(pos, stop, bisect_right(segs, rs, key=_seg_end))

    def _mark_lost(self, seg: list[Any]) -> None:
        seg[_LOST] = True
        self._flight -= seg[_E] - seg[_S]
        self._lost.append(seg)

    def _dupack(self, now: float) -> None:
        self._dupacks += 1
        if self._recover is not None:
            self.cc.on_dupack_in_recovery()
            return
        if self._dupacks == self.cfg.dupack_threshold:
            self._enter_recovery(now)

    def _enter_recovery(self, now: float) -> None:
        """Fast retransmit (8.7): halve via the controller, mark the holes, resend the first one now."""
        self._recover = self.snd_nxt
        self.cc.on_fast_retransmit(self._flight)
        self.fast_recoveries += 1
        self._trace("loss_fast_retransmit")
        self._mark_holes()
        lost = self._lost
        while lost and not lost[0][_LOST]:
            lost.popleft()
        if lost:  # the first retransmission goes at once, whatever the window (RFC 5681 3.2)
            self._retransmit(lost.popleft(), now)

    def _on_data(self, seq: int, payload: bytes, now: float) -> None:
        st = self.state
        if st is not _ESTABLISHED and st not in _RECV_STATES:
            return
        rx = self._rx
        nxt = rx.rcv_nxt
        start = nxt + (((seq - self.irs - nxt + _HALF) & MASK) - _HALF)
        n = len(payload)
        end = start + n
        if start == nxt and end - nxt <= self._cap - self.recv_unread and self._peer_fin is None and not rx.has_gap:
            # fast path: the next bytes, within the window, nothing held out of order, no FIN to clip at --
            # the general path below does exactly this, with more tests
            rx.rcv_nxt = end
            self.recv_unread += n
            self._ep._events.append(DataReceived(self.id, payload))
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
        if self.cfg.max_ooo_segments is not None and start > nxt and rx.ooo_segments >= self.cfg.max_ooo_segments:
            self._ack_now = True
            return
        had_gap = rx.has_gap
        data = rx.add(start, payload)
        if data:
            self.recv_unread += len(data)
            self._ep._events.append(DataReceived(self.id, data))
            self._last_data = now
        if had_gap or rx.has_gap or start < nxt:
            self._ack_now = True  # out of order or gap filled: ACK now, with SACK (8.11)
        else:
            self._ack_pending += 1
            if self._ack_pending >= self.cfg.delayed_ack_segments:
                self._ack_now = True
        if self._peer_fin is not None and rx.rcv_nxt == self._peer_fin:
            self._consume_fin(now)

    def _on_fin(self, seq: int, now: float) -> None:
        st = self.state
        if st is not _ESTABLISHED and st not in _RECV_STATES:
            return
        nxt = self._rx.rcv_nxt
        pos = nxt + (((seq - self.irs - nxt + _HALF) & MASK) - _HALF)
        self._ack_now = True
        if self._peer_fin_seen:
            return  # retransmitted FIN: re-ACK
        if pos < nxt or pos > nxt + self._cap:
            return
        self._peer_fin = pos
        if pos == nxt:
            self._consume_fin(now)

    def _consume_fin(self, now: float) -> None:
        self._peer_fin_seen = True
        self._rx.rcv_nxt += 1
        self._ack_now = True
        self._ep._events.append(StreamEnded(self.id))
        action = self._go(Input.RECV_FIN)
        self._trace("peer_fin")
        if self.state is State.TIME_WAIT:
            self._report_closed(self._close_reason)
        if action == "ack_fin_report_end" and self.state is State.CLOSE_WAIT and self.cfg.auto_close_on_peer_fin:
            self._go(Input.APP_CLOSE)
            self._queue_fin(now)

    def _on_fin_acked(self) -> None:
        action = self._go(Input.RECV_FIN_ACK)
        if action == "start_time_wait":
            self._tw_at = self._now + self.cfg.time_wait
            self._rto_at = self._persist_at = self._nagle_at = None
            if self._peer_fin_seen:
                self._report_closed(self._close_reason)
            self._ep._on_time_wait(self)
        else:  # LAST_ACK -> CLOSED
            self._report_closed(self._close_reason)
            self._finish()

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
            self._go(Input.TIMEOUT_TIME_WAIT)
            self._finish()
            return
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            if st is State.SYN_SENT or st is State.SYN_RECEIVED:
                if self._syn_tx >= len(self.cfg.syn_schedule):
                    self._go(Input.TIMEOUT_HANDSHAKE)
                    self._trace("handshake_timeout")
                    self._report_closed(CloseReason.CONNECT_TIMEOUT)
                    self._finish()
                    return
                self._send_syn()
            elif self._segs and not self._on_rto(now):
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
            if now >= self._last_data + self.cfg.idle_timeout and (self._segs or self.unsent):
                self._last_data = now  # data waiting (e.g. zero window) is not idleness
            if now >= self._last_data + self.cfg.idle_timeout:
                self._close_reason = CloseReason.IDLE
                self._trace("idle_timeout")
                self._go(Input.TIMEOUT_IDLE)
                self._queue_fin(now)
            elif now >= self._last_tx + self.cfg.keepalive_interval:
                self._trace("keepalive")
                self._send_ack()

    def _on_rto(self, now: float) -> bool:
        segs = self._segs
        if self.peer_window == 0 and self.cfg.zero_window_probe_bytes:
            # the peer closed its window under data in flight: probe (persist) instead of counting retransmissions
            self._persist_at = now + self._persist_backoff
            self._trace("persist_enter")
            return True
        first = next((s for s in segs if not s[_SACKED]), segs[0])
        if first[_RX] >= self.cfg.max_retransmits:
            self._go(Input.TIMEOUT_RETRANSMIT)
            self._trace("retransmit_limit")
            self._send_rst()
            self._report_closed(CloseReason.TIMEOUT)
            self._finish()
            return False
        self.cc.on_rto(self._flight)
        self.rto_count += 1
        self.rtt.backoff()
        self._trace("loss_rto")
        self._recover = None
        self._dupacks = 0
        self._lost.clear()
        for seg in segs:  # go back: everything not SACKed is presumed lost
            if not seg[_SACKED]:
                if not seg[_LOST]:
                    self._flight -= seg[_E] - seg[_S]
                seg[_LOST] = True
                self._lost.append(seg)
        self._output(now)
        self._rto_at = now + self.rtt.rto
        return True

    def _probe(self, now: float) -> None:
        """Zero-window probe (8.8.1): 1 byte beyond the window (draft) or an empty ACK (Go)."""
        self._trace("zero_window_probe")
        data_end = self._sbuf.end
        if self.cfg.zero_window_probe_bytes and self.snd_nxt < data_end and not self._segs:
            self._send_new(1, now)
        elif self._segs:
            self._resend(self._segs[0])
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
