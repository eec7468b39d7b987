"""Registry JSON messages and replication liveness (draft 3.2, 17; wire-notes 1.22, Go ``pkg/registry``).

The draft gives the registry no wire format.  Go (GoB) frames every request
and reply as ``len u32 BE || JSON object`` with a string ``"type"``, refusing
a length over 64 KiB (ARCH-012).  Replication (draft 17) runs on such a
connection: the standby sends ``subscribe_replication`` (with a token); the
primary pushes ``replication_snapshot`` after each mutation and ``heartbeat``
every 15 s (REPL-005); the standby gives up after 30 s of silence under
``draft`` and 45 s under ``go-interop`` (REPL-006, erratum E-REPL-1).

:class:`PrimaryHeartbeat` and :class:`StandbyLiveness` are sans-IO timers
(``get_timer()`` / ``handle_timer(now)``).  :func:`standby_reply` answers a
request on a standby: reads pass, writes get an error that names the primary
under ``draft`` and Go's generic ``"request failed"`` under ``go-interop``
(REPL-008, erratum E-REPL-2).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire._codec import StreamDecoder, build, decode_json, parse_exact

__all__ = [
    "MAX_MESSAGE",
    "MESSAGE",
    "STANDBY_READS",
    "PrimaryHeartbeat",
    "RegistryReader",
    "ReplicationTimers",
    "StandbyLiveness",
    "decode_registry_message",
    "encode_registry_message",
    "heartbeat",
    "standby_reply",
    "subscribe_replication",
]

MAX_MESSAGE = 64 * 1024  # GoB maxMessageSize
_LEN = struct.Struct(">I")
_SECTION = "3.2"

#: Declarative frame: a 4-byte length and that many bytes of JSON.
MESSAGE = c.Prefixed(c.Int32ub, c.GreedyBytes)

#: Request types a GoB standby still serves; everything else is a write.
STANDBY_READS = frozenset({
    "lookup", "resolve", "list_networks", "list_nodes", "heartbeat", "poll_handshakes", "poll_invites",
    "resolve_hostname", "beacon_list", "get_polo_score", "get_key_info", "get_network_policy", "get_audit_log",
    "get_member_role", "check_trust",
})  # fmt: skip


def _bad(code: ErrorCode, field: str, rule: str) -> DecodeError:
    return DecodeError(code, f"registry.{field}", rule, section=_SECTION, requirement="ARCH-012")


def _check_len(length: int) -> None:
    if length > MAX_MESSAGE:
        raise _bad(ErrorCode.TOO_LARGE, "length", f"length {length} exceeds {MAX_MESSAGE}")


def _object(body: bytes) -> dict[str, Any]:
    doc = decode_json(body, field="registry.body", section=_SECTION, requirement="ARCH-012")
    if not isinstance(doc, dict):
        raise _bad(ErrorCode.BAD_VALUE, "body", f"a JSON {type(doc).__name__}, must be an object")
    if not isinstance(doc.get("type"), str) or not doc["type"]:
        raise _bad(ErrorCode.BAD_VALUE, "type", "missing or non-string 'type'")
    return doc


def encode_registry_message(msg: dict[str, Any]) -> bytes:
    """Frame ``msg`` as Go's ``json.Marshal`` of a map would (sorted keys, HTML-safe escapes)."""
    if not isinstance(msg.get("type"), str) or not msg["type"]:
        raise LocalProtocolError(ErrorCode.BAD_VALUE, "a registry message needs a string 'type'",
                                 field="registry.type", section=_SECTION, requirement="ARCH-012")  # fmt: skip
    text = json.dumps(msg, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    body = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")
    if len(body) > MAX_MESSAGE:
        raise LocalProtocolError(ErrorCode.TOO_LARGE, f"{len(body)} bytes exceed {MAX_MESSAGE}",
                                 field="registry.length", section=_SECTION, requirement="ARCH-012")  # fmt: skip
    return build(MESSAGE, body, what="registry.message", section=_SECTION, requirement="ARCH-012")


def decode_registry_message(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Exactly one framed message."""
    if len(data) >= 4:
        _check_len(_LEN.unpack_from(data)[0])
    body: bytes = parse_exact(MESSAGE, data, what="registry.message", section=_SECTION, requirement="ARCH-012")
    return _object(body)


class RegistryReader(StreamDecoder[dict[str, Any]]):
    """Incremental reader; the 64 KiB limit is checked on the length prefix."""

    def _check_prefix(self) -> None:
        if len(self._buf) >= 4:
            _check_len(_LEN.unpack_from(self._buf)[0])

    def _parse(self, buf: bytearray) -> tuple[dict[str, Any], int] | None:
        if len(buf) < 4:
            return None
        (length,) = _LEN.unpack_from(buf)
        _check_len(length)
        if len(buf) < 4 + length:
            return None
        return _object(bytes(buf[4 : 4 + length])), 4 + length


# -- replication ----------------------------------------------------------------------------


def subscribe_replication(token: str = "") -> dict[str, Any]:
    """The standby's opening request (Go omits an empty token)."""
    return {"type": "subscribe_replication", **({"token": token} if token else {})}


def heartbeat() -> dict[str, Any]:
    return {"type": "heartbeat"}


def standby_reply(request: dict[str, Any], profile: Profile = DEFAULT_PROFILE) -> dict[str, Any] | None:
    """``None`` if a standby may serve ``request`` (a read); else the error reply to send (REPL-008)."""
    if request.get("type") in STANDBY_READS:
        return None
    if profile is Profile.GO_INTEROP:
        return {"type": "error", "error": "request failed"}
    return {"type": "error", "error": "standby mode: write operations not accepted (use primary)"}


@dataclass(frozen=True)
class ReplicationTimers:
    heartbeat_interval: float = 15.0
    standby_timeout: float = 30.0

    @classmethod
    def for_profile(cls, profile: Profile = DEFAULT_PROFILE) -> ReplicationTimers:
        """Draft: 15 s / 30 s.  Go: 15 s / 45 s read deadline (E-REPL-1)."""
        return cls(15.0, 45.0 if profile is Profile.GO_INTEROP else 30.0)


class PrimaryHeartbeat:
    """Sends a heartbeat to standbys every ``heartbeat_interval`` seconds (REPL-005)."""

    def __init__(self, now: float, timers: ReplicationTimers | None = None) -> None:
        self.timers = timers or ReplicationTimers.for_profile()
        self._next = now + self.timers.heartbeat_interval

    def get_timer(self) -> float:
        return self._next

    def handle_timer(self, now: float) -> list[bytes]:
        """Framed heartbeats due at ``now`` (at most one; a late call does not burst)."""
        if now < self._next:
            return []
        while self._next <= now:
            self._next += self.timers.heartbeat_interval
        return [encode_registry_message(heartbeat())]


class StandbyLiveness:
    """A standby's view of the primary: any message resets the deadline (REPL-006)."""

    def __init__(self, now: float, timers: ReplicationTimers | None = None) -> None:
        self.timers = timers or ReplicationTimers.for_profile()
        self._deadline: float | None = now + self.timers.standby_timeout
        self.primary_unavailable = False

    def on_message(self, now: float) -> None:
        if not self.primary_unavailable:
            self._deadline = now + self.timers.standby_timeout

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> bool:
        """True exactly once, when the primary is declared unavailable."""
        if self._deadline is None or now < self._deadline:
            return False
        self._deadline = None
        self.primary_unavailable = True
        return True


def _drain(data: bytes) -> list[dict[str, Any]]:
    reader = RegistryReader()
    reader.feed(data)
    return reader.messages()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "message": decode_registry_message,
    "message_stream": _drain,
}
