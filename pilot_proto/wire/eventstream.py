"""Port-1002 event stream (draft 14.3; wire-notes 1.17, Go ``pkg/eventstream``).

Two incompatible wire formats (erratum E-SVC-1), chosen by profile:

``draft`` -- newline-terminated UTF-8 command lines (SVC-022..025)::

    SUB <topic>\\n
    PUB <topic> <payload>\\n          (broker <- client)
    EVENT <topic> <payload>\\n        (broker -> subscriber)

A topic is 1..1024 bytes without spaces, tabs, CR or LF (``*`` subscribes to
everything, SVC-021); a payload is UTF-8 without LF and may be empty (then the
line is ``PUB <topic>``).  A line longer than :data:`MAX_TEXT_LINE` is refused
as soon as that many bytes are buffered without a newline.

``go-interop`` -- binary records ``topic_len u16 || topic || payload_len u32 ||
payload``, topic <= 1024 bytes, payload <= 16 MiB (SVC-026, 027).  The first
record a client sends is its subscription (payload ignored); later ones are
publishes; everything the broker sends is an event (SVC-028).

:class:`EventStreamDecoder` reads one direction of a connection; ``side`` says
whose bytes it reads, so a command sent the wrong way is refused.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire._codec import StreamDecoder, build, decode_utf8, encode_utf8, parse_exact

__all__ = [
    "MAX_PAYLOAD",
    "MAX_TEXT_LINE",
    "MAX_TOPIC",
    "RECORD",
    "WILDCARD",
    "Event",
    "EventBroker",
    "EventRecord",
    "EventStreamDecoder",
    "Publish",
    "Side",
    "Subscribe",
    "decode_record",
    "decode_text_line",
    "encode_message",
    "encode_record",
    "encode_text_line",
]

MAX_TOPIC = 1024
MAX_PAYLOAD = 1 << 24
WILDCARD = "*"
MAX_TEXT_LINE = len("EVENT ") + MAX_TOPIC + 1 + MAX_PAYLOAD + 1
_SECTION = "14.3"
_TOPIC_FORBIDDEN = frozenset(" \t\r\n")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
C = TypeVar("C", bound=Hashable)

#: Declarative Go record layout (the codec for the binary reading).
RECORD = c.Struct(
    "topic" / c.Prefixed(c.Int16ub, c.GreedyBytes),
    "payload" / c.Prefixed(c.Int32ub, c.GreedyBytes),
)


class Side(enum.Enum):
    """Whose bytes a decoder reads."""

    CLIENT = "client"  # a client's bytes, read by the broker: SUB / PUB
    BROKER = "broker"  # the broker's bytes, read by a subscriber: EVENT


class Subscribe(NamedTuple):
    topic: str


class Publish(NamedTuple):
    topic: str
    payload: bytes


class Event(NamedTuple):
    topic: str
    payload: bytes


class EventRecord(NamedTuple):
    """A Go record before the connection state says what it is."""

    topic: str
    payload: bytes


EventMessage = Subscribe | Publish | Event


def _bad(code: ErrorCode, field: str, rule: str, req: str) -> DecodeError:
    return DecodeError(code, f"eventstream.{field}", rule, section=_SECTION, requirement=req)


# -- draft text lines ------------------------------------------------------------------


def _text_topic(raw: bytes) -> str:
    if not 1 <= len(raw) <= MAX_TOPIC:
        raise _bad(ErrorCode.OUT_OF_RANGE, "topic", f"topic of {len(raw)} bytes, must be 1..1024", "SVC-023")
    topic = decode_utf8(raw, field="eventstream.topic", section=_SECTION, requirement="SVC-022")
    if _TOPIC_FORBIDDEN & set(topic):
        raise _bad(ErrorCode.BAD_VALUE, "topic", "topic contains whitespace", "SVC-023")
    return topic


def decode_text_line(line: bytes | bytearray | memoryview) -> EventMessage:
    """One command line, including its final ``\\n``."""
    raw = bytes(line)
    if not raw.endswith(b"\n"):
        raise _bad(ErrorCode.TRUNCATED, "line", "command line does not end in a newline", "SVC-022")
    if len(raw) > MAX_TEXT_LINE:
        raise _bad(ErrorCode.TOO_LARGE, "line", f"line of {len(raw)} bytes exceeds {MAX_TEXT_LINE}", "SVC-022")
    body = raw[:-1]
    if b"\n" in body:
        raise _bad(ErrorCode.TRAILING_DATA, "line", "more than one line", "SVC-022")
    decode_utf8(body, field="eventstream.line", section=_SECTION, requirement="SVC-022")
    verb, sep, rest = body.partition(b" ")
    if verb == b"SUB":
        if not sep:
            raise _bad(ErrorCode.TRUNCATED, "topic", "SUB without a topic", "SVC-023")
        return Subscribe(_text_topic(rest))
    if verb in (b"PUB", b"EVENT"):
        if not sep:
            raise _bad(ErrorCode.TRUNCATED, "topic", f"{verb.decode()} without a topic", "SVC-024")
        topic_raw, _, payload = rest.partition(b" ")
        topic = _text_topic(topic_raw)
        return Publish(topic, payload) if verb == b"PUB" else Event(topic, payload)
    raise _bad(ErrorCode.BAD_VALUE, "command", f"unknown command {verb[:16]!r}", "SVC-022")


def encode_text_line(msg: EventMessage) -> bytes:
    """The draft command line for ``msg`` (with its newline)."""
    topic = encode_utf8(msg.topic, field="eventstream.topic", section=_SECTION, requirement="SVC-023")
    try:
        _text_topic(topic)
        if not isinstance(msg, Subscribe):
            decode_utf8(msg.payload, field="eventstream.payload", section=_SECTION, requirement="SVC-024")
            if b"\n" in msg.payload or len(msg.payload) > MAX_PAYLOAD:
                raise _bad(ErrorCode.BAD_VALUE, "payload", "payload has a newline or exceeds 16 MiB", "SVC-024")
    except DecodeError as exc:
        raise LocalProtocolError(
            exc.code, exc.rule, field=exc.field, section=_SECTION, requirement=exc.requirement
        ) from None
    if isinstance(msg, Subscribe):
        return b"SUB " + topic + b"\n"
    verb = b"PUB " if isinstance(msg, Publish) else b"EVENT "
    return verb + topic + (b" " + msg.payload if msg.payload else b"") + b"\n"


# -- Go binary records -----------------------------------------------------------------


def _check_topic_len(n: int) -> None:
    if n > MAX_TOPIC:
        raise _bad(ErrorCode.TOO_LARGE, "topic_len", f"topic length {n} exceeds 1024", "SVC-027")


def _check_payload_len(n: int) -> None:
    if n > MAX_PAYLOAD:
        raise _bad(ErrorCode.TOO_LARGE, "payload_len", f"payload length {n} exceeds 2^24", "SVC-027")


def decode_record(data: bytes | bytearray | memoryview) -> EventRecord:
    """Exactly one Go record."""
    if len(data) >= 2:
        (tl,) = _U16.unpack_from(data)
        _check_topic_len(tl)
        if len(data) >= 6 + tl:
            _check_payload_len(_U32.unpack_from(data, 2 + tl)[0])
    obj = parse_exact(RECORD, data, what="eventstream.record", section=_SECTION, requirement="SVC-026")
    return EventRecord(decode_utf8(obj.topic, field="eventstream.topic", section=_SECTION, requirement="SVC-026"),
                       obj.payload)  # fmt: skip


def encode_record(topic: str, payload: bytes = b"") -> bytes:
    raw = encode_utf8(topic, field="eventstream.topic", section=_SECTION, requirement="SVC-026")
    if len(raw) > MAX_TOPIC or len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(
            ErrorCode.TOO_LARGE, "topic over 1024 bytes or payload over 2^24", field="eventstream.record",
            section=_SECTION, requirement="SVC-027",
        )  # fmt: skip
    return build(RECORD, {"topic": raw, "payload": payload}, what="eventstream.record", section=_SECTION,
                 requirement="SVC-026")  # fmt: skip


def encode_message(msg: EventMessage, profile: Profile = DEFAULT_PROFILE) -> bytes:
    """Bytes for ``msg`` in the profile's format."""
    if profile is Profile.DRAFT:
        return encode_text_line(msg)
    return encode_record(msg.topic, b"" if isinstance(msg, Subscribe) else msg.payload)


