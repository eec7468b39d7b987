"""Socket options the drivers apply (draft 13.3), and Linux UDP segmentation offload for the daemon's data path.

Draft 13.3 says implementations SHOULD NOT set the Don't Fragment bit on the UDP datagrams that carry
Pilot frames, so that a full 4096-byte segment (70 bytes of PILS overhead on top) can still cross a
1500-byte path as IP fragments.  Linux sets DF on UDP by default (``IP_PMTUDISC_WANT``); we switch the
socket to ``IP_PMTUDISC_DONT``.  Python's :mod:`socket` does not export these Linux constants, so
their values are spelled out here.

UDP GSO/GRO (Linux 4.18 / 5.0, ``UDP_SEGMENT`` / ``UDP_GRO``): a run of equal-size datagrams to one address
leaves in one ``sendmsg`` whose payload the kernel cuts into exactly those datagrams, and a socket with GRO on
may receive several datagrams of one sender in one read, with their size in a control message.  The datagrams
on the wire are the same; only the number of system calls changes.  A path whose MTU is below the datagram
size refuses GSO (the kernel will not fragment a GSO segment), and the caller then sends one by one.
"""

from __future__ import annotations

import socket
import struct
import sys

__all__ = [
    "GRO_CMSG_SPACE",
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "allow_fragmentation",
    "enable_gro",
    "fragmentation_allowed",
    "gro_segment_size",
    "gso_control",
    "gso_supported",
]

# <linux/in.h> and <linux/in6.h>
_IP_MTU_DISCOVER = 10
_IP_PMTUDISC_DONT = 0
_IPV6_MTU_DISCOVER = 23
_IPV6_PMTUDISC_DONT = 0
# <linux/udp.h>
_SOL_UDP = 17
_UDP_SEGMENT = 103
_UDP_GRO = 104
_U16 = struct.Struct("=H")
#: At most this many datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 or more).
GSO_MAX_SEGMENTS = 64
#: At most this many payload bytes in one GSO send (an IPv4 datagram's UDP payload is at most 65507).
GSO_MAX_BYTES = 65000
#: Ancillary buffer for the GRO segment size of a read.
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


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


def gso_supported(sock: socket.socket) -> bool:
    """Whether ``sock`` can send a run of datagrams in one call (Linux UDP GSO on an IP datagram socket)."""
    if not sys.platform.startswith("linux") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    if sock.type != socket.SOCK_DGRAM:
        return False
    try:
        sock.getsockopt(_SOL_UDP, _UDP_SEGMENT)
    except OSError:
        return False
    return True


def gso_control(size: int) -> list[tuple[int, int, bytes]]:
    """The ``sendmsg`` control message that cuts its payload into ``size``-byte datagrams (the last may be shorter)."""
    return [(_SOL_UDP, _UDP_SEGMENT, _U16.pack(size))]


def enable_gro(sock: socket.socket) -> bool:
    """Let ``sock`` receive several datagrams of one sender in one read (Linux UDP GRO).  False where unsupported."""
    if not sys.platform.startswith("linux") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
    except OSError:
        return False
    return True


def gro_segment_size(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The datagram size a GRO read carries in its control data, or 0 (one datagram)."""
    for level, kind, data in ancdata:
        if level == _SOL_UDP and kind == _UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:4], sys.byteorder) if len(data) >= 4 else _U16.unpack(data[:2])[0]
    return 0
