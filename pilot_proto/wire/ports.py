"""Virtual ports (draft section 5, IANA registry of section 20.3).

Ports are unsigned 16-bit numbers.  :class:`WellKnownPort` names the draft's well-known services and
:func:`port_range` classifies any port into the three ranges of draft 5.1.
"""

from __future__ import annotations

import enum

__all__ = [
    "EPHEMERAL_FIRST",
    "EPHEMERAL_LAST",
    "REGISTERED_FIRST",
    "WELL_KNOWN_LAST",
    "PortRange",
    "WellKnownPort",
    "check_port",
    "is_ephemeral",
    "port_range",
]

WELL_KNOWN_LAST = 1023
REGISTERED_FIRST = 1024
EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 0xFFFF


class WellKnownPort(enum.IntEnum):
    """The well-known ports of draft 5.2 / 20.3 (PORT-010..020, IANA-009)."""

    PING = 0
    CONTROL = 1
    ECHO = 7
    NAMESERVER = 53
    HTTP = 80
    SECURE = 443
    TRUST = 444
    STDIO = 1000
    DATA_EXCHANGE = 1001
    EVENT_STREAM = 1002
    TASK_SUBMIT = 1003


class PortRange(enum.Enum):
    """The three port ranges of draft 5.1 (PORT-002..004)."""

    WELL_KNOWN = "well-known"  # 0-1023, reserved
    REGISTERED = "registered"  # 1024-49151
    EPHEMERAL = "ephemeral"  # 49152-65535


def check_port(port: int) -> int:
    """Return ``port`` if it is a valid u16 port (PORT-001), else raise ``ValueError``."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"a port is an integer 0-65535, got {port!r}")
    return port


def port_range(port: int) -> PortRange:
    """Which range of draft 5.1 ``port`` falls in."""
    check_port(port)
    if port <= WELL_KNOWN_LAST:
        return PortRange.WELL_KNOWN
    if port < EPHEMERAL_FIRST:
        return PortRange.REGISTERED
    return PortRange.EPHEMERAL


def is_ephemeral(port: int) -> bool:
    """True for ports 49152-65535, the range outgoing connections take local ports from (PORT-004)."""
    return port_range(port) is PortRange.EPHEMERAL
