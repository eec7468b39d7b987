"""Sans-IO beacon: discovery replies, punch coordination and relay (draft 9.1-9.3).

Feed datagrams with :meth:`BeaconServer.receive_datagram`, send what
:meth:`BeaconServer.datagrams_to_send` returns, and call
:meth:`BeaconServer.handle_timer` at :meth:`BeaconServer.get_timer` to reap
stale registrations (NAT-047).

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

from dataclasses import dataclass

from pilot_proto.errors import DecodeError
from pilot_proto.nat.config import BeaconConfig
from pilot_proto.nat.events import Datagram
from pilot_proto.nat.ratelimit import KeyedLimiter
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

__all__ = ["BeaconServer", "Registration"]


@dataclass
class Registration:
    endpoint: Endpoint
    last_seen: float


class BeaconServer:
    """One beacon's state: registrations, rate limits and counters."""

    def __init__(self, config: BeaconConfig | None = None, now: float = 0.0) -> None:
        self.config = config or BeaconConfig()
        self.nodes: dict[int, Registration] = {}
        self._limiter = KeyedLimiter(self.config.rate_per_source, self.config.burst_per_source, self.config.max_sources)
        self._out: list[Datagram] = []
        self._next_reap = now + self.config.reap_interval
        self.stats: dict[str, int] = {
            k: 0 for k in ("discover", "punch", "relay", "rate_limited", "malformed", "table_full", "unknown_target",
                           "unknown_dest", "spoofed", "too_large", "ignored", "reaped")
        }  # fmt: skip

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
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

    def receive_datagram(self, data: bytes, source: Endpoint, now: float) -> None:
        if not self._limiter.allow(source.host, now):
            self.stats["rate_limited"] += 1
            return
        try:
            msg = _decode(data, self.config.profile)
        except DecodeError:
            self.stats["malformed"] += 1
            return
        if isinstance(msg, Discover):
            self._on_discover(msg.node, source, now)
        elif isinstance(msg, PunchRequest):
            self._on_punch(msg, source, now)
        elif isinstance(msg, Relay):
            self._on_relay(msg, source, now)
        else:
            self.stats["ignored"] += 1  # replies/commands/deliveries are beacon->daemon; Sync: no peers

    def _on_discover(self, node: int, source: Endpoint, now: float) -> None:
        self.stats["discover"] += 1
        reg = self.nodes.get(node)
        if reg is not None:
            reg.endpoint, reg.last_seen = source, now
        else:
            if len(self.nodes) >= self.config.max_nodes:
                self._reap(now)
            if len(self.nodes) < self.config.max_nodes:
                self.nodes[node] = Registration(source, now)
            else:
                self.stats["table_full"] += 1  # still answer: discovery itself is stateless
        self._out.append(Datagram(encode_beacon(DiscoverReply(source)), source))  # NAT-002

    def _registered_at(self, node: int, source: Endpoint) -> Registration | None:
        reg = self.nodes.get(node)
        return reg if reg is not None and reg.endpoint == source else None

    def _on_punch(self, msg: PunchRequest, source: Endpoint, now: float) -> None:
        requester = self._registered_at(msg.requester, source)
        if requester is None:
            self.stats["spoofed"] += 1  # NAT-045: unknown requester or one registered elsewhere
            return
        requester.last_seen = now
        target = self.nodes.get(msg.target)
        if target is None or msg.target == msg.requester:
            self.stats["unknown_target"] += 1  # NAT-018
            return
        self.stats["punch"] += 1
        self._out.append(Datagram(encode_beacon(PunchCommand(target.endpoint)), requester.endpoint))  # NAT-013
        self._out.append(Datagram(encode_beacon(PunchCommand(requester.endpoint)), target.endpoint))

    def _on_relay(self, msg: Relay, source: Endpoint, now: float) -> None:
        if len(msg.payload) > self.config.max_relay_payload:
            self.stats["too_large"] += 1  # NAT-025
            return
        if self.config.verify_relay_sender:
            sender = self._registered_at(msg.sender, source)
            if sender is None:
                self.stats["spoofed"] += 1  # NAT-045
                return
            sender.last_seen = now
        dest = self.nodes.get(msg.dest)
        if dest is None:
            self.stats["unknown_dest"] += 1  # NAT-025
            return
        self.stats["relay"] += 1
        self._out.append(Datagram(encode_delivery(msg.sender, msg.payload, self.config.profile), dest.endpoint))
