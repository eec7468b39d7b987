"""Our IPC client against a daemon that pushes messages outside the draft's table (erratum E-GH-1).

The Go fork's head answers every Send with its own SendResult (0x35: ``conn_id u32 || code u16 || text``).
A fake daemon on a Unix socket in a temporary directory sends exactly that around real Recv data: an OK
result is skipped and the stream goes on; a failed one ends that connection, as in Go's own driver.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from pilot_proto.daemon.client import DaemonError, IpcClient
from pilot_proto.profile import Profile
from pilot_proto.wire import ipc
from pilot_proto.wire.address import Addr


def _send_result(conn_id: int, code: int, text: bytes = b"") -> bytes:
    body = bytes([0x35]) + struct.pack(">IH", conn_id, code) + text
    return struct.pack(">I", len(body)) + body


async def _run(sock: Path, fail: bool) -> tuple[bytes, bytes | DaemonError]:
    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4 + 1 + 6 + 2)  # Dial: addr (6) + port (2)
        writer.write(ipc.encode_ipc_frame(ipc.DialOK(5), Profile.GO_INTEROP))
        await reader.readexactly(4 + 1 + 4 + 2)  # Send(5, b"hi")
        writer.write(_send_result(5, 0) + bytes([0, 0, 0, 2, 0x7F, 0xEE]))  # OK, then an unknown 2-byte message
        writer.write(ipc.encode_ipc_frame(ipc.Recv(5, b"hi"), Profile.GO_INTEROP))
        writer.write(_send_result(5, 4, b"stream send failed") if fail else b"")
        writer.write(ipc.encode_ipc_frame(ipc.Recv(5, b"!"), Profile.GO_INTEROP) if not fail else b"")
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_unix_server(daemon, path=str(sock))
    async with server:
        client = await IpcClient.connect(str(sock), Profile.GO_INTEROP)
        async with client:
            cid = await client.dial(Addr(0, 7), 7)
            await client.send(cid, b"hi")
            first = await client.recv_exactly(cid, 2, timeout=5)
            try:
                rest: bytes | DaemonError = await client.recv_exactly(cid, 1, timeout=5)
            except DaemonError as exc:
                rest = exc
    return first, rest


@pytest.mark.req("IPC-004")
@pytest.mark.parametrize("fail", [False, True], ids=["ok-result-skipped", "failed-result-ends"])
def test_go_head_send_result_is_skipped_or_ends_the_connection(tmp_path: Path, fail: bool) -> None:
    first, rest = asyncio.run(asyncio.wait_for(_run(tmp_path / "d.sock", fail), 20))
    assert first == b"hi"
    if fail:
        assert isinstance(rest, DaemonError) and "ended after 0 of 1" in str(rest)
    else:
        assert rest == b"!"
