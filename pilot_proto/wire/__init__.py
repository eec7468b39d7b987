"""Wire formats of Pilot Protocol.

``schemas`` holds the declarative ``construct`` definitions (the truth);
``address``, ``header`` and ``frames`` are the fast hot-path codecs proven
byte-identical to them; the other modules cover the remaining formats.
"""

from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    Frame,
    KeyExchangeFrame,
    PlaintextFrame,
    PunchFrame,
    decode_frame,
    encode_frame,
)
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet, encode_packet

__all__ = [
    "Addr",
    "AuthKeyExchangeFrame",
    "EncryptedFrame",
    "Flags",
    "Frame",
    "KeyExchangeFrame",
    "Packet",
    "PacketProtocol",
    "PlaintextFrame",
    "PunchFrame",
    "SocketAddr",
    "decode_frame",
    "decode_packet",
    "encode_frame",
    "encode_packet",
]
