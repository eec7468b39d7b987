"""SACK payload of a Stream ACK (draft 8.6; byte layout from the Go reference, wire-notes 1.11).

``"SACK"`` || count u8 (1..4) || count x (left u32 BE, right u32 BE), where
``right`` is exclusive.  ``SACK_SCHEMA`` is the declarative ``construct``
truth; :func:`encode_sack` / :func:`decode_sack` are the fast codecs proven
equal to it by tests.  ``strict`` (draft profile) requires the payload to be
exactly ``5 + 8*count`` bytes; Go ignores extra bytes (erratum E-SACK-1).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError

__all__ = ["DECODERS", "MAX_BLOCKS", "SACK_MAGIC", "SACK_SCHEMA", "decode_sack", "encode_sack", "looks_like_sack"]

SACK_MAGIC = b"SACK"
MAX_BLOCKS = 4
_PAIR = struct.Struct(">II")
_PAIRS = {n: struct.Struct(">" + "II" * n) for n in range(1, MAX_BLOCKS + 1)}

SACK_SCHEMA = c.Struct(
    "magic" / c.Const(SACK_MAGIC),
    "count" / c.Int8ub,
    c.Check(lambda ctx: 1 <= ctx.count <= MAX_BLOCKS),
    "blocks" / c.Array(c.this.count, c.Struct("left" / c.Int32ub, "right" / c.Int32ub)),
)


def looks_like_sack(payload: bytes | bytearray | memoryview) -> bool:
    """True when a payload starts with the SACK magic (what Go keys on)."""
    return payload[:4] == SACK_MAGIC


def encode_sack(blocks: Sequence[tuple[int, int]]) -> bytes:
    """Encode 1..4 ``(left, right_exclusive)`` blocks."""
    n = len(blocks)
    if not 1 <= n <= MAX_BLOCKS:
        raise LocalProtocolError(
            ErrorCode.OUT_OF_RANGE, f"{n} SACK blocks, need 1..4", field="sack.count", section="8.6",
            requirement="SES-062",
        )  # fmt: skip
    flat: list[int] = []
    for left, right in blocks:
        flat.append(left & 0xFFFFFFFF)
        flat.append(right & 0xFFFFFFFF)
    return SACK_MAGIC + bytes((n,)) + _PAIRS[n].pack(*flat)


def decode_sack(payload: bytes | bytearray | memoryview, *, strict: bool = True) -> tuple[tuple[int, int], ...]:
    """Decode a SACK payload into ``(left, right_exclusive)`` pairs (wire values, not validated against state)."""
    n = len(payload)
    if n < 5:
        raise DecodeError(ErrorCode.TRUNCATED, "sack", f"{n} bytes, need at least 5", section="8.6",
                          requirement="SES-061")  # fmt: skip
    if payload[:4] != SACK_MAGIC:
        raise DecodeError(ErrorCode.BAD_MAGIC, "sack.magic", "payload does not start with 'SACK'", section="8.6",
                          requirement="SES-061")  # fmt: skip
    count = payload[4]
    if not 1 <= count <= MAX_BLOCKS:
        raise DecodeError(ErrorCode.OUT_OF_RANGE, "sack.count", f"count {count}, need 1..4", section="8.6",
                          requirement="SES-062")  # fmt: skip
    need = 5 + 8 * count
    if n < need:
        raise DecodeError(ErrorCode.TRUNCATED, "sack.blocks", f"{count} blocks need {need} bytes, have {n}",
                          section="8.6", requirement="SES-061")  # fmt: skip
    if strict and n > need:
        raise DecodeError(ErrorCode.TRAILING_DATA, "sack", f"{n - need} bytes after {count} blocks",
                          section="8.6", requirement="SES-061")  # fmt: skip
    flat = _PAIRS[count].unpack_from(payload, 5)
    return tuple((flat[i], flat[i + 1]) for i in range(0, 2 * count, 2))


def _strict(data: bytes) -> object:
    return decode_sack(data, strict=True)


def _lenient(data: bytes) -> object:
    return decode_sack(data, strict=False)


#: Byte decoders of this module, for the suite-wide "arbitrary bytes only raise PilotError" test.
DECODERS: dict[str, Callable[[bytes], object]] = {
    "sack@draft": _strict,
    "sack@go-interop": _lenient,
}
