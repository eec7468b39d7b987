"""Beacon messages (draft section 9; byte layouts of 0x01-0x04, 0x06, 0x07 from the Go reference).

The draft gives only the relay frame (9.3).  The rest is what the Go beacon
and daemon put on the wire (``pkg/protocol``, ``pkg/beacon``): one type byte
below 0x10 (so a daemon demultiplexes beacon messages from tunnel frames on
one socket), then fixed fields, all big-endian.

=====  ==============  =========================================  ==========
type   message         layout after the type byte                 size
=====  ==============  =========================================  ==========
0x01   Discover        node u32                                   5
0x02   DiscoverReply   endpoint (ip_len u8 = 4|16, ip, port u16)  8 / 20
0x03   PunchRequest    requester u32, target u32                  9
0x04   PunchCommand    endpoint                                   8 / 20
0x05   Relay           sender u32, dest u32, tunnel frame         9 + n
0x06   RelayDeliver    sender u32, tunnel frame (Go only)         5 + n
0x07   Sync            beacon u32, count u16, count x node u32    7 + 4c
=====  ==============  =========================================  ==========

Delivery of a relayed frame differs by profile (erratum E-NAT-2): the draft
says the beacon forwards *the payload*, so ``draft`` delivers the bare tunnel
frame; Go wraps it as 0x06.  :func:`encode_delivery` picks the form.

Nothing in these messages is authenticated: node IDs, endpoints and relay
sender IDs are claims.  See :mod:`pilot_proto.nat` for what is trusted.

Two codecs: the declarative ``construct`` schema :data:`BEACON_SCHEMA` (the
truth) and the fast struct-based :func:`decode_beacon` / :func:`encode_beacon`;
tests prove them byte-identical.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import construct as cs

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import DEFAULT_PROFILE, Profile

__all__ = [
    "BEACON_SCHEMA",
    "DECODERS",
    "ENDPOINT_SCHEMA",
    "MAX_RELAY_PAYLOAD",
    "TYPE_DECODERS",
    "BeaconMessage",
    "BeaconType",
    "Discover",
    "DiscoverReply",
    "Endpoint",
    "PunchCommand",
    "PunchRequest",
    "Relay",
    "RelayDeliver",
    "Sync",
    "decode_beacon",
    "encode_beacon",
    "encode_delivery",
]

#: The beacon drops relay payloads above this (GoC ``server.go``; NAT-025).
MAX_RELAY_PAYLOAD = 0xFFFF

_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_SYNC_HEAD = struct.Struct(">IH")
_PORT = struct.Struct(">H")


class BeaconType(enum.IntEnum):
    DISCOVER = 0x01
    DISCOVER_REPLY = 0x02
    PUNCH_REQUEST = 0x03
    PUNCH_COMMAND = 0x04
    RELAY = 0x05
    RELAY_DELIVER = 0x06
    SYNC = 0x07


class Endpoint(NamedTuple):
    """A UDP endpoint: textual IP (v4 or v6) and port.  Same shape as an asyncio address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def pack(self) -> bytes:
        """``ip_len u8 || ip || port u16`` -- IPv4 (or IPv4-mapped IPv6) as 4 bytes, like Go's ``To4()``."""
        ip = ipaddress.ip_address(self.host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        raw = ip.packed
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} out of range")
        return bytes([len(raw)]) + raw + _PORT.pack(self.port)


class Discover(NamedTuple):
    """0x01: "tell me my public endpoint" (9.1)."""

    node: int


class DiscoverReply(NamedTuple):
    """0x02: the source endpoint the beacon observed (9.1)."""

    endpoint: Endpoint


class PunchRequest(NamedTuple):
    """0x03: requester asks the beacon to coordinate a punch with target (9.2)."""

    requester: int
    target: int


class PunchCommand(NamedTuple):
    """0x04: "send punch packets to this endpoint" (9.2).  Carries no node ID."""

    endpoint: Endpoint


class Relay(NamedTuple):
    """0x05: a tunnel frame for ``dest`` via the beacon (9.3).  ``sender`` is a claim."""

    sender: int
    dest: int
    payload: bytes


class RelayDeliver(NamedTuple):
    """0x06: a relayed tunnel frame delivered by a Go beacon.  ``sender`` is a claim."""

    sender: int
    payload: bytes


class Sync(NamedTuple):
    """0x07: beacon-to-beacon gossip of the nodes registered at ``beacon``."""

    beacon: int
    nodes: tuple[int, ...]


BeaconMessage = Discover | DiscoverReply | PunchRequest | PunchCommand | Relay | RelayDeliver | Sync

