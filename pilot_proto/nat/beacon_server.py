"""Sans-IO beacon: discovery replies, punch coordination and relay (draft 9.1-9.3).

The idiom of :mod:`pilot_proto.sansio`: feed datagrams with
:meth:`BeaconServer.receive_datagram`, send what :meth:`BeaconServer.datagrams_to_send`
returns, pull :meth:`BeaconServer.next_event` (``NodeRegistered``, ``PunchCoordinated``, and one
:class:`~pilot_proto.sansio.InputRejected` with ``layer="beacon-server"`` for every datagram
refused -- rate-limited, malformed, spoofed, unknown target, too large -- which changes no
registration), and call :meth:`BeaconServer.handle_timer` at :meth:`BeaconServer.get_timer` to
reap stale registrations (NAT-047).  ``stats`` counts the same outcomes.

Robustness (NAT-044): every source IP has a token bucket checked before any
parsing; the node table, the rate-limit table and relay payloads are bounded.
Nothing the beacon sends is larger than what it received plus 11 bytes, and a
punch request yields two 8/20-byte commands, so it is no amplifier.

Trust (NAT-045): node IDs in Discover are unauthenticated claims -- the wire
format has no signature, so anyone can register any ID at their own address
(which is why daemons never let beacon messages move a live session).  We
harden what we can without breaking Go daemons: a PunchRequest never rebinds a
registration (Go's refreshes it from the request source), and a Relay is
forwarded only when its sender ID is registered at the datagram's source.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pilot_proto.errors import DecodeError, ErrorCode, PilotError, RemoteProtocolError
from pilot_proto.nat._addr import as_endpoint
from pilot_proto.nat.config import BeaconConfig
from pilot_proto.nat.events import NodeRegistered, PunchCoordinated
from pilot_proto.nat.ratelimit import KeyedLimiter
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.wire.beacon import (
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    encode_beacon,
    encode_delivery,
)
from pilot_proto.wire.beacon import decode_beacon as _decode

__all__ = ["LAYER", "BeaconServer", "Registration"]

LAYER = "beacon-server"


@dataclass
class Registration:
    endpoint: Endpoint
    last_seen: float


def _error(code: ErrorCode, rule: str, field: str, requirement: str, section: str = "9") -> RemoteProtocolError:
    return RemoteProtocolError(code, rule, field=field, section=section, requirement=requirement)


class BeaconServer:
    """One beacon's state: registrations, rate limits and counters."""

    def __init__(self, config: BeaconConfig | None = None, now: float = 0.0) -> None:
        self.config = config or BeaconConfig()
        self.nodes: dict[int, Registration] = {}
        self._limiter = KeyedLimiter(self.config.rate_per_source, self.config.burst_per_source, self.config.max_sources)
        self._out: list[Datagram] = []
        self._events: deque[Event] = deque()
        self._next_reap = now + self.config.reap_interval
        self.stats: dict[str, int] = {
            k: 0 for k in ("discover", "punch", "relay", "rate_limited", "malformed", "table_full", "unknown_target",
                           "unknown_dest", "spoofed", "too_large", "ignored", "reaped")
        }  # fmt: skip

    # -- the idiom ---------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Drain :meth:`next_event` (convenience)."""
        out = list(self._events)
        self._events.clear()
        return out

    def get_timer(self) -> float | None:
        return self._next_reap

    def handle_timer(self, now: float) -> None:
        if now >= self._next_reap:
            self._reap(now)
            self._next_reap = now + self.config.reap_interval

    def _reap(self, now: float) -> None:
        stale = [n for n, r in self.nodes.items() if now - r.last_seen > self.config.node_ttl]
        for node in stale:
            del self.nodes[node]
        self.stats["reaped"] += len(stale)

    def lookup(self, node: int) -> Endpoint | None:
        reg = self.nodes.get(node)
        return reg.endpoint if reg else None

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        source = as_endpoint(addr)
        error = self._handle(data, source, now)
        if error is not None:
            self._events.append(InputRejected(error, LAYER, source, len(data)))

    def _reject(self, stat: str, error: PilotError) -> PilotError:
        self.stats[stat] += 1
        return error

    def _handle(self, data: bytes, source: Endpoint, now: float) -> PilotError | None:
        if not self._limiter.allow(source.host, now):
            return self._reject(
                "rate_limited",
                _error(ErrorCode.RATE_LIMITED, "too many datagrams from this source address", "udp.source", "NAT-044"),
            )
        try:
            msg = _decode(data, self.config.profile)
        except DecodeError as exc:
            return self._reject("malformed", exc)
        if isinstance(msg, Discover):
            self._on_discover(msg.node, source, now)
            return None
        if isinstance(msg, PunchRequest):
            return self._on_punch(msg, source, now)
        if isinstance(msg, Relay):
            return self._on_relay(msg, source, now)
        # replies/commands/deliveries are beacon->daemon; Sync is beacon gossip, which we do not run
        return self._reject(
            "ignored",
            _error(ErrorCode.BAD_VALUE, f"{type(msg).__name__} is not a daemon-to-beacon message", "beacon.type",
                   "NAT-027"),
        )  # fmt: skip

    def _on_discover(self, node: int, source: Endpoint, now: float) -> None:
        self.stats["discover"] += 1
        reg = self.nodes.get(node)
        if reg is not None:
            moved = reg.endpoint != source
            reg.endpoint, reg.last_seen = source, now
            if moved:
                self._events.append(NodeRegistered(node, source))
        else:
            if len(self.nodes) >= self.config.max_nodes:
                self._reap(now)
            if len(self.nodes) < self.config.max_nodes:
                self.nodes[node] = Registration(source, now)
                self._events.append(NodeRegistered(node, source))
            else:
                self.stats["table_full"] += 1  # still answer: discovery itself is stateless
        self._out.append(Datagram(encode_beacon(DiscoverReply(source)), source))  # NAT-002

    def _registered_at(self, node: int, source: Endpoint) -> Registration | None:
        reg = self.nodes.get(node)
        return reg if reg is not None and reg.endpoint == source else None

    def _on_punch(self, msg: PunchRequest, source: Endpoint, now: float) -> PilotError | None:
        requester = self._registered_at(msg.requester, source)
        if requester is None:  # NAT-045: unknown requester or one registered elsewhere
            return self._reject(
                "spoofed",
                _error(ErrorCode.SPOOFED, "the requester is not registered at the datagram's source",
                       "punch.requester", "NAT-045"),
            )  # fmt: skip
        target = self.nodes.get(msg.target)
        if target is None or msg.target == msg.requester:
            return self._reject(
                "unknown_target",
                _error(ErrorCode.UNKNOWN_PEER, "no punch command for an unregistered target or oneself",
                       "punch.target", "NAT-018", "9.2"),
            )  # fmt: skip
        requester.last_seen = now
        self.stats["punch"] += 1
        self._out.append(Datagram(encode_beacon(PunchCommand(target.endpoint)), requester.endpoint))  # NAT-013
        self._out.append(Datagram(encode_beacon(PunchCommand(requester.endpoint)), target.endpoint))
        self._events.append(PunchCoordinated(msg.requester, msg.target))
        return None

    def _on_relay(self, msg: Relay, source: Endpoint, now: float) -> PilotError | None:
        if len(msg.payload) > self.config.max_relay_payload:
            return self._reject(
                "too_large",
                _error(ErrorCode.TOO_LARGE, f"relay payload over {self.config.max_relay_payload} bytes",
                       "relay.payload", "NAT-025", "9.3"),
            )  # fmt: skip
        sender = None
        if self.config.verify_relay_sender:
            sender = self._registered_at(msg.sender, source)
            if sender is None:
                return self._reject(
                    "spoofed",
                    _error(ErrorCode.SPOOFED, "the relay sender is not registered at the datagram's source",
                           "relay.sender", "NAT-045"),
                )  # fmt: skip
        dest = self.nodes.get(msg.dest)
        if dest is None:
            return self._reject(
                "unknown_dest",
                _error(ErrorCode.UNKNOWN_PEER, "relay to a destination the beacon does not know", "relay.dest",
                       "NAT-025", "9.3"),
            )  # fmt: skip
        if sender is not None:
            sender.last_seen = now
        self.stats["relay"] += 1
        self._out.append(Datagram(encode_delivery(msg.sender, msg.payload, self.config.profile), dest.endpoint))
        return None
