"""Daemon side of the beacon protocol: discovery and message filtering (draft 9.1-9.3).

:class:`BeaconClient` is sans-IO and speaks the idiom of :mod:`pilot_proto.sansio`: feed it
what arrives on the tunnel socket that is (or claims to be) from the beacon with
:meth:`~BeaconClient.receive_datagram`, send :meth:`~BeaconClient.datagrams_to_send`, pull
:meth:`~BeaconClient.next_event`, fire :meth:`~BeaconClient.handle_timer` at
:meth:`~BeaconClient.get_timer`.  It runs endpoint discovery (Discover -> DiscoverReply, with
timeout, retries and periodic re-discovery that keeps the NAT mapping towards the beacon
alive), builds PunchRequest and Relay messages, and classifies what the beacon sends:
:class:`~pilot_proto.nat.events.PunchCommanded` and
:class:`~pilot_proto.nat.events.RelayDelivered` for the path manager, everything else one
:class:`~pilot_proto.sansio.InputRejected` (``layer="beacon-client"``) that changes nothing.

What is and is not authenticated (nothing in a beacon message is signed):

* Every beacon message must come from the configured beacon address (NAT-010, NAT-040,
  NAT-042).  That is a source-address check only -- an off-path attacker who can spoof the
  beacon's IP defeats it -- so nothing a beacon message says may move a live session (see
  :mod:`pilot_proto.nat.path`).
* A DiscoverReply is accepted only while a discovery is outstanding (NAT-010).
* A relay delivery's sender ID is a claim, handed up as ``sender`` (NAT-042).
"""

from __future__ import annotations

from collections import deque

from pilot_proto.errors import DecodeError, ErrorCode, PilotError, RemoteProtocolError
from pilot_proto.nat.config import NatConfig
from pilot_proto.nat.events import DiscoveryFailed, EndpointDiscovered, PunchCommanded, RelayDelivered
from pilot_proto.profile import Profile
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.wire.beacon import (
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    RelayDeliver,
    decode_beacon,
    encode_beacon,
)
from pilot_proto.wire.frames import decode_frame, is_beacon_message

__all__ = ["LAYER", "BeaconClient", "frame_sender"]

LAYER = "beacon-client"
_PILS_MIN = 4 + 4 + 12 + 16  # magic, sender, nonce, GCM tag


def frame_sender(frame: bytes, profile: Profile) -> int | None:
    """The sender field a frame claims (PILS/PILK/PILA/draft PILP), or the source node of a PILT packet."""
    if frame[:4] == b"PILS" and len(frame) >= _PILS_MIN:
        return int.from_bytes(frame[4:8], "big")  # the hot path: magic, sender u32, nonce, sealed packet (7.2)
    try:
        parsed = decode_frame(frame, profile)
    except DecodeError:
        return None
    sender = getattr(parsed, "sender", None)
    if sender is None and frame[:4] == b"PILT" and len(frame) >= 4 + 10:
        return int.from_bytes(frame[4 + 6 : 4 + 10], "big")  # header bytes 6-9: source node (draft 6.1)
    return sender