# -- declarative schema (the truth) -----------------------------------------------------------

ENDPOINT_SCHEMA: Any = cs.Struct(
    "ip_len" / cs.OneOf(cs.Int8ub, [4, 16]),
    "ip" / cs.Bytes(cs.this.ip_len),
    "port" / cs.Int16ub,
)

BEACON_SCHEMA: Any = cs.Struct(
    "type" / cs.Int8ub,
    "body"
    / cs.Switch(
        cs.this.type,
        {
            0x01: cs.Struct("node" / cs.Int32ub),
            0x02: cs.Struct("endpoint" / ENDPOINT_SCHEMA),
            0x03: cs.Struct("requester" / cs.Int32ub, "target" / cs.Int32ub),
            0x04: cs.Struct("endpoint" / ENDPOINT_SCHEMA),
            0x05: cs.Struct("sender" / cs.Int32ub, "dest" / cs.Int32ub, "payload" / cs.GreedyBytes),
            0x06: cs.Struct("sender" / cs.Int32ub, "payload" / cs.GreedyBytes),
            0x07: cs.Struct("beacon" / cs.Int32ub, "count" / cs.Int16ub, "nodes" / cs.Array(cs.this.count, cs.Int32ub)),
        },
        cs.Error,
    ),
    cs.Terminated,
)

# -- fast codec -------------------------------------------------------------------------------

_REQ = {
    BeaconType.DISCOVER: "NAT-005",
    BeaconType.DISCOVER_REPLY: "NAT-006",
    BeaconType.PUNCH_REQUEST: "NAT-012",
    BeaconType.PUNCH_COMMAND: "NAT-014",
    BeaconType.RELAY: "NAT-021",
    BeaconType.RELAY_DELIVER: "NAT-023",
    BeaconType.SYNC: "NAT-026",
}
_SECTION = {1: "9.1", 2: "9.1", 3: "9.2", 4: "9.2", 5: "9.3", 6: "9.3", 7: "9.3"}


def _err(code: ErrorCode, kind: BeaconType, field: str, rule: str, req: str | None = None) -> DecodeError:
    return DecodeError(
        code, f"{kind.name.lower()}.{field}", rule, section=_SECTION[kind], requirement=req or _REQ[kind]
    )


def _need(data: bytes, size: int, kind: BeaconType, profile: Profile, *, exact: bool = True) -> None:
    if len(data) < size:
        raise _err(ErrorCode.TRUNCATED, kind, "length", f"{len(data)} bytes, {kind.name} needs {size}")
    if exact and len(data) > size and profile is Profile.DRAFT:
        raise _err(ErrorCode.TRAILING_DATA, kind, "length", f"{len(data)} bytes, {kind.name} is exactly {size}")


def _endpoint(data: bytes, kind: BeaconType, profile: Profile) -> Endpoint:
    if len(data) < 2:
        raise _err(ErrorCode.TRUNCATED, kind, "ip_len", "endpoint needs an ip_len byte")
    ip_len = data[1]
    if ip_len not in (4, 16):
        raise _err(ErrorCode.BAD_VALUE, kind, "ip_len", f"ip_len {ip_len} is neither 4 nor 16", "NAT-007")
    _need(data, 2 + ip_len + 2, kind, profile)
    raw = data[2 : 2 + ip_len]
    host = str(ipaddress.IPv4Address(raw) if ip_len == 4 else ipaddress.IPv6Address(raw))
    return Endpoint(host, _PORT.unpack_from(data, 2 + ip_len)[0])


def _discover(data: bytes, profile: Profile) -> Discover:
    _need(data, 5, BeaconType.DISCOVER, profile)
    return Discover(_U32.unpack_from(data, 1)[0])


def _discover_reply(data: bytes, profile: Profile) -> DiscoverReply:
    return DiscoverReply(_endpoint(data, BeaconType.DISCOVER_REPLY, profile))


def _punch_request(data: bytes, profile: Profile) -> PunchRequest:
    _need(data, 9, BeaconType.PUNCH_REQUEST, profile)
    return PunchRequest(*_U32X2.unpack_from(data, 1))


def _punch_command(data: bytes, profile: Profile) -> PunchCommand:
    return PunchCommand(_endpoint(data, BeaconType.PUNCH_COMMAND, profile))


def _relay(data: bytes, profile: Profile) -> Relay:
    _need(data, 9, BeaconType.RELAY, profile, exact=False)
    sender, dest = _U32X2.unpack_from(data, 1)
    return Relay(sender, dest, data[9:])


