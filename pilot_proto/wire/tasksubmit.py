"""Port-1003 task submission (draft 14.4; wire-notes 1.18, Go ``pkg/tasksubmit``).

Frame: ``type u32 BE || length u32 BE || JSON body`` with length <= 2^24
(SVC-031, 032).  Types and bodies (Go struct tags, in Go's field order):

======  ============  =========================================================
type    name          body
======  ============  =========================================================
1       Submit        task_id, task_description, from_addr, to_addr (SVC-033)
2       Result        task_id, status (200 accepted / 400 rejected), message (SVC-034)
3       StatusUpdate  task_id, status (a task status name), justification (SVC-035)
4       SendResults   task_id, result_type ("text"|"file"), result_text?, filename?,
                      file_data? (base64), completed_at, time_*_ms? (SVC-036)
======  ============  =========================================================

``?`` marks Go ``omitempty`` fields: left out when empty or zero, and our
encoder does the same so bytes match Go's ``json.Marshal``.  Decoding is
strict about JSON types and known values; missing fields take the zero value
(as Go does); unknown fields are ignored like Go.  :func:`polo_score` is
Go's reputation formula (SVC-038).
"""

from __future__ import annotations

import base64
import enum
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.wire._codec import TypedFrameReader, build, decode_json, parse_exact

__all__ = [
    "FRAME",
    "MAX_BODY",
    "RESULT_ACCEPTED",
    "RESULT_REJECTED",
    "FrameType",
    "Result",
    "SendResults",
    "StatusUpdate",
    "Submit",
    "TaskFrameReader",
    "TaskStatus",
    "decode_task_frame",
    "encode_task_frame",
    "polo_score",
]

MAX_BODY = 1 << 24
HEADER_SIZE = 8
RESULT_ACCEPTED = 200
RESULT_REJECTED = 400
ACCEPT_TIMEOUT = 60.0  # seconds a NEW task waits for accept (SVC-039)
QUEUE_HEAD_TIMEOUT = 3600.0  # seconds at the head of the queue (SVC-039)
_HEAD = struct.Struct(">II")
_SECTION = "14.4"


class FrameType(enum.IntEnum):
    SUBMIT = 1
    RESULT = 2
    STATUS_UPDATE = 3
    SEND_RESULTS = 4


class TaskStatus(enum.Enum):
    NEW = "NEW"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    SUCCEEDED = "SUCCEEDED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


#: Declarative frame layout (the codec); the body is JSON.
FRAME = c.Struct(
    "type" / c.Int32ub,
    "length" / c.Int32ub,
    "body" / c.Bytes(c.this.length),
)


@dataclass(frozen=True)
class Submit:
    task_id: str
    task_description: str
    from_addr: str
    to_addr: str


@dataclass(frozen=True)
class Result:
    task_id: str
    status: int  # RESULT_ACCEPTED or RESULT_REJECTED
    message: str = ""


@dataclass(frozen=True)
class StatusUpdate:
    task_id: str
    status: TaskStatus
    justification: str = ""


@dataclass(frozen=True)
class SendResults:
    task_id: str
    result_type: str  # "text" or "file"
    completed_at: str
    result_text: str = ""
    filename: str = ""
    file_data: bytes = b""
    time_idle_ms: int = 0
    time_staged_ms: int = 0
    time_cpu_ms: int = 0


TaskMessage = Submit | Result | StatusUpdate | SendResults

_TYPES: dict[FrameType, type[Any]] = {
    FrameType.SUBMIT: Submit,
    FrameType.RESULT: Result,
    FrameType.STATUS_UPDATE: StatusUpdate,
    FrameType.SEND_RESULTS: SendResults,
}
_REQ = {FrameType.SUBMIT: "SVC-033", FrameType.RESULT: "SVC-034", FrameType.STATUS_UPDATE: "SVC-035",
        FrameType.SEND_RESULTS: "SVC-036"}  # fmt: skip
#: JSON key order of each body (Go struct order) and which keys are omitempty.
_ORDER: dict[FrameType, tuple[str, ...]] = {
    FrameType.SUBMIT: ("task_id", "task_description", "from_addr", "to_addr"),
    FrameType.RESULT: ("task_id", "status", "message"),
    FrameType.STATUS_UPDATE: ("task_id", "status", "justification"),
    FrameType.SEND_RESULTS: ("task_id", "result_type", "result_text", "filename", "file_data", "completed_at",
                             "time_idle_ms", "time_staged_ms", "time_cpu_ms"),
}  # fmt: skip
_OMITEMPTY = frozenset({"result_text", "filename", "file_data", "time_idle_ms", "time_staged_ms", "time_cpu_ms"})
_INT_FIELDS = frozenset({"time_idle_ms", "time_staged_ms", "time_cpu_ms"})


def _bad(code: ErrorCode, field: str, rule: str, req: str) -> DecodeError:
    return DecodeError(code, f"tasksubmit.{field}", rule, section=_SECTION, requirement=req)


