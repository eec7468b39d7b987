"""Structured session traces: qlog-like JSON lines (draft section 8 state over time).

A trace is a text file of JSON objects, one per line.  The first line is a
header ``{"trace": "pilot-proto", "version": 1, ...}``; every other line is an
event record::

    {"time": 0.125, "name": "ack_received", "conn": 1, "cwnd": 16384,
     "ssthresh": 65536, "srtt": 0.05, "rto": 0.2, "bytes_in_flight": 8192}

Required fields: ``time`` (seconds, the ``now`` the state machine was given),
``name`` (event name) and ``conn`` (connection identifier, int or str).
Optional fields, when present, have fixed meanings and types (see
:data:`FIELD_TYPES`): congestion state (``cwnd``, ``ssthresh``,
``bytes_in_flight`` in bytes; ``srtt``, ``rttvar``, ``rto`` in seconds),
packet fields (``seq``, ``ack``, ``len``, ``window``, ``flags``), ``state``
and ``side``.  Unknown extra fields are allowed and kept, so producers can
add detail without breaking readers.

Packet events use the names :data:`PACKET_SENT` and :data:`PACKET_RECEIVED`
(with ``seq``/``ack``/``len``/``flags``); ``pilot-proto trace plot`` draws
sequence numbers from those and ``cwnd``/``ssthresh``/``bytes_in_flight``
from any record that carries them.

Sinks are plain callables taking one record, so a state machine's ``tracer``
argument accepts a :class:`TraceCollector`, a :class:`JsonLinesWriter` or any
function.  Nothing here reads a clock: times come from the records.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pilot_proto.errors import DecodeError, ErrorCode

__all__ = [
    "FIELD_TYPES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PACKET_RECEIVED",
    "PACKET_SENT",
    "JsonLinesWriter",
    "Trace",
    "TraceCollector",
    "TraceRecord",
    "Tracer",
    "read_trace",
    "read_trace_file",
    "validate_record",
]

FORMAT_NAME = "pilot-proto"
FORMAT_VERSION = 1
PACKET_SENT = "packet_sent"
PACKET_RECEIVED = "packet_received"

TraceRecord = dict[str, Any]
Tracer = Callable[[TraceRecord], None]

_NUM = (int, float)
#: Known optional fields and the JSON types they must have.
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "cwnd": _NUM,
    "ssthresh": _NUM,
    "bytes_in_flight": _NUM,
    "srtt": _NUM,
    "rttvar": _NUM,
    "rto": _NUM,
    "seq": (int,),
    "ack": (int,),
    "len": (int,),
    "window": (int,),
    "flags": (str, int),
    "state": (str,),
    "side": (str,),
}


def _bad(line: int, rule: str) -> DecodeError:
    return DecodeError(ErrorCode.BAD_VALUE, f"trace.line{line}", rule, section="8")


def validate_record(record: Any, *, line: int = 0) -> TraceRecord:
    """Check one event record against the schema; returns it or raises :class:`DecodeError`."""
    if not isinstance(record, dict):
        raise _bad(line, f"a record must be a JSON object, got {type(record).__name__}")
    t = record.get("time")
    if isinstance(t, bool) or not isinstance(t, _NUM) or not math.isfinite(t):
        raise _bad(line, f"'time' must be a finite number of seconds, got {t!r}")
    if not isinstance(record.get("name"), str) or not record["name"]:
        raise _bad(line, f"'name' must be a non-empty string, got {record.get('name')!r}")
    conn = record.get("conn")
    if isinstance(conn, bool) or not isinstance(conn, int | str):
        raise _bad(line, f"'conn' must be an int or a string, got {conn!r}")
    for key, types in FIELD_TYPES.items():
        if key in record and record[key] is not None:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise _bad(line, f"'{key}' has type {type(value).__name__}, expected {types[0].__name__}")
    return record


def _jsonable(value: Any) -> Any:
    """Enums and other simple objects written by producers become plain JSON values."""
    if isinstance(value, enum.Enum):  # states, flags: their names read better than numbers
        return value.name if value.name is not None else value.value
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


class TraceCollector:
    """An in-memory sink: ``records`` grows by one dict per call."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []

    def __call__(self, record: TraceRecord) -> None:
        self.records.append(dict(record))

    def named(self, name: str) -> list[TraceRecord]:
        return [r for r in self.records if r["name"] == name]


class JsonLinesWriter:
    """A sink writing the header once and then one JSON line per record to a text stream."""

    def __init__(self, stream: TextIO, *, title: str = "", **meta: Any) -> None:
        self.stream = stream
        self.count = 0
        header = {"trace": FORMAT_NAME, "version": FORMAT_VERSION, "time_unit": "s", "title": title}
        header.update({k: _jsonable(v) for k, v in meta.items()})
        stream.write(json.dumps(header, separators=(",", ":")) + "\n")

    def __call__(self, record: TraceRecord) -> None:
        out = {k: _jsonable(v) for k, v in record.items()}
        self.stream.write(json.dumps(out, separators=(",", ":")) + "\n")
        self.count += 1

    def flush(self) -> None:
        self.stream.flush()


@dataclass
class Trace:
    """A parsed trace: the header object and the event records in file order."""

    header: dict[str, Any]
    records: list[TraceRecord] = field(default_factory=list)

    def connections(self) -> list[int | str]:
        seen: dict[int | str, None] = {}
        for r in self.records:
            seen.setdefault(r["conn"], None)
        return list(seen)

    def series(self, key: str, *, conn: int | str | None = None, name: str | None = None) -> list[tuple[float, Any]]:
        """``(time, value)`` for every record carrying ``key`` (optionally one connection / event name)."""
        return [
            (r["time"], r[key])
            for r in self.records
            if r.get(key) is not None and (conn is None or r["conn"] == conn) and (name is None or r["name"] == name)
        ]


def read_trace(lines: Iterable[str]) -> Trace:
    """Parse JSON-lines trace text; blank lines are skipped, anything malformed raises :class:`DecodeError`."""
    it: Iterator[tuple[int, str]] = ((i, s) for i, s in enumerate(lines, 1) if s.strip())
    try:
        first_no, first = next(it)
    except StopIteration:
        raise DecodeError(ErrorCode.TRUNCATED, "trace.header", "empty trace, no header line", section="8") from None

    def parse(no: int, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DecodeError(ErrorCode.BAD_ENCODING, f"trace.line{no}", f"not JSON: {exc}", section="8") from None

    header = parse(first_no, first)
    if not isinstance(header, dict) or header.get("trace") != FORMAT_NAME:
        raise DecodeError(
            ErrorCode.BAD_MAGIC, "trace.header", f"first line must be a {FORMAT_NAME!r} trace header", section="8"
        )
    if header.get("version") != FORMAT_VERSION:
        raise DecodeError(
            ErrorCode.BAD_VERSION, "trace.header.version", f"unsupported trace version {header.get('version')!r}"
        )
    trace = Trace(header)
    for no, text in it:
        trace.records.append(validate_record(parse(no, text), line=no))
    return trace


def read_trace_file(path: str | Path) -> Trace:
    with open(path, encoding="utf-8") as fh:
        return read_trace(fh)
