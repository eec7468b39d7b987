"""A NAT simulator on a fake clock: hosts behind NATs, a public beacon, an attacker.

NAT behaviour uses the terms of RFC 4787 (section 4 mapping, section 5 filtering):

==========================  ==============================  ===================================
:class:`NatType`            mapping                         filtering
==========================  ==============================  ===================================
``FULL_CONE``               endpoint-independent            endpoint-independent
``RESTRICTED_CONE``         endpoint-independent            address-dependent
``PORT_RESTRICTED_CONE``    endpoint-independent            address-and-port-dependent
``SYMMETRIC``               address-and-port-dependent      address-and-port-dependent
==========================  ==============================  ===================================

A mapping lives ``mapping_timeout`` seconds after the last *outbound* packet
(RFC 4787 REQ-6 requires outbound refresh; inbound refresh is optional and not
done here, the stricter choice).  External ports are allocated sequentially
from ``first_port`` -- deterministic, and like many real symmetric NATs.

:class:`SimNetwork` routes datagrams between any :class:`~pilot_proto.sansio.DatagramEndpoint`
attached at an endpoint -- a :class:`SimHost` (a :class:`~pilot_proto.nat.PathManager` and a
stand-in tunnel), a bare :class:`~pilot_proto.nat.BeaconServer`, a
:class:`~pilot_proto.nat.nat_node.NatNode` running a real node, a :class:`SimSink` -- through NAT
boxes with a fixed one-way latency, all on one :class:`~pilot_proto.testing.clock.FakeClock`.  It
speaks only the sans-IO idiom: ``receive_datagram``, ``datagrams_to_send``, ``next_event`` (every
event is recorded per attachment, see :meth:`SimNetwork.events_of`), ``get_timer`` /
``handle_timer``.  :meth:`SimNetwork.inject` lets a test play an attacker who can forge any
source address.

:class:`SimHost` carries a stand-in tunnel layer (:class:`ToyTunnel`): PILS
frames sealed with AES-256-GCM under a per-pair key, a counter nonce and a
replay set, so "authenticated" means what it will mean with the real tunnel
layer -- and the host calls ``confirm_direct`` / ``confirm_relay`` only after
a frame verified.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import heapq
import math
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.nat.beacon_server import BeaconServer
from pilot_proto.nat.config import BeaconConfig, NatConfig
from pilot_proto.nat.events import FrameReceived
from pilot_proto.nat.node_paths import NatNode
from pilot_proto.nat.path import PathManager, PathState, strategy_duration
from pilot_proto.node import Node
from pilot_proto.sansio import Address, Datagram, DatagramEndpoint, Event
from pilot_proto.stream.events import ConnectionRequested, DataReceived
from pilot_proto.testing.clock import FakeClock
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import TunnelConfig
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint
from pilot_proto.wire.frames import EncryptedFrame, decode_frame, encode_frame

__all__ = [
    "BEACON_ENDPOINT",
    "NatBox",
    "NatType",
    "NodePair",
    "PairResult",
    "Scenario",
    "SimHost",
    "SimNetwork",
    "SimSink",
    "ToyTunnel",
    "format_matrix",
    "pair_key",
    "path_state",
    "run_matrix",
    "run_node_pair",
    "run_pair",
]


class NatType(enum.Enum):
    FULL_CONE = "full-cone"
    RESTRICTED_CONE = "restricted"
    PORT_RESTRICTED_CONE = "port-restricted"
    SYMMETRIC = "symmetric"

    @property
    def endpoint_independent_mapping(self) -> bool:
        return self is not NatType.SYMMETRIC

    @property
    def short(self) -> str:
        return {"full-cone": "FC", "restricted": "RC", "port-restricted": "PRC", "symmetric": "SYM"}[self.value]


@dataclass
class _Mapping:
    internal: Endpoint
    external: Endpoint
    last_out: float
    permitted_ips: set[str] = field(default_factory=set)
    permitted_eps: set[Endpoint] = field(default_factory=set)


class NatBox:
    """One NAT with one public IP.  Pure bookkeeping; :class:`SimNetwork` calls it."""

    def __init__(
        self, public_ip: str, nat_type: NatType, *, mapping_timeout: float = 30.0, first_port: int = 40000
    ) -> None:
        self.public_ip = public_ip
        self.type = nat_type
        self.mapping_timeout = mapping_timeout
        self._next_port = first_port
        self._by_key: dict[tuple[Endpoint, Endpoint | None], _Mapping] = {}
        self._by_port: dict[int, _Mapping] = {}
        self.dropped_inbound = 0

    def reset(self) -> None:
        """Forget every mapping (a NAT reboot); port allocation continues where it was."""
        self._by_key.clear()
        self._by_port.clear()

    def _alive(self, m: _Mapping, now: float) -> bool:
        return now - m.last_out <= self.mapping_timeout

    def outbound(self, internal: Endpoint, dest: Endpoint, now: float) -> Endpoint:
        """Translate an outgoing packet's source; creates or refreshes a mapping."""
        key = (internal, None if self.type.endpoint_independent_mapping else dest)
        m = self._by_key.get(key)
        if m is None or not self._alive(m, now):
            if m is not None:
                self._by_port.pop(m.external.port, None)
            m = _Mapping(internal, Endpoint(self.public_ip, self._next_port), now)
            self._next_port += 1
            self._by_key[key] = m
            self._by_port[m.external.port] = m
        m.last_out = now
        m.permitted_ips.add(dest.host)
        m.permitted_eps.add(dest)
        return m.external

    def inbound(self, port: int, source: Endpoint, now: float) -> Endpoint | None:
        """The internal endpoint for a packet to ``public_ip:port`` from ``source``, or ``None`` (dropped)."""
        m = self._by_port.get(port)
        ok = m is not None and self._alive(m, now)
        if ok and m is not None:
            if self.type is NatType.RESTRICTED_CONE:
                ok = source.host in m.permitted_ips
            elif self.type in (NatType.PORT_RESTRICTED_CONE, NatType.SYMMETRIC):
                ok = source in m.permitted_eps
        if not ok or m is None:
            self.dropped_inbound += 1
            return None
        return m.internal


