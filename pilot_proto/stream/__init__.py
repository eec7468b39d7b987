"""Session layer of Pilot Protocol: Stream connections, Datagram and Control ping (draft 6.3, 8, 12).

Public API (stable; other modules and tests code against it)::

    from pilot_proto.stream import StreamConfig, StreamEndpoint, events
    cfg = StreamConfig.for_profile(Profile.DRAFT, mss=4096, nodelay=False)   # every timer/constant overridable
    ep = StreamEndpoint(local_addr, config=cfg, isn_source=None, tracer=None)

    ep.listen(port)                                   # auto-accepts SYNs to that port
    cid = ep.connect(SocketAddr(addr, port), now)     # -> int connection id (SYN_SENT)
    ep.send(cid, data, now); ep.close(cid, now); ep.abort(cid, now); ep.set_nodelay(cid, True)
    ep.send_datagram(SocketAddr(addr, port), data, now, src_port=None)
    seq = ep.ping(addr, now, payload=b"")             # Control ping to port 0; answer -> PingReply
    ep.receive_packet(pkt, now)                       # a decoded Packet (dst must be local_addr)
    ep.receive_bytes(raw, now)                        # decodes; raises DecodeError on bad bytes
    ep.packets_to_send() -> list[Packet]              # drains
    ep.next_event() -> Event | None                   # h11-style pull; ep.events() drains all
    ep.get_timer() -> float | None; ep.handle_timer(now)   # the deadline may be early (lazy timer heap):
                                                      # handle_timer then does nothing visible; never late
    ep.connection(cid) -> Connection                  # read-only: state, cwnd, ssthresh, srtt, rto,
                                                      # bytes_in_flight, snd_una, snd_nxt, rcv_nxt,
                                                      # send_buffer_size, recv_unread, ooo_bytes, peer_window
    ep.find(SocketAddr, local_port) -> Connection | None; ep.active_count; ep.dropped (reason -> count)

Events (:mod:`pilot_proto.stream.events`): ``ConnectionRequested(conn_id, remote, local_port)`` when a SYN
reaches a listener, ``Connected(conn_id, remote, local_port)`` on ESTABLISHED (both sides),
``DataReceived(conn_id, data)``, ``StreamEnded(conn_id)`` on peer FIN, ``Reset(conn_id)``,
``Closed(conn_id, reason: CloseReason)`` (always the last event of a connection), ``DatagramReceived``,
``PingReply(src, seq, payload, rtt)``, ``PingRequestAnswered``, ``ControlReceived``.
Popping a ``DataReceived`` frees receive window; unread data keeps the advertised window closed.

Tracer: ``tracer(record: dict)`` is called with ``{"time", "name", "conn", "state", "cwnd", "ssthresh",
"srtt", "rto", "bytes_in_flight", "snd_una", "snd_nxt", "rcv_nxt", "peer_window", ...}`` at
``data_sent``, ``retransmit``, ``ack``, ``loss_fast_retransmit``, ``loss_rto``, ``recovery_exit``,
``state``, ``syn_sent``, ``fin_sent``, ``keepalive``, ``zero_window_probe``, ``persist_enter/exit``,
``idle_timeout``, ``retransmit_limit`` and ``drop`` (with ``reason``; endpoint-level drops have
``conn`` = "localport>remoteport").

Modules: ``config`` (StreamConfig, every constant), ``_state`` (transition table), ``connection``,
``endpoint``, ``congestion`` (ABC + DraftAIMD / NewRenoLike), ``rto`` (RFC 6298), ``reassembly`` (receive
side), ``sendbuf`` (send side), ``sack_rule`` (E-SACK-1 classification), ``seq`` (RFC 1982), ``events``.

Sequence positions on Connection are absolute (0 = SYN, 1 = first data byte); the wire
value is ``(isn + position) mod 2**32``.  Transition table: :mod:`pilot_proto.stream._state`.
"""

from pilot_proto.stream import events
from pilot_proto.stream._state import TRANSITIONS, Input, State
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.congestion import CongestionController, DraftAIMD, NewRenoLike
from pilot_proto.stream.connection import Connection
from pilot_proto.stream.endpoint import StreamEndpoint
from pilot_proto.stream.events import CloseReason
from pilot_proto.stream.outbox import Tracer

__all__ = [
    "TRANSITIONS",
    "CloseReason",
    "CongestionController",
    "Connection",
    "DraftAIMD",
    "Input",
    "NewRenoLike",
    "State",
    "StreamConfig",
    "StreamEndpoint",
    "Tracer",
    "events",
]
