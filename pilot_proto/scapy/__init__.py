"""Scapy layers for every Pilot datagram: tunnel frames, the packet header and beacon messages.

For dissecting captures and for crafting malformed frames in tests.  The header and frame layers
are the ones generated from the ``construct`` schemas (:mod:`pilot_proto.wire.scapy_layers`:
:class:`Pilot`, :class:`PILT`, :class:`PILS`, :class:`PILK`, :class:`PILA`, :class:`PILP`); the
beacon messages (draft 9, layouts of the Go reference) are in :mod:`pilot_proto.scapy.beacon`, the
built-in services' stream messages (data exchange, event stream records) in
:mod:`pilot_proto.scapy.services`.
:class:`PilotDatagram` is the UDP payload: it picks its class by the first byte (below 0x10: a
beacon message by its type) or by the 4-byte magic (``PILT``/``PILS``/``PILK``/``PILA``/``PILP``).

Dissecting a capture.  A Pilot daemon's tunnel socket has no fixed port (the Go daemon binds
``:0`` unless ``-listen`` says otherwise); the beacon listens on UDP 9001.  Importing this package
binds :class:`PilotDatagram` to UDP port 9001; bind your daemons' ports yourself, or let
:func:`read_pcap` sniff every UDP payload::

    from scapy.all import rdpcap, UDP
    import pilot_proto.scapy as ps
    ps.bind_pilot_port(40001)             # the port your daemon listened on
    for pkt in rdpcap("capture.pcap"):
        print(pkt.summary())              # ... / UDP / PILS  (or PILK, PILT / Pilot, Discover, ...)

    for ts, layer in ps.read_pcap("capture.pcap"):   # no ports needed: every UDP payload that looks like Pilot
        if layer.haslayer(ps.PILK): print(ts, layer[ps.PILK].sender)

In Wireshark the payload shows as plain UDP data; the 4-byte magic and the fields above are the
whole dissection (a PILS body is AES-256-GCM ciphertext + 16-byte tag).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from scapy.fields import StrFixedLenField
from scapy.layers.inet import UDP
from scapy.packet import Packet, Raw, bind_layers

from pilot_proto.scapy.beacon import (
    BEACON_LAYERS,
    BeaconDiscover,
    BeaconDiscoverReply,
    BeaconPunchCommand,
    BeaconPunchRequest,
    BeaconRelay,
    BeaconRelayDeliver,
    BeaconSync,
)
from pilot_proto.scapy.services import DataExchangeFrame, EventRecord
from pilot_proto.wire.frames import BEACON_TYPE_LIMIT
from pilot_proto.wire.scapy_layers import FRAME_LAYERS, PILA, PILK, PILP, PILS, PILT, Pilot, TunnelFrame

__all__ = [
    "BEACON_LAYERS",
    "BEACON_PORT",
    "FRAME_LAYERS",
    "PILA",
    "PILK",
    "PILP",
    "PILS",
    "PILT",
    "BeaconDiscover",
    "BeaconDiscoverReply",
    "BeaconPunchCommand",
    "BeaconPunchRequest",
    "BeaconRelay",
    "BeaconRelayDeliver",
    "BeaconSync",
    "DataExchangeFrame",
    "EventRecord",
    "Pilot",
    "PilotDatagram",
    "TunnelFrame",
    "bind_pilot_port",
    "dissect",
    "looks_like_pilot",
    "read_pcap",
]

#: The Go beacon's default UDP port (``cmd/beacon -addr :9001``).
BEACON_PORT = 9001


def _class_for(data: bytes) -> Any:
    if not data:
        return Raw
    if data[0] < BEACON_TYPE_LIMIT:
        return BEACON_LAYERS.get(data[0], Raw)
    return FRAME_LAYERS.get(bytes(data[:4]), Raw)


class PilotDatagram(Packet):
    """Any datagram on a Pilot socket; constructing it from bytes yields the right layer (or ``Raw``)."""

    name = "PilotDatagram"
    fields_desc: ClassVar[list[Any]] = [StrFixedLenField("magic", b"PILT", 4)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> Any:
        if _pkt is None:
            return cls
        return _class_for(bytes(_pkt))


def looks_like_pilot(data: bytes) -> bool:
    """True when ``data`` starts with a tunnel magic or a known beacon type byte."""
    return _class_for(bytes(data)) is not Raw


def dissect(data: bytes) -> Any:
    """The scapy layer of one Pilot datagram (``Raw`` when it is neither a frame nor a beacon message)."""
    return PilotDatagram(bytes(data))


def bind_pilot_port(port: int) -> None:
    """Dissect UDP datagrams to or from ``port`` as Pilot (scapy's ``bind_layers`` on both directions)."""
    bind_layers(UDP, PilotDatagram, dport=port)
    bind_layers(UDP, PilotDatagram, sport=port)


def read_pcap(path: str | Path) -> Iterator[tuple[float, Any]]:
    """(capture time, dissected Pilot layer) for every UDP datagram in ``path`` that looks like Pilot."""
    from scapy.utils import PcapReader

    with PcapReader(str(path)) as reader:
        for pkt in reader:
            if not pkt.haslayer(UDP):
                continue
            data = bytes(pkt[UDP].payload)
            if looks_like_pilot(data):
                yield float(pkt.time), dissect(data)


bind_pilot_port(BEACON_PORT)
