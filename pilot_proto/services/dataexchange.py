"""Data exchange, port 1001 (draft 14.2): typed frames in, one ``ACK <TYPE> <n> bytes`` text frame back per frame.

The reply is what the Go reference daemon writes after each frame it reads.  Every frame received
is surfaced as a :class:`FrameReceived` event (the daemon's inbox); the service stores nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilot_proto.sansio import Event
from pilot_proto.services.base import ServiceConn, StreamService
from pilot_proto.wire.address import SocketAddr
from pilot_proto.wire.dataexchange import (
    BinaryFrame,
    DataFrame,
    FileFrame,
    FrameReader,
    JsonFrame,
    TextFrame,
    encode_data_frame,
)
from pilot_proto.wire.ports import WellKnownPort

__all__ = ["DataExchangeService", "FrameReceived", "ack_text"]


@dataclass(frozen=True, slots=True)
class FrameReceived(Event):
    """One data-exchange frame from ``remote``."""

    conn_id: int
    remote: SocketAddr
    frame: DataFrame


def _type_name(frame: DataFrame) -> str:
    if isinstance(frame, TextFrame):
        return "TEXT"
    if isinstance(frame, BinaryFrame):
        return "BINARY"
    if isinstance(frame, JsonFrame):
        return "JSON"
    assert isinstance(frame, FileFrame)
    return "FILE"


def _payload_len(frame: DataFrame) -> int:
    if isinstance(frame, TextFrame):
        return len(frame.text.encode("utf-8"))
    if isinstance(frame, BinaryFrame):
        return len(frame.data)
    if isinstance(frame, JsonFrame):
        return len(frame.document)
    assert isinstance(frame, FileFrame)
    return len(frame.data)


def ack_text(frame: DataFrame) -> str:
    """The acknowledgement text for ``frame`` (Go: ``ACK <TYPE> <payload bytes> bytes``)."""
    return f"ACK {_type_name(frame)} {_payload_len(frame)} bytes"


class DataExchangeService(StreamService):
    name = "dataexchange"

    def __init__(self, port: int = WellKnownPort.DATA_EXCHANGE, **kwargs: int) -> None:
        super().__init__(port, **kwargs)
        self._readers: dict[int, FrameReader] = {}
        self.frames = 0

    def on_open(self, conn_id: int, now: float) -> None:
        self._readers[conn_id] = FrameReader()

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        reader = self._readers[conn_id]
        reader.feed(data)
        while (frame := reader.next_message()) is not None:
            self.frames += 1
            self.emit(FrameReceived(conn_id, conn.remote, frame))
            conn.out += encode_data_frame(TextFrame(ack_text(frame)))

    def on_closed(self, conn_id: int) -> None:
        self._readers.pop(conn_id, None)
