"""Per-peer path manager: the connection strategy of draft 9.4 over punching (9.2) and relay (9.3).

:class:`PathManager` is the one sans-IO object a daemon puts between its UDP
socket and its tunnel layer.  The tunnel layer hands it frames with
:meth:`PathManager.send`; it sends them straight to the peer or wraps them in
a 0x05 relay frame to the beacon, and it unwraps relay deliveries on the way
in, so the tunnel and session layers see the same frames on either path
(NAT-024, NAT-034).

Per peer::

    DIRECT_TRYING --authenticated direct frame--> DIRECT
    DIRECT_TRYING --3 unanswered direct attempts--> RELAY_TRYING   (no beacon: FAILED)
    RELAY_TRYING  --authenticated relayed frame--> RELAY
    RELAY_TRYING  --3 unanswered relay attempts--> FAILED (PeerUnreachable)
    RELAY         --authenticated direct frame--> DIRECT           (NAT-035)
    DIRECT        --authenticated relayed frame--> RELAY           (ingress-driven, as Go)
    DIRECT        --nothing authenticated for direct_dead_after--> DIRECT_TRYING (strategy again)

Trust model.  The path only ever moves on evidence the *tunnel layer* has
authenticated: it calls :meth:`confirm_direct` after a PILS/PILA from an
endpoint verified, or :meth:`confirm_relay` after one delivered by the beacon
verified.  Everything this module sees by itself is unauthenticated and at
most produces a *candidate* endpoint, probed while the peer is not DIRECT:

* a PunchCommand (source-checked against the beacon address, NAT-040) adds a
  candidate only for peers we asked the beacon to punch to; unsolicited ones
  (the responder side of 9.2) only make us send PILPs, rate-limited (NAT-041, NAT-046);
* a PILP's source becomes a candidate for the sender it names (draft only;
  go-interop ignores PILP contents, erratum E-NAT-1; NAT-043);
* a RelayDeliver's sender ID is passed up as ``sender_hint`` only (NAT-042).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError
from pilot_proto.nat.beacon_client import BeaconClient
from pilot_proto.nat.config import NatConfig
from pilot_proto.nat.events import (
    Datagram,
    FrameReceived,
    NatEvent,
    PathDirect,
    PathRelayed,
    PeerUnreachable,
)
from pilot_proto.nat.ratelimit import TokenBucket
from pilot_proto.profile import Profile
from pilot_proto.wire.beacon import Endpoint, PunchCommand, RelayDeliver
from pilot_proto.wire.frames import PunchFrame, decode_frame, encode_frame, is_beacon_message

__all__ = ["PathManager", "PathState", "PeerPath"]


class PathState(enum.Enum):
    DIRECT_TRYING = "direct-trying"
    DIRECT = "direct"
    RELAY_TRYING = "relay-trying"
    RELAY = "relay"
    FAILED = "failed"


@dataclass
class PeerPath:
    """What we know about reaching one peer."""

    node: int
    state: PathState
    registered: Endpoint | None = None  # from the registry (the peer's locator)
    direct: Endpoint | None = None  # confirmed by the tunnel layer
    candidates: list[Endpoint] = field(default_factory=list)  # unauthenticated hints, newest first
    attempts: int = 0
    deadline: float | None = None  # next strategy attempt / relay probe / keepalive
    punch_until: float | None = None  # we asked the beacon to punch to this peer until then
    last_sent: float = 0.0
    last_heard: float = 0.0  # last authenticated frame (confirm_direct / confirm_relay)

    def targets(self) -> list[Endpoint]:
        out = [self.registered] if self.registered is not None else []
        out.extend(c for c in self.candidates if c not in out)
        return out


def _sender_of(frame: bytes, profile: Profile) -> int | None:
    """The sender field a frame claims (PILS/PILK/PILA/draft PILP), or the source node of a PILT packet."""
    try:
        parsed = decode_frame(frame, profile)
    except DecodeError:
        return None
    sender = getattr(parsed, "sender", None)
    if sender is None and frame[:4] == b"PILT" and len(frame) >= 4 + 12:
        return int.from_bytes(frame[4 + 8 : 4 + 12], "big")  # header bytes 8-11: source node
    return sender


class PathManager:
    """Connection strategy, punching and relay for every peer of one daemon.

    Args:
        node: our node ID.
        beacon: the beacon endpoint, or ``None`` (no punching, no relay).
        config: :class:`NatConfig` (``NatConfig.for_profile(...)``).
        probe: returns a *fresh* frame for ``peer`` that the peer's tunnel layer
            authenticates and answers (a keepalive / ping); used for strategy
            attempts, relay-to-direct probes and keepalives.  Without it a PILP
            is sent, which opens NAT mappings but is never answered.
        public_endpoint: known public endpoint; skips discovery (NAT-004).
    """

    def __init__(
        self,
        node: int,
        beacon: Endpoint | None,
        config: NatConfig | None = None,
        *,
        probe: Callable[[int], bytes] | None = None,
        public_endpoint: Endpoint | None = None,
    ) -> None:
        self.node = node
        self.config = config or NatConfig()
        self._out: list[Datagram] = []
        self._events: list[NatEvent] = []
        self.beacon = BeaconClient(node, beacon, self.config, self._out, self._events, public_endpoint=public_endpoint)
        self._probe = probe
        self.peers: dict[int, PeerPath] = {}
        self.stats: dict[str, int] = {
            "unsolicited_punch": 0, "punch_rate_limited": 0, "pilp": 0, "candidate": 0, "malformed": 0,
            "relay_bad": 0, "table_full": 0,
        }  # fmt: skip
        self._punch_bucket: TokenBucket | None = None

    # -- outputs -------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out[:] = list(self._out), []
        return out

    def events(self) -> list[NatEvent]:
        out, self._events[:] = list(self._events), []
        return out

    def state(self, peer: int) -> PathState | None:
        path = self.peers.get(peer)
        return path.state if path else None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Run endpoint discovery (9.1)."""
        self._punch_bucket = TokenBucket(self.config.unsolicited_punch_rate, self.config.unsolicited_punch_burst, now)
        self.beacon.start(now)

    def connect(self, peer: int, now: float, endpoint: Endpoint | None = None) -> None:
        """Dial ``peer`` whose registered endpoint is ``endpoint`` (9.4).

        Idempotent unless the peer is unknown or FAILED: while a dial runs or a
        path is up, it only records a newer registered endpoint.
        """
        path = self.peers.get(peer)
        if path is not None and path.state is not PathState.FAILED:
            if endpoint is not None:
                path.registered = endpoint
            return
        path = self._path(peer, PathState.DIRECT_TRYING)
        path.registered = endpoint or path.registered
        self._dial(path, now)

    def _dial(self, path: PeerPath, now: float) -> None:
        path.state = PathState.DIRECT_TRYING
        path.attempts = 0
        if self.config.use_punch and self.beacon.beacon is not None:
            self.beacon.punch_request(path.node)  # NAT-011
            path.punch_until = now + self._phase_length(self.config.direct_attempts)
        self._direct_attempt(path, now)

    def _phase_length(self, attempts: int) -> float:
        c = self.config
        return sum(c.attempt_timeout * c.attempt_backoff**k for k in range(attempts))

    def _path(self, peer: int, state: PathState) -> PeerPath:
        path = self.peers.get(peer)
        if path is None:
            if len(self.peers) >= self.config.max_peers:
                self._evict()
            path = self.peers[peer] = PeerPath(peer, state)
        return path

    def _evict(self) -> None:
        for node, p in self.peers.items():
            if p.state is PathState.FAILED:
                del self.peers[node]
                return
        self.stats["table_full"] += 1
        raise LocalProtocolError(ErrorCode.TABLE_FULL, "too many peers", section="9", requirement="NAT-046")

    # -- sending --------------------------------------------------------------------------------

    def send(self, peer: int, frame: bytes, now: float) -> None:
        """Send a tunnel frame to ``peer`` on its current path (transparent to the caller)."""
        path = self.peers.get(peer)
        if path is None:
            raise LocalProtocolError(
                ErrorCode.UNKNOWN_PEER, f"no path to node {peer}; connect() first", section="9.4", requirement="NAT-030"
            )
        if path.state is PathState.FAILED:
            raise LocalProtocolError(
                ErrorCode.UNREACHABLE, f"node {peer} is unreachable", section="9.4", requirement="NAT-033"
            )
        path.last_sent = now
        if path.state is PathState.DIRECT and path.direct is not None:
            self._out.append(Datagram(frame, path.direct))
        elif path.state is PathState.DIRECT_TRYING:
            for target in path.targets():
                self._out.append(Datagram(frame, target))
        else:
            self.beacon.relay(peer, frame)

    def _probe_frame(self, peer: int) -> bytes:
        if self._probe is not None:
            return self._probe(peer)
        return self._pilp()

    def _pilp(self) -> bytes:
        return encode_frame(PunchFrame(self.node if self.config.pilp_with_sender else None))

    def _direct_attempt(self, path: PeerPath, now: float) -> None:
        frame = self._probe_frame(path.node)
        for target in path.targets():
            self._out.append(Datagram(frame, target))
        path.last_sent = now
        path.deadline = now + self.config.attempt_timeout * self.config.attempt_backoff**path.attempts
        path.attempts += 1

    def _relay_attempt(self, path: PeerPath, now: float) -> None:
        self.beacon.relay(path.node, self._probe_frame(path.node))
        path.last_sent = now
        path.deadline = now + self.config.attempt_timeout * self.config.attempt_backoff**path.attempts
        path.attempts += 1

    # -- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        deadlines = [p.deadline for p in self.peers.values() if p.deadline is not None]
        t = self.beacon.get_timer()
        if t is not None:
            deadlines.append(t)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self.beacon.handle_timer(now)
        for path in list(self.peers.values()):
            if path.deadline is not None and now >= path.deadline:
                path.deadline = None
                self._fire(path, now)

    def _fire(self, path: PeerPath, now: float) -> None:
        c = self.config
        if path.state is PathState.DIRECT_TRYING:
            if path.attempts < c.direct_attempts:
                self._direct_attempt(path, now)
            elif self.beacon.beacon is not None:
                path.state = PathState.RELAY_TRYING  # NAT-031
                path.attempts = 0
                self._relay_attempt(path, now)
            else:
                self._fail(path)
        elif path.state is PathState.RELAY_TRYING:
            if path.attempts < c.relay_attempts:
                self._relay_attempt(path, now)
            else:
                self._fail(path)
        elif path.state is PathState.RELAY:
            # NAT-035: look for a direct path again; only an authenticated answer moves us
            frame = self._probe_frame(path.node)
            for target in path.targets():
                self._out.append(Datagram(frame, target))
            path.deadline = now + c.relay_probe_interval
        elif path.state is PathState.DIRECT and c.keepalive_interval is not None and path.direct is not None:
            if c.direct_dead_after is not None and now - path.last_heard >= c.direct_dead_after - 1e-9:
                # nothing authenticated arrived directly for too long: run the 9.4 strategy again,
                # starting with the old direct endpoint (a NAT may have dropped the mapping)
                path.candidates = [path.direct, *path.candidates][: c.max_candidates]
                path.direct = None
                self._dial(path, now)
                return
            if now - path.last_sent >= c.keepalive_interval - 1e-9:
                self._out.append(Datagram(self._probe_frame(path.node), path.direct))  # NAT-036
                path.last_sent = now
            path.deadline = path.last_sent + c.keepalive_interval
            if c.direct_dead_after is not None:
                path.deadline = min(path.deadline, path.last_heard + c.direct_dead_after)

    def _fail(self, path: PeerPath) -> None:
        path.state = PathState.FAILED  # NAT-033
        path.deadline = None
        err = PilotError(
            ErrorCode.UNREACHABLE,
            f"node {path.node}: {self.config.direct_attempts} direct and {self.config.relay_attempts} relay "
            "attempts unanswered",
            section="9.4",
            requirement="NAT-033",
        )
        self._events.append(PeerUnreachable(path.node, err))

    # -- evidence from the tunnel layer (authenticated) --------------------------------------

    def confirm_direct(self, peer: int, endpoint: Endpoint, now: float) -> None:
        """The tunnel layer authenticated a frame from ``peer`` arriving directly from ``endpoint``."""
        path = self._path(peer, PathState.DIRECT)
        path.last_heard = now
        changed = path.state is not PathState.DIRECT or path.direct != endpoint
        path.state = PathState.DIRECT
        path.direct = endpoint
        path.punch_until = None
        if changed:
            path.candidates.clear()
            path.deadline = now + self.config.keepalive_interval if self.config.keepalive_interval else None
            self._events.append(PathDirect(peer, endpoint))

    def confirm_relay(self, peer: int, now: float) -> None:
        """The tunnel layer authenticated a frame from ``peer`` delivered by the beacon."""
        if self.beacon.beacon is None:
            return
        known = self.peers.get(peer)
        if known is not None and known.state is PathState.RELAY:
            return
        path = self._path(peer, PathState.RELAY)
        path.last_heard = now
        path.state = PathState.RELAY
        path.direct = None
        path.deadline = now + self.config.relay_probe_interval
        self._events.append(PathRelayed(peer))

    # -- receiving ------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, source: Endpoint, now: float) -> None:
        """Feed one datagram from the tunnel socket; results appear in :meth:`events`."""
        if not data:
            return
        if is_beacon_message(data):
            msg = self.beacon.accept(data, source, now)
            if isinstance(msg, PunchCommand):
                self._on_punch_command(msg.endpoint, now)
            elif isinstance(msg, RelayDeliver):
                if len(msg.payload) < 4 or is_beacon_message(msg.payload) or msg.payload[:4] == b"PILP":
                    self.stats["relay_bad"] += 1
                    return
                self._events.append(FrameReceived(msg.payload, source, True, msg.sender))
            return
        if self.beacon.from_beacon(source):
            if self.config.accept_bare_relay and len(data) >= 4 and data[:4] != b"PILP":
                sender = _sender_of(data, self.config.profile)
                self._events.append(FrameReceived(data, source, True, sender))  # draft delivery (E-NAT-2)
            else:
                self.stats["relay_bad"] += 1
            return
        if len(data) < 4:
            self.stats["malformed"] += 1  # not even a magic (TUN-001)
            return
        if data[:4] == b"PILP":
            self._on_pilp(data, source)
            return
        self._events.append(FrameReceived(data, source, False, _sender_of(data, self.config.profile)))

    def _on_punch_command(self, endpoint: Endpoint, now: float) -> None:
        pending = [p for p in self.peers.values() if p.punch_until is not None and now <= p.punch_until]
        if not pending:
            # the responder side of 9.2: we did not ask, so it may only make us punch (rate-limited)
            self.stats["unsolicited_punch"] += 1
            if self._punch_bucket is None:
                self._punch_bucket = TokenBucket(
                    self.config.unsolicited_punch_rate, self.config.unsolicited_punch_burst, now
                )
            if not self._punch_bucket.take(now):
                self.stats["punch_rate_limited"] += 1
                return
        for path in pending:
            self._add_candidate(path, endpoint)
        pilp = self._pilp()
        for _ in range(self.config.punch_packets):
            self._out.append(Datagram(pilp, endpoint))  # NAT-015

    def _on_pilp(self, data: bytes, source: Endpoint) -> None:
        self.stats["pilp"] += 1
        try:
            frame = decode_frame(data, self.config.profile)
        except DecodeError:
            self.stats["malformed"] += 1
            return
        if not isinstance(frame, PunchFrame) or frame.sender is None or not self.config.pilp_records_candidate:
            return  # go-interop: contents ignored (E-NAT-1)
        path = self.peers.get(frame.sender)
        if path is not None and path.state is not PathState.DIRECT:
            self._add_candidate(path, source)  # NAT-043: a candidate, never the path

    def _add_candidate(self, path: PeerPath, endpoint: Endpoint) -> None:
        if endpoint == path.registered or endpoint in path.candidates:
            return
        path.candidates.insert(0, endpoint)
        del path.candidates[self.config.max_candidates :]
        self.stats["candidate"] += 1
