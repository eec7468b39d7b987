"""The registry's store file: an append-only journal with fsync before every reply (draft 10.6, 17; SEC-019).

Each line is ``<crc32 of the JSON, 8 hex digits> <JSON record>\\n``; the records are the ones
:meth:`~pilot_proto.registry.state.Registry.records_to_persist` hands out, and a compacted file
starts with one ``snapshot`` record.  :meth:`Store.append` writes, flushes and ``fsync``\\s before it
returns, so the driver sends a reply only after what it acknowledges is on disk.

A crash can leave at most one torn line at the end (a write that was never acknowledged): :meth:`load`
drops it and truncates the file there.  A bad line anywhere else is corruption and :class:`StoreError`.
:meth:`compact` writes the snapshot to ``FILE.tmp``, fsyncs it, renames it over ``FILE`` and fsyncs the
directory: at every instant either the old file or the new one is complete.

This module does file I/O; the registry core (``state.py``) does not.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["Store", "StoreError"]


class StoreError(Exception):
    """The store file cannot be used (unreadable, unwritable or corrupt); the message says which line."""


def _line(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


class Store:
    """One store file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self.records_since_compaction = 0
        self.appends = 0

    def load(self) -> list[dict[str, Any]]:
        """Read every record; create the file if missing; cut a torn last line.  Opens the file for appending."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StoreError(f"cannot read store {self.path}: {exc.strerror or exc}") from None
        records: list[dict[str, Any]] = []
        good = 0
        lines = data.split(b"\n")
        for i, raw in enumerate(lines):
            last = i == len(lines) - 1
            if last and raw == b"":
                break
            rec = _parse(raw)
            if rec is None:
                if last:
                    break  # a torn final write (no newline): never acknowledged
                raise StoreError(f"store {self.path} is corrupt at line {i + 1}")
            records.append(rec)
            good += len(raw) + 1
        self._open(truncate_to=good if good != len(data) else None)
        self.records_since_compaction = len(records)
        return records

    def _open(self, truncate_to: int | None = None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("ab")
            if truncate_to is not None:
                fh.truncate(truncate_to)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreError(f"cannot write store {self.path}: {exc.strerror or exc}") from None
        if self._fh is not None:
            self._fh.close()
        self._fh = fh

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Write ``records`` and fsync; returns how many were written (0 writes nothing)."""
        blob = b"".join(_line(r) for r in records)
        if not blob:
            return 0
        if self._fh is None:
            self._open()
        assert self._fh is not None
        self._fh.write(blob)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        n = blob.count(b"\n")
        self.records_since_compaction += n
        self.appends += 1
        return n

    def compact(self, snapshot: dict[str, Any]) -> None:
        """Replace the journal with one snapshot record, atomically (temp file, fsync, rename, fsync dir)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as fh:
            fh.write(_line(snapshot))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self._open()
        self.records_since_compaction = 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _parse(raw: bytes) -> dict[str, Any] | None:
    if len(raw) < 10 or raw[8:9] != b" ":
        return None
    try:
        crc = int(raw[:8], 16)
    except ValueError:
        return None
    body = raw[9:]
    if zlib.crc32(body) != crc:
        return None
    try:
        rec = json.loads(body)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
