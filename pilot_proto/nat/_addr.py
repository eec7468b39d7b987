"""Underlay addresses as the NAT layer sees them: a driver's ``(host, port)`` tuple as an :class:`Endpoint`."""

from __future__ import annotations

import ipaddress

from pilot_proto.sansio import Address
from pilot_proto.wire.beacon import Endpoint

__all__ = ["as_endpoint", "is_go_private"]

_GO_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def as_endpoint(addr: Address) -> Endpoint:
    """``addr`` as an :class:`Endpoint` (an asyncio ``(host, port[, flow, scope])`` tuple or an Endpoint)."""
    if type(addr) is Endpoint:
        return addr
    host, port = addr[:2]  # type: ignore[index]
    return Endpoint(str(host), int(port))


def is_go_private(host: str, *, unspecified: bool = False) -> bool:
    """Go's ``IsPrivate() || IsLoopback() || IsLinkLocalUnicast()`` (``|| IsUnspecified()`` if asked).

    Not Python's ``is_private``, which also counts the documentation and benchmarking ranges.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if unspecified and ip.is_unspecified:
        return True
    return ip.is_loopback or ip.is_link_local or any(ip in net for net in _GO_PRIVATE)