class SimSink:
    """A host that only records what reaches it (the attacker's own address)."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Address]] = []

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.received.append((data, addr))

    def datagrams_to_send(self) -> list[Datagram]:
        return []

    def next_event(self) -> Event | None:
        return None

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


def pair_key(a: int, b: int) -> bytes:
    """Deterministic 32-byte key shared by nodes ``a`` and ``b`` (test stand-in for the key exchange)."""
    lo, hi = sorted((a, b))
    return hashlib.sha256(b"pilot-sim-pair" + struct.pack(">II", lo, hi)).digest()


class ToyTunnel:
    """Stand-in tunnel layer: PILS frames, AES-256-GCM, counter nonces, replay set.

    Plaintext is one kind byte (0 ping, 1 pong, 2 data) and a body.
    """

    PING, PONG, DATA = 0, 1, 2

    def __init__(self, node: int, key_for: Callable[[int, int], bytes] = pair_key) -> None:
        self.node = node
        self._key_for = key_for
        self._counter = 0
        self._seen: dict[int, set[int]] = {}

    def seal(self, peer: int, kind: int, body: bytes = b"") -> bytes:
        self._counter += 1
        nonce = struct.pack(">IQ", self.node, self._counter)
        ct = AESGCM(self._key_for(self.node, peer)).encrypt(nonce, bytes([kind]) + body, struct.pack(">I", self.node))
        return encode_frame(EncryptedFrame(self.node, nonce, ct))

    def open(self, frame: bytes) -> tuple[int, int, bytes] | None:
        """``(sender, kind, body)`` if the frame authenticates and is fresh, else ``None``."""
        try:
            parsed = decode_frame(frame)
        except Exception:
            return None
        if not isinstance(parsed, EncryptedFrame) or parsed.sender == self.node:
            return None
        try:
            key = self._key_for(self.node, parsed.sender)
            plain = AESGCM(key).decrypt(parsed.nonce, parsed.ciphertext, struct.pack(">I", parsed.sender))
        except (InvalidTag, ValueError):
            return None
        seen = self._seen.setdefault(parsed.sender, set())
        if parsed.counter in seen or not plain:
            return None  # replay
        seen.add(parsed.counter)
        return parsed.sender, plain[0], plain[1:]


class SimHost:
    """A daemon: :class:`PathManager` + :class:`ToyTunnel`, answering pings, collecting data.

    A :class:`~pilot_proto.sansio.DatagramEndpoint`: it consumes the path manager's
    ``FrameReceived`` events itself (opens the frame, confirms the path, answers pings) and passes
    every path-manager event on through :meth:`next_event`.
    """

    def __init__(self, node: int, local: Endpoint, beacon: Endpoint | None, config: NatConfig | None = None) -> None:
        self.node = node
        self.local = local
        self.tunnel = ToyTunnel(node)
        self.paths = PathManager(node, beacon, config, probe=lambda peer: self.tunnel.seal(peer, ToyTunnel.PING))
        self.inbox: list[tuple[int, bytes, bool]] = []  # (sender, body, via_relay)
        self.rejected = 0
        self._events: deque[Event] = deque()

    def start(self, now: float) -> None:
        self.paths.start(now)
        self._drain(now)

    def connect(self, peer: int, endpoint: Endpoint | None, now: float) -> None:
        self.paths.connect(peer, now, endpoint)
        self._drain(now)

    def send_data(self, peer: int, body: bytes, now: float) -> None:
        self.paths.send(peer, self.tunnel.seal(peer, ToyTunnel.DATA, body), now)

    # -- the idiom ---------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.paths.receive_datagram(data, addr, now)
        self._drain(now)

    def datagrams_to_send(self) -> list[Datagram]:
        return self.paths.datagrams_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        return self.paths.get_timer()

    def handle_timer(self, now: float) -> None:
        self.paths.handle_timer(now)
        self._drain(now)

    def _drain(self, now: float) -> None:
        while (ev := self.paths.next_event()) is not None:
            self._events.append(ev)
            if isinstance(ev, FrameReceived):
                self._on_frame(ev, now)

    def _on_frame(self, ev: FrameReceived, now: float) -> None:
        opened = self.tunnel.open(ev.frame)
        if opened is None:
            self.rejected += 1
            return
        sender, kind, body = opened
        # authenticated: only now may the path move (NAT-042, NAT-043)
        if ev.via_relay:
            self.paths.confirm_relay(sender, now)
        else:
            self.paths.confirm_direct(sender, ev.source, now)
        if kind == ToyTunnel.PING:
            self.paths.send(sender, self.tunnel.seal(sender, ToyTunnel.PONG), now)
        elif kind == ToyTunnel.DATA:
            self.inbox.append((sender, body, ev.via_relay))


@dataclass
class _Attach:
    endpoint: DatagramEndpoint
    local: Endpoint
    nat: NatBox | None
    events: list[tuple[float, Event]] = field(default_factory=list)


class SimNetwork:
    """Routes datagrams between sans-IO endpoints through NATs with a fixed latency, on a fake clock."""

    def __init__(self, clock: FakeClock | None = None, *, latency: float = 0.010) -> None:
        self.clock = clock or FakeClock()
        self.latency = latency
        self._public: dict[Endpoint, _Attach] = {}  # public endpoint -> attachment (no NAT)
        self._nats: dict[str, NatBox] = {}  # public IP -> NAT
        self._behind: dict[tuple[str, Endpoint], _Attach] = {}  # (nat ip, internal endpoint) -> attachment
        self._by_id: dict[int, _Attach] = {}
        self._queue: list[tuple[float, int, bytes, Endpoint, Endpoint]] = []
        self._seq = 0
        self.attached: list[_Attach] = []
        self.delivered = 0
        self.dropped = 0
        #: every datagram put on the public wire: (time, source, dest, data) -- an on-path observer's view
        self.wire: list[tuple[float, Endpoint, Endpoint, bytes]] = []

    def add(self, endpoint: DatagramEndpoint, local: Endpoint, nat: NatBox | None = None) -> None:
        """Attach ``endpoint`` at ``local`` (a public endpoint, or an internal one behind ``nat``)."""
        att = _Attach(endpoint, local, nat)
        if nat is None:
            self._public[local] = att
        else:
            self._nats.setdefault(nat.public_ip, nat)
            self._behind[(nat.public_ip, local)] = att
        self._by_id[id(endpoint)] = att
        self.attached.append(att)

    def events_of(self, endpoint: DatagramEndpoint) -> list[tuple[float, Event]]:
        """Every event ``endpoint`` emitted so far, with the simulated time it was pulled."""
        return self._by_id[id(endpoint)].events

    def inject(self, data: bytes, source: Endpoint, dest: Endpoint) -> None:
        """Put a datagram on the public wire with any (forged) source -- the attacker's tool."""
        self._enqueue(data, source, dest)

    def _enqueue(self, data: bytes, source: Endpoint, dest: Endpoint) -> None:
        self._seq += 1
        self.wire.append((self.clock.now, source, dest, data))
        heapq.heappush(self._queue, (self.clock.now + self.latency, self._seq, data, source, dest))

    def _after(self, att: _Attach) -> None:
        """Pull what ``att`` wants to send (translated by its NAT) and every event it has."""
        now = self.clock.now
        for dgram in att.endpoint.datagrams_to_send():
            dest = dgram.addr if type(dgram.addr) is Endpoint else Endpoint(*dgram.addr)  # type: ignore[misc]
            src = att.local if att.nat is None else att.nat.outbound(att.local, dest, now)
            self._enqueue(dgram.data, src, dest)
        while (ev := att.endpoint.next_event()) is not None:
            att.events.append((now, ev))

    def flush_all(self) -> None:
        for att in self.attached:
            self._after(att)

    def _deliver(self, data: bytes, source: Endpoint, dest: Endpoint) -> None:
        now = self.clock.now
        att = self._public.get(dest)
        if att is None:
            nat = self._nats.get(dest.host)
            internal = nat.inbound(dest.port, source, now) if nat is not None else None
            att = self._behind.get((nat.public_ip, internal)) if nat is not None and internal is not None else None
        if att is None:
            self.dropped += 1
            return
        self.delivered += 1
        att.endpoint.receive_datagram(data, source, now)
        self._after(att)

    def run_until(self, t_end: float, *, max_steps: int = 1_000_000) -> None:
        """Process deliveries and timers in time order up to ``t_end``."""
        self.flush_all()
        for _ in range(max_steps):
            t_msg = self._queue[0][0] if self._queue else None
            due = [(t, att) for att in self.attached if (t := att.endpoint.get_timer()) is not None]
            t_timer = min((t for t, _ in due), default=None)
            nxt = min((t for t in (t_msg, t_timer) if t is not None), default=None)
            if nxt is None or nxt > t_end:
                self.clock.advance_to(t_end)
                return
            self.clock.advance_to(nxt)
            if t_msg is not None and t_msg <= nxt:
                _, _, data, src, dst = heapq.heappop(self._queue)
                self._deliver(data, src, dst)
                continue
            for t, att in due:
                if t <= self.clock.now:
                    att.endpoint.handle_timer(self.clock.now)
                    self._after(att)
        raise RuntimeError("simulation did not converge (timer loop?)")

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now + seconds)


