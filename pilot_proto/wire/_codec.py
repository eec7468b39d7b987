"""Shared helpers for the service and IPC codecs (ports 0, 443, 444, 1001-1003, IPC).

These formats are off the hot path, so each module's ``construct`` schema is
its codec: :func:`parse_exact` runs a schema and turns every ``construct``
failure into a :class:`~pilot_proto.errors.DecodeError` naming the field,
rule, draft section and requirement ID.  :class:`StreamDecoder` is the h11-style
incremental reader used for every length-prefixed stream format: ``feed()``
buffers, ``next_message()`` parses, a length over the limit is refused as soon
as its prefix arrives (before the body is buffered), and after an error the
decoder stays failed because the byte stream has lost its framing.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError

__all__ = [
    "StreamDecoder",
    "build",
    "decode_b64",
    "decode_json",
    "decode_utf8",
    "encode_utf8",
    "parse_exact",
]

M = TypeVar("M")
K = TypeVar("K")


def _field(exc: c.ConstructError, prefix: str) -> str:
    path = getattr(exc, "path", None) or ""
    parts = [p.strip() for p in str(path).split("->")[1:]]
    return ".".join([prefix, *parts]) if parts else prefix


def parse_exact(
    schema: c.Construct,
    data: bytes | bytearray | memoryview,
    *,
    what: str,
    section: str,
    requirement: str,
    allow_trailing: bool = False,
) -> Any:
    """Parse ``data`` with ``schema``; bytes left over are ``TRAILING_DATA`` unless allowed."""
    raw = bytes(data)
    stream = io.BytesIO(raw)
    try:
        obj = schema.parse_stream(stream)
    except c.StreamError as exc:
        raise DecodeError(
            ErrorCode.TRUNCATED, _field(exc, what), f"{len(raw)} bytes end inside the field", section=section,
            requirement=requirement,
        ) from None  # fmt: skip
    except c.ConstructError as exc:  # Const/Check/Mapping failures: a forbidden value
        raise DecodeError(
            ErrorCode.BAD_VALUE, _field(exc, what), f"invalid value: {exc}".splitlines()[0], section=section,
            requirement=requirement,
        ) from None  # fmt: skip
    extra = len(raw) - stream.tell()
    if extra and not allow_trailing:
        raise DecodeError(
            ErrorCode.TRAILING_DATA, what, f"{extra} bytes after the end of the message", section=section,
            requirement=requirement,
        )  # fmt: skip
    return obj


def build(schema: c.Construct, obj: Any, *, what: str, section: str, requirement: str) -> bytes:
    """Build bytes; a value that does not fit its field is the caller's error."""
    try:
        out: bytes = schema.build(obj)
    except (c.ConstructError, ValueError, OverflowError, TypeError) as exc:
        raise LocalProtocolError(
            ErrorCode.OUT_OF_RANGE, f"cannot encode: {exc}".splitlines()[0], field=what, section=section,
            requirement=requirement,
        ) from None  # fmt: skip
    return out


def decode_utf8(raw: bytes, *, field: str, section: str, requirement: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            ErrorCode.BAD_ENCODING, field, f"not UTF-8 at byte {exc.start}", section=section, requirement=requirement
        ) from None


def encode_utf8(text: str, *, field: str, section: str, requirement: str) -> bytes:
    """UTF-8 for outgoing text; lone surrogates are the caller's error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(
            ErrorCode.BAD_ENCODING, "text is not encodable as UTF-8", field=field, section=section,
            requirement=requirement,
        ) from None  # fmt: skip


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(raw: bytes, *, field: str, section: str, requirement: str) -> Any:
    """Strict RFC 8259 JSON from UTF-8 bytes (no NaN/Infinity, no duplicate object keys)."""
    text = decode_utf8(raw, field=field, section=section, requirement=requirement)

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_dupes, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(
            ErrorCode.BAD_ENCODING, field, f"not a JSON document: {exc}"[:200], section=section,
            requirement=requirement,
        ) from None  # fmt: skip


def decode_b64(text: str, size: int, *, field: str, section: str, requirement: str) -> bytes:
    """Standard-alphabet, padded base64 of exactly ``size`` bytes."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise DecodeError(
            ErrorCode.BAD_ENCODING, field, "not standard padded base64", section=section, requirement=requirement
        ) from None
    if len(raw) != size:
        raise DecodeError(
            ErrorCode.LENGTH_MISMATCH, field, f"decodes to {len(raw)} bytes, expected {size}", section=section,
            requirement=requirement,
        )  # fmt: skip
    if base64.b64encode(raw).decode("ascii") != text:
        raise DecodeError(
            ErrorCode.BAD_ENCODING, field, "non-canonical base64", section=section, requirement=requirement
        )
    return raw


class StreamDecoder(Generic[M]):
    """Incremental decoder: ``feed(bytes)``, then ``next_message()`` until it returns ``None``.

    Subclasses implement :meth:`_parse` (return ``(message, consumed)`` or ``None``
    when more bytes are needed) and may implement :meth:`_check_prefix`, which
    must raise as soon as the buffered prefix proves the next message too large.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: PilotError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf)

    @property
    def failed(self) -> PilotError | None:
        """The error that broke the stream, if any."""
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data``; raises at once if the pending prefix announces an oversized message."""
        if self._error is not None:
            raise self._error
        self._buf += data
        self._guard(self._check_prefix)

    def next_message(self) -> M | None:
        """The next complete message, or ``None`` if more bytes are needed."""
        if self._error is not None:
            raise self._error
        result: tuple[M, int] | None = self._guard(lambda: self._parse(self._buf))
        if result is None:
            return None
        message, consumed = result
        del self._buf[:consumed]
        return message

    def messages(self) -> list[M]:
        """Every complete message buffered so far."""
        out: list[M] = []
        while (msg := self.next_message()) is not None:
            out.append(msg)
        return out

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except PilotError as exc:
            self._error = exc
            raise

    def _check_prefix(self) -> None:
        return None

    def _parse(self, buf: bytearray) -> tuple[M, int] | None:  # pragma: no cover - abstract
        raise NotImplementedError


_TYPE_LEN = struct.Struct(">II")


class TypedFrameReader(StreamDecoder[M], Generic[M, K]):
    """Incremental reader of ``type u32 || length u32 || body`` frames (Go's framing on ports 1001 and 1003).

    ``check_head(type, length)`` runs as soon as the 8-byte head is buffered -- so an
    unknown type or an oversized length is refused before its body is buffered -- and
    returns the frame kind; ``convert(kind, body)`` builds the message.
    """

    def __init__(self, check_head: Callable[[int, int], K], convert: Callable[[K, bytes], M]) -> None:
        super().__init__()
        self._check_head = check_head
        self._convert = convert

    def _check_prefix(self) -> None:
        if len(self._buf) >= _TYPE_LEN.size:
            self._check_head(*_TYPE_LEN.unpack_from(self._buf))

    def _parse(self, buf: bytearray) -> tuple[M, int] | None:
        if len(buf) < _TYPE_LEN.size:
            return None
        ftype, length = _TYPE_LEN.unpack_from(buf)
        kind = self._check_head(ftype, length)
        end = _TYPE_LEN.size + length
        if len(buf) < end:
            return None
        return self._convert(kind, bytes(buf[_TYPE_LEN.size : end])), end
