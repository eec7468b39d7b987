"""Per-peer path manager: the connection strategy of draft 9.4 over punching (9.2) and relay (9.3).

:class:`PathManager` is the one sans-IO object a daemon puts between its UDP socket and its
tunnel layer, in the idiom of :mod:`pilot_proto.sansio`.  The tunnel layer hands it frames with
:meth:`PathManager.send`; it sends them straight to the peer or wraps them in a 0x05 relay frame
to the beacon, and it unwraps relay deliveries on the way in, so the tunnel and session layers
see the same frames on either path (NAT-024, NAT-034).

Every change of a peer's :class:`PathState` goes through :data:`TRANSITIONS` (h2's
``_transitions`` is the model): the input (:class:`PathInput`) and the current state select the
next state and the name of the action that runs; ``tests/test_nat_transitions.py`` sweeps every
(state, input) pair against it.  In short::

    (none)|FAILED --connect--> DIRECT_TRYING (dial: punch request + direct attempt 1)
    DIRECT_TRYING --retry--> DIRECT_TRYING, --exhausted--> RELAY_TRYING (NAT-031; no beacon: FAILED)
    RELAY_TRYING  --retry--> RELAY_TRYING,  --exhausted--> FAILED (PeerUnreachable, NAT-033)
    any           --authenticated direct frame--> DIRECT
    any           --authenticated relayed frame--> RELAY (ingress-driven, as Go)
    RELAY         --probe due--> RELAY (probe the direct targets again, NAT-035)
    DIRECT        --keepalive due--> DIRECT (NAT-036), --silent too long--> DIRECT_TRYING (dial again)

Trust model.  The path only ever moves on evidence the *tunnel layer* has authenticated: it
calls :meth:`confirm_direct` after a PILS/PILA from an endpoint verified, or
:meth:`confirm_relay` after one delivered by the beacon verified.  Everything this module sees
by itself is unauthenticated and at most produces a *candidate* endpoint, probed while the peer
is not DIRECT:

* a PunchCommand (source-checked against the beacon address, NAT-040) adds a candidate only for
  peers we asked the beacon to punch to; unsolicited ones (the responder side of 9.2) only make
  us send PILPs, rate-limited (NAT-041, NAT-046);
* a PILP's source becomes a candidate for the sender it names (draft only; go-interop ignores
  PILP contents, erratum E-NAT-1; NAT-043);
* a relay delivery's sender ID is passed up as ``sender_hint`` only (NAT-042).

Input that is refused (a truncated datagram, a malformed PILP, a rate-limited punch command, and
everything the :class:`~pilot_proto.nat.beacon_client.BeaconClient` refuses) becomes one
:class:`~pilot_proto.sansio.InputRejected` and moves nothing.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError, RemoteProtocolError
from pilot_proto.nat._addr import as_endpoint, is_go_private
from pilot_proto.nat.beacon_client import BeaconClient, frame_sender
from pilot_proto.nat.config import NatConfig
from pilot_proto.nat.events import (
    FrameReceived,
    PathDirect,
    PathRelayed,
    PeerUnreachable,
    PunchCommanded,
    RelayDelivered,
)
from pilot_proto.nat.ratelimit import TokenBucket
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.wire.beacon import Endpoint
from pilot_proto.wire.frames import PunchFrame, decode_frame, encode_frame, is_beacon_message

__all__ = [
    "LAYER",
    "TRANSITIONS",
    "PathInput",
    "PathManager",
    "PathState",
    "PeerPath",
    "Transition",
    "strategy_duration",
]

LAYER = "path"


class PathState(enum.Enum):
    DIRECT_TRYING = "direct-trying"
    DIRECT = "direct"
    RELAY_TRYING = "relay-trying"
    RELAY = "relay"
    FAILED = "failed"


class PathInput(enum.Enum):
    """What can happen to one peer's path."""

    CONNECT = "connect"  # the application dials (with the registry's locator, if known)
    CONFIRM_DIRECT = "confirm-direct"  # the tunnel layer authenticated a frame that arrived directly
    CONFIRM_RELAY = "confirm-relay"  # ... one the beacon delivered
    RETRY = "retry"  # an attempt went unanswered and the phase has attempts left
    EXHAUSTED = "exhausted"  # the phase's attempts are used up (and a beacon could relay)
    EXHAUSTED_NO_BEACON = "exhausted-no-beacon"  # the direct phase is used up and there is no beacon
    PROBE_DUE = "probe-due"  # RELAY: time to look for a direct path again (NAT-035)
    KEEPALIVE_DUE = "keepalive-due"  # DIRECT: keep the NAT mapping open (NAT-036)
    DIRECT_SILENT = "direct-silent"  # DIRECT: nothing authenticated for ``direct_dead_after``