def _go_json(doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _frame_type(msg: TaskMessage) -> FrameType:
    for ftype, cls in _TYPES.items():
        if isinstance(msg, cls):
            return ftype
    raise LocalProtocolError(ErrorCode.BAD_VALUE, f"not a task message: {msg!r}", field="tasksubmit",
                             section=_SECTION)  # fmt: skip


def encode_task_frame(msg: TaskMessage) -> bytes:
    ftype = _frame_type(msg)
    values = {f.name: getattr(msg, f.name) for f in fields(msg)}
    doc: dict[str, Any] = {}
    for key in _ORDER[ftype]:
        value = values[key]
        if isinstance(value, TaskStatus):
            value = value.value
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        if key in _OMITEMPTY and not value:
            continue
        doc[key] = value
    body = _go_json(doc)
    if len(body) > MAX_BODY:
        raise LocalProtocolError(ErrorCode.TOO_LARGE, f"body of {len(body)} bytes exceeds 2^24",
                                 field="tasksubmit.length", section=_SECTION, requirement="SVC-032")  # fmt: skip
    return build(FRAME, {"type": ftype, "length": len(body), "body": body}, what="tasksubmit.frame",
                 section=_SECTION, requirement="SVC-031")  # fmt: skip


def _check_head(ftype: int, length: int) -> FrameType:
    if length > MAX_BODY:
        raise _bad(ErrorCode.TOO_LARGE, "length", f"length {length} exceeds 2^24", "SVC-032")
    try:
        return FrameType(ftype)
    except ValueError:
        raise _bad(ErrorCode.BAD_VALUE, "type", f"unknown frame type {ftype:#x}", "SVC-031") from None


def _body_to_message(ftype: FrameType, body: bytes) -> TaskMessage:
    req = _REQ[ftype]
    doc = decode_json(body, field="tasksubmit.body", section=_SECTION, requirement=req)
    if not isinstance(doc, dict):
        raise _bad(ErrorCode.BAD_VALUE, "body", f"a JSON {type(doc).__name__}, must be an object", req)
    values: dict[str, Any] = {}
    for key in _ORDER[ftype]:
        is_int = key in _INT_FIELDS or (key == "status" and ftype is FrameType.RESULT)
        value = doc.get(key, 0 if is_int else "")
        if is_int:
            if not isinstance(value, int) or isinstance(value, bool) or not -(1 << 63) <= value < 1 << 63:
                raise _bad(ErrorCode.BAD_VALUE, key, "must be a JSON integer that fits int64", req)
        elif not isinstance(value, str):
            raise _bad(ErrorCode.BAD_VALUE, key, "must be a JSON string", req)
        values[key] = value
    if ftype is FrameType.RESULT and values["status"] not in (RESULT_ACCEPTED, RESULT_REJECTED):
        raise _bad(ErrorCode.BAD_VALUE, "status", f"result status {values['status']} is not 200 or 400", req)
    if ftype is FrameType.STATUS_UPDATE:
        try:
            values["status"] = TaskStatus(values["status"])
        except ValueError:
            raise _bad(ErrorCode.BAD_VALUE, "status", f"unknown task status {values['status']!r}", "SVC-037") from None
    if ftype is FrameType.SEND_RESULTS:
        if values["result_type"] not in ("text", "file"):
            raise _bad(ErrorCode.BAD_VALUE, "result_type", f"{values['result_type']!r} is not text or file", req)
        try:
            values["file_data"] = base64.b64decode(values["file_data"].encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise _bad(ErrorCode.BAD_ENCODING, "file_data", "not standard padded base64", req) from None
    msg: TaskMessage = _TYPES[ftype](**values)
    return msg


def decode_task_frame(data: bytes | bytearray | memoryview) -> TaskMessage:
    """Exactly one frame."""
    if len(data) >= HEADER_SIZE:
        _check_head(*_HEAD.unpack_from(data))
    obj = parse_exact(FRAME, data, what="tasksubmit.frame", section=_SECTION, requirement="SVC-031")
    return _body_to_message(FrameType(obj.type), obj.body)


class TaskFrameReader(TypedFrameReader[TaskMessage, FrameType]):
    """Incremental reader; type and length are checked when the 8-byte header arrives."""

    def __init__(self) -> None:
        super().__init__(_check_head, _body_to_message)


def polo_score(time_cpu_ms: int, time_idle_ms: int, time_staged_ms: int) -> int:
    """Go's reward: ``round((1 + log2(1 + cpu_min)) * max(0.4, 1 - idle_pen - staged_pen))``, at least 1."""
    cpu_bonus = math.log2(1.0 + max(time_cpu_ms, 0) / 60000.0)
    idle = min(max(time_idle_ms / 1000.0 / 60.0 * 0.3, 0.0), 0.3)
    staged = min(max(time_staged_ms / 1000.0 / 600.0 * 0.3, 0.0), 0.3)
    multiplier = max(1.0 - idle - staged, 0.4)
    return max(int((1.0 + cpu_bonus) * multiplier + 0.5), 1)


def _drain(data: bytes) -> list[TaskMessage]:
    reader = TaskFrameReader()
    reader.feed(data)
    return reader.messages()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "frame": decode_task_frame,
    "frame_stream": _drain,
}
