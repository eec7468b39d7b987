"""48-bit virtual addresses and socket addresses (draft section 4).

Binary form: network ID (u16 BE) then node ID (u32 BE), 6 bytes.

Text form ``N:NNNN.HHHH.LLLL``: ``N`` is the network in decimal, ``NNNN`` the
network again in 4 hex digits, ``HHHH.LLLL`` the node ID.  We always *write*
this form, uppercase (it is what the Go reference writes and it agrees with
every draft example on network 0).  Reading depends on the profile -- see
erratum E-ADDR-1 in ``spec/errata.md``:

* ``go-interop``: the first hex group must equal the decimal network (Go's
  ``ParseAddr``), so the draft's own example ``1:00A3.F291.0004`` is refused.
* ``draft``: the first hex group is ignored (the draft calls all three groups
  "the node ID", which cannot fit 32 bits, and its example has a group that
  matches nothing); the node ID is the last two groups.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import DEFAULT_PROFILE, Profile

__all__ = [
    "ADDR_SIZE",
    "BEACON",
    "BROADCAST_NODE",
    "DECODERS",
    "NAMESERVER",
    "REGISTRY",
    "RESERVED_NETWORK",
    "UNSPECIFIED",
    "Addr",
    "SocketAddr",
    "broadcast",
]

ADDR_SIZE = 6
BROADCAST_NODE = 0xFFFFFFFF
RESERVED_NETWORK = 0xFFFF
_ADDR = struct.Struct(">HI")
_HEX = frozenset("0123456789abcdefABCDEF")


def _bad(text: str, rule: str, req: str = "ADDR-002") -> DecodeError:
    return DecodeError(ErrorCode.BAD_ADDRESS, "address.text", f"{rule}: {text!r}", section="4.2", requirement=req)


def _decimal(digits: str, limit: int) -> int | None:
    """``digits`` as an int when it is ASCII decimal (leading zeros allowed, as Go's ParseUint) and <= limit.

    The length check comes before ``int()`` so a huge digit string cannot hit Python's
    int-conversion limit (which would raise ``ValueError`` instead of a :class:`DecodeError`).
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(limit)):
        return None
    value = int(significant)
    return value if value <= limit else None


def _hex4(group: str, text: str) -> int:
    if len(group) != 4 or not set(group) <= _HEX:
        raise _bad(text, "each group must be exactly 4 hex digits")
    return int(group, 16)


class Addr(NamedTuple):
    """A virtual address: ``network`` (u16) and ``node`` (u32)."""

    network: int
    node: int

    # -- binary ------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The 6-byte wire form (draft 4.1)."""
        if not (0 <= self.network <= 0xFFFF and 0 <= self.node <= 0xFFFFFFFF):
            raise ValueError(f"address out of range: {self.network}, {self.node}")
        return _ADDR.pack(self.network, self.node)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> Addr:
        """Read 6 bytes at ``offset``."""
        if offset < 0 or len(data) - offset < ADDR_SIZE:
            raise DecodeError(
                ErrorCode.TRUNCATED, "address", f"need {ADDR_SIZE} bytes at offset {offset}", section="4.1"
            )
        return cls(*_ADDR.unpack_from(data, offset))

    # -- text --------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self.network}:{self.network:04X}.{self.node >> 16:04X}.{self.node & 0xFFFF:04X}"

    @classmethod
    def parse(cls, text: str, profile: Profile = DEFAULT_PROFILE) -> Addr:
        """Parse ``N:NNNN.HHHH.LLLL`` (draft 4.2) under ``profile``."""
        net_text, sep, rest = text.partition(":")
        if not sep or not net_text.isascii() or not net_text.isdigit():
            raise _bad(text, "expected a decimal network, ':' and three hex groups")
        network = _decimal(net_text, 0xFFFF)
        if network is None:
            raise _bad(text, "network ID exceeds 16 bits", req="ADDR-008")
        groups = rest.split(".")
        if len(groups) != 3:
            raise _bad(text, "expected three '.'-separated hex groups")
        first, high, low = (_hex4(g, text) for g in groups)
        if profile is Profile.GO_INTEROP and first != network:
            raise _bad(text, "first hex group must repeat the network ID (go-interop, erratum E-ADDR-1)", "ADDR-009")
        return cls(network, (high << 16) | low)

    # -- classification (draft 4.4) ------------------------------------------
    @property
    def is_broadcast(self) -> bool:
        """Node ``0xFFFFFFFF`` on any network (draft 4.4)."""
        return self.node == BROADCAST_NODE

    @property
    def is_unspecified(self) -> bool:
        return self.network == 0 and self.node == 0

    @property
    def is_backbone(self) -> bool:
        """Network 0, the global backbone every node belongs to (draft 4.1)."""
        return self.network == 0

    @property
    def is_user_network(self) -> bool:
        """Networks 1-65534, created for particular purposes (draft 4.1)."""
        return 0 < self.network < RESERVED_NETWORK

    @property
    def is_reserved_network(self) -> bool:
        """Network 65535 is reserved (draft 4.1)."""
        return self.network == RESERVED_NETWORK


class SocketAddr(NamedTuple):
    """An address plus a virtual port: ``1:0001.F291.0004:1000`` (draft 4.3)."""

    addr: Addr
    port: int

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}"

    @classmethod
    def parse(cls, text: str, profile: Profile = DEFAULT_PROFILE) -> SocketAddr:
        """Split on the last ``:``; the port is decimal u16."""
        addr_text, sep, port_text = text.rpartition(":")
        port = _decimal(port_text, 0xFFFF) if sep else None
        if port is None:
            raise _bad(text, "socket address needs ':<port>' with a decimal port 0-65535", req="ADDR-010")
        return cls(Addr.parse(addr_text, profile), port)


UNSPECIFIED = Addr(0, 0)
REGISTRY = Addr(0, 1)
BEACON = Addr(0, 2)
NAMESERVER = Addr(0, 3)


def broadcast(network: int) -> Addr:
    """The broadcast address of ``network`` (draft 4.4)."""
    return Addr(network, BROADCAST_NODE)


def _parse_text_draft(data: bytes) -> Addr:
    return Addr.parse(data.decode("latin-1"), Profile.DRAFT)


def _parse_text_go(data: bytes) -> Addr:
    return Addr.parse(data.decode("latin-1"), Profile.GO_INTEROP)


def _parse_socket_draft(data: bytes) -> SocketAddr:
    return SocketAddr.parse(data.decode("latin-1"), Profile.DRAFT)


def _parse_socket_go(data: bytes) -> SocketAddr:
    return SocketAddr.parse(data.decode("latin-1"), Profile.GO_INTEROP)


#: Byte decoders of this module, for the suite-wide "arbitrary bytes only raise PilotError" test.
#: Text parsers get the bytes as Latin-1 (every byte string is valid Latin-1).
DECODERS: dict[str, Callable[[bytes], object]] = {
    "address.binary": Addr.from_bytes,
    "address.text@draft": _parse_text_draft,
    "address.text@go-interop": _parse_text_go,
    "socket_address.text@draft": _parse_socket_draft,
    "socket_address.text@go-interop": _parse_socket_go,
}