# -- incremental decoder ---------------------------------------------------------------


class EventStreamDecoder(StreamDecoder[EventMessage]):
    """Reads one direction of a port-1002 connection in the profile's format."""

    def __init__(self, profile: Profile = DEFAULT_PROFILE, side: Side = Side.CLIENT) -> None:
        super().__init__()
        self.profile = profile
        self.side = side
        self.subscribed = False
        self._scanned = 0  # bytes already searched for a newline

    def _check_prefix(self) -> None:
        buf = self._buf
        if self.profile is Profile.DRAFT:
            if b"\n" not in buf[self._scanned :]:
                self._scanned = len(buf)
                if len(buf) > MAX_TEXT_LINE:
                    raise _bad(ErrorCode.TOO_LARGE, "line", f"no newline within {MAX_TEXT_LINE} bytes", "SVC-022")
            return
        if len(buf) >= 2:
            (tl,) = _U16.unpack_from(buf)
            _check_topic_len(tl)
            if len(buf) >= 6 + tl:
                _check_payload_len(_U32.unpack_from(buf, 2 + tl)[0])

    def _parse(self, buf: bytearray) -> tuple[EventMessage, int] | None:
        if self.profile is Profile.DRAFT:
            return self._parse_text(buf)
        return self._parse_binary(buf)

    def _parse_text(self, buf: bytearray) -> tuple[EventMessage, int] | None:
        end = buf.find(b"\n", 0)
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > MAX_TEXT_LINE:
                raise _bad(ErrorCode.TOO_LARGE, "line", f"no newline within {MAX_TEXT_LINE} bytes", "SVC-022")
            return None
        self._scanned = 0
        msg = decode_text_line(bytes(buf[: end + 1]))
        allowed = (Subscribe, Publish) if self.side is Side.CLIENT else (Event,)
        if not isinstance(msg, allowed):
            raise _bad(ErrorCode.BAD_VALUE, "command", f"{type(msg).__name__} sent by the {self.side.value}",
                       "SVC-022")  # fmt: skip
        return msg, end + 1

    def _parse_binary(self, buf: bytearray) -> tuple[EventMessage, int] | None:
        if len(buf) < 2:
            return None
        (tl,) = _U16.unpack_from(buf)
        _check_topic_len(tl)
        if len(buf) < 6 + tl:
            return None
        (pl,) = _U32.unpack_from(buf, 2 + tl)
        _check_payload_len(pl)
        end = 6 + tl + pl
        if len(buf) < end:
            return None
        topic = decode_utf8(bytes(buf[2 : 2 + tl]), field="eventstream.topic", section=_SECTION,
                            requirement="SVC-026")  # fmt: skip
        payload = bytes(buf[6 + tl : end])
        msg: EventMessage
        if self.side is Side.BROKER:
            msg = Event(topic, payload)
        elif not self.subscribed:
            self.subscribed = True
            msg = Subscribe(topic)
        else:
            msg = Publish(topic, payload)
        return msg, end


