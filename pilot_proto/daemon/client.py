"""An asyncio IPC client of a Pilot daemon (draft 16) -- ours or the Go reference's.

Requests are answered in order per reply command (Go's driver does the same), so
:meth:`IpcClient.request` waits for the next message of the expected command or an Error.  Pushed
messages are routed: Recv and CloseOK per connection, Accept per local port, RecvFrom to one queue::

    async with await IpcClient.connect("/tmp/pilot.sock") as c:
        info = await c.info()
        cid = await c.dial(Addr(0, 7), 7)
        await c.send(cid, b"hi"); print(await c.recv(cid))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire import ipc
from pilot_proto.wire.address import Addr

__all__ = ["DaemonError", "IpcClient"]

_LEN = struct.Struct(">I")
_KNOWN = frozenset(int(c) for c in ipc.Command)
_GO_SEND_RESULT = 0x35  # the Go head's per-Send acknowledgement (E-GH-1)


class DaemonError(Exception):
    """The daemon answered with an Error message (or went away)."""


@dataclass
class _ConnQueue:
    data: deque[bytes] = field(default_factory=deque)
    ended: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class IpcClient:
    """One connection to a daemon's Unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, profile: Profile) -> None:
        self.reader = reader
        self.writer = writer
        self.profile = profile
        self._waiters: deque[tuple[ipc.Command, asyncio.Future[ipc.IpcMessage]]] = deque()
        self._conns: dict[int, _ConnQueue] = {}
        self._accepts: dict[int, asyncio.Queue[ipc.Accept]] = {}
        self.datagrams: asyncio.Queue[ipc.RecvFrom] = asyncio.Queue(maxsize=1024)
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        self.closed = False

    @classmethod
    async def connect(cls, path: str, profile: Profile | None = None) -> IpcClient:
        """Connect to ``path``.  ``profile`` picks the Accept/RecvFrom layouts (E-IPC-1/2); ``None`` asks the daemon:
        ours names its profile in Info, the Go reference does not (so it gets Go's layouts)."""
        reader, writer = await asyncio.open_unix_connection(path)
        client = cls(reader, writer, profile or Profile.GO_INTEROP)
        if profile is None:
            try:
                info = await client.info()
            except BaseException:
                await client.close()
                raise
            client.profile = Profile.parse(str(info.get("profile", Profile.GO_INTEROP.value)))
        return client

    async def __aenter__(self) -> IpcClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    # -- reading ---------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Frames in; Recv (the bulk of the bytes) is cut here directly, everything else goes through the codec."""
        buf = bytearray()
        try:
            while chunk := await self.reader.read(1 << 18):
                buf += chunk
                pos = 0
                while len(buf) - pos >= 4:
                    (length,) = _LEN.unpack_from(buf, pos)
                    if not 1 <= length <= ipc.MAX_MESSAGE:
                        raise DaemonError(f"bad IPC frame length {length}")
                    end = pos + 4 + length
                    if end > len(buf):
                        break
                    cmd = buf[pos + 4]
                    if cmd == ipc.Command.RECV and length >= 5:
                        (cid,) = _LEN.unpack_from(buf, pos + 5)
                        self._route(ipc.Recv(cid, bytes(buf[pos + 9 : end])))
                    elif cmd not in _KNOWN:
                        self._unknown(bytes(buf[pos + 4 : end]))
                    else:
                        self._route(ipc.decode_ipc_body(bytes(buf[pos + 4 : end]), self.profile))
                    pos = end
                del buf[:pos]
        except (ConnectionError, OSError, PilotError, DaemonError):
            pass
        finally:
            self.closed = True
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(DaemonError("the daemon closed the connection"))
            self._waiters.clear()
            for q in self._conns.values():
                q.ended = True
                q.changed.set()

    def _unknown(self, body: bytes) -> None:
        """A daemon message outside the draft's table (E-GH-1): skipped, except the Go head's SendResult (0x35,
        ``conn_id u32 || code u16 || text``), whose non-zero code says the daemon dropped that write, so the
        connection ends here as it does in Go's driver."""
        if body[0] == _GO_SEND_RESULT and len(body) >= 7 and int.from_bytes(body[5:7], "big") != 0:
            q = self._queue(int.from_bytes(body[1:5], "big"))
            q.ended = True
            q.changed.set()

    def _route(self, msg: ipc.IpcMessage) -> None:
        if isinstance(msg, ipc.Recv):
            q = self._queue(msg.conn_id)
            q.data.append(msg.data)
            q.changed.set()
            return
        if isinstance(msg, ipc.Accept):
            port = msg.local_port if msg.local_port is not None else next(iter(self._accepts), 0)
            queue = self._accepts.get(port)
            if queue is not None:
                queue.put_nowait(msg)
            return
        if isinstance(msg, ipc.RecvFrom):
            with contextlib.suppress(asyncio.QueueFull):
                self.datagrams.put_nowait(msg)
            return
        if isinstance(msg, ipc.CloseOK):
            q = self._queue(msg.conn_id)
            q.ended = True
            q.changed.set()
        cmd = ipc.Command(ipc.encode_ipc_body(msg, self.profile)[0])
        for i, (want, fut) in enumerate(self._waiters):
            if want is cmd or cmd is ipc.Command.ERROR:
                del self._waiters[i]
                if not fut.done():
                    fut.set_result(msg)
                return

    def _queue(self, cid: int) -> _ConnQueue:
        q = self._conns.get(cid)
        if q is None:
            q = self._conns[cid] = _ConnQueue()
        return q

    # -- requests ----------------------------------------------------------------------------------------

    async def request(self, msg: ipc.IpcMessage, expect: ipc.Command, timeout: float = 30.0) -> ipc.IpcMessage:
        """Send ``msg`` and wait for the next ``expect`` reply (DaemonError on an Error reply)."""
        if self.closed:
            raise DaemonError("the daemon closed the connection")
        fut: asyncio.Future[ipc.IpcMessage] = asyncio.get_running_loop().create_future()
        self._waiters.append((expect, fut))
        self.writer.write(ipc.encode_ipc_frame(msg, self.profile))
        await self.writer.drain()
        reply = await asyncio.wait_for(fut, timeout)
        if isinstance(reply, ipc.Error):
            raise DaemonError(reply.message)
        return reply

    async def _json(self, msg: ipc.IpcMessage, expect: ipc.Command, timeout: float = 30.0) -> dict[str, Any]:
        reply = await self.request(msg, expect, timeout)
        assert isinstance(reply, ipc.JsonMessage)
        doc = json.loads(reply.document)
        if not isinstance(doc, dict):
            raise DaemonError(f"unexpected reply {doc!r}")
        return doc

    async def info(self) -> dict[str, Any]:
        return await self._json(ipc.Empty(ipc.Command.INFO), ipc.Command.INFO_OK)

    async def health(self) -> dict[str, Any]:
        return await self._json(ipc.Empty(ipc.Command.HEALTH), ipc.Command.HEALTH_OK)

    async def resolve(self, hostname: str) -> dict[str, Any]:
        return await self._json(ipc.Text(ipc.Command.RESOLVE_HOSTNAME, hostname), ipc.Command.RESOLVE_HOSTNAME_OK)

    async def handshake(self, sub: ipc.HandshakeSub, node_id: int = 0, text: str = "") -> dict[str, Any]:
        return await self._json(ipc.HandshakeRequest(sub, node_id, text), ipc.Command.HANDSHAKE_OK)

    async def set_tags(self, tags: list[str]) -> dict[str, Any]:
        """SetTags (0x19): what the node advertises (a JSON array; the daemon registers it)."""
        doc = json.dumps(list(tags)).encode()
        return await self._json(ipc.JsonMessage(ipc.Command.SET_TAGS, doc), ipc.Command.SET_TAGS_OK)

    async def set_webhook(self, url: str) -> dict[str, Any]:
        """SetWebhook (0x1B): the event webhook URL (``""`` clears it)."""
        return await self._json(ipc.Text(ipc.Command.SET_WEBHOOK, url), ipc.Command.SET_WEBHOOK_OK)

    async def set_task_exec(self, enabled: bool) -> dict[str, Any]:
        """SetTaskExec (0x1D): take task submissions (and advertise it) or not."""
        return await self._json(ipc.Flag(ipc.Command.SET_TASK_EXEC, enabled), ipc.Command.SET_TASK_EXEC_OK)

    async def network(self, sub: ipc.NetworkSub, network_id: int = 0, *, token: str = "", node_id: int = 0,
                      accept: bool = False, timeout: float = 30.0) -> Any:  # fmt: skip
        """Network (0x1F) sub-command ``sub``; the registry's JSON answer (an object, or Go's list for some)."""
        reply = await self.request(ipc.NetworkRequest(sub, network_id, token, node_id, accept), ipc.Command.NETWORK_OK,
                                   timeout)  # fmt: skip
        assert isinstance(reply, ipc.JsonMessage)
        return json.loads(reply.document)

    async def dial(self, addr: Addr, port: int, timeout: float = 30.0) -> int:
        reply = await self.request(ipc.Dial(addr, port), ipc.Command.DIAL_OK, timeout)
        assert isinstance(reply, ipc.DialOK)
        self._queue(reply.conn_id)
        return reply.conn_id

    async def bind(self, port: int) -> int:
        reply = await self.request(ipc.Bind(port), ipc.Command.BIND_OK)
        assert isinstance(reply, ipc.BindOK)
        self._accepts.setdefault(reply.port, asyncio.Queue())
        return reply.port

    async def accept(self, port: int, timeout: float = 30.0) -> ipc.Accept:
        queue = self._accepts.setdefault(port, asyncio.Queue())
        acc = await asyncio.wait_for(queue.get(), timeout)
        self._queue(acc.conn_id)
        return acc

    async def send(self, conn_id: int, data: bytes) -> None:
        """Write ``data`` (split into messages below the 1 MiB IPC limit)."""
        step = ipc.MAX_MESSAGE - 16
        for i in range(0, len(data), step):
            self.writer.write(ipc.encode_ipc_frame(ipc.Send(conn_id, data[i : i + step]), self.profile))
            await self.writer.drain()

    async def send_to(self, addr: Addr, port: int, data: bytes) -> None:
        self.writer.write(ipc.encode_ipc_frame(ipc.SendTo(addr, port, data), self.profile))
        await self.writer.drain()

    async def recv(self, conn_id: int, timeout: float = 30.0) -> bytes:
        """The next chunk; ``b""`` once the peer has ended the stream."""
        q = self._queue(conn_id)

        async def wait() -> bytes:
            while True:
                if q.data:
                    return q.data.popleft()
                if q.ended:
                    return b""
                q.changed.clear()
                await q.changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def recv_all(self, conn_id: int, timeout: float = 30.0) -> bytes:
        """Everything until the peer ends the stream."""
        out = bytearray()
        while chunk := await self.recv(conn_id, timeout):
            out += chunk
        return bytes(out)

    async def recv_exactly(self, conn_id: int, n: int, timeout: float = 30.0) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self.recv(conn_id, timeout)
            if not chunk:
                raise DaemonError(f"connection {conn_id} ended after {len(out)} of {n} bytes")
            out += chunk
        return bytes(out)

    async def close_conn(self, conn_id: int, timeout: float = 10.0) -> None:
        """Close our side (the daemon answers CloseOK)."""
        with contextlib.suppress(DaemonError, TimeoutError):
            await self.request(ipc.Close(conn_id), ipc.Command.CLOSE_OK, timeout)
