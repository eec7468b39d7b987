"""A sans-IO Pilot node: the tunnel layer (draft 7, 10, 11) under the session layer (draft 5, 6, 8).

One :class:`Node` owns a :class:`~pilot_proto.tunnel.TunnelEndpoint` for its node ID and a
:class:`~pilot_proto.stream.StreamEndpoint` for its virtual address, and glues them:

* inbound: ``receive_datagram(data, addr, now)`` feeds the tunnel; each decrypted inner packet
  goes to the stream endpoint, the other tunnel events (``KeyEstablished``, ``Rekeyed``,
  ``InputRejected``, ``KeyExchangeFailed``) are surfaced to the application;
* outbound: every packet the stream endpoint emits is routed by its destination node ID to that
  peer's tunnel (PILS, or a key exchange first, TUN-012) and leaves as a
  :class:`~pilot_proto.sansio.Datagram` via :meth:`Node.datagrams_to_send`;
* time: :meth:`Node.get_timer` is the earlier deadline of both layers, :meth:`Node.handle_timer`
  fires both.

It speaks the idiom of :mod:`pilot_proto.sansio` (inputs return ``None``, outputs and events --
all :class:`~pilot_proto.sansio.Event` subclasses -- are pulled).  No socket, clock, thread or RNG
lives here (randomness is the injected ``rng``).  Paths are direct only: each peer has one underlay
address given by :meth:`Node.add_peer` (or learned from its authenticated frames); NAT traversal
(:mod:`pilot_proto.nat`) is not wired in.  Usage::

    node = Node(7, os.urandom, profile=Profile.DRAFT)
    node.add_peer(9, ("127.0.0.1", 4000))
    cid = node.connect(SocketAddr(Addr(0, 9), 7), now)
    for data, addr in node.datagrams_to_send(): sock.sendto(data, addr)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping

from pilot_proto.errors import Action, ErrorCode, PilotError, RemoteProtocolError
from pilot_proto.profile import Profile
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.stream import StreamConfig, StreamEndpoint, Tracer
from pilot_proto.tunnel import (
    Identity,
    KeyEstablished,
    KeyExchangeFailed,
    PacketReceived,
    Rekeyed,
    TunnelConfig,
    TunnelEndpoint,
)
from pilot_proto.wire.address import Addr, SocketAddr

__all__ = ["Node", "NodeEvent", "TunnelNotice"]

#: Tunnel events a node surfaces (decrypted packets are consumed by the session layer instead).
TunnelNotice = KeyEstablished | Rekeyed | InputRejected | KeyExchangeFailed
#: Everything :meth:`Node.next_event` returns: tunnel notices and session events, all :class:`Event` subclasses.
NodeEvent = Event


class Node:
    """One Pilot node: a tunnel endpoint and a stream endpoint joined by node-ID routing."""

    def __init__(
        self,
        node_id: int,
        rng: Callable[[int], bytes],
        *,
        network: int = 0,
        profile: Profile | str = Profile.DRAFT,
        identity: Identity | None = None,
        tunnel_config: TunnelConfig | None = None,
        stream_config: StreamConfig | None = None,
        peer_keys: Callable[[int], bytes | None] | Mapping[int, bytes] | None = None,
        isn_source: Callable[[], int] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        prof = Profile.parse(profile)
        self.profile = prof
        self.addr = Addr(network, node_id)
        self.tunnel = TunnelEndpoint(
            node_id,
            rng,
            identity=identity,
            config=tunnel_config or TunnelConfig.for_profile(prof),
            peer_keys=peer_keys,
        )
        self.stream = StreamEndpoint(
            self.addr, config=stream_config or StreamConfig.for_profile(prof), isn_source=isn_source, tracer=tracer
        )
        self._notices: deque[Event] = deque()
        self._queued_rejections = 0
        self._max_rejections = self.tunnel.config.max_queued_rejections
        #: Networks each peer may claim as inner source network (default: ours).
        self._networks: dict[int, frozenset[int]] = {}
        self._own_networks = frozenset({network})
        self._now = 0.0
        #: Outgoing packets the node could not route (reason -> count), e.g. no underlay address for the node.
        self.dropped: dict[str, int] = {}
        #: Decrypted inner packets handed to the session layer.
        self.packets_in = 0
        #: Inner packets handed to the tunnel for sending.
        self.packets_out = 0

    @property
    def node_id(self) -> int:
        return self.addr.node

    # -- configuration ---------------------------------------------------------------------------------

    def add_peer(
        self,
        node_id: int,
        udp_addr: Address,
        ed25519_public: bytes | None = None,
        *,
        networks: Iterable[int] | None = None,
    ) -> None:
        """Record the direct underlay address of ``node_id`` and, if given, the Ed25519 key its PILA must carry.

        ``networks``: the networks the registry lists ``node_id`` in; inner packets from it must carry one of
        them as source network (default: this node's own network).
        """
        if ed25519_public is not None:
            self.tunnel.set_peer_key(node_id, ed25519_public)
        self.tunnel.add_peer(node_id, udp_addr)
        if networks is not None:
            self._networks[node_id] = frozenset(networks)

    # -- inputs ----------------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """One UDP datagram in.  A bad frame becomes one ``InputRejected`` notice and changes nothing (CONS-019)."""
        self.receive_datagrams((data,), addr, now)

    def receive_datagrams(self, datagrams: Iterable[bytes], addr: Address, now: float) -> None:
        """Several UDP datagrams from ``addr`` at ``now`` (e.g. one GRO read): exactly :meth:`receive_datagram` for
        each in turn, with what they share looked up once.  Should one raise (a bug, never bad input), the datagrams
        after it are still in ``datagrams`` when it is an iterator: the caller may go on with them."""
        self._now = now
        tunnel = self.tunnel
        fast = tunnel.receive_packet_fast
        stream = self.stream
        deliver = stream.receive_packet
        outgoing = stream.outbox.packets
        networks = self._networks
        sender, peer, allowed = b"", -1, self._own_networks  # the previous datagram's tunnel peer and its networks
        for data in datagrams:
            if tunnel._events:  # keep the order of what the tunnel already reported
                tunnel.receive_datagram(data, addr, now)
                pkt = None
            else:  # the steady state: a PILS frame under the live session comes back as its packet, without an event
                pkt = fast(data, addr, now)
            if pkt is not None:  # what _drain_tunnel does with a PacketReceived
                if data[4:8] != sender:  # the datagrams of one read are mostly from one peer
                    sender = data[4:8]
                    peer = int.from_bytes(sender, "big")
                    allowed = networks.get(peer, self._own_networks)
                if pkt.src.network in allowed:
                    self.packets_in += 1
                    deliver(pkt, now)
                else:
                    self._reject(_foreign_network(pkt.src.network, peer), addr, len(data), peer)
            if tunnel._events:
                self._drain_tunnel(now, len(data))
            if outgoing:  # _pump's own first test, without its frame (most data segments send nothing)
                self._pump(now)

    def handle_timer(self, now: float) -> None:
        """Fire whatever is due in either layer (key-exchange retries, stream timers)."""
        self._now = now
        self.tunnel.handle_timer(now)
        self._drain_tunnel(now)
        self.stream.handle_timer(now)
        self._pump(now)

    # -- outputs ---------------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        """Drain the datagrams to send, including packets queued by event pops since the last input."""
        self._pump(self._now)
        return self.tunnel.datagrams_to_send()

    def get_timer(self) -> float | None:
        """Earliest deadline of both layers (may be early; never late)."""
        a, b = self.tunnel.get_timer(), self.stream.get_timer()
        if a is None:
            return b
        return a if b is None else min(a, b)

    def next_event(self) -> Event | None:
        """Tunnel notices first, then session events (popping ``DataReceived`` frees receive window)."""
        if self._notices:
            ev = self._notices.popleft()
            if type(ev) is InputRejected:
                self._queued_rejections -= 1
            return ev
        return self.stream.next_event()

    def events(self) -> list[Event]:
        """Drain every pending event (convenience over :meth:`next_event`)."""
        out: list[Event] = []
        while (ev := self.next_event()) is not None:
            out.append(ev)
        return out

    # -- application API (delegates to the stream endpoint) --------------------------------------------

    def listen(self, port: int) -> None:
        self.stream.listen(port)

    def connect(self, remote: SocketAddr, now: float, local_port: int | None = None) -> int:
        self._now = now
        cid = self.stream.connect(remote, now, local_port)
        self._pump(now)
        return cid

    def send(self, conn_id: int, data: bytes | bytearray | memoryview, now: float) -> None:
        self._now = now
        self.stream.send(conn_id, data, now)
        self._pump(now)

    def close(self, conn_id: int, now: float) -> None:
        self._now = now
        self.stream.close(conn_id, now)
        self._pump(now)

    def abort(self, conn_id: int, now: float) -> None:
        self._now = now
        self.stream.abort(conn_id, now)
        self._pump(now)

    def send_datagram(self, dst: SocketAddr, data: bytes, now: float, src_port: int | None = None) -> None:
        self._now = now
        self.stream.send_datagram(dst, data, now, src_port)
        self._pump(now)

    def ping(self, dst: Addr, now: float, payload: bytes = b"") -> int:
        """Control ping to port 0 of ``dst``; a ``PingReply`` event follows."""
        self._now = now
        seq = self.stream.ping(dst, now, payload)
        self._pump(now)
        return seq

    # -- internals -------------------------------------------------------------------------------------

    def _drain_tunnel(self, now: float, size: int = 0) -> None:
        """Decrypted packets go to the session layer; every other tunnel event is surfaced as a notice.

        An inner packet whose source network is not one its tunnel peer may claim is refused here (the
        tunnel checked the node ID, SEC-027; the network is the node's business, issue 9).
        """
        tunnel, stream = self.tunnel, self.stream
        while (ev := tunnel.next_event()) is not None:
            if type(ev) is PacketReceived:
                pkt = ev.packet
                if pkt.src.network not in self._networks.get(ev.peer, self._own_networks):
                    self._reject(_foreign_network(pkt.src.network, ev.peer), ev.address, size, ev.peer)
                    continue
                self.packets_in += 1
                stream.receive_packet(pkt, now)
            elif type(ev) is InputRejected:
                self._queue_rejection(ev)
            else:
                self._notices.append(ev)

    def _reject(self, error: PilotError, source: Address, size: int, peer: int | None) -> None:
        self._queue_rejection(InputRejected(error, "node", source, size, peer))
        self._act(error)

    def _act(self, error: PilotError) -> None:
        """The one place the node acts on the action of an input it refused itself.

        The node refuses only inner packets whose claimed origin does not fit their tunnel peer; their action is
        ``DROP`` and nothing more happens.  RSTs are the session layer's, re-keys and closes the tunnel's.
        """
        if error.action is Action.DROP:
            return

    def _queue_rejection(self, ev: InputRejected) -> None:
        """Queue a rejection for ``next_event`` unless ``max_queued_rejections`` are already waiting (then count it)."""
        if self._queued_rejections < self._max_rejections:
            self._queued_rejections += 1
            self._notices.append(ev)
        else:
            self.dropped["rejections_unreported"] = self.dropped.get("rejections_unreported", 0) + 1

    def _pump(self, now: float) -> None:
        """Route every packet the session layer emitted to the tunnel of its destination node."""
        out = self.stream.packets_to_send()  # the session layer's output pull (a hook point: tests record it)
        if not out:
            return  # nothing sent, so nothing the tunnel could have reported
        tunnel = self.tunnel
        peers = tunnel.peers
        send = tunnel.send
        for pkt in out:
            node = pkt.dst.node
            peer = peers.get(node)
            if peer is None or peer.address is None:
                self.dropped["no_route"] = self.dropped.get("no_route", 0) + 1
                continue
            self.packets_out += 1
            send(node, pkt, now)
        if tunnel._events:
            self._drain_tunnel(now)  # sending never raises events today; drained so none could be stranded


def _foreign_network(network: int, peer: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.SENDER_MISMATCH,
        f"inner packet source network {network} is not a network of tunnel peer {peer}",
        field="packet.src.network",
        section="10.2",
    )
