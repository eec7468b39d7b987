"""Raw packet crafting for tests: any header field, right or wrong (draft 6).

TEST-ONLY.  :func:`~pilot_proto.wire.header.encode_packet` is the only encoder a stack should use:
it computes the payload length and the CRC and refuses values that do not fit.  A conformance
harness must also send what a correct encoder never produces -- a wrong CRC (PKT-010), a payload
length that disagrees with the bytes present (PKT-002, PKT-024), versions other than 1 (VER-001,
draft 12), undefined flag bits or protocol bytes, bytes after the payload -- so this module builds
the 34-byte header field by field and fixes nothing it is not asked to fix.

Every field is a keyword; every field whose width allows it may hold any value of that width
(``version`` and ``flags`` are the two nibbles of byte 0, 0..15 each; ``byte0`` overrides both).  A
value that does not fit its field's width raises :class:`ValueError`: that is a bug in the test,
not a malformed packet (use ``trailing`` or slice the bytes for those).

``checksum=None`` computes the CRC-32 a receiver checks (draft 6.5: the 30 header bytes, four
zero bytes, and the payload the length field covers -- ``trailing`` bytes are outside it, as in
both our decoders); any int is written as given.  ``payload_length=None`` writes ``len(payload)``.

>>> from pilot_proto.wire.header import decode_packet
>>> pkt = raw_packet(flags=0x1, src=(0, 1), dst=(0, 2), dst_port=7, version=2)
>>> len(pkt), pkt[0] >> 4
(34, 2)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pilot_proto.wire.header import CHECKSUM_OFFSET, HEADER_SIZE, VERSION, Packet, checksum

__all__ = [
    "FIELDS",
    "RawField",
    "corrupt_checksum",
    "from_packet",
    "patch_packet",
    "raw_header",
    "raw_packet",
    "recompute_checksum",
]


class RawField(NamedTuple):
    """Where a header field lives: byte ``offset``, ``size`` in bytes (big-endian)."""

    offset: int
    size: int


#: Byte layout of the 34-byte header (draft 6.1).  ``byte0`` holds version (high nibble) and flags.
FIELDS: dict[str, RawField] = {
    "byte0": RawField(0, 1),
    "protocol": RawField(1, 1),
    "payload_length": RawField(2, 2),
    "src_net": RawField(4, 2),
    "src_node": RawField(6, 4),
    "dst_net": RawField(10, 2),
    "dst_node": RawField(12, 4),
    "src_port": RawField(16, 2),
    "dst_port": RawField(18, 2),
    "seq": RawField(20, 4),
    "ack": RawField(24, 4),
    "window": RawField(28, 2),
    "checksum": RawField(30, 4),
}

_HEAD = struct.Struct(">BBHHIHIHHIIH")


def _fit(name: str, value: int, bits: int) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name}={value} does not fit a {bits}-bit field (crafted values must still fit)")
    return value


def raw_header(
    *,
    version: int = VERSION,
    flags: int = 0,
    byte0: int | None = None,
    protocol: int = 0x01,
    payload_length: int = 0,
    src: tuple[int, int] = (0, 0),
    dst: tuple[int, int] = (0, 0),
    src_port: int = 0,
    dst_port: int = 0,
    seq: int = 0,
    ack: int = 0,
    window: int = 0,
    checksum: int = 0,
) -> bytes:
    """The 34 header bytes exactly as given (no CRC is computed here; see :func:`raw_packet`)."""
    b0 = _fit("byte0", byte0, 8) if byte0 is not None else _fit("version", version, 4) << 4 | _fit("flags", flags, 4)
    head = _HEAD.pack(
        b0,
        _fit("protocol", protocol, 8),
        _fit("payload_length", payload_length, 16),
        _fit("src.network", src[0], 16),
        _fit("src.node", src[1], 32),
        _fit("dst.network", dst[0], 16),
        _fit("dst.node", dst[1], 32),
        _fit("src_port", src_port, 16),
        _fit("dst_port", dst_port, 16),
        _fit("seq", seq, 32),
        _fit("ack", ack, 32),
        _fit("window", window, 16),
    )
    return head + _fit("checksum", checksum, 32).to_bytes(4, "big")


def raw_packet(
    *,
    version: int = VERSION,
    flags: int = 0,
    byte0: int | None = None,
    protocol: int = 0x01,
    src: tuple[int, int] = (0, 0),
    dst: tuple[int, int] = (0, 0),
    src_port: int = 0,
    dst_port: int = 0,
    seq: int = 0,
    ack: int = 0,
    window: int = 0,
    payload: bytes = b"",
    payload_length: int | None = None,
    checksum: int | None = None,
    trailing: bytes = b"",
) -> bytes:
    """Header + ``payload`` + ``trailing``, with every field as given.

    ``payload_length=None`` -> ``len(payload)``; ``checksum=None`` -> the correct CRC-32 (header with a
    zeroed CRC field, then ``payload``; not ``trailing``).  ``trailing`` models bytes
    after the payload that the length field does not cover (PKT-024, erratum E-PKT-1).
    """
    length = len(payload) if payload_length is None else payload_length
    head = raw_header(
        version=version,
        flags=flags,
        byte0=byte0,
        protocol=protocol,
        payload_length=length,
        src=src,
        dst=dst,
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        window=window,
    )
    crc = _crc(head, bytes(payload)) if checksum is None else _fit("checksum", checksum, 32)
    return head[:CHECKSUM_OFFSET] + crc.to_bytes(4, "big") + bytes(payload) + bytes(trailing)


def _crc(head: bytes, body: bytes) -> int:
    return checksum(head[:CHECKSUM_OFFSET], body)


def patch_packet(data: bytes, *, fix_checksum: bool = False, **fields: int) -> bytes:
    """A copy of an encoded packet with header fields overwritten (names from :data:`FIELDS`).

    The CRC is left as it was (so the result usually fails PKT-010) unless ``fix_checksum`` is set,
    in which case it is recomputed over the patched bytes; ``checksum=`` writes a value directly.
    """
    if len(data) < HEADER_SIZE:
        raise ValueError(f"{len(data)} bytes is shorter than a {HEADER_SIZE}-byte header")
    buf = bytearray(data)
    for name, value in fields.items():
        where = FIELDS.get(name)
        if where is None:
            raise ValueError(f"unknown header field {name!r}; known: {', '.join(FIELDS)}")
        buf[where.offset : where.offset + where.size] = _fit(name, value, 8 * where.size).to_bytes(where.size, "big")
    if fix_checksum and "checksum" not in fields:
        return recompute_checksum(bytes(buf))
    return bytes(buf)


def recompute_checksum(data: bytes) -> bytes:
    """``data`` with the CRC field set to the value a receiver computes (over the bytes the length field covers)."""
    head, body = bytes(data[:HEADER_SIZE]), bytes(data[HEADER_SIZE:])
    covered = body[: int.from_bytes(head[2:4], "big")]
    return head[:CHECKSUM_OFFSET] + _crc(head, covered).to_bytes(4, "big") + body


def corrupt_checksum(data: bytes, xor: int = 1) -> bytes:
    """``data`` with its CRC field XOR-ed by ``xor`` (non-zero), so it is wrong whatever it was."""
    if not 0 < xor < 1 << 32:
        raise ValueError("xor must be a non-zero 32-bit value")
    crc = int.from_bytes(data[CHECKSUM_OFFSET:HEADER_SIZE], "big") ^ xor
    return bytes(data[:CHECKSUM_OFFSET]) + crc.to_bytes(4, "big") + bytes(data[HEADER_SIZE:])


def from_packet(pkt: Packet, **overrides: object) -> bytes:
    """:func:`raw_packet` seeded from a :class:`Packet`'s fields, with ``overrides`` applied on top."""
    args: dict[str, object] = {
        "version": pkt.version,
        "flags": int(pkt.flags),
        "protocol": int(pkt.protocol),
        "src": (pkt.src.network, pkt.src.node),
        "dst": (pkt.dst.network, pkt.dst.node),
        "src_port": pkt.src_port,
        "dst_port": pkt.dst_port,
        "seq": pkt.seq,
        "ack": pkt.ack,
        "window": pkt.window,
        "payload": pkt.payload,
    }
    args.update(overrides)
    return raw_packet(**args)  # type: ignore[arg-type]
