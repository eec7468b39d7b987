"""Port-443 secure channel framing (draft 10.5, 11.4; Go ``pkg/secure``) -- framing only.

Three things travel on a port-443 stream:

1. key agreement: the client's raw 32-byte X25519 public key, then the
   server's (no framing at all, SVC-054);
2. records: ``len u32 BE || nonce[12] || ciphertext || tag[16]`` where ``len``
   counts nonce + ciphertext + tag (SVC-051, erratum E-SEC443-1);
3. optionally (GoB), inside the first records, each side's 92-byte auth frame
   ``node_id u32 || unix_ts u64 || nonce[16] || Ed25519 signature[64]`` (SVC-055).

The AEAD, HKDF and the counter policy (start at 0 or 1) belong to the tunnel
crypto layer; this module only cuts and assembles bytes.  Profiles differ in the
smallest record length accepted: ``draft`` needs room for nonce + tag (28),
``go-interop`` accepts what Go's reader accepts (12).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import NamedTuple

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire._codec import StreamDecoder, build, parse_exact

__all__ = [
    "AUTH_FRAME",
    "AUTH_FRAME_SIZE",
    "AUTH_SIGN_DOMAIN",
    "KEY_SIZE",
    "MAX_RECORD_LEN",
    "NONCE_SIZE",
    "RECORD",
    "TAG_SIZE",
    "AuthFrame",
    "KeyAgreementReader",
    "Record",
    "RecordReader",
    "Role",
    "auth_signed_message",
    "decode_auth_frame",
    "decode_key",
    "decode_record",
    "encode_auth_frame",
    "encode_record",
    "min_record_len",
    "record_nonce",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
AUTH_NONCE_SIZE = 16
SIGNATURE_SIZE = 64
AUTH_FRAME_SIZE = 4 + 8 + AUTH_NONCE_SIZE + SIGNATURE_SIZE  # 92
MAX_RECORD_LEN = 16 * 1024 * 1024
AUTH_SIGN_DOMAIN = b"pilot-secure-auth:"
_LEN = struct.Struct(">I")


class Role(enum.IntEnum):
    """Nonce prefix of each side (draft 11.4)."""

    SERVER = 0x00000001  # listener
    CLIENT = 0x00000002  # dialer


#: Declarative record layout.  ``length`` counts nonce + sealed (SVC-051).
RECORD = c.Struct(
    "length" / c.Int32ub,
    "nonce" / c.Bytes(NONCE_SIZE),
    "sealed" / c.Bytes(c.this.length - NONCE_SIZE),
)

#: Declarative auth frame (GoB ``authFrameLen``).
AUTH_FRAME = c.Struct(
    "node_id" / c.Int32ub,
    "timestamp" / c.Int64ub,
    "nonce" / c.Bytes(AUTH_NONCE_SIZE),
    "signature" / c.Bytes(SIGNATURE_SIZE),
)


def min_record_len(profile: Profile = DEFAULT_PROFILE) -> int:
    """Smallest ``len`` accepted: nonce + tag under ``draft``, nonce only under ``go-interop`` (E-SEC443-1)."""
    return NONCE_SIZE + TAG_SIZE if profile is Profile.DRAFT else NONCE_SIZE


class Record(NamedTuple):
    """One record: the 12-byte nonce and the ciphertext with its tag."""

    nonce: bytes
    sealed: bytes

    @property
    def prefix(self) -> int:
        """The 4-byte role prefix (the AAD in GoB/GoC and the draft)."""
        return int.from_bytes(self.nonce[:4], "big")

    @property
    def counter(self) -> int:
        return int.from_bytes(self.nonce[4:], "big")

    def encode(self) -> bytes:
        return encode_record(self)


class AuthFrame(NamedTuple):
    """The 92-byte mutual-authentication frame (GoB, sent inside records)."""

    node_id: int
    timestamp: int
    nonce: bytes
    signature: bytes

    def encode(self) -> bytes:
        return encode_auth_frame(self)


def record_nonce(role: Role | int, counter: int) -> bytes:
    """Role prefix || counter, 12 bytes (draft 11.4, NONCE-007)."""
    if not 0 <= counter < 1 << 64 or not 0 <= int(role) < 1 << 32:
        raise LocalProtocolError(
            ErrorCode.OUT_OF_RANGE, "role must fit 32 bits and counter 64 bits", field="secure.nonce",
            section="11.4", requirement="NONCE-007",
        )  # fmt: skip
    return int(role).to_bytes(4, "big") + counter.to_bytes(8, "big")


def encode_record(record: Record) -> bytes:
    if len(record.nonce) != NONCE_SIZE:
        raise LocalProtocolError(
            ErrorCode.LENGTH_MISMATCH, f"nonce is {len(record.nonce)} bytes, must be 12", field="secure.nonce",
            section="10.5", requirement="SEC-012",
        )  # fmt: skip
    length = NONCE_SIZE + len(record.sealed)
    if length > MAX_RECORD_LEN:
        raise LocalProtocolError(
            ErrorCode.TOO_LARGE, f"record length {length} exceeds {MAX_RECORD_LEN}", field="secure.length",
            section="10.5", requirement="SVC-052",
        )  # fmt: skip
    return build(
        RECORD, {"length": length, "nonce": record.nonce, "sealed": record.sealed},
        what="secure.record", section="10.5", requirement="SEC-012",
    )  # fmt: skip


def _check_len(length: int, profile: Profile) -> None:
    low = min_record_len(profile)
    if length < low:
        raise DecodeError(
            ErrorCode.LENGTH_MISMATCH, "secure.length", f"record length {length} is below the minimum {low}",
            section="10.5", requirement="SVC-052",
        )  # fmt: skip
    if length > MAX_RECORD_LEN:
        raise DecodeError(
            ErrorCode.TOO_LARGE, "secure.length", f"record length {length} exceeds {MAX_RECORD_LEN}",
            section="10.5", requirement="SVC-052",
        )  # fmt: skip


def decode_record(data: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> Record:
    """Exactly one record (length prefix included)."""
    if len(data) >= 4:
        _check_len(_LEN.unpack_from(data)[0], profile)
    obj = parse_exact(RECORD, data, what="secure.record", section="10.5", requirement="SEC-012")
    return Record(obj.nonce, obj.sealed)


class RecordReader(StreamDecoder[Record]):
    """Incremental record reader; the length limits are checked on the 4-byte prefix alone."""

    def __init__(self, profile: Profile = DEFAULT_PROFILE) -> None:
        super().__init__()
        self.profile = profile

    def _check_prefix(self) -> None:
        if len(self._buf) >= 4:
            _check_len(_LEN.unpack_from(self._buf)[0], self.profile)

    def _parse(self, buf: bytearray) -> tuple[Record, int] | None:
        if len(buf) < 4:
            return None
        (length,) = _LEN.unpack_from(buf)
        _check_len(length, self.profile)
        end = 4 + length
        if len(buf) < end:
            return None
        return Record(bytes(buf[4:16]), bytes(buf[16:end])), end


def decode_key(data: bytes | bytearray | memoryview) -> bytes:
    """A raw key-agreement message: exactly 32 bytes (SVC-054)."""
    if len(data) != KEY_SIZE:
        code = ErrorCode.TRUNCATED if len(data) < KEY_SIZE else ErrorCode.TRAILING_DATA
        raise DecodeError(
            code, "secure.x25519_public", f"{len(data)} bytes, the key is 32", section="10.5", requirement="SVC-054"
        )
    return bytes(data)


class KeyAgreementReader(StreamDecoder[bytes]):
    """Reads the peer's 32-byte key from the start of a stream; later bytes stay buffered for records."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False

    def _parse(self, buf: bytearray) -> tuple[bytes, int] | None:
        if self.done or len(buf) < KEY_SIZE:
            return None
        self.done = True
        return bytes(buf[:KEY_SIZE]), KEY_SIZE

    def remainder(self) -> bytes:
        """Bytes after the key (the first records), handed to a :class:`RecordReader`."""
        out = bytes(self._buf)
        self._buf.clear()
        return out


