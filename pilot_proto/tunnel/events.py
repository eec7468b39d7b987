"""Events a :class:`~pilot_proto.tunnel.endpoint.TunnelEndpoint` reports (pulled with ``next_event()``).

Every event subclasses :class:`pilot_proto.sansio.Event`.  A refused datagram is reported as
:class:`pilot_proto.sansio.InputRejected` (``layer="tunnel"``) carrying the whole
:class:`~pilot_proto.errors.PilotError`; the tunnel defines no rejection event of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilot_proto.sansio import Address, Event, InputRejected
from pilot_proto.wire.header import Packet

__all__ = [
    "Address",
    "Event",
    "InputRejected",
    "KeyEstablished",
    "KeyExchangeFailed",
    "PacketReceived",
    "Rekeyed",
    "TunnelEvent",
]


@dataclass(frozen=True, slots=True)
class KeyEstablished(Event):
    """First tunnel session with ``peer`` is ready."""

    peer: int
    authenticated: bool
    address: Address


@dataclass(frozen=True, slots=True)
class Rekeyed(Event):
    """A new session replaced an existing one (peer restart, our re-key, counter exhaustion)."""

    peer: int
    authenticated: bool
    address: Address
    reason: str


@dataclass(frozen=True, slots=True)
class PacketReceived(Event):
    """An inner packet arrived.  ``encrypted`` is False only for accepted PILT."""

    peer: int
    packet: Packet
    address: Address
    encrypted: bool


@dataclass(frozen=True, slots=True)
class KeyExchangeFailed(Event):
    """No answer to our key exchange after all retries; ``fallback`` tells whether PILT is used now."""

    peer: int
    fallback: bool
    dropped: int


#: Everything a tunnel endpoint's ``next_event()`` can return.
TunnelEvent = KeyEstablished | Rekeyed | PacketReceived | KeyExchangeFailed | InputRejected