class EventBroker(Generic[C]):
    """Sans-IO pub/sub broker (SVC-020, 021, 029): bytes in per connection, deliveries out.

    ``receive(conn, data)`` returns ``(conn, bytes)`` pairs to write.  A publish
    goes to every other connection subscribed to its topic or to ``*`` -- never
    back to its publisher.  Under ``draft`` a connection may send several ``SUB``
    lines and receives ``EVENT`` lines; under ``go-interop`` its first record is
    its one subscription and records are forwarded unchanged.  A connection whose
    bytes do not decode is dropped (its error is re-raised); others are unaffected.
    """

    def __init__(self, profile: Profile = DEFAULT_PROFILE) -> None:
        self.profile = profile
        self._decoders: dict[C, EventStreamDecoder] = {}
        self._topics: dict[C, set[str]] = {}

    def open(self, conn: C) -> None:
        self._decoders[conn] = EventStreamDecoder(self.profile, Side.CLIENT)
        self._topics[conn] = set()

    def close(self, conn: C) -> None:
        self._decoders.pop(conn, None)
        self._topics.pop(conn, None)

    def subscriptions(self, conn: C) -> frozenset[str]:
        return frozenset(self._topics.get(conn, ()))

    def receive(self, conn: C, data: bytes) -> list[tuple[C, bytes]]:
        if conn not in self._decoders:
            self.open(conn)
        decoder = self._decoders[conn]
        out: list[tuple[C, bytes]] = []
        try:
            decoder.feed(data)
            while (msg := decoder.next_message()) is not None:
                if isinstance(msg, Subscribe):
                    self._topics[conn].add(msg.topic)
                elif isinstance(msg, Publish):
                    wire = encode_message(Event(msg.topic, msg.payload), self.profile)
                    out.extend((other, wire) for other, topics in self._topics.items()
                               if other != conn and (msg.topic in topics or WILDCARD in topics))  # fmt: skip
        except DecodeError:
            self.close(conn)
            raise
        return out


def _drain(profile: Profile, side: Side, data: bytes) -> list[EventMessage]:
    dec = EventStreamDecoder(profile, side)
    dec.feed(data)
    return dec.messages()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "text_line": decode_text_line,
    "record": decode_record,
    "stream@draft/client": lambda b: _drain(Profile.DRAFT, Side.CLIENT, b),
    "stream@draft/broker": lambda b: _drain(Profile.DRAFT, Side.BROKER, b),
    "stream@go-interop/client": lambda b: _drain(Profile.GO_INTEROP, Side.CLIENT, b),
    "stream@go-interop/broker": lambda b: _drain(Profile.GO_INTEROP, Side.BROKER, b),
}