def _relay_deliver(data: bytes, profile: Profile) -> RelayDeliver:
    _need(data, 5, BeaconType.RELAY_DELIVER, profile, exact=False)
    return RelayDeliver(_U32.unpack_from(data, 1)[0], data[5:])


def _sync(data: bytes, profile: Profile) -> Sync:
    _need(data, 7, BeaconType.SYNC, profile, exact=False)
    beacon, count = _SYNC_HEAD.unpack_from(data, 1)
    _need(data, 7 + 4 * count, BeaconType.SYNC, profile)
    return Sync(beacon, struct.unpack_from(f">{count}I", data, 7))


#: type byte -> decoder(data, profile), the dispatch table of :func:`decode_beacon`.
TYPE_DECODERS: dict[int, Callable[[bytes, Profile], BeaconMessage]] = {
    BeaconType.DISCOVER: _discover,
    BeaconType.DISCOVER_REPLY: _discover_reply,
    BeaconType.PUNCH_REQUEST: _punch_request,
    BeaconType.PUNCH_COMMAND: _punch_command,
    BeaconType.RELAY: _relay,
    BeaconType.RELAY_DELIVER: _relay_deliver,
    BeaconType.SYNC: _sync,
}


def decode_beacon(datagram: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> BeaconMessage:
    """Parse one beacon message.  Only :class:`DecodeError` escapes.

    ``draft`` refuses bytes after a fixed-size message; ``go-interop`` ignores
    them as Go's length checks (``len < n``) do.
    """
    data = bytes(datagram)
    if not data:
        raise DecodeError(ErrorCode.TRUNCATED, "beacon.type", "empty datagram", section="9", requirement="NAT-027")
    decoder = TYPE_DECODERS.get(data[0])
    if decoder is None:
        raise DecodeError(
            ErrorCode.BAD_MAGIC, "beacon.type", f"unknown beacon type 0x{data[0]:02x}", section="9",
            requirement="NAT-027",
        )  # fmt: skip
    return decoder(data, profile)


def _decode_draft(data: bytes) -> BeaconMessage:
    return decode_beacon(data, Profile.DRAFT)


def _decode_go(data: bytes) -> BeaconMessage:
    return decode_beacon(data, Profile.GO_INTEROP)


def _decode_schema(data: bytes) -> object:
    try:
        return BEACON_SCHEMA.parse(data)
    except cs.ConstructError as exc:
        raise DecodeError(ErrorCode.BAD_VALUE, "beacon", f"schema: {exc}", section="9", requirement="NAT-027") from None


#: Byte decoders of this module, for the suite-wide "arbitrary bytes only raise PilotError" test.
DECODERS: dict[str, Callable[[bytes], object]] = {
    "beacon@draft": _decode_draft,
    "beacon@go-interop": _decode_go,
    "schema.beacon": _decode_schema,
}


def encode_beacon(msg: BeaconMessage) -> bytes:
    """Serialise a beacon message (inputs are checked: IDs u32, ports u16, known IP forms)."""
    if isinstance(msg, Discover):
        return b"\x01" + _U32.pack(msg.node)
    if isinstance(msg, DiscoverReply):
        return b"\x02" + msg.endpoint.pack()
    if isinstance(msg, PunchRequest):
        return b"\x03" + _U32X2.pack(msg.requester, msg.target)
    if isinstance(msg, PunchCommand):
        return b"\x04" + msg.endpoint.pack()
    if isinstance(msg, Relay):
        return b"\x05" + _U32X2.pack(msg.sender, msg.dest) + bytes(msg.payload)
    if isinstance(msg, RelayDeliver):
        return b"\x06" + _U32.pack(msg.sender) + bytes(msg.payload)
    if isinstance(msg, Sync):
        if len(msg.nodes) > 0xFFFF:
            raise ValueError("a Sync carries at most 65535 node IDs")
        return b"\x07" + _SYNC_HEAD.pack(msg.beacon, len(msg.nodes)) + struct.pack(f">{len(msg.nodes)}I", *msg.nodes)
    raise TypeError(f"not a beacon message: {msg!r}")


def encode_delivery(sender: int, payload: bytes, profile: Profile) -> bytes:
    """What the beacon sends the destination of a relay (erratum E-NAT-2).

    ``draft``: the bare payload ("unwraps the relay header and forwards the
    payload", 9.3).  ``go-interop``: ``0x06 || sender || payload``.
    """
    if profile is Profile.DRAFT:
        return bytes(payload)
    return encode_beacon(RelayDeliver(sender, payload))