def _rejected(code: ErrorCode, rule: str, field: str, requirement: str, section: str = "9") -> RemoteProtocolError:
    return RemoteProtocolError(code, rule, field=field, section=section, requirement=requirement)


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
        config: NatConfig | None = None,
        *,
        public_endpoint: Endpoint | None = None,
    ) -> None:
        self.node = node
        self.beacon = beacon
        self.config = config or NatConfig()
        self.endpoint: Endpoint | None = public_endpoint
        self.fixed_endpoint = public_endpoint is not None
        self.stats: dict[str, int] = {"spoofed": 0, "malformed": 0, "unsolicited_reply": 0, "unexpected": 0}
        self._out: list[Datagram] = []
        self._events: deque[Event] = deque()
        self._discovering = False
        self._tries = 0
        self._deadline: float | None = None

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

    # -- discovery (9.1) -----------------------------------------------------------------------

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

    # -- outgoing ------------------------------------------------------------------------------

    def punch_request(self, target: int) -> None:
        """Ask the beacon to make us and ``target`` punch towards each other (0x03, NAT-011)."""
        if self.beacon is not None:
            self._out.append(Datagram(encode_beacon(PunchRequest(self.node, target)), self.beacon))

    def relay(self, dest: int, frame: bytes) -> None:
        """Send ``frame`` to ``dest`` through the beacon (0x05, NAT-021)."""
        if self.beacon is not None:
            self._out.append(Datagram(encode_beacon(Relay(self.node, dest, frame)), self.beacon))

    # -- incoming ------------------------------------------------------------------------------

    def from_beacon(self, source: Address) -> bool:
        return self.beacon is not None and source == self.beacon

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """One datagram that is a beacon message or came from the beacon's address."""
        error = self._classify(data, addr, now)
        if error is not None:
            self._events.append(InputRejected(error, LAYER, addr, len(data)))

    def _reject(self, stat: str, error: PilotError) -> PilotError:
        self.stats[stat] += 1
        return error

    def _classify(self, data: bytes, addr: Address, now: float) -> PilotError | None:
        if not self.from_beacon(addr):
            return self._reject(
                "spoofed",
                _rejected(ErrorCode.SPOOFED, "beacon messages are accepted only from the configured beacon",
                          "udp.source", "NAT-040"),
            )  # fmt: skip
        assert self.beacon is not None
        source = self.beacon  # == addr
        if not is_beacon_message(data):
            return self._bare_delivery(data, source)
        try:
            msg = decode_beacon(data, self.config.profile)
        except DecodeError as exc:
            return self._reject("malformed", exc)
        if isinstance(msg, DiscoverReply):
            if not self._discovering:
                return self._reject(
                    "unsolicited_reply",
                    _rejected(ErrorCode.INVALID_STATE, "a DiscoverReply is accepted only while a discovery is "
                              "outstanding", "beacon.type", "NAT-010", "9.1"),
                )  # fmt: skip
            self._discovering = False
            self._deadline = now + self.config.rediscover_interval if self.config.rediscover_interval else None
            if msg.endpoint != self.endpoint:
                self.endpoint = msg.endpoint
                self._events.append(EndpointDiscovered(msg.endpoint))
            return None
        if isinstance(msg, PunchCommand):
            self._events.append(PunchCommanded(msg.endpoint))
            return None
        if isinstance(msg, RelayDeliver):
            return self._delivery(msg.payload, msg.sender, source)
        return self._reject(
            "unexpected",
            _rejected(ErrorCode.BAD_VALUE, f"{type(msg).__name__} is not a beacon-to-daemon message",
                      "beacon.type", "NAT-027"),
        )  # fmt: skip

    def _bare_delivery(self, data: bytes, source: Endpoint) -> PilotError | None:
        if not self.config.accept_bare_relay:
            return self._reject(
                "malformed",
                _rejected(ErrorCode.BAD_MAGIC, "go-interop: a relayed frame from the beacon must be wrapped in 0x06",
                          "beacon.type", "NAT-023", "9.3"),
            )  # fmt: skip
        return self._delivery(data, frame_sender(data, self.config.profile), source)  # draft delivery (E-NAT-2)

    def _delivery(self, frame: bytes, sender: int | None, source: Endpoint) -> PilotError | None:
        if len(frame) < 4 or is_beacon_message(frame) or frame[:4] == b"PILP":
            return self._reject(
                "malformed",
                _rejected(ErrorCode.BAD_VALUE, "a relay delivery carries one tunnel frame (not a punch, not a "
                          "beacon message)", "relay.payload", "NAT-042", "9.3"),
            )  # fmt: skip
        self._events.append(RelayDelivered(frame, sender, source))
        return None
