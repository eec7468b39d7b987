"""Hand-driven remote peer for exact wire-level tests of :class:`StreamEndpoint` (not a test module)."""

from __future__ import annotations

from typing import Any

from pilot_proto.stream import State, StreamConfig, StreamEndpoint
from pilot_proto.stream.events import Event
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
