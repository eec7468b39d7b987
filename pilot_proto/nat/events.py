"""Outputs of the NAT state machines: datagrams to send and events for the layer above."""

from __future__ import annotations

from typing import NamedTuple

from pilot_proto.errors import PilotError
from pilot_proto.wire.beacon import Endpoint

__all__ = [
    "Datagram",
    "DiscoveryFailed",
    "EndpointDiscovered",
    "FrameReceived",
    "NatEvent",
    "PathDirect",
    "PathRelayed",
    "PeerUnreachable",
]


class Datagram(NamedTuple):
    """One UDP datagram for the driver to send from the tunnel socket."""

    data: bytes
    dest: Endpoint


class EndpointDiscovered(NamedTuple):
    """Our public endpoint as the beacon sees it (or as configured) -- the locator to register (9.1)."""

    endpoint: Endpoint


class DiscoveryFailed(NamedTuple):
    """No DiscoverReply after every retry (NAT-008)."""

    attempts: int


class PathDirect(NamedTuple):
    """Frames for ``peer`` now go straight to ``endpoint``."""

    peer: int
    endpoint: Endpoint


class PathRelayed(NamedTuple):
    """Frames for ``peer`` now go through the beacon (0x05)."""

    peer: int


class PeerUnreachable(NamedTuple):
    """Direct and relay attempts are exhausted (9.4 step 4); ``error`` is for the application."""

    peer: int
    error: PilotError


class FrameReceived(NamedTuple):
    """A tunnel frame for the tunnel layer, identical whichever path it took (NAT-024).

    ``sender_hint`` is *unauthenticated* (the relay header's or the frame's own
    sender field): it only says which key to try.  After the tunnel layer has
    authenticated the frame it calls ``confirm_direct(peer, source)`` or
    ``confirm_relay(peer)`` on the path manager (NAT-042, NAT-043).
    """

    frame: bytes
    source: Endpoint
    via_relay: bool
    sender_hint: int | None


NatEvent = EndpointDiscovered | DiscoveryFailed | PathDirect | PathRelayed | PeerUnreachable | FrameReceived
