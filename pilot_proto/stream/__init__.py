"""Session layer of Pilot Protocol: Stream connections, Datagram and Control ping (draft 6.3, 8, 10.8, 12).

It speaks the one sans-IO idiom of :mod:`pilot_proto.sansio` (``StreamEndpoint`` is a
``sansio.PacketEndpoint``).  Public API (stable; other modules and tests code against it)::

    from pilot_proto.stream import StreamConfig, StreamEndpoint, events
    cfg = StreamConfig.for_profile(Profile.DRAFT, mss=4096, nodelay=False)   # every timer/constant/bound overridable
    ep = StreamEndpoint(local_addr, config=cfg, isn_source=None, tracer=None)

    ep.listen(port); ep.unlisten(port)                # a listening port auto-accepts admitted SYNs
    cid = ep.connect(SocketAddr(addr, port), now)     # -> int connection id (SYN_SENT)
    n = ep.send(cid, data, now)                       # -> bytes taken (short when the send buffer is full)
    ep.close(cid, now); ep.abort(cid, now); ep.set_nodelay(cid, True)
    ep.retain_received(cid, n); ep.release_received(cid, n, now)   # keep read-but-unprocessed bytes in the window
    ep.send_datagram(SocketAddr(addr, port), data, now, src_port=None)
    seq = ep.ping(addr, now, payload=b"")             # Control ping to port 0; answer -> PingReply
    ep.receive_packet(pkt, now) -> None               # a decoded Packet (dst must be local_addr)
    ep.receive_bytes(raw, now) -> None                # decodes; undecodable bytes -> one InputRejected
    ep.packets_to_send() -> list[Packet]              # drains
    ep.next_event() -> Event | None                   # h11-style pull; ep.events() drains all
    ep.get_timer() -> float | None; ep.handle_timer(now)   # the deadline may be early (lazy timer heap):
                                                      # handle_timer then does nothing visible; never late
    ep.connection(cid) -> Connection                  # read-only: state, cwnd, ssthresh, srtt, rto,
                                                      # bytes_in_flight, snd_una, snd_nxt, rcv_nxt, send_buffer_size,
                                                      # send_buffer_free, recv_unread, ooo_bytes, peer_window
    ep.find(SocketAddr, local_port) -> Connection | None; ep.active_count; ep.dropped (reason -> count)

Events (:mod:`pilot_proto.stream.events`, all ``sansio.Event``): ``ConnectionRequested(conn_id, remote,
local_port)`` when an admitted SYN reaches a listener, ``Connected(conn_id, remote, local_port)`` on
ESTABLISHED (both sides), ``DataReceived(conn_id, data)`` (one per segment; with
``StreamConfig.coalesce_received`` -- the daemon's default -- in-order bytes that arrive before the
application pulls join the newest one of their connection), ``StreamEnded(conn_id)`` on peer FIN,
``Writable(conn_id, free)``, ``Reset(conn_id)``, ``Closed(conn_id, reason: CloseReason)`` (always the last
event of a connection), ``DatagramReceived``, ``PingReply(src, seq, payload, rtt)``, ``PingRequestAnswered``,
``ControlReceived``, and ``sansio.InputRejected``.  ``ep.gate`` (a callable, or None) is asked first about
every packet handed in; False drops it silently (the daemon's trust gate, draft 10.7).

Bad input: every refused input is exactly one ``InputRejected(layer="stream", error=...)`` carrying the
whole typed error (code, field, rule, section, requirement, action; the reasons are listed in
:mod:`~pilot_proto.stream.rejections`); nothing raises out of a receive call and nothing changes because
of it.  ``StreamEndpoint.reject`` is the one place the error's action is carried out (``RST``: answer with
a Stream RST; ``DROP``: discard).  ``ep.dropped[reason]`` counts them, as statistics.  Only the caller's
own misuse raises :class:`~pilot_proto.errors.LocalProtocolError`.

Backpressure (draft 8.10): a connection holds at most ``StreamConfig.send_buffer_bytes`` written and
unacknowledged bytes.  ``send`` takes what fits and returns that count; after a short write, a
``Writable(conn_id, free)`` event comes once at least half the buffer is free again -- write the rest
then.  Receive side: popping ``DataReceived`` frees receive window; unread data keeps the advertised
window closed.  An application that read bytes it cannot process yet (an echo whose ``send`` was short)
calls ``retain_received`` so they keep the window closed, and ``release_received`` once it wrote them:
then the peer can push no more than the receive buffer while we cannot send.

Closing: ``auto_close_on_peer_fin`` (default) closes our side once the application has *read*
``StreamEnded`` -- after the replies it wrote for data that arrived with or before the FIN, so every
acknowledged byte is answered -- unless its last ``send`` was short (then it closes by itself).

Admission control (draft 8.1, 10.8; every bound in ``spec/bounds.md``): a SYN at a listening port
creates a connection only within ``max_connections_per_peer``, ``max_connections`` and
``max_connections_per_port``, then within the per-source SYN rate (``syn_rate_per_source`` /
``syn_burst_per_source``, the source table bounded by ``max_syn_sources``) and, only for SYNs the source
limit let through, the node-wide one (``syn_rate_global`` / ``syn_burst_global``): one source's flood
never spends the budget of another (erratum E-STR-1).  Out-of-order bytes held across all connections
are bounded by ``max_ooo_bytes_total``.

Tracer: ``tracer(record: dict)`` is called with ``{"time", "name", "conn", "state", "cwnd", "ssthresh",
"srtt", "rto", "bytes_in_flight", "snd_una", "snd_nxt", "rcv_nxt", "peer_window", ...}`` at
``data_sent``, ``retransmit``, ``ack``, ``loss_fast_retransmit``, ``loss_rto``, ``recovery_exit``,
``state`` (with ``old``, ``new``, ``input``, ``action``), ``syn_sent``, ``fin_sent``, ``keepalive``,
``zero_window_probe``, ``persist_enter/exit``, ``idle_timeout``, ``retransmit_limit`` and ``drop`` (with
``reason``; endpoint-level drops have ``conn`` = "localport>remoteport").

Modules: ``config`` (StreamConfig, every constant), ``_state`` (transition table: the code runs its rows,
``Connection._go``), ``connection``, ``endpoint``, ``recovery`` (sent-segment scoreboard, SACK, fast
recovery, RTO go-back), ``admission`` (SYN rate limits), ``rejections`` (refusal catalogue), ``outbox``
(the connection -> endpoint channel), ``congestion`` (ABC + DraftAIMD / NewRenoLike), ``rto`` (RFC 6298),
``reassembly`` (receive side), ``sendbuf`` (send side), ``sack_rule`` (E-SACK-1 classification), ``seq``
(RFC 1982), ``events``.

Sequence positions on Connection are absolute (0 = SYN, 1 = first data byte); the wire
value is ``(isn + position) mod 2**32``.  Transition table: :mod:`pilot_proto.stream._state`.
"""

from pilot_proto.stream import events
from pilot_proto.stream._state import TRANSITIONS, Input, State
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.congestion import CongestionController, DraftAIMD, NewRenoLike
from pilot_proto.stream.connection import Connection
from pilot_proto.stream.endpoint import StreamEndpoint
from pilot_proto.stream.events import CloseReason, Writable
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
    "Writable",
    "events",
]
