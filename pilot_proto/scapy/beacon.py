"""Scapy layers for beacon messages (draft 9; byte layouts of the Go reference, see :mod:`pilot_proto.wire.beacon`).

One class per type byte 0x01-0x07.  An endpoint is ``ip_len u8 (4|16) || ip || port u16``; the IP shows
as ``ip`` (IPv4) or ``ip6`` (IPv6) depending on ``ip_len``.  A relayed payload (0x05, 0x06) dissects
as a tunnel frame.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    FieldListField,
    IntField,
    IP6Field,
    IPField,
    ShortField,
)
from scapy.packet import Packet

from pilot_proto.wire.beacon import BeaconType
from pilot_proto.wire.scapy_layers import TunnelFrame

__all__ = [
    "BEACON_LAYERS",
    "BeaconDiscover",
    "BeaconDiscoverReply",
    "BeaconPunchCommand",
    "BeaconPunchRequest",
    "BeaconRelay",
    "BeaconRelayDeliver",
    "BeaconSync",
]

_TYPES = {t.value: t.name for t in BeaconType}


def _type(value: BeaconType) -> Any:
    return ByteEnumField("type", int(value), _TYPES)


def _endpoint() -> list[Any]:
    return [
        ByteField("ip_len", 4),
        ConditionalField(IPField("ip", "0.0.0.0"), lambda p: p.ip_len == 4),
        ConditionalField(IP6Field("ip6", "::"), lambda p: p.ip_len == 16),
        ShortField("port", 0),
    ]


class BeaconDiscover(Packet):
    """0x01 Discover: ``node u32`` (9.1)."""

    name = "PilotDiscover"
    fields_desc: ClassVar[list[Any]] = [_type(BeaconType.DISCOVER), IntField("node", 0)]


class BeaconDiscoverReply(Packet):
    """0x02 DiscoverReply: the endpoint the beacon observed (9.1)."""

    name = "PilotDiscoverReply"
    fields_desc: ClassVar[list[Any]] = [_type(BeaconType.DISCOVER_REPLY), *_endpoint()]


class BeaconPunchRequest(Packet):
    """0x03 PunchRequest: ``requester u32, target u32`` (9.2)."""

    name = "PilotPunchRequest"
    fields_desc: ClassVar[list[Any]] = [
        _type(BeaconType.PUNCH_REQUEST),
        IntField("requester", 0),
        IntField("target", 0),
    ]


class BeaconPunchCommand(Packet):
    """0x04 PunchCommand: the endpoint to punch towards (9.2)."""

    name = "PilotPunchCommand"
    fields_desc: ClassVar[list[Any]] = [_type(BeaconType.PUNCH_COMMAND), *_endpoint()]


class _Relayed(Packet):
    def guess_payload_class(self, payload: bytes) -> Any:
        return TunnelFrame


class BeaconRelay(_Relayed):
    """0x05 Relay: ``sender u32, dest u32`` then a tunnel frame (9.3)."""

    name = "PilotRelay"
    fields_desc: ClassVar[list[Any]] = [_type(BeaconType.RELAY), IntField("sender", 0), IntField("dest", 0)]


class BeaconRelayDeliver(_Relayed):
    """0x06 RelayDeliver (Go only, erratum E-NAT-2): ``sender u32`` then a tunnel frame."""

    name = "PilotRelayDeliver"
    fields_desc: ClassVar[list[Any]] = [_type(BeaconType.RELAY_DELIVER), IntField("sender", 0)]


class BeaconSync(Packet):
    """0x07 Sync: ``beacon u32, count u16, count x node u32`` (beacon gossip)."""

    name = "PilotSync"
    fields_desc: ClassVar[list[Any]] = [
        _type(BeaconType.SYNC),
        IntField("beacon", 0),
        FieldLenField("count", None, count_of="nodes", fmt="!H"),
        FieldListField("nodes", [], IntField("node", 0), count_from=lambda p: p.count),
    ]


#: Layer class by beacon type byte.
BEACON_LAYERS: dict[int, Any] = {
    BeaconType.DISCOVER: BeaconDiscover,
    BeaconType.DISCOVER_REPLY: BeaconDiscoverReply,
    BeaconType.PUNCH_REQUEST: BeaconPunchRequest,
    BeaconType.PUNCH_COMMAND: BeaconPunchCommand,
    BeaconType.RELAY: BeaconRelay,
    BeaconType.RELAY_DELIVER: BeaconRelayDeliver,
    BeaconType.SYNC: BeaconSync,
}