class Transition(NamedTuple):
    next: PathState
    action: str  # PathManager._act_<action> runs after the state is set


_S, _I, _T = PathState, PathInput, Transition

#: (state, input) -> (next state, action).  ``None`` is "no path to this peer yet".  A pair not
#: listed cannot happen; :meth:`PathManager._apply` refuses it with ``INVALID_STATE``.
TRANSITIONS: Mapping[tuple[PathState | None, PathInput], Transition] = {
    (None, _I.CONNECT): _T(_S.DIRECT_TRYING, "dial"),
    (_S.FAILED, _I.CONNECT): _T(_S.DIRECT_TRYING, "dial"),
    (_S.DIRECT_TRYING, _I.CONNECT): _T(_S.DIRECT_TRYING, "learn_locator"),
    (_S.RELAY_TRYING, _I.CONNECT): _T(_S.RELAY_TRYING, "learn_locator"),
    (_S.DIRECT, _I.CONNECT): _T(_S.DIRECT, "learn_locator"),
    (_S.RELAY, _I.CONNECT): _T(_S.RELAY, "learn_locator"),
    **{(s, _I.CONFIRM_DIRECT): _T(_S.DIRECT, "go_direct") for s in (None, _S.DIRECT_TRYING, _S.RELAY_TRYING,
                                                                     _S.RELAY, _S.FAILED)},
    (_S.DIRECT, _I.CONFIRM_DIRECT): _T(_S.DIRECT, "heard_direct"),
    **{(s, _I.CONFIRM_RELAY): _T(_S.RELAY, "go_relay") for s in (None, _S.DIRECT_TRYING, _S.RELAY_TRYING,
                                                                   _S.DIRECT, _S.FAILED)},
    (_S.RELAY, _I.CONFIRM_RELAY): _T(_S.RELAY, "heard_relay"),
    (_S.DIRECT_TRYING, _I.RETRY): _T(_S.DIRECT_TRYING, "direct_attempt"),  # NAT-030
    (_S.DIRECT_TRYING, _I.EXHAUSTED): _T(_S.RELAY_TRYING, "start_relay"),  # NAT-031
    (_S.DIRECT_TRYING, _I.EXHAUSTED_NO_BEACON): _T(_S.FAILED, "fail"),  # NAT-033
    (_S.RELAY_TRYING, _I.RETRY): _T(_S.RELAY_TRYING, "relay_attempt"),  # NAT-032
    (_S.RELAY_TRYING, _I.EXHAUSTED): _T(_S.FAILED, "fail"),  # NAT-033
    (_S.RELAY, _I.PROBE_DUE): _T(_S.RELAY, "probe_direct"),  # NAT-035
    (_S.DIRECT, _I.KEEPALIVE_DUE): _T(_S.DIRECT, "keepalive"),  # NAT-036
    (_S.DIRECT, _I.DIRECT_SILENT): _T(_S.DIRECT_TRYING, "redial"),
}  # fmt: skip

#: Every action name the table uses (each is a ``PathManager._act_<name>`` method).
ACTIONS = frozenset(t.action for t in TRANSITIONS.values())


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


def _phase(config: NatConfig, attempts: int) -> float:
    return sum(config.attempt_timeout * config.attempt_backoff**k for k in range(attempts))


