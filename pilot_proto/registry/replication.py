"""Hot-standby replication between registries (draft 17; wire-notes 1.22, 3.6): the asyncio drivers.

* **Primary** (:class:`Replicator`): a connection whose first request is ``subscribe_replication`` with
  the right token (compared in constant time) becomes a subscriber.  It gets a ``replication_snapshot``
  at once, another after every batch of changes (REPL-003), and ``heartbeat`` every 15 s (REPL-005).
* **Standby** (:func:`run_standby`): subscribes to the primary, loads each snapshot into its own
  :class:`~pilot_proto.registry.state.Registry` (which refuses writes, REPL-008) and compacts it into its
  own store, so that the operator can promote it by restarting it without ``--standby`` (REPL-007).  No
  message for 30 s (``go-interop``: 45 s) means the primary is unavailable (REPL-006); the standby
  keeps serving reads and reconnects every 3 s, as Go does.

Snapshots can exceed the 64 KiB request limit, so replication frames (same ``u32 BE || JSON`` form)
may be up to 16 MiB (erratum E-REG-9).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from pilot_proto.errors import LocalProtocolError
from pilot_proto.registry.state import Registry
from pilot_proto.registry.store import Store
from pilot_proto.wire.registry import ReplicationTimers, StandbyLiveness, heartbeat, subscribe_replication

__all__ = ["REPLICATION_MAX", "Replicator", "encode_frame", "read_frame", "run_standby"]

REPLICATION_MAX = 16 * 1024 * 1024
_LEN = struct.Struct(">I")
RECONNECT = 3.0  # Go's standby reconnect timer


def encode_frame(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":"), sort_keys=True).encode()
    if len(body) > REPLICATION_MAX:
        raise ValueError(f"replication message of {len(body)} bytes exceeds {REPLICATION_MAX}")
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, limit: int = REPLICATION_MAX) -> dict[str, Any]:
    """One framed JSON object; ``ValueError`` for an oversized or malformed frame, EOF errors pass through."""
    (length,) = _LEN.unpack(await reader.readexactly(4))
    if length > limit:
        raise ValueError(f"frame of {length} bytes exceeds {limit}")
    doc = json.loads(await reader.readexactly(length))
    if not isinstance(doc, dict):
        raise ValueError("a replication message is a JSON object")
    return doc


class Replicator:
    """The primary's side: subscribers, snapshot pushes and heartbeats."""

    def __init__(self, registry: Registry, token: str, *, log: Callable[[str], None] | None = None) -> None:
        self.registry, self.token = registry, token
        self.timers = ReplicationTimers.for_profile(registry.profile)
        self.subscribers: set[asyncio.StreamWriter] = set()
        self.pushed = 0
        self._log = log or (lambda _text: None)
        self._beat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._beat = asyncio.get_running_loop().create_task(self._heartbeats())

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        for w in list(self.subscribers):
            w.close()

    async def serve(self, msg: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    source: str | None) -> None:  # fmt: skip
        """Take over a connection that sent ``subscribe_replication``; returns when it closes."""
        given = msg.get("token")
        if not self.token:
            writer.write(encode_frame({"type": "error", "error": "replication not configured"}))
            return
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
            writer.write(encode_frame({"type": "error", "error": "invalid replication token"}))
            self._log(f"refused replication subscriber {source}: bad token")
            return
        writer.write(encode_frame({"type": "replication_snapshot", "snapshot": self.registry.snapshot()}))
        self.subscribers.add(writer)
        self._log(f"standby {source} subscribed")
        try:
            while await reader.read(4096):
                pass  # a subscriber sends nothing more; reading only notices the close
        except (ConnectionError, OSError):
            pass
        finally:
            self.subscribers.discard(writer)
            self._log(f"standby {source} gone")

    def push(self) -> None:
        """Send the current snapshot to every subscriber (after a batch of changes, REPL-003)."""
        if not self.subscribers:
            return
        frame = encode_frame({"type": "replication_snapshot", "snapshot": self.registry.snapshot()})
        for w in list(self.subscribers):
            if w.is_closing() or (w.transport.get_write_buffer_size() > 4 * REPLICATION_MAX):
                self.subscribers.discard(w)  # gone, or too slow to keep up: it will resubscribe
                w.close()
                continue
            w.write(frame)
        self.pushed += 1

    async def _heartbeats(self) -> None:
        frame = encode_frame(heartbeat())
        while True:
            await asyncio.sleep(self.timers.heartbeat_interval)
            for w in list(self.subscribers):
                if not w.is_closing():
                    w.write(frame)


async def run_standby(
    registry: Registry,
    store: Store | None,
    primary: tuple[str, int],
    token: str,
    *,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
    timers: ReplicationTimers | None = None,
) -> None:
    """Follow ``primary`` for ever (cancel the task to stop); each snapshot replaces the local state."""
    say = log or (lambda _text: None)
    timers = timers or ReplicationTimers.for_profile(registry.profile)
    while True:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*primary), 5.0)
        except (OSError, TimeoutError) as exc:
            say(f"standby: primary {primary[0]}:{primary[1]} unreachable ({exc}); retrying in {RECONNECT:.0f} s")
            await asyncio.sleep(RECONNECT)
            continue
        writer.write(encode_frame(subscribe_replication(token)))
        liveness = StandbyLiveness(time.monotonic(), timers)
        try:
            while True:
                deadline = liveness.get_timer()
                wait = max(0.0, deadline - time.monotonic()) if deadline is not None else None
                try:
                    msg = await asyncio.wait_for(read_frame(reader), wait)
                except TimeoutError:
                    if liveness.handle_timer(time.monotonic()):
                        say(f"standby: no message from the primary for {timers.standby_timeout:.0f} s: unavailable")
                    break
                liveness.on_message(time.monotonic())
                kind = msg.get("type")
                if kind == "replication_snapshot" and isinstance(msg.get("snapshot"), dict):
                    try:
                        registry.load_replica(msg["snapshot"], clock())
                    except LocalProtocolError as exc:
                        say(f"standby: snapshot refused, keeping the previous state: {exc.rule}")
                        continue
                    if store is not None:
                        store.compact(registry.snapshot())
                    say(f"standby: snapshot applied ({len(registry.nodes())} live nodes)")
                elif kind == "error":
                    say(f"standby: primary refused: {msg.get('error')}")
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, RecursionError) as exc:
            say(f"standby: replication link lost ({type(exc).__name__})")
        finally:
            writer.close()
        await asyncio.sleep(RECONNECT)