def path_state(host: SimHost, peer: int) -> PathState | None:
    """Convenience for tests."""
    return host.paths.state(peer)


BEACON_ENDPOINT = Endpoint("203.0.113.1", 9001)


@dataclass
class Scenario:
    """Two hosts A (node 1) and B (node 2), each behind its own NAT, and a public beacon."""

    net: SimNetwork
    beacon: BeaconServer  # at BEACON_ENDPOINT
    a: SimHost
    b: SimHost
    nat_a: NatBox | None
    nat_b: NatBox | None

    @classmethod
    def build(
        cls,
        type_a: NatType | None,
        type_b: NatType | None,
        config: NatConfig,
        *,
        beacon_config: BeaconConfig | None = None,
        mapping_timeout: float = 30.0,
    ) -> Scenario:
        net = SimNetwork()
        beacon = BeaconServer(beacon_config or BeaconConfig.for_profile(config.profile))
        net.add(beacon, BEACON_ENDPOINT)
        hosts: list[SimHost] = []
        nats: list[NatBox | None] = []
        for i, nat_type in ((1, type_a), (2, type_b)):
            if nat_type is None:
                host = SimHost(i, Endpoint(f"192.0.2.{i}", 4000), BEACON_ENDPOINT, config)
                nat = None
            else:
                host = SimHost(i, Endpoint(f"10.0.{i}.2", 4000), BEACON_ENDPOINT, config)
                nat = NatBox(f"198.51.100.{i}", nat_type, mapping_timeout=mapping_timeout)
            net.add(host, host.local, nat)
            hosts.append(host)
            nats.append(nat)
        return cls(net, beacon, hosts[0], hosts[1], nats[0], nats[1])

    def discover(self, seconds: float = 1.0) -> None:
        now = self.net.clock.now
        self.a.start(now)
        self.b.start(now)
        self.net.run_for(seconds)

    def connect(self, seconds: float = 20.0) -> None:
        """A dials B at B's registered (discovered) endpoint and the strategy runs to its end."""
        self.a.connect(2, self.b.paths.beacon.endpoint, self.net.clock.now)
        self.net.run_for(seconds)

    def exchange(self, tag: bytes = b"", seconds: float = 2.0) -> tuple[bool, bool]:
        """Each side sends one data frame; returns (A got B's, B got A's)."""
        now = self.net.clock.now
        a_before, b_before = len(self.a.inbox), len(self.b.inbox)
        if self.a.paths.state(2) not in (None, PathState.FAILED):
            self.a.send_data(2, b"a->b " + tag, now)
        if self.b.paths.state(1) not in (None, PathState.FAILED):
            self.b.send_data(1, b"b->a " + tag, now)
        self.net.run_for(seconds)
        got_a = any(body == b"b->a " + tag for _, body, _ in self.a.inbox[a_before:])
        got_b = any(body == b"a->b " + tag for _, body, _ in self.b.inbox[b_before:])
        return got_a, got_b


