"""Daemon events POSTed as JSON to the webhook URL (draft 16.2 SetWebhook; the Go reference's ``webhook.go``).

The daemon always stores and reports the URL (IPC SetWebhook, ``pilot-proto set-webhook``).  It POSTs only
when its operator opted in (``pilot-proto node --webhook-posts``; :attr:`DaemonDriver.webhook_posts`): a URL
that any local client may set must not make the daemon call out by default (erratum E-DF-3).

:func:`webhook_event` maps a daemon event to the reference's event name and data (pure): connections
(``conn.established``, ``conn.fin``, ``conn.rst``, ``conn.idle_timeout``) of applications and of the built-in
services alike -- echo (7), data exchange (1001), event stream (1002), task submit (1003), trust (444); a
service's carry ``"service"`` with its name, as Go reports every port's connections --, data exchange's
``message.received`` / ``file.received``, datagrams, tunnel peers and trust;
:class:`WebhookPoster` queues them (bounded, 1024, newest dropped when full, as Go) and one task POSTs
each, in order, with Go's retry rule: 3 attempts 1 s then 2 s apart, a 5xx or a network error is retried,
a 4xx is not.  The body is ``{"event_id", "event", "node_id", "timestamp", "data"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pilot_proto.daemon.core import AppAccepted, AppClosed, AppConnected, AppDatagram, ServiceClosed, ServiceConnected
from pilot_proto.sansio import Event
from pilot_proto.services import TrustChanged, TrustRequested
from pilot_proto.services.dataexchange import FrameReceived
from pilot_proto.stream.events import CloseReason
from pilot_proto.tunnel import KeyEstablished
from pilot_proto.wire.dataexchange import BinaryFrame, FileFrame, JsonFrame, TextFrame

__all__ = ["MAX_QUEUED", "WebhookPoster", "check_url", "webhook_event"]

log = logging.getLogger("pilot_proto.daemon.webhook")
MAX_QUEUED = 1024  # Go: a 1024-event channel
RETRIES = 3
BACKOFF = 1.0  # seconds before the second attempt, doubled before the third
TIMEOUT = 5.0  # Go's http.Client timeout
MAX_URL = 2048


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (``None``: it can; ``""`` clears the webhook)."""
    if url == "":
        return None
    if len(url) > MAX_URL:
        return f"webhook URL longer than {MAX_URL} characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "webhook URL must start with http:// or https://"
    try:
        port = parts.port
    except ValueError:
        return f"bad port in webhook URL {url!r}"
    if not parts.hostname or port == 0:
        return f"webhook URL {url!r} has no host"
    return None


def webhook_event(ev: Event) -> tuple[str, dict[str, Any]] | None:
    """The reference's name and data for ``ev``, or ``None`` for events it does not report."""
    if isinstance(ev, AppConnected | AppAccepted):
        local = ev.local_port if isinstance(ev, AppAccepted) else None
        return "conn.established", {"conn_id": ev.conn_id, "remote_addr": str(ev.remote.addr),
                                    "remote_port": ev.remote.port, "local_port": local,
                                    "direction": "inbound" if local is not None else "outbound"}  # fmt: skip
    if isinstance(ev, AppClosed):
        return _closed(ev.reason), {"conn_id": ev.conn_id, "reason": ev.reason.value}
    if isinstance(ev, ServiceConnected):  # the same events for a built-in service's connections, named
        local = None if ev.dialed else ev.local_port
        return "conn.established", {"conn_id": ev.conn_id, "remote_addr": str(ev.remote.addr),
                                    "remote_port": ev.remote.port, "local_port": local, "service": ev.service,
                                    "direction": "outbound" if ev.dialed else "inbound"}  # fmt: skip
    if isinstance(ev, ServiceClosed):
        return _closed(ev.reason), {"conn_id": ev.conn_id, "reason": ev.reason.value, "service": ev.service}
    if isinstance(ev, FrameReceived):  # data exchange, port 1001 (Go: after saving the message or file)
        frame = ev.frame
        if isinstance(frame, FileFrame):  # Go reports a file only when it has a name (it saves it under that name)
            if not frame.name:
                return None
            return "file.received", {"filename": frame.name, "size": len(frame.data), "from": str(ev.remote.addr)}
        size = len(frame.text.encode()) if isinstance(frame, TextFrame) else len(_payload(frame))
        return "message.received", {"type": _FRAME_TYPES[type(frame)], "from": str(ev.remote.addr), "size": size}
    if isinstance(ev, AppDatagram):
        return "data.datagram", {"src_addr": str(ev.src), "src_port": ev.src_port, "dst_port": ev.dst_port,
                                 "size": len(ev.data)}  # fmt: skip
    if isinstance(ev, KeyEstablished):
        return "tunnel.peer_added", {"peer_node_id": ev.peer, "endpoint": _endpoint(ev.address),
                                     "authenticated": ev.authenticated}  # fmt: skip
    if isinstance(ev, TrustRequested):
        return "handshake.pending", {"peer_node_id": ev.node_id, "justification": ev.justification}
    if isinstance(ev, TrustChanged):
        return ("handshake.approved" if ev.trusted else "trust.revoked"), {"peer_node_id": ev.node_id, "how": ev.how}
    return None


