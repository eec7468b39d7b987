"""Daemon side of the beacon protocol: discovery and message filtering (draft 9.1-9.3).

:class:`BeaconClient` is sans-IO.  It runs endpoint discovery (Discover ->
DiscoverReply, with timeout, retries and periodic re-discovery that keeps the
NAT mapping towards the beacon alive), builds PunchRequest and Relay
messages, and classifies what arrives from the beacon.

What is and is not authenticated (nothing in a beacon message is signed):

* Every beacon message must come from the configured beacon address
  (NAT-010, NAT-040, NAT-042); anything else is dropped and counted as
  ``spoofed``.  That is a source-address check only -- an off-path attacker
  who can spoof the beacon's IP defeats it -- so nothing a beacon message
  says is allowed to move a live session (see :mod:`pilot_proto.nat.path`).
* A DiscoverReply is accepted only while a discovery is outstanding.
* A RelayDeliver's sender ID is a claim.  It is handed up as ``sender_hint``.
"""

from __future__ import annotations

from pilot_proto.errors import DecodeError
from pilot_proto.nat.config import NatConfig
from pilot_proto.nat.events import Datagram, DiscoveryFailed, EndpointDiscovered, NatEvent
from pilot_proto.wire.beacon import (
    BeaconMessage,
    Discover,
    DiscoverReply,
    Endpoint,
    PunchRequest,
    Relay,
    decode_beacon,
    encode_beacon,
)

__all__ = ["BeaconClient"]


class BeaconClient:
    """Discovery state and beacon message plumbing for one daemon socket.

    Args:
        node: our node ID.
        beacon: the beacon's UDP endpoint (``None``: no beacon, no punch, no relay).
        config: :class:`NatConfig`.
        public_endpoint: a known public endpoint (``-endpoint``); discovery is skipped (NAT-004).
    """

    def __init__(
        self,
        node: int,
        beacon: Endpoint | None,
        config: NatConfig,
        outbox: list[Datagram],
        events: list[NatEvent],
        *,
        public_endpoint: Endpoint | None = None,
    ) -> None:
        self.node = node
        self.beacon = beacon
        self.config = config
        self.endpoint: Endpoint | None = public_endpoint
        self.fixed_endpoint = public_endpoint is not None
        self.stats: dict[str, int] = {"spoofed": 0, "malformed": 0, "unsolicited_reply": 0}
        self._out = outbox
        self._events = events
        self._discovering = False
        self._tries = 0
        self._deadline: float | None = None

    # -- discovery (9.1) -------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin discovery, or announce the configured endpoint at once."""
        if self.fixed_endpoint and self.endpoint is not None:
            self._events.append(EndpointDiscovered(self.endpoint))
            return
        if self.beacon is not None:
            self._tries = 0
            self._discover(now)

    def _discover(self, now: float) -> None:
        assert self.beacon is not None
        self._discovering = True
        self._tries += 1
        self._out.append(Datagram(encode_beacon(Discover(self.node)), self.beacon))
        self._deadline = now + self.config.discover_timeout

    @property
    def discovering(self) -> bool:
        return self._discovering

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self._discovering:
            if self._tries < self.config.discover_retries:
                self._discover(now)
                return
            self._discovering = False
            self._events.append(DiscoveryFailed(self._tries))
            if self.config.rediscover_interval is not None:
                self._deadline = now + self.config.rediscover_interval
            return
        if self.config.rediscover_interval is not None and self.beacon is not None and not self.fixed_endpoint:
            self._tries = 0
            self._discover(now)  # NAT-009: keeps the beacon mapping and registration fresh

    # -- outgoing helpers ---------------------------------------------------------------------

    def punch_request(self, target: int) -> None:
        if self.beacon is not None:
            self._out.append(Datagram(encode_beacon(PunchRequest(self.node, target)), self.beacon))

    def relay(self, dest: int, frame: bytes) -> None:
        if self.beacon is not None:
            self._out.append(Datagram(encode_beacon(Relay(self.node, dest, frame)), self.beacon))

    # -- incoming -----------------------------------------------------------------------------

    def from_beacon(self, source: Endpoint) -> bool:
        return self.beacon is not None and source == self.beacon

    def accept(self, data: bytes, source: Endpoint, now: float) -> BeaconMessage | None:
        """Decode a beacon message if it passes the source check; handle DiscoverReply here.

        Returns the message for the caller (PunchCommand, RelayDeliver) or
        ``None`` when it was consumed or dropped.
        """
        if not self.from_beacon(source):
            self.stats["spoofed"] += 1
            return None
        try:
            msg = decode_beacon(data, self.config.profile)
        except DecodeError:
            self.stats["malformed"] += 1
            return None
        if isinstance(msg, DiscoverReply):
            if not self._discovering:
                self.stats["unsolicited_reply"] += 1
                return None
            self._discovering = False
            self._deadline = now + self.config.rediscover_interval if self.config.rediscover_interval else None
            if msg.endpoint != self.endpoint:
                self.endpoint = msg.endpoint
                self._events.append(EndpointDiscovered(msg.endpoint))
            return None
        return msg