def strategy_duration(config: NatConfig, beacon: bool = True) -> float:
    """Seconds from a dial to ``PeerUnreachable``: every direct attempt's wait, then every relay attempt's (9.4).

    With the defaults 1 + 2 + 4 s direct and 1 + 2 + 4 s relay: 14 s.  A tunnel layer above that must
    keep its key exchange alive at least this long, or it gives up before the relay phase starts.
    """
    return _phase(config, config.direct_attempts) + (_phase(config, config.relay_attempts) if beacon else 0.0)


def _remote(code: ErrorCode, rule: str, field: str, requirement: str, section: str = "9") -> RemoteProtocolError:
    return RemoteProtocolError(code, rule, field=field, section=section, requirement=requirement)


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
        self._events: deque[Event] = deque()
        self.beacon = BeaconClient(node, beacon, self.config, public_endpoint=public_endpoint)
        self._probe = probe
        self.peers: dict[int, PeerPath] = {}
        self.stats: dict[str, int] = {
            "unsolicited_punch": 0, "punch_rate_limited": 0, "pilp": 0, "candidate": 0, "malformed": 0,
            "table_full": 0,
        }  # fmt: skip
        self._punch_bucket: TokenBucket | None = None
        self._actions: dict[str, Callable[[PeerPath, float, Endpoint | None], None]] = {
            name: getattr(self, f"_act_{name}") for name in ACTIONS
        }

    # -- the idiom -------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        self._out.extend(self.beacon.datagrams_to_send())  # e.g. a punch_request() called on the client
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Drain :meth:`next_event` (convenience)."""
        out = list(self._events)
        self._events.clear()
        return out

    def state(self, peer: int) -> PathState | None:
        path = self.peers.get(peer)
        return path.state if path else None

    # -- the transition table --------------------------------------------------------------------

    def _apply(self, peer: int, inp: PathInput, now: float, endpoint: Endpoint | None = None) -> None:
        """The one place a path's state changes: look ``(state, inp)`` up and run its action."""
        path = self.peers.get(peer)
        state = path.state if path is not None else None
        step = TRANSITIONS.get((state, inp))
        if step is None:
            raise LocalProtocolError(
                ErrorCode.INVALID_STATE,
                f"path to node {peer}: no transition for {inp.value} in {state.value if state else 'no path'}",
                section="9.4",
            )
        if path is None:
            path = self._new_path(peer, step.next)
        path.state = step.next
        self._actions[step.action](path, now, endpoint)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Run endpoint discovery (9.1)."""
        self._punch_bucket = TokenBucket(self.config.unsolicited_punch_rate, self.config.unsolicited_punch_burst, now)
        self.beacon.start(now)
        self._pump_client(now, None, 0)

    def connect(self, peer: int, now: float, endpoint: Endpoint | None = None) -> None:
        """Dial ``peer`` whose registered endpoint is ``endpoint`` (9.4).

        Idempotent unless the peer is unknown or FAILED: while a dial runs or a
        path is up, it only records a newer registered endpoint.
        """
        self._apply(peer, PathInput.CONNECT, now, endpoint)

    def confirm_direct(self, peer: int, endpoint: Endpoint, now: float) -> None:
        """The tunnel layer authenticated a frame from ``peer`` arriving directly from ``endpoint``."""
        self._apply(peer, PathInput.CONFIRM_DIRECT, now, as_endpoint(endpoint))

    def confirm_relay(self, peer: int, now: float) -> None:
        """The tunnel layer authenticated a frame from ``peer`` delivered by the beacon."""
        if self.beacon.beacon is not None:
            self._apply(peer, PathInput.CONFIRM_RELAY, now)

    def _new_path(self, peer: int, state: PathState) -> PeerPath:
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

    # -- actions (named by TRANSITIONS) ---------------------------------------------------------

    def _act_dial(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        path.registered = endpoint or path.registered
        path.attempts = 0
        if self.config.use_punch and self.beacon.beacon is not None:
            self.beacon.punch_request(path.node)  # NAT-011
            self._out.extend(self.beacon.datagrams_to_send())
            path.punch_until = now + _phase(self.config, self.config.direct_attempts)
        self._act_direct_attempt(path, now, None)

    def _act_learn_locator(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        if endpoint is not None:
            path.registered = endpoint

    def _act_redial(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        # nothing authenticated arrived directly for too long: run the 9.4 strategy again,
        # starting with the old direct endpoint (a NAT may have dropped the mapping)
        if path.direct is not None:
            path.candidates = [path.direct, *path.candidates][: self.config.max_candidates]
        path.direct = None
        self._act_dial(path, now, None)

    def _act_direct_attempt(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        frame = self._probe_frame(path.node)
        for target in path.targets():
            self._out.append(Datagram(frame, target))
        self._next_attempt(path, now)

    def _act_start_relay(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        path.attempts = 0
        self._act_relay_attempt(path, now, None)

    def _act_relay_attempt(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        self._relay(path.node, self._probe_frame(path.node))
        self._next_attempt(path, now)

    def _act_fail(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        path.deadline = None
        err = PilotError(
            ErrorCode.UNREACHABLE,
            f"node {path.node}: {self.config.direct_attempts} direct and {self.config.relay_attempts} relay "
            "attempts unanswered",
            section="9.4",
            requirement="NAT-033",
        )
        self._events.append(PeerUnreachable(path.node, err))

    def _act_go_direct(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        assert endpoint is not None
        path.last_heard = now
        path.direct = endpoint
        path.punch_until = None
        path.candidates.clear()
        path.deadline = now + self.config.keepalive_interval if self.config.keepalive_interval else None
        self._events.append(PathDirect(path.node, endpoint))

    def _act_heard_direct(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        if endpoint != path.direct:
            self._act_go_direct(path, now, endpoint)  # the peer's NAT rebound: follow the authenticated source
            return
        path.last_heard = now
        path.punch_until = None

    def _act_go_relay(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        path.last_heard = now
        path.direct = None
        path.deadline = now + self.config.relay_probe_interval
        self._events.append(PathRelayed(path.node))

    def _act_heard_relay(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        path.last_heard = now

    def _act_probe_direct(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        # NAT-035: look for a direct path again; only an authenticated answer moves us
        frame = self._probe_frame(path.node)
        for target in path.targets():
            self._out.append(Datagram(frame, target))
        path.deadline = now + self.config.relay_probe_interval

    def _act_keepalive(self, path: PeerPath, now: float, endpoint: Endpoint | None) -> None:
        c = self.config
        assert path.direct is not None and c.keepalive_interval is not None
        if now - path.last_sent >= c.keepalive_interval - 1e-9:
            self._out.append(Datagram(self._probe_frame(path.node), path.direct))  # NAT-036
            path.last_sent = now
        path.deadline = path.last_sent + c.keepalive_interval
        if c.direct_dead_after is not None:
            path.deadline = min(path.deadline, path.last_heard + c.direct_dead_after)

    def _next_attempt(self, path: PeerPath, now: float) -> None:
        path.last_sent = now
        path.deadline = now + self.config.attempt_timeout * self.config.attempt_backoff**path.attempts
        path.attempts += 1

    # -- sending ---------------------------------------------------------------------------------

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
            self._relay(peer, frame)

    def _relay(self, peer: int, frame: bytes) -> None:
        self.beacon.relay(peer, frame)
        self._out.extend(self.beacon.datagrams_to_send())

    def _probe_frame(self, peer: int) -> bytes:
        if self._probe is not None:
            return self._probe(peer)
        return self.punch_frame()

    def punch_frame(self) -> bytes:
        """Our PILP (draft: 8 bytes with our node ID; go-interop: the 4-byte magic, E-NAT-1)."""
        return encode_frame(PunchFrame(self.node if self.config.pilp_with_sender else None))

    # -- timers ----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        best = self.beacon.get_timer()
        for path in self.peers.values():
            d = path.deadline
            if d is not None and (best is None or d < best):
                best = d
        return best

    def handle_timer(self, now: float) -> None:
        self.beacon.handle_timer(now)
        self._pump_client(now, None, 0)
        for path in list(self.peers.values()):
            if path.deadline is not None and now >= path.deadline:
                path.deadline = None
                inp = self._timer_input(path, now)
                if inp is not None:
                    self._apply(path.node, inp, now)

    def _timer_input(self, path: PeerPath, now: float) -> PathInput | None:
        """Which :class:`PathInput` a due deadline of ``path`` is."""
        c = self.config
        state = path.state
        if state is PathState.DIRECT_TRYING:
            if path.attempts < c.direct_attempts:
                return PathInput.RETRY
            return PathInput.EXHAUSTED if self.beacon.beacon is not None else PathInput.EXHAUSTED_NO_BEACON
        if state is PathState.RELAY_TRYING:
            return PathInput.RETRY if path.attempts < c.relay_attempts else PathInput.EXHAUSTED
        if state is PathState.RELAY:
            return PathInput.PROBE_DUE
        if state is PathState.DIRECT and c.keepalive_interval is not None and path.direct is not None:
            if c.direct_dead_after is not None and now - path.last_heard >= c.direct_dead_after - 1e-9:
                return PathInput.DIRECT_SILENT
            return PathInput.KEEPALIVE_DUE
        return None

    # -- receiving -------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Feed one datagram from the tunnel socket; results appear in :meth:`next_event`."""
        if is_beacon_message(data) or self.beacon.from_beacon(addr):
            self.beacon.receive_datagram(data, addr, now)
            self._pump_client(now, addr, len(data))
            return
        if len(data) < 4:
            self.stats["malformed"] += 1
            self._reject(
                _remote(ErrorCode.TRUNCATED, "a datagram shorter than a 4-byte frame magic", "frame.magic",
                        "TUN-001", "7"),
                addr, len(data),
            )  # fmt: skip
            return
        source = as_endpoint(addr)
        if data[:4] == b"PILP":
            self._on_pilp(data, source)
            return
        self._events.append(FrameReceived(data, source, False, frame_sender(data, self.config.profile)))

    def _reject(self, error: PilotError, addr: Address | None, size: int) -> None:
        self._events.append(InputRejected(error, LAYER, addr, size))

    def _pump_client(self, now: float, addr: Address | None, size: int) -> None:
        """Move the beacon client's output here and act on what it classified."""
        self._out.extend(self.beacon.datagrams_to_send())
        while (ev := self.beacon.next_event()) is not None:
            if isinstance(ev, PunchCommanded):
                self._on_punch_command(ev.endpoint, now, addr, size)
            elif isinstance(ev, RelayDelivered):
                self._events.append(FrameReceived(ev.frame, ev.source, True, ev.sender))
            else:
                self._events.append(ev)  # EndpointDiscovered, DiscoveryFailed, InputRejected("beacon-client")

    def _on_punch_command(self, endpoint: Endpoint, now: float, addr: Address | None, size: int) -> None:
        if self.config.skip_unroutable_punch and is_go_private(endpoint.host, unspecified=True):
            self._reject(
                _remote(ErrorCode.BAD_VALUE, f"punch target {endpoint} does not route (private, loopback, "
                        "link-local or unspecified)", "punch.endpoint", "NAT-041", "9.2"),
                addr, size,
            )  # fmt: skip
            return
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
                self._reject(
                    _remote(ErrorCode.RATE_LIMITED, "too many punch commands we did not ask for", "punch.endpoint",
                            "NAT-046"),
                    addr, size,
                )  # fmt: skip
                return
        for path in pending:
            self._add_candidate(path, endpoint)
        pilp = self.punch_frame()
        for _ in range(self.config.punch_packets):
            self._out.append(Datagram(pilp, endpoint))  # NAT-015

    def _on_pilp(self, data: bytes, source: Endpoint) -> None:
        self.stats["pilp"] += 1
        try:
            frame = decode_frame(data, self.config.profile)
        except DecodeError as exc:
            self.stats["malformed"] += 1
            self._reject(exc, source, len(data))
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
