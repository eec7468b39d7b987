"""Webhook events for the built-in services' connections (issue 11; the Go reference's ``conn.*`` events fire for
every port, so for echo 7, data exchange 1001, event stream 1002 and task submit 1003 too), POSTed to a real HTTP
server on 127.0.0.1 by an in-process daemon that opted in; plus the pure event mapping."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest

from pilot_proto.daemon.core import Daemon, ServiceClosed, ServiceConnected
from pilot_proto.daemon.driver import DaemonDriver
from pilot_proto.daemon.webhook import webhook_event
from pilot_proto.services import DataExchangeService, EchoService, EventStreamService, FrameReceived, TaskSubmitService
from pilot_proto.stream.events import CloseReason
from pilot_proto.tunnel import Identity
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.dataexchange import BinaryFrame, FileFrame, JsonFrame, TextFrame, encode_data_frame

SERVICES = {7: "echo", 1001: "dataexchange", 1002: "eventstream", 1003: "tasksubmit"}


class _Sink:
    """An HTTP/1.1 server on 127.0.0.1 that records every POSTed JSON body and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = next(int(x.split(":")[1]) for x in head.split("\r\n") if x.lower().startswith("content-length"))
        self.bodies.append(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    def named(self, event: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["event"] == event]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def test_service_connections_are_posted_to_the_webhook(caplog: pytest.LogCaptureFixture) -> None:
    """A peer opens one connection to each service (data to echo and data exchange), then closes each with FIN:
    each gives one ``conn.established`` and one ``conn.fin`` naming the service; the data exchange frame gives
    ``message.received``.  The same connections are logged at INFO (``-v``)."""
    caplog.set_level(logging.INFO, logger="pilot_proto.daemon")

    async def main() -> tuple[list[dict[str, Any]], dict[int, int]]:
        sink = _Sink()
        url = await sink.start()
        ia, ib = Identity.from_seed(os.urandom(32)), Identity.from_seed(os.urandom(32))
        keys = {1: ia.public_bytes, 2: ib.public_bytes}
        services = [EchoService(), DataExchangeService(), EventStreamService(), TaskSubmitService()]
        a = await DaemonDriver.start(Daemon(1, os.urandom, identity=ia, peer_keys=keys.get, trust=False,
                                            services=services))  # fmt: skip
        b = await DaemonDriver.start(Daemon(2, os.urandom, identity=ib, peer_keys=keys.get, trust=False))
        a.daemon.add_peer(2, b.address, ib.public_bytes)
        b.daemon.add_peer(1, a.address, ia.public_bytes)
        conns: dict[int, int] = {}
        try:
            a.webhook_posts = True  # the operator's opt-in (pilot-proto node --webhook-posts)
            await a.set_webhook(url)
            payload = {7: b"ping", 1001: encode_data_frame(TextFrame("hello"))}
            for port in SERVICES:
                cid = b.daemon.dial("app", SocketAddr(Addr(0, 1), port), b.now())
                conns[port] = b.daemon.node.stream.connection(cid).local_port
                if port in payload:
                    b.daemon.send(cid, payload[port], b.now())
                b.daemon.close(cid, b.now())
            b._after_input()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while len(sink.named("conn.fin")) < len(SERVICES) or not sink.named("message.received"):
                assert loop.time() < deadline, [x["event"] for x in sink.bodies]
                await asyncio.sleep(0.02)
        finally:
            await a.shutdown()
            await b.shutdown()
            await sink.close()
        return sink.bodies, conns

    bodies, remote_ports = asyncio.run(main())
    est = {b["data"]["service"]: b for b in bodies if b["event"] == "conn.established" and "service" in b["data"]}
    fin = {b["data"]["service"]: b for b in bodies if b["event"] == "conn.fin"}
    assert set(est) == set(fin) == set(SERVICES.values()), [b["event"] for b in bodies]
    for port, name in SERVICES.items():
        opened, closed = est[name], fin[name]
        assert opened["node_id"] == 1 and opened["data"] == {
            "conn_id": opened["data"]["conn_id"], "remote_addr": str(Addr(0, 2)), "remote_port": remote_ports[port],
            "local_port": port, "service": name, "direction": "inbound",
        }  # fmt: skip
        assert closed["data"] == {"conn_id": opened["data"]["conn_id"], "reason": "normal", "service": name}
        assert opened["event_id"] < closed["event_id"]
    (msg,) = [b for b in bodies if b["event"] == "message.received"]
    assert msg["data"] == {"type": "TEXT", "from": str(Addr(0, 2)), "size": 5}
    assert est["dataexchange"]["event_id"] < msg["event_id"] < fin["dataexchange"]["event_id"]
    assert not [b for b in bodies if b["event"] == "conn.rst"]
    logged = caplog.messages
    for name in SERVICES.values():
        cid = est[name]["data"]["conn_id"]
        assert f"{name} connection {cid} from {Addr(0, 2)}:" in " ".join(logged), logged
        assert f"{name} connection {cid} closed (normal)" in logged, logged


REMOTE = SocketAddr(Addr(0, 9), 49200)


@pytest.mark.parametrize(
    ("event", "want"),
    [
        (ServiceConnected("echo", 3, REMOTE, 7, False),
         ("conn.established", {"conn_id": 3, "remote_addr": str(Addr(0, 9)), "remote_port": 49200, "local_port": 7,
                               "service": "echo", "direction": "inbound"})),
        (ServiceConnected("trust", 4, SocketAddr(Addr(0, 9), 444), 49152, True),
         ("conn.established", {"conn_id": 4, "remote_addr": str(Addr(0, 9)), "remote_port": 444, "local_port": None,
                               "service": "trust", "direction": "outbound"})),
        (ServiceClosed("tasksubmit", 5, CloseReason.NORMAL),
         ("conn.fin", {"conn_id": 5, "reason": "normal", "service": "tasksubmit"})),
        (ServiceClosed("eventstream", 6, CloseReason.RESET),
         ("conn.rst", {"conn_id": 6, "reason": "reset", "service": "eventstream"})),
        (ServiceClosed("echo", 7, CloseReason.IDLE),
         ("conn.idle_timeout", {"conn_id": 7, "reason": "idle", "service": "echo"})),
        (FrameReceived(8, REMOTE, JsonFrame(b'{"a":1}')),
         ("message.received", {"type": "JSON", "from": str(Addr(0, 9)), "size": 7})),
        (FrameReceived(8, REMOTE, BinaryFrame(b"\x00\x01\x02")),
         ("message.received", {"type": "BINARY", "from": str(Addr(0, 9)), "size": 3})),
        (FrameReceived(8, REMOTE, TextFrame("h\u00e9")),
         ("message.received", {"type": "TEXT", "from": str(Addr(0, 9)), "size": 3})),
        (FrameReceived(8, REMOTE, FileFrame("a.txt", b"abcd")),
         ("file.received", {"filename": "a.txt", "size": 4, "from": str(Addr(0, 9))})),
        (FrameReceived(8, REMOTE, FileFrame("", b"abcd")), None),  # Go saves (and reports) only a named file
    ],
)  # fmt: skip
def test_service_event_mapping(event: Any, want: tuple[str, dict[str, Any]] | None) -> None:
    assert webhook_event(event) == want
