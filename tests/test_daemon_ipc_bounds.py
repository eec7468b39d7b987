"""The IPC write queue of each client is bounded (spec/bounds.md): a client that stops reading is dropped with a
logged reason, memory stays at the limit, and the daemon keeps serving every other client.

Real components only: two daemons on UDP 127.0.0.1 in one event loop, the IPC Unix socket of one of them, a raw
socket client that never reads and an :class:`~pilot_proto.daemon.client.IpcClient` that does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.daemon.client import IpcClient
from pilot_proto.daemon.core import AppClosed, AppConnected, AppEnded, Daemon
from pilot_proto.daemon.driver import IPC_WRITE_LIMIT, DaemonDriver
from pilot_proto.profile import Profile
from pilot_proto.sansio import Event
from pilot_proto.tunnel import Identity
from pilot_proto.wire import ipc
from pilot_proto.wire.address import Addr, SocketAddr

LIMIT = 256 << 10  # small, so the test moves little data; the default is IPC_WRITE_LIMIT


async def _pair(sock_path: str) -> tuple[DaemonDriver, DaemonDriver, dict[str, Any]]:
    ia, ib = Identity.from_seed(os.urandom(32)), Identity.from_seed(os.urandom(32))
    keys = {1: ia.public_bytes, 2: ib.public_bytes}
    a = await DaemonDriver.start(Daemon(1, os.urandom, identity=ia, peer_keys=keys.get, trust=False),
                                 socket_path=sock_path)  # fmt: skip
    b = await DaemonDriver.start(Daemon(2, os.urandom, identity=ib, peer_keys=keys.get, trust=False))
    a.daemon.add_peer(2, b.address, ib.public_bytes)
    b.daemon.add_peer(1, a.address, ia.public_bytes)
    seen: dict[str, Any] = {"connected": asyncio.Event(), "ended": asyncio.Event()}

    def on_b(ev: Event) -> None:
        if isinstance(ev, AppConnected):
            seen["connected"].set()
        elif isinstance(ev, AppEnded | AppClosed):
            seen["ended"].set()

    b.on_event = on_b
    return a, b, seen


async def _silent_client(path: str, bind_port: int | None) -> socket.socket:
    """A raw IPC client with a small receive buffer: it binds ``bind_port`` (reading only BindOK), then never reads."""
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    await loop.sock_connect(s, path)
    if bind_port is not None:
        await loop.sock_sendall(s, ipc.encode_ipc_frame(ipc.Bind(bind_port), Profile.DRAFT))
        reply = b""
        while len(reply) < 7:
            reply += await asyncio.wait_for(loop.sock_recv(s, 7 - len(reply)), 5)
        assert ipc.decode_ipc_frame(reply, Profile.DRAFT) == ipc.BindOK(bind_port)
    return s


async def _wait(cond: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_default_limit_is_documented() -> None:
    bounds = (Path(__file__).resolve().parent.parent / "spec" / "bounds.md").read_text(encoding="utf-8")
    assert IPC_WRITE_LIMIT == 16 << 20
    assert "IPC_WRITE_LIMIT" in bounds and "16 MiB" in bounds


def test_a_client_that_stops_reading_a_stream_is_dropped_and_others_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """8 MiB flows at a client that never reads: it is dropped at the limit, its connection is released (the
    sender sees the close), its queue never exceeded the limit, and a second client is answered throughout."""

    async def main() -> None:
        path = str(tmp_path / "a.sock")
        a, b, seen = await _pair(path)
        a.ipc_write_limit = LIMIT
        silent = await _silent_client(path, 5000)
        try:
            async with await IpcClient.connect(path) as other:
                cid = b.daemon.dial("app", SocketAddr(Addr(0, 1), 5000), b.now())
                b._after_input()
                await asyncio.wait_for(seen["connected"].wait(), 10)
                b.daemon.send(cid, bytes(8 << 20), b.now())
                b._after_input()
                answered = 0
                while a.ipc_dropped == 0:
                    assert (await other.info())["node_id"] == 1  # served while the silent client fills up
                    answered += 1
                    await asyncio.sleep(0.01)
                    assert answered < 2000, "the silent client was never dropped"
                await asyncio.wait_for(seen["ended"].wait(), 10)  # its connection was closed: the sender sees it
                assert 5000 not in a.daemon.ports  # and its port released
                assert (await other.health())["status"] == "ok"
                assert len(a.clients) == 1  # only the reading client is left
        finally:
            silent.close()
            await a.shutdown()
            await b.shutdown()
        assert a.ipc_dropped == 1
        assert 0 < a.ipc_buffer_peak <= LIMIT, a.ipc_buffer_peak

    with caplog.at_level(logging.WARNING, logger="pilot_proto.daemon"):
        asyncio.run(main())
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1 and "does not read" in drops[0] and str(LIMIT) in drops[0], drops


def test_a_client_that_ignores_broadcast_datagrams_is_dropped(tmp_path: Path) -> None:
    """RecvFrom for an unbound port goes to every client (as Go does); one that never reads is dropped at the
    limit while a reading client keeps receiving them."""

    async def main() -> None:
        path = str(tmp_path / "a.sock")
        a, b, _ = await _pair(path)
        a.ipc_write_limit = LIMIT
        silent = await _silent_client(path, None)
        try:
            async with await IpcClient.connect(path) as reader:
                await _wait(lambda: len(a.clients) == 2)
                got = 0
                for i in range(2000):  # 2000 x 1000 B = 8 x the limit
                    b.daemon.send_to(Addr(0, 1), 7000, struct.pack(">I", i) + bytes(996), b.now())
                    b._after_input()
                    while not reader.datagrams.empty():
                        reader.datagrams.get_nowait()
                        got += 1
                    if i % 50 == 0:
                        await asyncio.sleep(0.005)
                    if a.ipc_dropped:
                        break
                await _wait(lambda: a.ipc_dropped == 1)
                assert got > 0  # the reading client got datagrams while the silent one filled up
                assert (await reader.info())["node_id"] == 1
                assert len(a.clients) == 1
                while not reader.datagrams.empty():
                    reader.datagrams.get_nowait()
                for i in range(10):  # and it still gets every new one
                    b.daemon.send_to(Addr(0, 1), 7000, b"after-%d" % i, b.now())
                    b._after_input()
                after = [(await asyncio.wait_for(reader.datagrams.get(), 10)).data for _ in range(10)]
                assert sorted(after) == sorted(b"after-%d" % i for i in range(10))
        finally:
            silent.close()
            await a.shutdown()
            await b.shutdown()
        assert a.ipc_buffer_peak <= LIMIT

    asyncio.run(main())


def test_without_the_limit_the_same_silent_client_queues_more(tmp_path: Path) -> None:
    """Control: the scenario above really produces more than LIMIT unread bytes when nothing bounds them."""

    async def main() -> int:
        path = str(tmp_path / "a.sock")
        a, b, seen = await _pair(path)
        a.ipc_write_limit = 1 << 40
        silent = await _silent_client(path, 5000)
        try:
            cid = b.daemon.dial("app", SocketAddr(Addr(0, 1), 5000), b.now())
            b._after_input()
            await asyncio.wait_for(seen["connected"].wait(), 10)
            b.daemon.send(cid, bytes(4 * LIMIT), b.now())
            b._after_input()
            await _wait(lambda: a.ipc_buffer_peak > 2 * LIMIT)
            return a.ipc_dropped
        finally:
            silent.close()
            await a.shutdown()
            await b.shutdown()

    assert asyncio.run(main()) == 0
