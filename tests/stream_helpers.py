"""Hand-driven remote peer for exact wire-level tests of :class:`StreamEndpoint` (not a test module)."""

from __future__ import annotations

from typing import Any

from pilot_proto.sansio import InputRejected
from pilot_proto.stream import State, StreamConfig, StreamEndpoint
from pilot_proto.stream.events import DataReceived, Event, StreamEnded, Writable
from pilot_proto.wire import Addr, Flags, Packet, PacketProtocol, SocketAddr

LOCAL = Addr(0, 1)
REMOTE = Addr(0, 2)
SYN, ACK, FIN, RST = int(Flags.SYN), int(Flags.ACK), int(Flags.FIN), int(Flags.RST)
M = 0xFFFFFFFF


class RawPeer:
    """A scripted remote at ``REMOTE:port`` talking to endpoint ``ep`` (ours at ``LOCAL``)."""

    def __init__(self, ep: StreamEndpoint, port: int = 5000, isn: int = 7000, local_port: int = 1000) -> None:
        self.ep = ep
        self.port = port
        self.isn = isn
        self.local_port = local_port
        self.seq = isn  # next sequence number the peer will use
        self.now = 0.0
        self.events: list[Event] = []

    def packet(
        self,
        flags: int,
        seq: int | None = None,
        ack: int = 0,
        window: int = 512,
        payload: bytes = b"",
        version: int = 1,
        protocol: int = PacketProtocol.STREAM,
        dst_port: int | None = None,
    ) -> Packet:
        return Packet(flags, int(protocol), REMOTE, LOCAL, self.port,
                      self.local_port if dst_port is None else dst_port,
                      (self.seq if seq is None else seq) & M, ack & M, window, payload, version)  # fmt: skip

    def feed(self, pkt: Packet, now: float | None = None) -> list[Packet]:
        if now is not None:
            self.now = now
        self.ep.receive_packet(pkt, self.now)
        self.events += self.ep.events()
        return self.ep.packets_to_send()

    def out(self) -> list[Packet]:
        return self.ep.packets_to_send()

    def advance(self, to: float) -> list[Packet]:
        """Fire every timer up to ``to``; return everything sent meanwhile."""
        sent: list[Packet] = []
        while True:
            t = self.ep.get_timer()
            if t is None or t > to:
                break
            self.now = max(self.now, t)
            self.ep.handle_timer(self.now)
            sent += self.ep.packets_to_send()
            self.events += self.ep.events()
        self.now = to
        return sent


def accepted(cfg: StreamConfig | None = None, isn: int = 7000, our_isn: int = 100, window: int = 512,
             **kw: Any) -> tuple[StreamEndpoint, RawPeer, int]:  # fmt: skip
    """Our endpoint listens on 1000 and accepts the peer; returns (ep, peer, conn_id) in ESTABLISHED."""
    ep = StreamEndpoint(LOCAL, config=cfg or StreamConfig.for_profile(**kw), isn_source=lambda: our_isn)
    ep.listen(1000)
    peer = RawPeer(ep, isn=isn)
    out = peer.feed(peer.packet(SYN, window=window))
    assert len(out) == 1 and out[0].flags == SYN | ACK
    peer.seq = isn + 1
    peer.feed(peer.packet(ACK, ack=our_isn + 1, window=window))
    conn = next(iter(ep.connections()))
    assert conn.state is State.ESTABLISHED
    return ep, peer, conn.id


def accepted_peers(cfg: StreamConfig, ports: tuple[int, ...] = (5000, 5001)) -> tuple[StreamEndpoint, list[RawPeer]]:
    """Our endpoint listening on 1000 with one peer connected from each remote port in ``ports`` (all ISNs 0)."""
    ep = StreamEndpoint(LOCAL, config=cfg, isn_source=lambda: 0)
    ep.listen(1000)
    peers = []
    for port in ports:
        peer = RawPeer(ep, port=port, isn=0)
        peer.feed(peer.packet(SYN, seq=0))
        peer.feed(peer.packet(ACK, seq=1, ack=1))
        peers.append(peer)
    return ep, peers


def dialed(cfg: StreamConfig | None = None, isn: int = 7000, our_isn: int = 100, window: int = 512,
           **kw: Any) -> tuple[StreamEndpoint, RawPeer, int]:  # fmt: skip
    """We dial the peer (remote port 1000, our ephemeral port); returns (ep, peer, conn_id) ESTABLISHED."""
    ep = StreamEndpoint(LOCAL, config=cfg or StreamConfig.for_profile(**kw), isn_source=lambda: our_isn)
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    syn = ep.packets_to_send()[0]
    peer = RawPeer(ep, port=1000, isn=isn, local_port=syn.src_port)
    peer.feed(peer.packet(SYN | ACK, ack=our_isn + 1, window=window))
    peer.seq = isn + 1
    assert ep.connection(cid).state is State.ESTABLISHED
    return ep, peer, cid


class Echo:
    """An echo service on ``ep`` that honours backpressure, as a driver would write it.

    A short ``send`` keeps the rest and ``retain_received``s it (so the receive window stays closed by
    what it could not write yet); ``Writable`` writes more and ``release_received``s that much.  It closes
    once the peer ended and everything was written (the endpoint auto-closes when nothing is pending).
    """

    def __init__(self, ep: StreamEndpoint) -> None:
        self.ep = ep
        self.pending: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.rejected: list[InputRejected] = []
        self.received: dict[int, int] = {}  # bytes read per connection
        self.max_pending = 0

    def pump(self, now: float) -> None:
        ep = self.ep
        while (ev := ep.next_event()) is not None:
            if isinstance(ev, DataReceived):
                cid, data = ev.conn_id, ev.data
                self.received[cid] = self.received.get(cid, 0) + len(data)
                if cid in self.pending:
                    self.pending[cid] += data
                    ep.retain_received(cid, len(data))
                else:
                    n = ep.send(cid, data, now)
                    if n < len(data):
                        self.pending[cid] = data[n:]
                        ep.retain_received(cid, len(data) - n)
            elif isinstance(ev, Writable):
                self._flush(ev.conn_id, now)
            elif isinstance(ev, StreamEnded):
                self.ended.add(ev.conn_id)
                if ev.conn_id not in self.pending and ep.connection(ev.conn_id).state is State.CLOSE_WAIT:
                    ep.close(ev.conn_id, now)
            elif isinstance(ev, InputRejected):
                self.rejected.append(ev)
        self.max_pending = max([self.max_pending, *map(len, self.pending.values())])

    def _flush(self, cid: int, now: float) -> None:
        data = self.pending.get(cid)
        if data is None:
            return
        n = self.ep.send(cid, data, now)
        self.ep.release_received(cid, n, now)
        if n == len(data):
            del self.pending[cid]
            if cid in self.ended:
                self.ep.close(cid, now)
        else:
            self.pending[cid] = data[n:]