def _closed(reason: CloseReason) -> str:
    """Go's event for how a connection ended: ``conn.fin`` (FIN), ``conn.idle_timeout`` (its idle sweep), else
    ``conn.rst``."""
    if reason is CloseReason.NORMAL:
        return "conn.fin"
    return "conn.idle_timeout" if reason is CloseReason.IDLE else "conn.rst"


_FRAME_TYPES: dict[type, str] = {TextFrame: "TEXT", BinaryFrame: "BINARY", JsonFrame: "JSON"}  # Go's TypeName


def _payload(frame: BinaryFrame | JsonFrame) -> bytes:
    return frame.data if isinstance(frame, BinaryFrame) else frame.document


def _endpoint(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"[{addr[0]}]:{addr[1]}" if ":" in str(addr[0]) else f"{addr[0]}:{addr[1]}"
    return str(addr)


@dataclass
class _Item:
    body: bytes
    name: str


class WebhookPoster:
    """POSTs queued events to ``url`` from one asyncio task (start it with :meth:`start`, stop with :meth:`close`)."""

    def __init__(self, url: str, node_id: Callable[[], int], *, max_queued: int = MAX_QUEUED,
                 backoff: float = BACKOFF, timeout: float = TIMEOUT) -> None:  # fmt: skip
        why = check_url(url)
        if why is not None or not url:
            raise ValueError(why or "no webhook URL")
        self.url = url
        self._node_id = node_id
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max_queued)
        self._backoff, self._timeout = backoff, timeout
        self._next_id = 0
        self._task: asyncio.Task[None] | None = None
        self.posted = self.failed = self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Queue one event (never blocks; counted in ``dropped`` when the queue is full)."""
        self._next_id += 1
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = json.dumps({"event_id": self._next_id, "event": name, "node_id": self._node_id(),
                           "timestamp": stamp, "data": data}).encode()  # fmt: skip
        try:
            self._queue.put_nowait(_Item(body, name))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full, dropping event %s", name)

    def observe(self, ev: Event) -> None:
        """Queue ``ev`` if the reference reports that kind of event."""
        mapped = webhook_event(ev)
        if mapped is not None:
            self.emit(*mapped)

    async def close(self, drain: float = 0.0) -> None:
        """Stop, after waiting up to ``drain`` seconds for the queue to empty."""
        if self._task is None:
            return
        if drain > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(item)
            finally:
                self._queue.task_done()

    async def _deliver(self, item: _Item) -> None:
        pause = self._backoff
        for attempt in range(1, RETRIES + 1):
            try:
                status = await asyncio.wait_for(self._post(item.body), self._timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                log.warning("webhook POST of %s failed (attempt %d): %s", item.name, attempt, exc)
            else:
                if status < 400:
                    self.posted += 1
                    return
                if status < 500:
                    log.warning("webhook POST of %s refused: HTTP %d", item.name, status)
                    self.failed += 1
                    return
                log.warning("webhook POST of %s: HTTP %d (attempt %d)", item.name, status, attempt)
            if attempt < RETRIES:
                await asyncio.sleep(pause)
                pause *= 2
        self.failed += 1

    async def _post(self, body: bytes) -> int:
        """One HTTP/1.1 POST; returns the status code."""
        parts = urlsplit(self.url)
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        ctx = ssl.create_default_context() if secure else None
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if secure else None)
        try:
            authority = f"[{host}]" if ":" in host else host
            if parts.port:
                authority += f":{parts.port}"
            head = (f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nUser-Agent: pilot-proto\r\nConnection: close\r\n\r\n")  # fmt: skip
            writer.write(head.encode("ascii") + body)
            await writer.drain()
            line = await reader.readline()
            fields = line.split()
            if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
                raise ValueError(f"not an HTTP response: {line[:60]!r}")
            return int(fields[1])
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
