"""The 34-byte packet header and packets (draft section 6) -- fast codec.

This is the hot-path codec built on a precompiled :class:`struct.Struct`.
The declarative truth is the ``construct`` schema in
:mod:`pilot_proto.wire.schemas`; property tests prove the two byte-identical.
The tunnel's C accelerator has a third encoder/decoder fused with PILS sealing
and opening (:meth:`~pilot_proto.tunnel.aead.PilsSealer.seal_packet`); its
tests prove it gives exactly what this module gives, or defers to it.

Decoding order (draft 6.5, 12.1): length, checksum, then version.  A packet
whose CRC is wrong is rejected before any other field is trusted.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable
from typing import NamedTuple

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire.address import Addr

__all__ = [
    "CHECKSUM_OFFSET",
    "DECODERS",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "VERSION",
    "Flags",
    "Packet",
    "PacketProtocol",
    "checksum",
    "decode_packet",
    "encode_packet",
]

HEADER_SIZE = 34
CHECKSUM_OFFSET = 30
MAX_PAYLOAD = 0xFFFF
VERSION = 1

#: byte0, protocol, payload length, src net, src node, dst net, dst node,
#: src port, dst port, seq, ack, window, checksum
_HDR = struct.Struct(">BBHHIHIHHIIHI")
_HDR_NO_CRC = struct.Struct(">BBHHIHIHHIIH")
_ZERO_CRC = b"\x00\x00\x00\x00"
_CRC = struct.Struct(">I")
_unpack_header = _HDR.unpack_from
_pack_head = _HDR_NO_CRC.pack
#: CRC-32 (IEEE 802.3, zlib's) of the hot path: ISA-L's carry-less-multiply implementation when the optional
#: ``isal`` package is installed (``pip install pilot-proto[speed]``; ~8x zlib on a 4 KiB payload, the same
#: values -- tests/test_header_crc.py), else zlib's.  :data:`CRC32_IMPLEMENTATION` says which.
try:
    from isal.isal_zlib import crc32 as _crc32  # type: ignore[import-not-found, unused-ignore]

    CRC32_IMPLEMENTATION = "isal"
except ImportError:  # pragma: no cover - depends on the environment
    _crc32 = zlib.crc32
    CRC32_IMPLEMENTATION = "zlib"
_new = tuple.__new__
_DRAFT = Profile.DRAFT


class Flags(enum.IntFlag):
    """Header flags, the low nibble of byte 0 (draft 6.4)."""

    NONE = 0
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class PacketProtocol(enum.IntEnum):
    """Protocol type byte (draft 6.3)."""

    STREAM = 0x01
    DATAGRAM = 0x02
    CONTROL = 0x03


class Packet(NamedTuple):
    """A decoded packet: every header field plus the payload.

    ``checksum`` is the value on the wire after decoding; when encoding it is
    ignored and recomputed.  Integers are kept as plain ``int`` so a packet can
    carry values the enums do not name (decoders may be lenient about the
    protocol byte, see :func:`decode_packet`).
    """

    flags: int
    protocol: int
    src: Addr
    dst: Addr
    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    window: int = 0
    payload: bytes = b""
    version: int = VERSION
    checksum: int = 0

    def encode(self) -> bytes:
        return encode_packet(self)

    def has(self, flag: Flags) -> bool:
        return bool(self.flags & flag)

    def describe(self) -> str:
        """One-line human form, e.g. ``SYN|ACK 0:0000.0000.0001:49152 > ... seq=0 ack=1 win=512 len=0``."""
        names = "|".join(f.name for f in Flags if f and self.flags & f and f.name) or "-"
        return (
            f"v{self.version} {names} proto={self.protocol} {self.src}:{self.src_port} > "
            f"{self.dst}:{self.dst_port} seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)}"
        )


def checksum(header_without_crc: bytes | bytearray | memoryview, payload: bytes | memoryview) -> int:
    """CRC-32 (IEEE) over the 30 header bytes, four zero bytes, and the payload (draft 6.5)."""
    return _crc32(payload, _crc32(_ZERO_CRC, _crc32(header_without_crc)))


def encode_packet(pkt: Packet) -> bytes:
    """Serialise ``pkt``; the payload length and checksum are computed here.

    Raises :class:`LocalProtocolError` for values that do not fit their fields.
    """
    flags, proto, src, dst, sp, dp, seq, ack, win, payload, version, _ = pkt
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise LocalProtocolError(
            ErrorCode.TOO_LARGE,
            f"payload of {n} bytes exceeds 65535",
            field="payload",
            section="6.2",
            requirement="PKT-003",
        )
    try:
        # int(): Flags is an IntFlag, whose Python-level operators would dominate the cost of this function
        flags = int(flags)
        if (version | flags) >> 4:  # either nibble out of 0..15 (negatives included)
            raise struct.error("version and flags are 4-bit fields")
        sn, snode = src
        dn, dnode = dst
        head = _pack_head(version << 4 | flags, proto, n, sn, snode, dn, dnode, sp, dp, seq, ack, win)
    except (struct.error, TypeError, ValueError) as exc:
        raise LocalProtocolError(
            ErrorCode.OUT_OF_RANGE, f"a header field does not fit: {exc}", field="header", section="6.2"
        ) from None
    return head + _CRC.pack(_crc32(payload, _crc32(_ZERO_CRC, _crc32(head)))) + payload


def decode_packet(
    data: bytes | bytearray | memoryview,
    profile: Profile = DEFAULT_PROFILE,
    *,
    verify_checksum: bool = True,
    check_version: bool = True,
) -> Packet:
    """Parse one packet (header + payload) from ``data``.

    * fewer than 34 bytes, or fewer than 34 + payload length -> ``TRUNCATED``
    * bytes after the payload -> ``TRAILING_DATA`` under ``draft``; ignored under
      ``go-interop`` (erratum E-PKT-1)
    * wrong CRC -> ``BAD_CHECKSUM`` (PKT-010, draft 6.5 MUST)
    * version other than 1 -> ``BAD_VERSION`` (draft 12.1; pass
      ``check_version=False`` to let a session layer answer with RST instead)
    """
    n = len(data)
    if n < HEADER_SIZE:
        raise DecodeError(
            ErrorCode.TRUNCATED,
            "header",
            f"{n} bytes, a header needs {HEADER_SIZE}",
            section="6.1",
            requirement="PKT-001",
        )
    (b0, proto, length, sn, snode, dn, dnode, sp, dp, seq, ack, win, crc) = _unpack_header(data)
    end = HEADER_SIZE + length
    if n != end:
        if n < end:
            raise DecodeError(
                ErrorCode.TRUNCATED,
                "payload",
                f"payload length field says {length}, only {n - HEADER_SIZE} present",
                section="6.2",
                requirement="PKT-002",
            )
        if profile is _DRAFT:
            raise DecodeError(
                ErrorCode.TRAILING_DATA,
                "payload",
                f"{n - end} bytes after the payload (payload length field says {length})",
                section="6.2",
                requirement="PKT-024",
            )
    if type(data) is bytes:
        payload = data[HEADER_SIZE:end]
        head = data[:CHECKSUM_OFFSET]
    else:
        payload = bytes(data[HEADER_SIZE:end])
        head = bytes(data[:CHECKSUM_OFFSET])
    if verify_checksum:
        calc = _crc32(payload, _crc32(_ZERO_CRC, _crc32(head)))
        if calc != crc:
            raise DecodeError(
                ErrorCode.BAD_CHECKSUM,
                "header.checksum",
                f"CRC-32 is {calc:#010x}, header says {crc:#010x}",
                section="6.5",
                requirement="PKT-010",
            )
    version = b0 >> 4
    if version != VERSION and check_version:
        raise DecodeError(
            ErrorCode.BAD_VERSION,
            "header.version",
            f"version {version} is not supported (only 1)",
            section="12.1",
            requirement="VER-001",
        )
    # tuple.__new__ skips the NamedTuple constructors' Python-level argument handling (hot path).
    return _new(
        Packet,
        (b0 & 0x0F, proto, _new(Addr, (sn, snode)), _new(Addr, (dn, dnode)), sp, dp, seq, ack, win, payload, version,
         crc),
    )  # fmt: skip


def _decode_draft(data: bytes) -> Packet:
    return decode_packet(data, Profile.DRAFT)


def _decode_go(data: bytes) -> Packet:
    return decode_packet(data, Profile.GO_INTEROP)


#: Byte decoders of this module, for the suite-wide "arbitrary bytes only raise PilotError" test.
DECODERS: dict[str, Callable[[bytes], object]] = {
    "packet@draft": _decode_draft,
    "packet@go-interop": _decode_go,
}
