"""Underlay addresses as the NAT layer sees them: a driver's ``(host, port)`` tuple as an :class:`Endpoint`."""

from __future__ import annotations

from pilot_proto.sansio import Address
from pilot_proto.wire.beacon import Endpoint

__all__ = ["as_endpoint"]


def as_endpoint(addr: Address) -> Endpoint:
    """``addr`` as an :class:`Endpoint` (an asyncio ``(host, port[, flow, scope])`` tuple or an Endpoint)."""
    if type(addr) is Endpoint:
        return addr
    host, port = addr[:2]  # type: ignore[index]
    return Endpoint(str(host), int(port))
