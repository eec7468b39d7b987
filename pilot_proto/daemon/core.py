"""A sans-IO Pilot daemon (draft 5, 10.6, 10.7, 14, 16): a :class:`~pilot_proto.node.Node` and what makes it a daemon.

:class:`Daemon` composes

* the **port table** (draft 5): every bound port has one owner -- a built-in service or an
  application (an IPC client id); ``bind(owner, 0)`` takes the next free ephemeral port from 49152;
  a SYN to a port nobody bound is answered with RST by the session layer (draft 8.1);
* the **trust gate** (draft 10.6, 10.7; Go ``handleStreamPacket``): a private daemon silently drops
  a new connection or a datagram from a node it does not trust -- except connections to the
  trust handshake port 444, so trust can be asked for at all (erratum E-DMN-1);
* the **built-in services** (:mod:`pilot_proto.services`), fed from stream events and flushed with
  the stream's answer to how much it accepted;
* an **application API** for IPC clients: ``bind``, ``dial``, ``send``, ``close``, ``send_to``,
  ``release`` and the trust commands; what happens to their connections comes back as
  :class:`AppEvent` values from :meth:`Daemon.next_event`.

Same idiom as every core state machine (:mod:`pilot_proto.sansio`): ``receive_datagram`` /
``handle_timer`` in, ``datagrams_to_send`` / ``next_event`` / ``get_timer`` out; ``now`` is
injected, randomness comes from the node's ``rng``, and wall-clock seconds (trust messages) are
``now + clock_offset`` with the offset set by the driver.  No socket, clock or thread here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pilot_proto.errors import ErrorCode, LocalProtocolError
from pilot_proto.nat import NatConfig
from pilot_proto.nat.node_paths import NatNode
from pilot_proto.nat.path import strategy_duration
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.sansio import Datagram, Event, InputRejected
from pilot_proto.services import RelayAction, StreamService, TrustService
from pilot_proto.stream import CloseReason, StreamConfig, Tracer
from pilot_proto.stream import events as sev
from pilot_proto.tunnel import Identity, KeyEstablished, TunnelConfig
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint
from pilot_proto.wire.header import Flags, Packet, PacketProtocol
from pilot_proto.wire.ports import EPHEMERAL_FIRST, EPHEMERAL_LAST, WellKnownPort

__all__ = [
    "AppAccepted",
    "AppClosed",
    "AppConnected",
    "AppData",
    "AppDatagram",
    "AppDialFailed",
    "AppEnded",
    "AppEvent",
    "Daemon",
    "Owner",
    "ServiceClosed",
    "ServiceConnected",
]

#: Who owns a port or a connection: a service name (``"echo"`` ...) or an application (IPC client) id.
Owner = str | int
_STREAM, _DATAGRAM = int(PacketProtocol.STREAM), int(PacketProtocol.DATAGRAM)
_SYN, _ACK = int(Flags.SYN), int(Flags.ACK)
_DATA_RECEIVED = sev.DataReceived
MAX_EVENTS = 65536  # application events kept before the oldest are dropped (a client that never reads)


# -- events for applications ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppEvent(Event):
    owner: Owner


@dataclass(frozen=True, slots=True)
class AppConnected(AppEvent):
    """A dial by ``owner`` reached ESTABLISHED (IPC: DialOK)."""

    conn_id: int
    remote: SocketAddr


@dataclass(frozen=True, slots=True)
class AppDialFailed(AppEvent):
    conn_id: int
    remote: SocketAddr
    reason: str


@dataclass(frozen=True, slots=True)
class AppAccepted(AppEvent):
    """A connection to a port ``owner`` bound is ESTABLISHED (IPC: Accept)."""

    conn_id: int
    remote: SocketAddr
    local_port: int


@dataclass(frozen=True, slots=True)
class AppData(AppEvent):
    conn_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AppEnded(AppEvent):
    """The peer sent FIN (IPC: CloseOK pushed by the daemon, as Go does when the receive side ends)."""

    conn_id: int


@dataclass(frozen=True, slots=True)
class AppClosed(AppEvent):
    conn_id: int
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class AppDatagram(AppEvent):
    """A datagram to a port ``owner`` bound; ``owner`` is ``None``-like ``""`` when nobody bound it (deliver to all)."""

    src: Addr
    src_port: int
    dst_port: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ServiceConnected(Event):
    """A connection of the built-in service ``service`` (echo, dataexchange ...) reached ESTABLISHED: accepted on
    its port, or (``dialed``) opened by the service itself, as the trust service does for its messages.  Services
    own their connections, so no :class:`AppAccepted` is emitted for them; this is what the driver logs and the
    webhook reports (Go's ``conn.established`` fires for every port, services included)."""

    service: str
    conn_id: int
    remote: SocketAddr
    local_port: int
    dialed: bool


@dataclass(frozen=True, slots=True)
class ServiceClosed(Event):
    """An established connection of the built-in service ``service`` ended (``reason``: the session layer's)."""

    service: str
    conn_id: int
    reason: CloseReason


_new_obj = object.__new__


def _slot_setter(cls: type, name: str) -> Callable[[object, Any], None]:
    """The slot descriptor's ``__set__`` of a frozen dataclass field (builds a hot event without its __init__)."""
    setter: Callable[[object, Any], None] = getattr(cls, name).__set__
    return setter


_set_owner = _slot_setter(AppData, "owner")
_set_app_conn = _slot_setter(AppData, "conn_id")
_set_app_data = _slot_setter(AppData, "data")


@dataclass
class _Conn:
    owner: Owner
    remote: SocketAddr
    local_port: int
    dialed: bool
    established: bool = False
    outbox: _Pending = field(default_factory=lambda: _Pending())  # application bytes the stream has not taken yet
    close_requested: bool = False


class _Pending:
    """Application bytes waiting for room in the stream's send buffer: the writes themselves, never copied whole.

    A large write is handed to the stream in pieces as its buffer drains (draft 8.10); only each piece taken is
    copied (immutable ``bytes`` are sliced through a memoryview), so a write of N bytes costs O(N), not O(N^2).
    """

    __slots__ = ("_chunks", "_off", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._off = 0  # bytes of the first chunk already taken
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iadd__(self, data: bytes | bytearray | memoryview) -> _Pending:
        if len(data):
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self.size += len(data)
        return self

    def peek(self, limit: int) -> bytes | memoryview:
        """At most ``limit`` bytes from the front (one chunk's worth; fewer if the chunk is shorter)."""
        head, off = self._chunks[0], self._off
        if off == 0 and len(head) <= limit:
            return head
        return memoryview(head)[off : off + limit]

    def take(self, n: int) -> None:
        """Drop ``n`` bytes from the front (what the stream took of the last ``peek``)."""
        self.size -= n
        off = self._off + n
        chunks = self._chunks
        while chunks and off >= len(chunks[0]):
            off -= len(chunks.popleft())
        self._off = off

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)[self._off :]

    def clear(self) -> None:
        self._chunks.clear()
        self._off = self.size = 0


class Daemon:
    """A Pilot daemon: node + port table + trust gate + services + application API (sans-IO)."""

    def __init__(
        self,
        node_id: int,
        rng: Callable[[int], bytes],
        *,
        network: int = 0,
        profile: Profile | str = Profile.DRAFT,
        identity: Identity | None = None,
        public: bool = True,
        hostname: str = "",
        services: Iterable[StreamService] = (),
        trust: bool = True,
        authenticate_tunnel: bool = True,
        tunnel_config: TunnelConfig | None = None,
        stream_config: StreamConfig | None = None,
        peer_keys: Callable[[int], bytes | None] | None = None,
        isn_source: Callable[[], int] | None = None,
        tracer: Tracer | None = None,
        beacon: tuple[str, int] | None = None,
        nat_config: NatConfig | None = None,
    ) -> None:
        prof = Profile.parse(profile)
        nat_cfg = (nat_config or NatConfig.for_profile(prof)) if beacon is not None else None
        if nat_cfg is not None and tunnel_config is None:
            # The tunnel must keep offering its key while the 9.4 strategy runs (3 direct, then 3 relay
            # attempts), or the relay phase starts after the key exchange gave up (see nat.node_paths).
            base = TunnelConfig.for_profile(prof)
            retries = max(base.kex_retries, math.ceil(strategy_duration(nat_cfg) / base.kex_retry_interval) + 1)
            tunnel_config = TunnelConfig.for_profile(prof, kex_retries=retries)
        self.profile = prof
        self.rng = rng
        self.identity = identity
        self._public = public
        self.hostname = hostname
        #: Whether the identity lives in a file (Go's ``identity`` field in Info: persistent vs ephemeral).
        self.identity_persistent = False
        self._peer_keys = peer_keys
        tunnel_identity = identity if authenticate_tunnel else None
        if stream_config is None:
            # Services and applications decide when to close: a peer's FIN must not close our side before the
            # echo of data that arrived with it has been written (issue 9).  In-order bytes that arrive together
            # reach them as one event (coalesce_received): per batch of datagrams, not per segment.
            stream_config = StreamConfig.for_profile(prof, auto_close_on_peer_fin=False, coalesce_received=True)
        self.node = Node(node_id, rng, network=network, profile=prof, identity=tunnel_identity,
                         tunnel_config=tunnel_config, stream_config=stream_config, peer_keys=peer_keys,
                         isn_source=isn_source, tracer=tracer)  # fmt: skip
        #: NAT traversal (draft 9): the node behind a path manager on the same socket, when a beacon is given.
        self.nat: NatNode[Node] | None = (
            NatNode(self.node, Endpoint(beacon[0], beacon[1]), nat_cfg) if beacon is not None else None
        )
        #: What the driver's datagrams and timers go through: the NAT layer, or the node itself.
        self._io: NatNode[Node] | Node = self.nat if self.nat is not None else self.node
        #: The session layer; a private daemon sets its gate (the stream asks it before letting a packet in).
        self._stream = self.node.stream
        self._stream.gate = None if public else self._admit
        self.ports: dict[int, Owner] = {}
        self.services: dict[str, StreamService] = {}
        self._service_by_port: dict[int, StreamService] = {}
        self.conns: dict[int, _Conn] = {}
        self._events: deque[Event] = deque()
        self._now = 0.0
        self._dirty = False
        self._retained: dict[int, int] = {}  # bytes held back from the window per paused service connection
        self.started_at: float | None = None
        self._clock_offset = 0.0
        self.trust: TrustService | None = None
        if trust:
            self.trust = TrustService(node_id, identity, profile=prof, peer_key=self._peer_key)
            self.add_service(self.trust)
        for svc in services:
            self.add_service(svc)
        #: Counters for info/summary.
        self.stats: dict[str, int] = {"accepted": 0, "dialed": 0, "gate_dropped": 0, "rejected": 0, "keys": 0}

    # -- properties ----------------------------------------------------------------------------------

    @property
    def addr(self) -> Addr:
        return self.node.addr

    @property
    def node_id(self) -> int:
        return self.node.node_id

    @property
    def public(self) -> bool:
        """A public daemon admits every node; a private one only trusted nodes (draft 10.7).  While public the
        session layer asks no gate at all (every packet would pass it)."""
        return self._public

    @public.setter
    def public(self, value: bool) -> None:
        self._public = value
        self._stream.gate = None if value else self._admit

    @property
    def clock_offset(self) -> float:
        """Unix seconds = ``now + clock_offset``; the driver sets it (trust messages carry wall-clock time)."""
        return self._clock_offset

    @clock_offset.setter
    def clock_offset(self, value: float) -> None:
        self._clock_offset = value
        if self.trust is not None:
            self.trust.clock_offset = value

    # -- configuration --------------------------------------------------------------------------------

    def add_service(self, svc: StreamService) -> None:
        """Bind ``svc`` on its port (owner: the service name)."""
        self.bind(svc.name, svc.port)
        self.services[svc.name] = svc
        self._service_by_port[svc.port] = svc

    def add_peer(self, node_id: int, udp_addr: Any, ed25519_public: bytes | None = None) -> None:
        """Where ``node_id`` is registered.  With a beacon it is reached by the 9.4 strategy (direct at that
        locator, then punched, then relayed); without, directly."""
        if self.nat is not None:
            locator = Endpoint(str(udp_addr[0]), int(udp_addr[1])) if udp_addr is not None else None
            self.nat.dial(node_id, locator, self._now, ed25519_public)
            return
        self.node.add_peer(node_id, udp_addr, ed25519_public)

    def is_trusted(self, node_id: int) -> bool:
        return self.trust is not None and self.trust.is_trusted(node_id)

    # -- port table (draft 5) ------------------------------------------------------------------------

    def bind(self, owner: Owner, port: int) -> int:
        """Give ``port`` to ``owner`` (0: the next free ephemeral port); LocalProtocolError if it is taken."""
        if port == 0:
            port = self._free_ephemeral()
        if not 0 < port <= 0xFFFF:
            raise LocalProtocolError(ErrorCode.OUT_OF_RANGE, f"port {port}", field="port", section="5.1")
        holder = self.ports.get(port)
        if holder is not None:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, f"port {port} already bound by {holder!r}",
                                     field="port", section="5.1")  # fmt: skip
        self.ports[port] = owner
        self.node.listen(port)
        return port

    def unbind(self, port: int) -> None:
        if self.ports.pop(port, None) is not None:
            self.node.stream.unlisten(port)

    def _free_ephemeral(self) -> int:
        stream = self.node.stream
        for port in range(EPHEMERAL_FIRST, EPHEMERAL_LAST + 1):
            if port not in self.ports and not stream.port_in_use(port):
                return port
        raise LocalProtocolError(ErrorCode.TABLE_FULL, "no free ephemeral port", field="port", section="5.1")

    # -- the trust gate (draft 10.6, 10.7) -------------------------------------------------------------

    def _admit(self, pkt: Packet) -> bool:
        if self.public:
            return True
        proto = pkt.protocol
        if proto == _STREAM:
            if pkt.flags & (_SYN | _ACK) != _SYN or pkt.dst_port == WellKnownPort.TRUST:
                return True  # not a new connection, or a trust request (E-DMN-1)
            if self.node.stream.find(SocketAddr(pkt.src, pkt.src_port), pkt.dst_port) is not None:
                return True  # a retransmitted SYN of a connection already admitted
        elif proto != _DATAGRAM:
            return True  # Control (ping) is answered whoever asks
        if self.is_trusted(pkt.src.node):
            return True
        self.stats["gate_dropped"] += 1
        return False

    def _require_route(self, node: int) -> None:
        peer = self.node.tunnel.peers.get(node)
        if peer is None or peer.address is None:
            raise LocalProtocolError(ErrorCode.UNREACHABLE, f"no route to node {node} (no known underlay address)",
                                     field="node", section="7")  # fmt: skip

    def _peer_key(self, node_id: int) -> bytes | None:
        keys = self._peer_keys
        return keys(node_id) if keys is not None else None

    # -- inputs (sans-IO idiom) -------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        """One UDP datagram in.  Its consequences are worked out lazily, once per batch of inputs, before any output
        is pulled (``next_event``, ``datagrams_to_send``, ``get_timer``) or the application calls in."""
        self._now = now
        self._io.receive_datagram(data, addr, now)
        self._dirty = True

    def receive_datagrams(self, datagrams: Iterable[bytes], addr: Any, now: float) -> None:
        """Several UDP datagrams from ``addr`` at ``now`` (one read of the socket): :meth:`receive_datagram` for each
        in turn.  Should one raise (a bug, never bad input), the rest are still in ``datagrams`` when it is an
        iterator, for the caller to hand in again."""
        self._now = now
        self._dirty = True
        if self.nat is not None:
            receive = self.nat.receive_datagram
            for data in datagrams:
                receive(data, addr, now)
        else:
            self.node.receive_datagrams(datagrams, addr, now)

    def _settle(self) -> None:
        if self._dirty:
            self._dirty = False
            self._process(self._now)

    def handle_timer(self, now: float) -> None:
        self._settle()
        self._now = now
        self._io.handle_timer(now)
        self._process(now)

    def start(self, now: float) -> None:
        """Record the start time (uptime); with a beacon, discover our public endpoint (draft 9.1)."""
        self.started_at = now
        self._now = now
        if self.nat is not None:
            self.nat.start(now)

    # -- outputs -------------------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        self._settle()
        return self._io.datagrams_to_send()

    def get_timer(self) -> float | None:
        self._settle()
        return self._io.get_timer()

    def next_event(self) -> Event | None:
        self._settle()
        return self._events.popleft() if self._events else None

    # -- application API ------------------------------------------------------------------------------------

    def dial(self, owner: Owner, remote: SocketAddr, now: float) -> int:
        """Open a stream to ``remote``; :class:`AppConnected` or :class:`AppDialFailed` follows.

        LocalProtocolError at once when no underlay address is known for the node (no route).
        """
        self._require_route(remote.addr.node)
        self._now = now
        cid = self.node.connect(remote, now)
        conn = self.node.stream.connection(cid)
        self.conns[cid] = _Conn(owner, remote, conn.local_port, dialed=True)
        self.stats["dialed"] += 1
        self._process(now)
        return cid

    def send(self, conn_id: int, data: bytes, now: float) -> None:
        """Queue ``data`` on an application connection (written as the stream accepts it)."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.close_requested:
            raise LocalProtocolError(ErrorCode.CONNECTION_CLOSED, f"connection {conn_id} is not open",
                                     field="conn_id", section="8.1")  # fmt: skip
        self._now = now
        conn.outbox += data
        self._flush_app(conn_id, conn, now)
        self._process(now)

    def unsent(self, conn_id: int) -> int:
        """Application bytes queued in the daemon that the stream's send buffer has not taken yet."""
        conn = self.conns.get(conn_id)
        return len(conn.outbox) if conn is not None else 0

    def close(self, conn_id: int, now: float) -> None:
        """Close after everything queued is sent (FIN); unknown ids are ignored (IPC close is idempotent)."""
        conn = self.conns.get(conn_id)
        if conn is None or conn.close_requested:
            return
        self._now = now
        conn.close_requested = True
        self._flush_app(conn_id, conn, now)
        self._process(now)

    def send_to(self, dst: Addr, port: int, data: bytes, now: float, src_port: int | None = None) -> None:
        """One datagram (draft 6.3)."""
        self._require_route(dst.node)
        self._now = now
        self.node.send_datagram(SocketAddr(dst, port), data, now, src_port)
        self._process(now)

    def ping(self, dst: Addr, now: float, payload: bytes = b"") -> int:
        """Control ping (port 0); the :class:`~pilot_proto.stream.events.PingReply` comes out of ``next_event``."""
        self._now = now
        seq = self.node.ping(dst, now, payload)
        self._process(now)
        return seq

    def release(self, owner: Owner, now: float) -> None:
        """An application went away: close its connections and free its ports (Go ``handleClient`` cleanup)."""
        self._now = now
        for cid, conn in list(self.conns.items()):
            if conn.owner == owner:
                self.close(cid, now)
        for port, holder in list(self.ports.items()):
            if holder == owner:
                self.unbind(port)
        self._process(now)

    # -- trust commands (IPC Handshake sub-commands) ----------------------------------------------------------

    def _book(self) -> TrustService:
        if self.trust is None:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, "this daemon runs without the trust service",
                                     section="10.6")  # fmt: skip
        return self.trust

    def handshake(self, peer: int, justification: str, now: float) -> str:
        status = self._book().request(peer, justification, now + self.clock_offset)
        self._process(now)
        return status

    def approve(self, peer: int, now: float) -> None:
        self._book().approve(peer, now + self.clock_offset)
        self._process(now)

    def reject(self, peer: int, reason: str, now: float) -> None:
        self._book().reject(peer, reason, now + self.clock_offset)
        self._process(now)

    def revoke(self, peer: int, now: float) -> None:
        self._book().revoke(peer, now + self.clock_offset)
        self._process(now)

    def relays_to_send(self) -> list[RelayAction]:
        """Trust messages for the registry to relay (peers we could not reach directly)."""
        return self.trust.relays_to_send() if self.trust is not None else []

    def relayed_request(self, sender: int, justification: str, now: float) -> None:
        self._book().relayed_request(sender, justification, now + self.clock_offset)
        self._process(now)

    def relayed_response(self, sender: int, accept: bool, now: float) -> None:
        self._book().relayed_response(sender, accept, now + self.clock_offset)
        self._process(now)

    # -- status (IPC Info, Go's JSON field names) -------------------------------------------------------------

    def info(self, now: float) -> dict[str, Any]:
        node = self.node
        peers = []
        encrypted = authenticated = 0
        for pid, peer in node.tunnel.peers.items():
            sess = peer.active
            enc = sess is not None
            auth = bool(sess is not None and sess.authenticated)
            encrypted += enc
            authenticated += auth
            endpoint = peer.address
            ep = f"{endpoint[0]}:{endpoint[1]}" if isinstance(endpoint, tuple) else str(endpoint or "")
            peers.append({"node_id": pid, "endpoint": ep, "encrypted": enc, "authenticated": auth})
        conns = []
        for c in node.stream.connections():
            conns.append({
                "id": c.id, "local_port": c.local_port, "remote_addr": str(c.remote.addr),
                "remote_port": c.remote.port, "state": c.state.value, "cong_win": c.cwnd, "ssthresh": c.ssthresh,
                "in_flight": c.bytes_in_flight, "srtt_ms": (c.srtt or 0.0) * 1000.0,
                "rttvar_ms": c.rtt.rttvar * 1000.0, "unacked": c.bytes_in_flight, "ooo_buf": c.ooo_bytes,
                "peer_recv_win": c.peer_window, "recv_win": c.recv_unread, "in_recovery": c.in_recovery,
                "bytes_sent": 0, "bytes_recv": 0, "segs_sent": 0, "segs_recv": 0, "retransmits": c.retransmits,
                "fast_retx": c.fast_recoveries, "sack_recv": 0, "sack_sent": 0, "dup_acks": 0,
            })  # fmt: skip
        book = self.trust
        return {
            "node_id": self.node_id,
            "address": str(self.addr),
            "hostname": self.hostname,
            "uptime_secs": max(0.0, now - (self.started_at if self.started_at is not None else now)),
            "connections": sum(1 for c in conns if c["state"] == "ESTABLISHED"),
            "ports": len(self.ports),
            "peers": len(peers),
            "encrypted_peers": encrypted,
            "authenticated_peers": authenticated,
            "encrypt": True,
            "identity": self.identity_persistent,
            "public_key": _b64(self.identity.public_bytes) if self.identity is not None else "",
            "email": "",
            "public": self.public,
            "profile": self.profile.value,
            "bytes_sent": 0,
            "bytes_recv": 0,
            "pkts_sent": node.packets_out,
            "pkts_recv": node.packets_in,
            "tunnel_encryption_success": encrypted,
            "tunnel_encryption_failure": 0,
            "handshake_pending_count": len(book.pending) if book is not None else 0,
            "peer_list": peers,
            "conn_list": conns,
        }

    # -- internals ------------------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) > MAX_EVENTS:
            self._events.popleft()

    def _flush_app(self, cid: int, conn: _Conn, now: float) -> None:
        if not conn.established:
            return
        try:
            pending = conn.outbox
            if pending:
                stream = self.node.stream
                sconn = stream.connection(cid)
                while pending:  # piece by piece while the send buffer takes whole pieces
                    room = sconn.send_buffer_free
                    piece = pending.peek(room if room > 0 else 1)
                    taken = _stream_send(self.node, cid, piece, now)
                    pending.take(taken)
                    if taken < len(piece) or room <= 0:
                        break
            if conn.close_requested and not conn.outbox:
                self.node.close(cid, now)
        except LocalProtocolError as exc:  # the stream already finished this connection (reset, timeout)
            conn.outbox.clear()
            self._emit(InputRejected(exc, "daemon", None, 0, conn.remote.addr.node))

    def _process(self, now: float) -> None:
        self._dirty = False
        self._process_now(now)

    def _process_now(self, now: float) -> None:
        """Pull node events, route them to services and applications, flush what became writable (to a fixpoint)."""
        for _ in range(64):  # a service reply can produce more events (e.g. a dial for a trust message)
            moved = self._route_events(now)
            moved |= self._flush_services(now)
            if not moved:
                break

    def _route_events(self, now: float) -> bool:
        node = self._io  # the NAT layer's path events come first, then the node's
        moved = False
        while (ev := node.next_event()) is not None:
            moved = True
            if type(ev) is _DATA_RECEIVED or isinstance(ev, sev.DataReceived):
                self._on_data(ev.conn_id, ev.data, now)
            elif isinstance(ev, sev.ConnectionRequested):
                owner = self.ports.get(ev.local_port)
                if owner is not None:
                    self.conns[ev.conn_id] = _Conn(owner, ev.remote, ev.local_port, dialed=False)
            elif isinstance(ev, sev.Connected):
                self._on_connected(ev, now)
            elif isinstance(ev, sev.StreamEnded):
                conn = self.conns.get(ev.conn_id)
                if conn is not None:
                    svc = self._service_of(conn)
                    if svc is not None:
                        svc.end(ev.conn_id, now)
                    else:
                        self._emit(AppEnded(conn.owner, ev.conn_id))
            elif isinstance(ev, sev.Closed):
                self._on_closed(ev.conn_id, ev.reason)
            elif isinstance(ev, sev.Writable):
                wconn = self.conns.get(ev.conn_id)
                if wconn is not None and self._service_of(wconn) is None:
                    self._flush_app(ev.conn_id, wconn, now)
            elif isinstance(ev, sev.DatagramReceived):
                self._emit(AppDatagram(self.ports.get(ev.dst_port, ""), ev.src, ev.src_port, ev.dst_port, ev.data))
            else:
                if isinstance(ev, KeyEstablished):
                    self.stats["keys"] += 1
                elif isinstance(ev, InputRejected):
                    self.stats["rejected"] += 1
                self._emit(ev)
        return moved

    def _service_of(self, conn: _Conn) -> StreamService | None:
        return self.services.get(conn.owner) if isinstance(conn.owner, str) else None

    def _on_connected(self, ev: sev.Connected, now: float) -> None:
        conn = self.conns.get(ev.conn_id)
        if conn is None:
            return
        conn.established = True
        svc = self._service_of(conn)
        if not conn.dialed:
            self.stats["accepted"] += 1
        if svc is not None:
            self._emit(ServiceConnected(svc.name, ev.conn_id, ev.remote, ev.local_port, conn.dialed))
            if ev.conn_id not in svc.conns:
                svc.open(ev.conn_id, ev.remote, now)
            if conn.outbox:  # an outgoing service message waiting for the handshake (trust)
                svc.write(ev.conn_id, conn.outbox.getvalue())
                conn.outbox.clear()
                svc.finish(ev.conn_id)
        elif conn.dialed:
            self._emit(AppConnected(conn.owner, ev.conn_id, ev.remote))
        else:
            self._emit(AppAccepted(conn.owner, ev.conn_id, ev.remote, ev.local_port))
        self._flush_app(ev.conn_id, conn, now)

    def _on_data(self, cid: int, data: bytes, now: float) -> None:
        conn = self.conns.get(cid)
        if conn is None:
            return
        owner = conn.owner
        svc = self.services.get(owner) if isinstance(owner, str) else None  # _service_of, inlined (per segment)
        if svc is not None:
            svc.receive(cid, data, now)
            if svc.paused(cid):  # backpressure: these bytes keep the peer's window closed until the service drains
                self.node.stream.retain_received(cid, len(data))
                self._retained[cid] = self._retained.get(cid, 0) + len(data)
        else:
            ev = _new_obj(AppData)  # AppData(owner, cid, data) without the frozen __init__'s frame
            _set_owner(ev, owner)
            _set_app_conn(ev, cid)
            _set_app_data(ev, data)
            self._emit(ev)

    def _on_closed(self, cid: int, reason: CloseReason) -> None:
        self._retained.pop(cid, None)
        conn = self.conns.pop(cid, None)
        if conn is None:
            return
        svc = self._service_of(conn)
        if svc is not None:
            svc.closed(cid)
            if conn.established:
                self._emit(ServiceClosed(svc.name, cid, reason))
            if svc is self.trust and conn.dialed and not conn.established and conn.outbox:
                self.trust.undeliverable(conn.remote.addr.node, conn.outbox.getvalue())  # e.g. a private peer's gate
        elif conn.dialed and not conn.established:
            self._emit(AppDialFailed(conn.owner, cid, conn.remote, reason.value))
        else:
            self._emit(AppClosed(conn.owner, cid, reason))

    def _flush_services(self, now: float) -> bool:
        node = self.node
        moved = False
        for svc in self.services.values():
            while (sev_ := svc.next_event()) is not None:
                if isinstance(sev_, InputRejected):
                    self.stats["rejected"] += 1
                self._emit(sev_)
                moved = True
            for cid in svc.connections_with_output():
                if svc.wants_abort(cid):
                    node.abort(cid, now)
                    moved = True
                    continue
                try:
                    data = svc.output(cid)
                    if data:
                        taken = _stream_send(node, cid, data, now)
                        svc.sent(cid, taken)
                        moved = moved or taken > 0
                        held = self._retained.get(cid)
                        if held and not svc.paused(cid):
                            del self._retained[cid]
                            node.stream.release_received(cid, held, now)
                    if svc.wants_close(cid):
                        node.close(cid, now)
                        moved = True
                except LocalProtocolError as exc:  # the connection went away under the service
                    svc.refuse(cid, exc)
                    svc.closed(cid)
        if self.trust is not None:
            for peer, message in self.trust.messages_to_send():
                self._dial_service(self.trust, Addr(self.addr.network, peer), message, now)
                moved = True
        return moved

    def _dial_service(self, svc: StreamService, dst: Addr, message: bytes, now: float) -> None:
        """A service's outgoing message: dial ``dst`` on the service port, write ``message`` once open, close."""
        try:
            self._require_route(dst.node)
            cid = self.node.connect(SocketAddr(dst, svc.port), now)
        except LocalProtocolError as exc:
            if svc is self.trust:
                self.trust.undeliverable(dst.node, message)  # no route: the registry relays it (draft 10.6)
            else:
                self._emit(InputRejected(exc, svc.name, None, len(message), dst.node))
            return
        local_port = self.node.stream.connection(cid).local_port
        conn = _Conn(svc.name, SocketAddr(dst, svc.port), local_port, dialed=True)
        conn.outbox += message
        self.conns[cid] = conn


def _stream_send(node: Node, cid: int, data: bytes | memoryview, now: float) -> int:
    """Offer ``data`` to the session layer; how much its send buffer took (draft 8.10, the rest waits for Writable).

    Straight to the stream endpoint, whose ``send`` reports the count; the node routes the packets on its next
    output pull (``datagrams_to_send`` pumps).
    """
    return node.stream.send(cid, data, now)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")
