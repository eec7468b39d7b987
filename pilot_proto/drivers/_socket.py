"""Socket options the drivers apply (draft 13.3).

Draft 13.3 says implementations SHOULD NOT set the Don't Fragment bit on the UDP datagrams that carry
Pilot frames, so that a full 4096-byte segment (70 bytes of PILS overhead on top) can still cross a
1500-byte path as IP fragments.  Linux sets DF on UDP by default (``IP_PMTUDISC_WANT``); we switch the
socket to ``IP_PMTUDISC_DONT``.  Python's :mod:`socket` does not export these Linux constants, so
their values are spelled out here.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["allow_fragmentation", "fragmentation_allowed"]

# <linux/in.h> and <linux/in6.h>
_IP_MTU_DISCOVER = 10
_IP_PMTUDISC_DONT = 0
_IPV6_MTU_DISCOVER = 23
_IPV6_PMTUDISC_DONT = 0


def _option(sock: socket.socket) -> tuple[int, int, int] | None:
    if not sys.platform.startswith("linux"):
        return None
    if sock.family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _IPV6_PMTUDISC_DONT
    if sock.family == socket.AF_INET:
        return socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DONT
    return None


def allow_fragmentation(sock: socket.socket) -> bool:
    """Clear DF on datagrams sent from ``sock`` (MTU-008).  Returns False where the platform has no such knob."""
    opt = _option(sock)
    if opt is None:
        return False
    level, name, value = opt
    try:
        sock.setsockopt(level, name, value)
    except OSError:
        return False
    return True


def fragmentation_allowed(sock: socket.socket) -> bool | None:
    """Whether ``sock`` leaves DF clear; ``None`` where it cannot be read."""
    opt = _option(sock)
    if opt is None:
        return None
    level, name, value = opt
    return sock.getsockopt(level, name) == value
