"""A node behind a NAT: a :class:`~pilot_proto.node.Node` whose peers are reached by the 9.4 strategy.

:class:`NatNode` is sans-IO and speaks the idiom of :mod:`pilot_proto.sansio`.  It owns a node
(tunnel + session layers) and a :class:`~pilot_proto.nat.path.PathManager` (discovery, punching,
relay) on the *same* UDP socket, and joins them without either knowing of the other:

* the node is told every peer lives at a :class:`PeerRoute` (a token, not an address), so each
  datagram its tunnel emits says which peer it is for; :class:`NatNode` hands it to
  ``PathManager.send(peer, frame)``, which sends it direct, to every candidate while trying, or
  wrapped in a 0x05 relay frame (NAT-024, NAT-034);
* every datagram from the socket goes to the path manager first; each tunnel frame it passes up
  (direct or unwrapped from a relay delivery) is fed to the node as coming from the
  :class:`PeerRoute` of the sender the *frame itself* names (never the relay header's claim);
* the path moves only on authenticated evidence (NAT-042, NAT-043): a PILS that the tunnel
  decrypted (the node's ``packets_in`` grew) confirms the path it arrived on -- ``confirm_direct``
  with its source, or ``confirm_relay``;
* the path manager's probes (strategy attempts, relay-to-direct probes, keepalives) are Control
  pings (draft 8, port 0) through the node, so the peer's tunnel authenticates and answers them;
  before a key exists the probe is the tunnel's key-exchange offer.  Probe replies are not
  surfaced as events.

The node's tunnel must keep offering its key for as long as the strategy runs: with the defaults
its key exchange gives up after 4 s (and the draft profile then falls back to plaintext, 10.2),
while the relay phase only starts at 7 s.  Build the node with ``TunnelConfig.for_profile(p,
kex_retries=math.ceil(strategy_duration(nat_config) / kex_retry_interval))``.

Before the path manager has a live path to a peer (the responder side, before the first
authenticated frame), frames for it are answered the way its last frame came: to that source, or
by relay.  The node is only used through a small structural interface (:class:`NodeLike`), so this
module does not import :mod:`pilot_proto.node`.

Events: the path manager's (``EndpointDiscovered``, ``PathDirect``, ``PathRelayed``,
``PeerUnreachable``, ``InputRejected`` ...) first, then the node's (session events, tunnel
notices), pulled lazily so popping ``DataReceived`` still frees receive window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pilot_proto.errors import LocalProtocolError
from pilot_proto.nat.beacon_client import frame_sender
from pilot_proto.nat.config import NatConfig
from pilot_proto.nat.events import FrameReceived
from pilot_proto.nat.path import LAYER, PathManager, PathState
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.wire.address import Addr
from pilot_proto.wire.beacon import Endpoint

__all__ = ["NatNode", "NodeLike", "PeerRoute"]

_KEX_MAGICS = (b"PILK", b"PILA")
_MAX_PROBES = 1024
K = TypeVar("K")
V = TypeVar("V")


def _bounded_put(table: dict[K, V], key: K, value: V, limit: int) -> None:
    """``table[key] = value``, dropping the oldest entries beyond ``limit`` (NAT-046: bounded state)."""
    if key in table:
        table[key] = value  # the common case (every frame of a known peer): no reordering, no eviction
        return
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]


@dataclass(frozen=True, slots=True)
class PeerRoute:
    """The underlay "address" a :class:`NatNode` gives its node for ``peer``: route by the path manager."""

    peer: int


class NodeLike(Protocol):
    """What :class:`NatNode` needs of a :class:`~pilot_proto.node.Node`."""

    @property
    def node_id(self) -> int: ...

    @property
    def addr(self) -> Addr: ...

    packets_in: int

    def add_peer(self, node_id: int, udp_addr: Address, ed25519_public: bytes | None = None) -> None: ...
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...
    def datagrams_to_send(self) -> list[Datagram]: ...
    def next_event(self) -> Event | None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def ping(self, dst: Addr, now: float, payload: bytes = b"") -> int: ...


N = TypeVar("N", bound=NodeLike)


class NatNode(Generic[N]):
    """A node and its path manager on one socket.

    Args:
        node: the :class:`~pilot_proto.node.Node` (any :class:`NodeLike`).
        beacon: the beacon endpoint, or ``None`` (direct paths only).
        config: :class:`NatConfig` (``NatConfig.for_profile(node.profile)`` is the usual choice).
        public_endpoint: a known public endpoint; skips discovery (NAT-004).
    """

    def __init__(
        self,
        node: N,
        beacon: Endpoint | None,
        config: NatConfig | None = None,
        *,
        public_endpoint: Endpoint | None = None,
    ) -> None:
        self.node = node
        self.config = config or NatConfig()
        self.paths = PathManager(node.node_id, beacon, self.config, probe=self._probe, public_endpoint=public_endpoint)
        self._out: list[Datagram] = []  # answers to peers without a live path yet
        self._held: list[Datagram] = []  # node output taken while building a probe, routed next
        self._events: deque[Event] = deque()
        self._reply_via: dict[int, tuple[Endpoint, bool]] = {}  # peer -> (source, via_relay) of its last frame
        self._last_kex: dict[int, bytes] = {}  # peer -> our last key-exchange frame to it (probe before a key)
        self._probe_seqs: dict[int, None] = {}  # ordered set of our probe pings' sequence numbers
        self._now = 0.0
        #: frames the node emitted that could not be routed (reason -> count)
        self.dropped: dict[str, int] = {}

    # -- the idiom -------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self._now = now
        self.paths.receive_datagram(data, addr, now)
        self._drain_paths(now)
        self._route(now)

    def datagrams_to_send(self) -> list[Datagram]:
        self._route(self._now)
        out = self.paths.datagrams_to_send()
        if self._out:
            out.extend(self._out)
            self._out = []
        return out

    def next_event(self) -> Event | None:
        if self._events:
            return self._events.popleft()
        while (ev := self.node.next_event()) is not None:
            # a stream PingReply (matched by name: this layer does not import the session layer)
            seq = getattr(ev, "seq", None)
            if type(ev).__name__ == "PingReply" and seq in self._probe_seqs:
                del self._probe_seqs[seq]  # our own probe's answer
                continue
            return ev
        return None

    def events(self) -> list[Event]:
        """Drain :meth:`next_event` (convenience)."""
        out: list[Event] = []
        while (ev := self.next_event()) is not None:
            out.append(ev)
        return out

    def get_timer(self) -> float | None:
        a, b = self.paths.get_timer(), self.node.get_timer()
        if a is None:
            return b
        return a if b is None else min(a, b)

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.paths.handle_timer(now)
        self._drain_paths(now)
        self.node.handle_timer(now)
        self._route(now)

    # -- application API ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Run endpoint discovery (9.1); the discovered endpoint is the locator to register."""
        self._now = now
        self.paths.start(now)
        self._drain_paths(now)

    def dial(self, peer: int, locator: Endpoint | None, now: float, ed25519_public: bytes | None = None) -> None:
        """Reach ``peer`` (registered at ``locator``) by the 9.4 strategy; then use the node's API as usual."""
        self._now = now
        self.node.add_peer(peer, PeerRoute(peer), ed25519_public)
        self.paths.connect(peer, now, locator)
        self._drain_paths(now)
        self._route(now)

    def state(self, peer: int) -> PathState | None:
        return self.paths.state(peer)

    # -- internals -------------------------------------------------------------------------------

    def _drain_paths(self, now: float) -> None:
        while (ev := self.paths.next_event()) is not None:
            if isinstance(ev, FrameReceived):
                self._on_frame(ev, now)
            else:
                self._events.append(ev)

    def _on_frame(self, ev: FrameReceived, now: float) -> None:
        # a direct frame's hint is already its own sender field; a 0x06's is the relay header's claim
        sender = frame_sender(ev.frame, self.config.profile) if ev.via_relay else ev.sender_hint
        if sender is None or sender == self.node.node_id:
            sender = ev.sender_hint  # the tunnel will refuse it; the route token only names whom to answer
        if sender is None:
            self.node.receive_datagram(ev.frame, ev.source, now)
            return
        _bounded_put(self._reply_via, sender, (ev.source, ev.via_relay), self.config.max_peers)
        before = self.node.packets_in
        self.node.receive_datagram(ev.frame, PeerRoute(sender), now)
        if ev.frame[:4] == b"PILS" and self.node.packets_in > before:
            self._confirm(sender, ev, now)  # the tunnel authenticated it: only now may the path move

    def _confirm(self, peer: int, ev: FrameReceived, now: float) -> None:
        try:
            if ev.via_relay:
                self.paths.confirm_relay(peer, now)
            else:
                self.paths.confirm_direct(peer, ev.source, now)
        except LocalProtocolError as exc:  # the peer table is full of live paths (NAT-046)
            self._events.append(InputRejected(exc, LAYER, ev.source, len(ev.frame), peer))
        self._drain_paths(now)

    def _route(self, now: float) -> None:
        """Hand every datagram the node emitted to the path of the peer it is for."""
        pending = self._held + self.node.datagrams_to_send() if self._held else self.node.datagrams_to_send()
        self._held = []
        for dgram in pending:
            self._route_one(dgram, now)

    def _route_one(self, dgram: Datagram, now: float) -> None:
        route = dgram.addr
        if not isinstance(route, PeerRoute):
            self._out.append(dgram)  # a peer the application added with a real address
            return
        peer = route.peer
        if dgram.data[:4] in _KEX_MAGICS:
            _bounded_put(self._last_kex, peer, dgram.data, self.config.max_peers)
        state = self.paths.state(peer)
        if state is not None and state is not PathState.FAILED:
            self.paths.send(peer, dgram.data, now)
            return
        via = self._reply_via.get(peer)
        if via is None:
            self.dropped["no_path"] = self.dropped.get("no_path", 0) + 1
            return
        source, relayed = via
        if relayed:
            self.paths.beacon.relay(peer, dgram.data)
        else:
            self._out.append(Datagram(dgram.data, source))

    def _probe(self, peer: int) -> bytes:
        """A fresh frame ``peer`` answers: a Control ping through the node, or our key-exchange offer."""
        seq = self.node.ping(Addr(self.node.addr.network, peer), self._now, b"nat-probe")
        _bounded_put(self._probe_seqs, seq, None, _MAX_PROBES)  # unanswered probes age out
        probe: bytes | None = None
        for dgram in self.node.datagrams_to_send():
            if probe is None and dgram.addr == PeerRoute(peer):
                probe = dgram.data
                if probe[:4] in _KEX_MAGICS:
                    _bounded_put(self._last_kex, peer, probe, self.config.max_peers)
            else:
                self._held.append(dgram)
        if probe is None:
            probe = self._last_kex.get(peer)  # the ping waits for the key; offer it again
        return probe if probe is not None else self.paths.punch_frame()