@dataclass(frozen=True)
class PairResult:
    """Outcome of :func:`run_pair`."""

    type_a: NatType | None
    type_b: NatType | None
    state_a: PathState | None  # A's path to B
    state_b: PathState | None  # B's path to A
    a_to_b: bool
    b_to_a: bool
    punch_commands: int
    relayed: tuple[bool, ...] = ()  # per data frame of the exchange: did it arrive via the beacon?

    @property
    def outcome(self) -> str:
        if self.state_a is self.state_b and self.a_to_b and self.b_to_a and self.state_a is not None:
            return self.state_a.name
        return f"BROKEN({self.state_a and self.state_a.name}/{self.state_b and self.state_b.name})"


def run_pair(type_a: NatType | None, type_b: NatType | None, config: NatConfig) -> PairResult:
    """Discovery, a punch attempt and the 9.4 strategy between A and B, then data both ways."""
    sc = Scenario.build(type_a, type_b, config)
    sc.discover()
    sc.connect()
    seen = len(sc.a.inbox), len(sc.b.inbox)
    a_got, b_got = sc.exchange(b"matrix")
    relayed = tuple(via for _, _, via in sc.a.inbox[seen[0] :] + sc.b.inbox[seen[1] :])
    punches = sc.beacon.stats["punch"]
    return PairResult(type_a, type_b, sc.a.paths.state(2), sc.b.paths.state(1), b_got, a_got, punches, relayed)


