"""Port-444 trust handshake messages (draft 10.6; wire-notes 1.14, Go ``HandshakeMsg``).

One JSON object per message with the fields of :data:`FIELDS` (SVC-061).  Keys
and signatures are standard padded base64 of 32 and 64 bytes, or empty
(SVC-063).  Relayed requests are signed over ``"handshake:<sender>:<peer>"``
(SEC-020) and relayed responses over ``"respond:<sender>:<peer>"`` (SVC-065,
erratum E-TRUST-1), node IDs in decimal.

Validation is strict: the document must be a UTF-8 JSON object, each field of
the right JSON type and range, the type one of four names.  Missing fields take
Go's zero value (Go's ``json.Unmarshal`` does the same).  Unknown fields are
refused under ``draft`` and ignored under ``go-interop`` (as Go ignores them).
The encoder writes every field in Go's order, so our bytes equal Go's
``json.Marshal`` output for the same message.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire._codec import decode_b64, decode_json

__all__ = [
    "FIELDS",
    "MAX_AGE",
    "MAX_FUTURE",
    "MAX_MESSAGE_SIZE",
    "TrustMessage",
    "TrustType",
    "check_timestamp",
    "decode_trust",
    "encode_trust",
    "handshake_signing_string",
    "respond_signing_string",
]

#: A Go receiver reads one segment (one GoB MSS); larger messages never parse there.
MAX_MESSAGE_SIZE = 4096
MAX_AGE = 300  # seconds (Go handshakeMaxAge)
MAX_FUTURE = 30  # seconds (Go handshakeMaxFuture)
_SECTION = "10.6"


class TrustType(enum.Enum):
    REQUEST = "handshake_request"
    ACCEPT = "handshake_accept"
    REJECT = "handshake_reject"
    REVOKE = "handshake_revoke"


#: Declarative schema: JSON name -> (JSON type, extra rule).  Order is Go's struct order.
FIELDS: dict[str, tuple[type, str]] = {
    "type": (str, "one of handshake_request/accept/reject/revoke"),
    "node_id": (int, "0 <= n < 2^32"),
    "public_key": (str, "empty or base64 of 32 bytes"),
    "justification": (str, "any string"),
    "signature": (str, "empty or base64 of 64 bytes"),
    "reason": (str, "any string"),
    "timestamp": (int, "signed 64-bit unix seconds"),
}


@dataclass(frozen=True)
class TrustMessage:
    type: TrustType
    node_id: int
    public_key: bytes = b""
    justification: str = ""
    signature: bytes = b""
    reason: str = ""
    timestamp: int = 0

    def encode(self) -> bytes:
        return encode_trust(self)


def handshake_signing_string(sender: int, peer: int) -> bytes:
    """What a relayed request signs: ``handshake:<sender>:<peer>`` in decimal (SEC-020)."""
    return f"handshake:{sender}:{peer}".encode("ascii")


def respond_signing_string(sender: int, peer: int) -> bytes:
    """What a relayed approval/rejection signs: ``respond:<sender>:<peer>`` (SVC-065)."""
    return f"respond:{sender}:{peer}".encode("ascii")


def check_timestamp(msg: TrustMessage, now: float) -> None:
    """Refuse a message older than 5 min or more than 30 s ahead of ``now`` (SVC-066)."""
    age = now - msg.timestamp
    if age > MAX_AGE or -age > MAX_FUTURE:
        raise DecodeError(
            ErrorCode.TOO_OLD if age > 0 else ErrorCode.BAD_VALUE, "trust.timestamp",
            f"timestamp {msg.timestamp} is {age:.0f} s from now (allowed -{MAX_FUTURE}..{MAX_AGE})",
            section=_SECTION, requirement="SVC-066",
        )  # fmt: skip


def _bad(code: ErrorCode, field: str, rule: str, req: str = "SVC-061") -> DecodeError:
    return DecodeError(code, f"trust.{field}", rule, section=_SECTION, requirement=req)


def encode_trust(msg: TrustMessage) -> bytes:
    if not 0 <= msg.node_id < 1 << 32 or not -(1 << 63) <= msg.timestamp < 1 << 63:
        raise LocalProtocolError(
            ErrorCode.OUT_OF_RANGE, "node_id must fit u32 and timestamp i64", field="trust", section=_SECTION,
            requirement="SVC-061",
        )  # fmt: skip
    for name, value, size in (("public_key", msg.public_key, 32), ("signature", msg.signature, 64)):
        if value and len(value) != size:
            raise LocalProtocolError(
                ErrorCode.LENGTH_MISMATCH, f"{name} must be empty or {size} bytes", field=f"trust.{name}",
                section=_SECTION, requirement="SVC-063",
            )  # fmt: skip
    doc = {
        "type": msg.type.value,
        "node_id": msg.node_id,
        "public_key": base64.b64encode(msg.public_key).decode("ascii"),
        "justification": msg.justification,
        "signature": base64.b64encode(msg.signature).decode("ascii"),
        "reason": msg.reason,
        "timestamp": msg.timestamp,
    }
    # Go escapes <, > and & in strings; ensure_ascii=False keeps other text as UTF-8 like Go.
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


def decode_trust(data: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> TrustMessage:
    raw = bytes(data)
    if len(raw) > MAX_MESSAGE_SIZE:
        raise _bad(ErrorCode.TOO_LARGE, "message", f"{len(raw)} bytes exceed {MAX_MESSAGE_SIZE}")
    doc = decode_json(raw, field="trust.message", section=_SECTION, requirement="SVC-061")
    if not isinstance(doc, dict):
        raise _bad(ErrorCode.BAD_VALUE, "message", f"a JSON {type(doc).__name__}, must be an object")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown and profile is Profile.DRAFT:
        raise _bad(ErrorCode.BAD_VALUE, unknown[0], "unknown field")
    for name, (kind, rule) in FIELDS.items():
        if name in doc:
            value = doc[name]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise _bad(ErrorCode.BAD_VALUE, name, f"must be a JSON {kind.__name__} ({rule})")
    type_name = doc.get("type", "")
    try:
        mtype = TrustType(type_name)
    except ValueError:
        raise _bad(ErrorCode.BAD_VALUE, "type", f"unknown message type {type_name!r}", "SVC-062") from None
    node_id = doc.get("node_id", 0)
    if not 0 <= node_id < 1 << 32:
        raise _bad(ErrorCode.OUT_OF_RANGE, "node_id", f"{node_id} does not fit u32")
    timestamp = doc.get("timestamp", 0)
    if not -(1 << 63) <= timestamp < 1 << 63:
        raise _bad(ErrorCode.OUT_OF_RANGE, "timestamp", f"{timestamp} does not fit i64")
    keys: dict[str, bytes] = {}
    for name, size in (("public_key", 32), ("signature", 64)):
        text = doc.get(name, "")
        keys[name] = (
            decode_b64(text, size, field=f"trust.{name}", section=_SECTION, requirement="SVC-063") if text else b""
        )
    return TrustMessage(
        mtype, node_id, keys["public_key"], doc.get("justification", ""), keys["signature"], doc.get("reason", ""),
        timestamp,
    )  # fmt: skip


DECODERS: dict[str, Callable[[bytes], object]] = {
    "message@draft": lambda b: decode_trust(b, Profile.DRAFT),
    "message@go-interop": lambda b: decode_trust(b, Profile.GO_INTEROP),
}
