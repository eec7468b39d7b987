"""Port-1001 data exchange: typed frames (draft 14.2; wire-notes 1.16, Go ``pkg/dataexchange``).

Frame: ``type u32 BE || length u32 BE || payload`` with length <= 2^24 (SVC-010,
015, 016).  Types: Text 1 (UTF-8), Binary 2, JSON 3 (one JSON document), File 4
(``name_len u16 || name || data``) (SVC-011..014).  File names are 1..255 bytes of
UTF-8 without ``/``, ``\\``, ``..`` or NUL (SVC-017); we refuse such names rather
than strip them (erratum E-SVC-2).  Both profiles use this layout.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.wire._codec import TypedFrameReader, build, decode_json, decode_utf8, encode_utf8, parse_exact

__all__ = [
    "FILE_PAYLOAD",
    "FRAME",
    "MAX_FILENAME",
    "MAX_PAYLOAD",
    "BinaryFrame",
    "DataFrame",
    "FileFrame",
    "FrameReader",
    "FrameType",
    "JsonFrame",
    "TextFrame",
    "check_filename",
    "decode_data_frame",
    "encode_data_frame",
]

MAX_PAYLOAD = 1 << 24
MAX_FILENAME = 255
HEADER_SIZE = 8
_HEAD = struct.Struct(">II")
_SECTION = "14.2"


class FrameType(enum.IntEnum):
    TEXT = 0x01
    BINARY = 0x02
    JSON = 0x03
    FILE = 0x04


#: Declarative frame layout (the codec).
FRAME = c.Struct(
    "type" / c.Int32ub,
    "length" / c.Int32ub,
    "payload" / c.Bytes(c.this.length),
)

#: Declarative File payload layout.
FILE_PAYLOAD = c.Struct(
    "name" / c.Prefixed(c.Int16ub, c.GreedyBytes),
    "data" / c.GreedyBytes,
)


class TextFrame(NamedTuple):
    text: str


class BinaryFrame(NamedTuple):
    data: bytes


class JsonFrame(NamedTuple):
    """``document`` holds the JSON text exactly as sent; :attr:`value` parses it."""

    document: bytes

    @property
    def value(self) -> Any:
        return decode_json(self.document, field="dataexchange.payload", section=_SECTION, requirement="SVC-013")


class FileFrame(NamedTuple):
    name: str
    data: bytes


DataFrame = TextFrame | BinaryFrame | JsonFrame | FileFrame


def check_filename(raw: bytes) -> str:
    """Validate a File name (SVC-017) and return it as text."""
    if not 1 <= len(raw) <= MAX_FILENAME:
        raise DecodeError(
            ErrorCode.OUT_OF_RANGE, "dataexchange.file.name", f"name of {len(raw)} bytes, must be 1..255",
            section=_SECTION, requirement="SVC-017",
        )  # fmt: skip
    name = decode_utf8(raw, field="dataexchange.file.name", section=_SECTION, requirement="SVC-017")
    for bad in ("/", "\\", "\x00", ".."):
        if bad in name:
            raise DecodeError(
                ErrorCode.BAD_VALUE, "dataexchange.file.name", f"name contains {bad!r}", section=_SECTION,
                requirement="SVC-017",
            )  # fmt: skip
    return name


def _payload_of(frame: DataFrame) -> tuple[FrameType, bytes]:
    if isinstance(frame, TextFrame):
        return FrameType.TEXT, encode_utf8(
            frame.text, field="dataexchange.payload", section=_SECTION, requirement="SVC-012"
        )
    if isinstance(frame, BinaryFrame):
        return FrameType.BINARY, frame.data
    if isinstance(frame, JsonFrame):
        return FrameType.JSON, frame.document
    name = encode_utf8(frame.name, field="dataexchange.file.name", section=_SECTION, requirement="SVC-017")
    try:
        check_filename(name)
    except DecodeError as exc:
        raise LocalProtocolError(exc.code, exc.rule, field=exc.field, section=_SECTION, requirement="SVC-017") from None
    body = build(FILE_PAYLOAD, {"name": name, "data": frame.data},
                 what="dataexchange.file", section=_SECTION, requirement="SVC-014")  # fmt: skip
    return FrameType.FILE, body


def encode_data_frame(frame: DataFrame) -> bytes:
    ftype, payload = _payload_of(frame)
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(
            ErrorCode.TOO_LARGE, f"payload of {len(payload)} bytes exceeds 2^24", field="dataexchange.length",
            section=_SECTION, requirement="SVC-016",
        )  # fmt: skip
    return build(FRAME, {"type": ftype, "length": len(payload), "payload": payload},
                 what="dataexchange.frame", section=_SECTION, requirement="SVC-010")  # fmt: skip


def _check_head(ftype: int, length: int) -> FrameType:
    if length > MAX_PAYLOAD:
        raise DecodeError(
            ErrorCode.TOO_LARGE, "dataexchange.length", f"length {length} exceeds 2^24", section=_SECTION,
            requirement="SVC-016",
        )  # fmt: skip
    try:
        return FrameType(ftype)
    except ValueError:
        raise DecodeError(
            ErrorCode.BAD_VALUE,
            "dataexchange.type",
            f"unknown frame type {ftype:#x}",
            section=_SECTION,
            requirement="SVC-011",
        ) from None


def _payload_to_frame(ftype: FrameType, payload: bytes) -> DataFrame:
    if ftype is FrameType.TEXT:
        return TextFrame(decode_utf8(payload, field="dataexchange.payload", section=_SECTION, requirement="SVC-012"))
    if ftype is FrameType.BINARY:
        return BinaryFrame(payload)
    if ftype is FrameType.JSON:
        decode_json(payload, field="dataexchange.payload", section=_SECTION, requirement="SVC-013")
        return JsonFrame(payload)
    obj = parse_exact(FILE_PAYLOAD, payload, what="dataexchange.file", section=_SECTION, requirement="SVC-014")
    return FileFrame(check_filename(obj.name), obj.data)


def decode_data_frame(data: bytes | bytearray | memoryview) -> DataFrame:
    """Exactly one frame."""
    if len(data) >= HEADER_SIZE:
        _check_head(*_HEAD.unpack_from(data))
    obj = parse_exact(FRAME, data, what="dataexchange.frame", section=_SECTION, requirement="SVC-010")
    return _payload_to_frame(FrameType(obj.type), obj.payload)


class FrameReader(TypedFrameReader[DataFrame, FrameType]):
    """Incremental frame reader; type and length are checked as soon as the 8-byte header arrives."""

    def __init__(self) -> None:
        super().__init__(_check_head, _payload_to_frame)


def _drain(data: bytes) -> list[DataFrame]:
    reader = FrameReader()
    reader.feed(data)
    return reader.messages()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "frame": decode_data_frame,
    "frame_stream": _drain,
}