def run_matrix(config: NatConfig, *, nodes: bool = False) -> dict[tuple[NatType, NatType], PairResult]:
    """:func:`run_pair` (or, with ``nodes``, :func:`run_node_pair`) for all 16 NAT pairs (A's NAT, B's NAT)."""
    run = run_node_pair if nodes else run_pair
    return {(a, b): run(a, b, config) for a in NatType for b in NatType}


# -- real nodes: NatNode over Node (PILA + PILS + Stream) -----------------------------------------------------

NODE_A, NODE_B = 0x0A, 0x0B
ECHO_PORT = 7


class NodePair:
    """Two real nodes A and B, each a :class:`~pilot_proto.nat.NatNode` behind its own NAT, and a beacon.

    Keys are the insecure deterministic test identities (PILA, each node knows the other's Ed25519 key, as
    a registry would tell it); the tunnel keeps offering its key for the whole 9.4 strategy.  B listens
    on port 7.  Every event each endpoint emits is in ``net.events_of(...)``.
    """

    def __init__(self, type_a: NatType, type_b: NatType, config: NatConfig) -> None:
        profile = config.profile
        self.net = SimNetwork()
        self.beacon = BeaconServer(BeaconConfig.for_profile(profile))
        self.net.add(self.beacon, BEACON_ENDPOINT)
        ids = {n: insecure_test_identity(n) for n in (NODE_A, NODE_B)}
        keys = {n: i.public_bytes for n, i in ids.items()}
        tunnel = TunnelConfig.for_profile(profile)
        tunnel = dataclasses.replace(
            tunnel, kex_retries=math.ceil(strategy_duration(config) / tunnel.kex_retry_interval)
        )
        self.nats: dict[int, NatBox] = {}
        self.nodes: dict[int, NatNode[Node]] = {}
        for i, (n, nat_type) in enumerate(((NODE_A, type_a), (NODE_B, type_b)), start=1):
            node = Node(n, InsecureDeterministicRng(f"nat-node-{n}"), profile=profile, identity=ids[n],
                        peer_keys=keys, tunnel_config=tunnel)  # fmt: skip
            nn = NatNode(node, BEACON_ENDPOINT, config)
            box = NatBox(f"198.51.100.{i}", nat_type)
            self.net.add(nn, Endpoint(f"10.0.{i}.2", 4000), box)
            self.nats[n], self.nodes[n] = box, nn
        self.a, self.b = self.nodes[NODE_A], self.nodes[NODE_B]
        self.b.node.stream.listen(ECHO_PORT)

    def start(self, seconds: float = 1.0) -> None:
        """Discovery for both (9.1)."""
        for nn in self.nodes.values():
            nn.start(self.net.clock.now)
        self.net.run_for(seconds)

    def events(self, endpoint: DatagramEndpoint) -> list[Event]:
        return [e for _, e in self.net.events_of(endpoint)]

    def received(self, endpoint: DatagramEndpoint, conn_id: int | None = None) -> bytes:
        """Every stream byte ``endpoint`` received (on ``conn_id``, or on any connection)."""
        return b"".join(e.data for e in self.events(endpoint)
                        if isinstance(e, DataReceived) and (conn_id is None or e.conn_id == conn_id))  # fmt: skip

    def echo(self, data: bytes, seconds: float = 30.0) -> tuple[bool, bool]:
        """A dials B at B's discovered endpoint and streams ``data`` to port 7; B sends it back reversed.

        Returns (B got A's bytes exactly, A got B's bytes exactly).
        """
        now = self.net.clock.now
        self.a.dial(NODE_B, self.b.paths.beacon.endpoint, now)
        cid = self.a.node.connect(SocketAddr(Addr(0, NODE_B), ECHO_PORT), now)
        self.a.node.send(cid, data, now)
        self.net.run_for(seconds)
        accepted = [e for e in self.events(self.b) if isinstance(e, ConnectionRequested)]
        if len(accepted) != 1:
            return False, False
        b_got = self.received(self.b, accepted[0].conn_id) == data
        self.b.node.send(accepted[0].conn_id, data[::-1], self.net.clock.now)
        self.net.run_for(5.0)
        return b_got, self.received(self.a, cid) == data[::-1]


def run_node_pair(type_a: NatType | None, type_b: NatType | None, config: NatConfig) -> PairResult:
    """:func:`run_pair` with real nodes: discovery, the 9.4 strategy, then a 4 KiB stream echo on port 7."""
    if type_a is None or type_b is None:
        raise ValueError("run_node_pair needs a NAT on both sides")
    pair = NodePair(type_a, type_b, config)
    pair.start()
    b_got, a_got = pair.echo(bytes(range(256)) * 16, seconds=40.0)
    state_a, state_b = pair.a.state(NODE_B), pair.b.state(NODE_A)
    return PairResult(type_a, type_b, state_a, state_b, b_got, a_got, pair.beacon.stats["punch"])


def format_matrix(results: dict[tuple[NatType, NatType], PairResult], title: str) -> str:
    """The 4 x 4 table: rows A's NAT (A dials), columns B's NAT."""
    width = 8
    lines = [title, "A \\ B".ljust(6) + "".join(t.short.ljust(width) for t in NatType)]
    for a in NatType:
        lines.append(a.short.ljust(6) + "".join(results[a, b].outcome.ljust(width) for b in NatType))
    return "\n".join(line.rstrip() for line in lines)
