"""Events a :class:`~pilot_proto.tunnel.endpoint.TunnelEndpoint` reports to its driver."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from pilot_proto.errors import ErrorCode
from pilot_proto.wire.header import Packet

__all__ = [
    "Address",
    "Event",
    "FrameRejected",
    "KeyEstablished",
    "KeyExchangeFailed",
    "PacketReceived",
    "Rekeyed",
]

#: Underlay address of a datagram, as the driver gives it (e.g. ``("127.0.0.1", 9000)``).
Address = Hashable


@dataclass(frozen=True, slots=True)
class KeyEstablished:
    """First tunnel session with ``peer`` is ready."""

    peer: int
    authenticated: bool
    address: Address


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """A new session replaced an existing one (peer restart, our re-key, counter exhaustion)."""

    peer: int
    authenticated: bool
    address: Address
    reason: str


@dataclass(frozen=True, slots=True)
class PacketReceived:
    """An inner packet arrived.  ``encrypted`` is False only for accepted PILT."""

    peer: int
    packet: Packet
    address: Address
    encrypted: bool


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A datagram was dropped.  No state changed because of it."""

    reason: ErrorCode
    requirement: str | None
    peer: int | None
    address: Address
    detail: str


@dataclass(frozen=True, slots=True)
class KeyExchangeFailed:
    """No answer to our key exchange after all retries; ``fallback`` tells whether PILT is used now."""

    peer: int
    fallback: bool
    dropped: int


Event = KeyEstablished | Rekeyed | PacketReceived | FrameRejected | KeyExchangeFailed
