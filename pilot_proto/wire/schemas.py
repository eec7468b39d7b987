"""Declarative ``construct`` schemas of the core wire formats -- the truth the fast codecs are proven against.

Every schema mirrors a byte diagram of the draft:

* :data:`ADDRESS` -- 6-byte virtual address (draft 4.1, ADDR-001)
* :data:`HEADER` -- the 34-byte header on its own (draft 6.1-6.4, PKT-005)
* :data:`PACKET` -- header + payload with the Payload Length rebuilt from the payload and the CRC-32
  computed over header-with-zeroed-checksum || payload (draft 6.5, PKT-020/021)
* :data:`PILT`, :data:`PILS`, :data:`PILK`, :data:`PILA`, :data:`PILP` -- tunnel frame bodies after the
  magic (draft 7.1-7.5), and :data:`TUNNEL_FRAME`, a ``Switch`` on the 4-byte :data:`MAGIC` (draft 7, 20.1)

Profile differences are context parameters, not separate schemas: parse with ``strict=True`` for the
draft profile (no trailing bytes, exact frame sizes) and ``strict=False`` for go-interop (errata
E-PKT-1, E-TUN-2, E-PILA-1, E-PILP-1).  Packets also take ``verify_checksum`` and ``check_version``.

:func:`parse_packet_schema`, :func:`build_packet_schema`, :func:`parse_frame_schema` and
:func:`build_frame_schema` wrap the schemas with the fast codecs' calling conventions: they take and
return the same NamedTuples and raise the same :class:`~pilot_proto.errors.DecodeError` codes, so the
property tests can compare the two implementations call for call.  They are slow (pure-Python
interpretation); the hot path uses :mod:`pilot_proto.wire.header` and :mod:`pilot_proto.wire.frames`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    Frame,
    KeyExchangeFrame,
    PlaintextFrame,
    PunchFrame,
)
from pilot_proto.wire.header import Packet

__all__ = [
    "ADDRESS",
    "DECODERS",
    "FLAGS",
    "HEADER",
    "MAGIC",
    "PACKET",
    "PILA",
    "PILK",
    "PILP",
    "PILS",
    "PILT",
    "PROTOCOL",
    "TUNNEL_FRAME",
    "build_frame_schema",
    "build_packet_schema",
    "parse_frame_schema",
    "parse_packet_schema",
]

_ZERO_CRC = b"\x00\x00\x00\x00"


class SchemaViolation(c.ConstructError):  # type: ignore[misc]
    """A declarative rule of a schema failed; carries the :class:`ErrorCode` the fast codec uses."""

    def __init__(self, code: ErrorCode, message: str, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.code = code


class Require(c.Construct):  # type: ignore[misc]
    """Zero-width rule: on parse, ``condition(ctx)`` must hold or a :class:`SchemaViolation` is raised.

    Like ``construct.Check`` but naming the error code, so a failure maps onto the same
    :class:`ErrorCode` as the fast codec.  Building and sizing are no-ops.
    """

    def __init__(self, condition: Callable[[Any], bool], code: ErrorCode, message: str) -> None:
        super().__init__()
        self.condition = condition
        self.code = code
        self.message = message
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> None:
        if not self.condition(context):
            raise SchemaViolation(self.code, self.message, path=path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> None:
        return None

    def _sizeof(self, context: Any, path: str) -> int:
        return 0


def _strict(ctx: Any) -> bool:
    return bool(ctx._params.get("strict", True))


def _param(name: str, default: bool) -> Callable[[Any], bool]:
    return lambda ctx: bool(ctx._params.get(name, default))


# -- section 4: addresses ----------------------------------------------------------------------------------

ADDRESS = (
    c.Struct(
        "network" / c.Int16ub * "Network ID: 0 backbone, 1-65534 user networks, 65535 reserved (ADDR-004..006)",
        "node" / c.Int32ub * "Node ID inside the network; 0xFFFFFFFF is broadcast (ADDR-007, ADDR-015)",
    )
    * "Virtual address, 6 bytes big-endian (draft 4.1, ADDR-001)"
)

# -- section 6: header and packet ---------------------------------------------------------------------------

#: Header flags (draft 6.4, PKT-015); values are the hex values of the flag table (erratum E-PKT-2).
FLAGS = {"SYN": 0x1, "ACK": 0x2, "FIN": 0x4, "RST": 0x8}

#: Protocol byte (draft 6.3, 20.2).  Unassigned values parse as plain integers (PKT-014).
PROTOCOL = c.Enum(c.Int8ub, STREAM=0x01, DATAGRAM=0x02, CONTROL=0x03) * "Protocol type (draft 6.3, PKT-011..014)"

_VERSION_FLAGS = (
    c.BitStruct(
        "version" / c.BitsInteger(4) * "Protocol version, high nibble; 1 today (VER-001)",
        "flags" / c.FlagsEnum(c.BitsInteger(4), **FLAGS) * "SYN/ACK/FIN/RST, low nibble (PKT-015)",
    )
    * "Byte 0: version << 4 | flags (draft 6.2, PKT-006)"
)


def _header_fields(length: c.Construct) -> list[c.Construct]:
    """The 30 bytes before the checksum, with ``length`` as the Payload Length construct."""
    return [
        "vf" / _VERSION_FLAGS,
        "protocol" / PROTOCOL,
        "length" / length * "Payload Length in bytes, at most 65535 (PKT-002, PKT-003)",
        "src" / ADDRESS,
        "dst" / ADDRESS,
        "src_port" / c.Int16ub,
        "dst_port" / c.Int16ub,
        "seq" / c.Int32ub * "Byte offset of this segment (PKT-007)",
        "ack" / c.Int32ub * "Next byte expected from the peer (PKT-008)",
        "window" / c.Int16ub * "Advertised receive window in segments (PKT-009)",
    ]


HEADER = (
    c.Struct(
        *_header_fields(c.Int16ub),
        "checksum" / c.Int32ub * "CRC-32 as found on the wire; not verified here (see PACKET)",
    )
    * "The 34-byte packet header on its own (draft 6.1, PKT-001, PKT-005); checksum not verified"
)


def _packet_crc(ctx: Any) -> bytes:
    return bytes(ctx.header.data) + _ZERO_CRC + bytes(ctx.payload)


def _version_ok(ctx: Any) -> bool:
    return not ctx._params.get("check_version", True) or ctx.header.value.vf.version == 1


PACKET = (
    c.Struct(
        "_start" / c.Tell,
        "header" / c.RawCopy(c.Struct(*_header_fields(c.Rebuild(c.Int16ub, c.len_(c.this._.payload))))),
        "checksum" / c.Default(c.Int32ub, 0) * "Wire CRC-32; on build a placeholder patched by the Checksum below",
        "payload" / c.Bytes(c.this.header.value.length),
        c.If(_strict, c.Terminated) * "draft: no bytes after the payload (E-PKT-1, PKT-024)",
        c.If(
            _param("verify_checksum", True),
            c.Checksum(
                c.Pointer(c.this._start + 30, c.Int32ub),
                zlib.crc32,
                _packet_crc,
            ),
        )
        * "CRC-32/IEEE over header-with-zeroed-checksum || payload, stored big-endian at offset 30 (PKT-020/021)",
        Require(_version_ok, ErrorCode.BAD_VERSION, "version must be 1 (draft 12.1, VER-001)"),
    )
    * "A packet: header + payload; length and CRC are computed on build and checked on parse (draft 6)"
)

# -- section 7: tunnel frames ----------------------------------------------------------------------------------

#: The 4-byte frame magic (draft 7, 20.1, IANA-001..005).
MAGIC = c.Enum(c.Int32ub, PILT=0x50494C54, PILS=0x50494C53, PILK=0x50494C4B, PILA=0x50494C41, PILP=0x50494C50)

PILT = (
    c.Struct(
        "packet" / c.GreedyBytes * "The raw packet (header + payload); decode it with PACKET",
        Require(lambda ctx: len(ctx.packet) >= 34, ErrorCode.TRUNCATED, "PILT carries at least a 34-byte header"),
    )
    * "Plaintext frame body (draft 7.1, TUN-002, TUN-011)"
)

PILS = (
    c.Struct(
        "sender" / c.Int32ub * "Sender's node ID, selects the session key (TUN-012)",
        "nonce" / c.Bytes(12) * "4-byte prefix + 8-byte counter (draft 11, TUN-013)",
        "ciphertext" / c.GreedyBytes * "AES-256-GCM ciphertext with the 16-byte tag appended (TUN-014)",
        Require(lambda ctx: len(ctx.ciphertext) >= 16, ErrorCode.TRUNCATED, "PILS ciphertext holds at least the tag"),
    )
    * "Encrypted frame body (draft 7.2, TUN-003)"
)

PILK = (
    c.Struct(
        "sender" / c.Int32ub,
        "x25519_public" / c.Bytes(32) * "Sender's X25519 public key (RFC 7748)",
        c.If(_strict, c.Terminated) * "draft: exactly 40 bytes (E-TUN-2, TUN-024)",
    )
    * "Key exchange frame body (draft 7.3, TUN-004)"
)

PILA = (
    c.Struct(
        "sender" / c.Int32ub,
        "x25519_public" / c.Bytes(32),
        "ed25519_public" / c.Bytes(32) * "Sender's Ed25519 identity key",
        "signature" / c.Bytes(64) * "Ed25519 over 'auth' || sender || X25519 key (TUN-018)",
        c.If(_strict, c.Terminated) * "draft: exactly 136 bytes (E-PILA-1, TUN-023)",
        "trailer" / c.GreedyBytes * "go-interop: GoC capability trailer, kept verbatim",
    )
    * "Authenticated key exchange frame body (draft 7.4, TUN-005)"
)

PILP = (
    c.Struct(
        "sender"
        / c.IfThenElse(
            _strict,
            c.Int32ub,
            c.Select(c.Int32ub, c.Terminated),  # Go sends the bare magic: sender absent (None)
        ),
        c.If(_strict, c.Terminated) * "draft: exactly 8 bytes (E-PILP-1, TUN-027)",
    )
    * "NAT punch frame body (draft 7.5, TUN-006)"
)

_BODIES = {"PILT": PILT, "PILS": PILS, "PILK": PILK, "PILA": PILA, "PILP": PILP}

TUNNEL_FRAME = (
    c.Struct(
        "magic" / MAGIC,
        "body" / c.Switch(c.this.magic, _BODIES, default=c.Error),
    )
    * "Any tunnel frame: a magic and the body it selects (draft 7, TUN-001, TUN-008, TUN-009)"
)


# -- helpers with the fast codecs' conventions -------------------------------------------------------------------


def _flags_int(container: Mapping[str, Any]) -> int:
    return sum(bit for name, bit in FLAGS.items() if container.get(name))


def _decode_error(exc: c.ConstructError, kind: str, reqs: Mapping[str, tuple[str, str]]) -> DecodeError:
    """Map a construct failure onto the code the fast codec uses for the same input."""
    path = str(getattr(exc, "path", "") or "")
    if isinstance(exc, SchemaViolation):
        code = exc.code
    elif isinstance(exc, c.TerminatedError):
        code = ErrorCode.TRAILING_DATA
    elif isinstance(exc, c.ChecksumError):
        code = ErrorCode.BAD_CHECKSUM
    elif isinstance(exc, c.ExplicitError):
        code = ErrorCode.BAD_MAGIC
    elif isinstance(exc, c.StreamError | c.SelectError):
        code = ErrorCode.TRUNCATED
    else:  # pragma: no cover - every schema failure above is enumerated
        code = ErrorCode.BAD_VALUE
    section, req = reqs.get(kind, ("7", "TUN-001"))
    return DecodeError(code, kind, f"schema: {exc} [{path}]", section=section, requirement=req)


_PACKET_REQS = {"packet": ("6", "PKT-001")}
_FRAME_REQS = {
    "magic": ("7", "TUN-001"),
    "PILT": ("7.1", "TUN-002"),
    "PILS": ("7.2", "TUN-003"),
    "PILK": ("7.3", "TUN-004"),
    "PILA": ("7.4", "TUN-005"),
    "PILP": ("7.5", "TUN-006"),
}


def parse_packet_schema(
    data: bytes,
    profile: Profile = DEFAULT_PROFILE,
    *,
    verify_checksum: bool = True,
    check_version: bool = True,
) -> Packet:
    """Parse with :data:`PACKET`; same result and error codes as :func:`~pilot_proto.wire.header.decode_packet`."""
    try:
        obj = PACKET.parse(
            bytes(data),
            strict=profile is Profile.DRAFT,
            verify_checksum=verify_checksum,
            check_version=check_version,
        )
    except c.ConstructError as exc:
        raise _decode_error(exc, "packet", _PACKET_REQS) from None
    h = obj.header.value
    return Packet(
        flags=_flags_int(h.vf.flags),
        protocol=int(h.protocol),
        src=Addr(h.src.network, h.src.node),
        dst=Addr(h.dst.network, h.dst.node),
        src_port=h.src_port,
        dst_port=h.dst_port,
        seq=h.seq,
        ack=h.ack,
        window=h.window,
        payload=bytes(obj.payload),
        version=h.vf.version,
        checksum=obj.checksum,
    )


def build_packet_schema(pkt: Packet) -> bytes:
    """Build with :data:`PACKET`; same bytes as :func:`~pilot_proto.wire.header.encode_packet`."""
    value = {
        "vf": {"version": pkt.version, "flags": int(pkt.flags)},
        "protocol": int(pkt.protocol),
        "src": {"network": pkt.src.network, "node": pkt.src.node},
        "dst": {"network": pkt.dst.network, "node": pkt.dst.node},
        "src_port": pkt.src_port,
        "dst_port": pkt.dst_port,
        "seq": pkt.seq,
        "ack": pkt.ack,
        "window": pkt.window,
    }
    out: bytes = PACKET.build({"header": {"value": value}, "payload": bytes(pkt.payload)})
    return out


def parse_frame_schema(data: bytes, profile: Profile = DEFAULT_PROFILE) -> Frame:
    """Parse with :data:`TUNNEL_FRAME`; same result and codes as :func:`~pilot_proto.wire.frames.decode_frame`."""
    raw = bytes(data)
    kind = raw[:4].decode("latin-1") if raw[:4] in (b"PILT", b"PILS", b"PILK", b"PILA", b"PILP") else "magic"
    try:
        obj = TUNNEL_FRAME.parse(raw, strict=profile is Profile.DRAFT)
    except c.ConstructError as exc:
        raise _decode_error(exc, kind, _FRAME_REQS) from None
    b = obj.body
    magic = str(obj.magic)
    if magic == "PILT":
        return PlaintextFrame(bytes(b.packet))
    if magic == "PILS":
        return EncryptedFrame(b.sender, bytes(b.nonce), bytes(b.ciphertext))
    if magic == "PILK":
        return KeyExchangeFrame(b.sender, bytes(b.x25519_public))
    if magic == "PILA":
        return AuthKeyExchangeFrame(
            b.sender, bytes(b.x25519_public), bytes(b.ed25519_public), bytes(b.signature), bytes(b.trailer)
        )
    return PunchFrame(b.sender)


def build_frame_schema(frame: Frame, profile: Profile = DEFAULT_PROFILE) -> bytes:
    """Build with :data:`TUNNEL_FRAME`; same bytes as :func:`~pilot_proto.wire.frames.encode_frame`.

    ``profile`` only matters for :class:`PunchFrame` without a sender (the 4-byte Go form), which the
    draft schema cannot express.
    """
    body: dict[str, Any]
    if isinstance(frame, PlaintextFrame):
        magic, body = "PILT", {"packet": bytes(frame.packet)}
    elif isinstance(frame, EncryptedFrame):
        magic, body = "PILS", {"sender": frame.sender, "nonce": frame.nonce, "ciphertext": frame.ciphertext}
    elif isinstance(frame, KeyExchangeFrame):
        magic, body = "PILK", {"sender": frame.sender, "x25519_public": frame.x25519_public}
    elif isinstance(frame, AuthKeyExchangeFrame):
        magic, body = "PILA", frame._asdict()
    elif isinstance(frame, PunchFrame):
        magic, body = "PILP", {"sender": frame.sender}
    else:
        raise TypeError(f"not a tunnel frame: {frame!r}")
    out: bytes = TUNNEL_FRAME.build({"magic": magic, "body": body}, strict=profile is Profile.DRAFT)
    return out


def _schema_decoder(profile: Profile, packet: bool) -> Callable[[bytes], object]:
    if packet:
        return lambda data: parse_packet_schema(data, profile)
    return lambda data: parse_frame_schema(data, profile)


#: Byte decoders of this module, for the suite-wide "arbitrary bytes only raise PilotError" test.
DECODERS: dict[str, Callable[[bytes], object]] = {
    "schema.packet@draft": _schema_decoder(Profile.DRAFT, True),
    "schema.packet@go-interop": _schema_decoder(Profile.GO_INTEROP, True),
    "schema.tunnel_frame@draft": _schema_decoder(Profile.DRAFT, False),
    "schema.tunnel_frame@go-interop": _schema_decoder(Profile.GO_INTEROP, False),
}
