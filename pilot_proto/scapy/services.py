"""Scapy layers for the built-in services' messages inside a stream (draft 14; see :mod:`pilot_proto.wire.dataexchange`
and :mod:`pilot_proto.wire.eventstream`).

These ride in the payload of Stream packets (so, on the wire, inside PILS); dissect a reassembled
stream or a decrypted payload with them: ``DataExchangeFrame(data)`` (port 1001) and
``EventRecord(data)`` (port 1002, the go-interop binary form).  Lengths left as ``None`` are
computed when building.  A layer dissects one message; the rest of the bytes stay in its padding
(``DataExchangeFrame(data)[Padding]``), the next message starts at ``8 + length``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.fields import FieldLenField, IntEnumField, StrLenField
from scapy.packet import Packet

from pilot_proto.wire.dataexchange import FrameType

__all__ = ["DataExchangeFrame", "EventRecord"]


class DataExchangeFrame(Packet):
    """Port 1001: ``type u32 || length u32 || payload`` (SVC-010); File: ``name_len u16 || name || data``."""

    name = "PilotDataExchange"
    fields_desc: ClassVar[list[Any]] = [
        IntEnumField("type", int(FrameType.BINARY), {t.value: t.name for t in FrameType}),
        FieldLenField("length", None, length_of="data", fmt="!I"),
        StrLenField("data", b"", length_from=lambda p: p.length),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s  # the next frame of the stream follows


class EventRecord(Packet):
    """Port 1002 (go-interop): ``topic_len u16 || topic || payload_len u32 || payload`` (SVC-026).

    The payload fields are ``body_len`` / ``body`` (scapy reserves ``payload`` for the next layer).
    """

    name = "PilotEventRecord"
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("topic_len", None, length_of="topic", fmt="!H"),
        StrLenField("topic", b"", length_from=lambda p: p.topic_len),
        FieldLenField("body_len", None, length_of="body", fmt="!I"),
        StrLenField("body", b"", length_from=lambda p: p.body_len),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s
