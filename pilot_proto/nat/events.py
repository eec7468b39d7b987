"""Events of the NAT state machines (draft section 9), in the one idiom of :mod:`pilot_proto.sansio`.

Every event is a frozen, slotted dataclass subclassing :class:`~pilot_proto.sansio.Event`;
bad input is the shared :class:`~pilot_proto.sansio.InputRejected` (layer ``"beacon-client"``,
``"beacon-server"`` or ``"path"``).  Datagrams to send are :class:`~pilot_proto.sansio.Datagram`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilot_proto.errors import PilotError
from pilot_proto.nat._addr import is_go_private
from pilot_proto.sansio import Datagram, Event, InputRejected
from pilot_proto.wire.beacon import Endpoint

__all__ = [
    "Datagram",
    "DiscoveryFailed",
    "EndpointDiscovered",
    "FrameReceived",
    "InputRejected",
    "NatEvent",
    "NodeRegistered",
    "PathDirect",
    "PathRelayed",
    "PeerUnreachable",
    "PunchCommanded",
    "PunchCoordinated",
    "RelayDelivered",
]


# -- beacon client (daemon side) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointDiscovered(Event):
    """Our public endpoint as the beacon sees it (or as configured) -- the locator to register (9.1)."""

    endpoint: Endpoint

    @property
    def private(self) -> bool:
        """A private (RFC 1918 / ULA), loopback or link-local address.

        The Go daemon discards such a discovery result and registers its listen address instead;
        a daemon in the ``go-interop`` profile may do the same.  (Python's ``is_private`` also
        counts the documentation ranges, which Go's ``IsPrivate`` does not.)
        """
        return is_go_private(self.endpoint.host)


@dataclass(frozen=True, slots=True)
class DiscoveryFailed(Event):
    """No DiscoverReply after every retry (NAT-008)."""

    attempts: int


@dataclass(frozen=True, slots=True)
class PunchCommanded(Event):
    """The beacon told us to punch towards ``endpoint`` (0x04, 9.2); source-checked only (NAT-040)."""

    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class RelayDelivered(Event):
    """The beacon delivered a relayed tunnel frame (9.3: 0x06 in go-interop, bare in draft, E-NAT-2).

    ``sender`` is the *unauthenticated* sender ID of the 0x06 header (draft: the frame's own
    sender field, ``None`` if it has none).
    """

    frame: bytes
    sender: int | None
    source: Endpoint


# -- path manager --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathDirect(Event):
    """Frames for ``peer`` now go straight to ``endpoint``."""

    peer: int
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class PathRelayed(Event):
    """Frames for ``peer`` now go through the beacon (0x05)."""

    peer: int


@dataclass(frozen=True, slots=True)
class PeerUnreachable(Event):
    """Direct and relay attempts are exhausted (9.4 step 4); ``error`` is for the application."""

    peer: int
    error: PilotError


@dataclass(frozen=True, slots=True)
class FrameReceived(Event):
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


# -- beacon server -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeRegistered(Event):
    """A Discover registered ``node`` at ``endpoint`` for the first time or at a new endpoint (NAT-002)."""

    node: int
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class PunchCoordinated(Event):
    """A PunchRequest sent both sides a PunchCommand (NAT-013)."""

    requester: int
    target: int


NatEvent = (
    EndpointDiscovered
    | DiscoveryFailed
    | PunchCommanded
    | RelayDelivered
    | PathDirect
    | PathRelayed
    | PeerUnreachable
    | FrameReceived
    | NodeRegistered
    | PunchCoordinated
    | InputRejected
)