def encode_auth_frame(frame: AuthFrame) -> bytes:
    if len(frame.nonce) != AUTH_NONCE_SIZE or len(frame.signature) != SIGNATURE_SIZE:
        raise LocalProtocolError(
            ErrorCode.LENGTH_MISMATCH, "auth nonce must be 16 bytes and signature 64", field="secure.auth",
            section="10.5", requirement="SVC-055",
        )  # fmt: skip
    return build(AUTH_FRAME, frame._asdict(), what="secure.auth", section="10.5", requirement="SVC-055")


def decode_auth_frame(data: bytes | bytearray | memoryview) -> AuthFrame:
    """Exactly 92 bytes (GoB refuses any other size)."""
    if len(data) > AUTH_FRAME_SIZE:
        raise DecodeError(
            ErrorCode.TRAILING_DATA, "secure.auth", f"{len(data)} bytes, the auth frame is 92", section="10.5",
            requirement="SVC-055",
        )  # fmt: skip
    obj = parse_exact(AUTH_FRAME, data, what="secure.auth", section="10.5", requirement="SVC-055")
    return AuthFrame(obj.node_id, obj.timestamp, obj.nonce, obj.signature)


def auth_signed_message(node_id: int, x25519_public: bytes, timestamp: int, nonce: bytes) -> bytes:
    """``"pilot-secure-auth:" || node_id u32 || own X25519 key || ts u64 || nonce[16]`` (SVC-056)."""
    if len(x25519_public) != KEY_SIZE or len(nonce) != AUTH_NONCE_SIZE:
        raise LocalProtocolError(
            ErrorCode.LENGTH_MISMATCH, "key must be 32 bytes and nonce 16", field="secure.auth", section="10.5",
            requirement="SVC-056",
        )  # fmt: skip
    try:
        return AUTH_SIGN_DOMAIN + struct.pack(">I", node_id) + x25519_public + struct.pack(">Q", timestamp) + nonce
    except struct.error as exc:
        raise LocalProtocolError(
            ErrorCode.OUT_OF_RANGE, str(exc), field="secure.auth", section="10.5", requirement="SVC-056"
        ) from None


def _drain(reader: StreamDecoder[Record], data: bytes) -> list[Record]:
    reader.feed(data)
    return reader.messages()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "record@draft": lambda b: decode_record(b, Profile.DRAFT),
    "record@go-interop": lambda b: decode_record(b, Profile.GO_INTEROP),
    "record_stream@draft": lambda b: _drain(RecordReader(Profile.DRAFT), b),
    "record_stream@go-interop": lambda b: _drain(RecordReader(Profile.GO_INTEROP), b),
    "key": decode_key,
    "auth_frame": decode_auth_frame,
}
