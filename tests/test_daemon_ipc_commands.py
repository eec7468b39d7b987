"""IPC SetTags, SetTaskExec, SetWebhook and the Network sub-commands (draft 16.2, 16.3), end to end on 127.0.0.1:
a registry and two registered ``pilot-proto node`` processes, driven by the client commands (``set-tags``,
``enable-tasks``, ``network invite`` ...), checked against the registry and on the wire.  The webhook is POSTed
only with the operator's opt-in, and then only to an HTTP server this test runs on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.daemon.client import DaemonError, IpcClient
from pilot_proto.daemon.core import Daemon
from pilot_proto.daemon.driver import DaemonDriver
from pilot_proto.daemon.webhook import WebhookPoster, check_url
from pilot_proto.registry import RegistryClient
from pilot_proto.tunnel import Identity
from pilot_proto.wire import ipc
from pilot_proto.wire.address import Addr, SocketAddr

CLI = [sys.executable, "-m", "pilot_proto.cli"]
ADMIN = "dfix-admin-token"
LIFETIME = "90"


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    sock: Path | None = None
    node_id: int = 0

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.sock is not None
        res = subprocess.run([*CLI, *args, "--socket", str(self.sock)], capture_output=True, text=True, timeout=30)
        assert "Traceback" not in res.stderr, res.stderr
        return res

    def ok(self, *args: str) -> str:
        res = self.cli(*args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()


@dataclass
class World:
    registry_port: int
    alpha: Proc
    beta: Proc
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def registry(self) -> RegistryClient:
        return RegistryClient(("127.0.0.1", self.registry_port))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("ipccmd")
    port = _free_tcp()
    env = {**os.environ, "PILOT_ADMIN_TOKEN": ADMIN}
    reg = subprocess.Popen([*CLI, "registry", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    procs = [reg]
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert reg.poll() is None and time.monotonic() < deadline, reg.communicate()
                time.sleep(0.05)
        nodes = []
        for name in ("alpha", "beta"):
            sock = tmp / f"{name}.sock"
            p = subprocess.Popen([*CLI, "node", "--registry", f"127.0.0.1:{port}", "--hostname", name, "--public",
                                  "--socket", str(sock), "--echo", "--duration", LIFETIME, "-v"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
            procs.append(p)
            deadline = time.monotonic() + 20
            while not sock.exists():
                assert p.poll() is None and time.monotonic() < deadline, p.communicate()
                time.sleep(0.05)
            node = Proc(p, sock)
            node.node_id = int(node.json("info")["node_id"])
            nodes.append(node)
        yield World(port, nodes[0], nodes[1], procs)
    finally:
        for p in reversed(procs):
            _stop(p)


def _lookup(world: World, node: int) -> dict[str, Any]:
    with world.registry() as reg:
        return reg.call({"type": "lookup", "node_id": node}, "lookup_ok")


@pytest.mark.req("IPC-019")
def test_set_tags_registers_them_and_info_reports_them(world: World) -> None:
    a = world.alpha
    assert a.ok("set-tags", "gpu", "#eu-west").strip() == "tags: gpu, eu-west"
    assert _lookup(world, a.node_id)["tags"] == ["gpu", "eu-west"]
    assert a.json("info")["tags"] == ["gpu", "eu-west"]

    async def too_long() -> None:  # the CLI refuses it itself (exit 2); over IPC the registry refuses it
        async with await IpcClient.connect(str(a.sock)) as c:
            with pytest.raises(DaemonError, match=r"^set_tags: registry: tag 'x{33}' too long"):
                await c.set_tags(["x" * 33])

    asyncio.run(too_long())
    assert a.json("info")["tags"] == ["gpu", "eu-west"]  # unchanged
    assert a.ok("clear-tags").strip() == "tags cleared"
    assert "tags" not in _lookup(world, a.node_id) and a.json("info")["tags"] == []


@pytest.mark.req("IPC-018")
def test_task_exec_toggle_gates_port_1003_and_is_advertised(world: World) -> None:
    a, b = world.alpha, world.beta

    async def dial_1003() -> bool:
        async with await IpcClient.connect(str(b.sock)) as c:
            try:
                cid = await c.dial(Addr(0, a.node_id), 1003, timeout=10)
            except DaemonError:
                return False
            await c.close_conn(cid)
            return True

    assert a.json("info")["task_exec"] is True
    assert asyncio.run(dial_1003()) is True  # the service runs by default
    assert a.ok("disable-tasks").strip() == "task execution disabled (port 1003 closed)"
    assert "task_exec" not in _lookup(world, a.node_id)
    assert asyncio.run(dial_1003()) is False  # refused (RST) while disabled
    assert a.json("info")["task_exec"] is False
    assert a.ok("enable-tasks").strip() == "task execution enabled (port 1003 listening)"
    assert _lookup(world, a.node_id)["task_exec"] is True
    assert asyncio.run(dial_1003()) is True


@pytest.mark.req("IPC-020", "IPC-021", "IPC-022")
def test_network_sub_commands_through_the_daemon(world: World) -> None:
    a, b = world.alpha, world.beta
    with world.registry() as reg:
        club = int(reg.call({"type": "create_network", "node_id": a.node_id, "name": "club", "join_rule": "invite",
                             "admin_token": ADMIN}, "create_network_ok")["network_id"])  # fmt: skip
        hall = int(reg.call({"type": "create_network", "node_id": a.node_id, "name": "hall",
                             "admin_token": ADMIN}, "create_network_ok")["network_id"])  # fmt: skip
    nets = {n["id"]: n["join_rule"] for n in b.json("network", "list")["networks"]}
    assert nets[club] == "invite" and nets[hall] == "open" and nets[0] == "open"
    refused = b.cli("network", "join", str(club))
    assert refused.returncode == 1 and "invite-only" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert b.ok("network", "join", str(hall)).startswith(f"joined network {hall}")
    assert a.ok("network", "invite", str(club), str(b.node_id)).strip() == f"invited node {b.node_id} to network {club}"
    invites = b.json("network", "invites")["invites"]
    assert [(i["network_id"], i["inviter_id"]) for i in invites] == [(club, a.node_id)]
    assert b.ok("network", "accept", str(club)).strip() == f"accepted the invite to network {club}"
    members = {m["node_id"]: m.get("role") for m in a.json("network", "members", str(club))["nodes"]}
    assert members == {a.node_id: "owner", b.node_id: "member"}
    assert set(_lookup(world, b.node_id)["networks"]) == {0, hall, club}
    assert b.ok("network", "leave", str(club)).strip() == f"left network {club}"
    assert a.ok("network", "invite", str(club), str(b.node_id))
    assert b.ok("network", "reject", str(club)).strip() == f"rejected the invite to network {club}"
    assert b.ok("network", "invites").strip() == "no pending invites"
    assert set(_lookup(world, b.node_id)["networks"]) == {0, hall}


@pytest.mark.req("IPC-017")
def test_webhook_is_stored_and_reported_and_not_posted_without_the_opt_in(world: World) -> None:
    a, b = world.alpha, world.beta
    hits: list[bytes] = []
    with socket.socket() as server:  # an HTTP "server" that only records whether anybody connected
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.05)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
        out = a.ok("set-webhook", url)
        assert url in out and "stored" in out
        assert a.json("info")["webhook"] == url

        async def events_at_alpha() -> None:  # what an opted-in daemon would post: conn.established, data.datagram
            async with await IpcClient.connect(str(a.sock)) as ca, await IpcClient.connect(str(b.sock)) as cb:
                port = await ca.bind(0)
                cid = await cb.dial(Addr(0, a.node_id), port, timeout=10)
                acc = await ca.accept(port, timeout=10)
                await cb.send_to(Addr(0, a.node_id), 7777, b"a datagram")
                await cb.close_conn(cid)
                await ca.close_conn(acc.conn_id)

        asyncio.run(events_at_alpha())
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
                hits.append(conn.recv(4096))
                conn.close()
            except TimeoutError:
                pass
    assert hits == []
    assert a.ok("clear-webhook").strip() == "webhook cleared" and a.json("info")["webhook"] == ""


# -- webhook POSTs with the opt-in (in-process daemons, a 127.0.0.1 HTTP server) -----------------------------


class _HttpSink:
    """A tiny HTTP/1.1 server on 127.0.0.1 recording POST bodies; answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])
        self.got = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/pilot?x=1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
        body = await reader.readexactly(length)
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        self.paths.append(lines[0])
        if status < 400:
            self.bodies.append(json.loads(body))
            self.got.set()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def test_with_the_opt_in_events_are_posted_to_the_webhook(tmp_path: Path) -> None:
    async def main() -> None:
        sink = _HttpSink()
        url = await sink.start()
        ia, ib = Identity.from_seed(os.urandom(32)), Identity.from_seed(os.urandom(32))
        keys = {1: ia.public_bytes, 2: ib.public_bytes}
        path = str(tmp_path / "a.sock")
        a = await DaemonDriver.start(Daemon(1, os.urandom, identity=ia, peer_keys=keys.get, trust=False),
                                     socket_path=path)  # fmt: skip
        b = await DaemonDriver.start(Daemon(2, os.urandom, identity=ib, peer_keys=keys.get, trust=False))
        a.daemon.add_peer(2, b.address, ib.public_bytes)
        b.daemon.add_peer(1, a.address, ia.public_bytes)
        try:
            a.webhook_posts = True  # the operator's opt-in (pilot-proto node --webhook-posts)
            async with await IpcClient.connect(path) as c:
                assert (await c.set_webhook(url)) == {"webhook": url, "posting": True}
                await c.bind(5000)
                b.daemon.dial("app", SocketAddr(Addr(0, 1), 5000), b.now())
                b._after_input()
                await asyncio.wait_for(sink.got.wait(), 10)
                deadline = asyncio.get_running_loop().time() + 5
                while not any(x["event"] == "conn.established" for x in sink.bodies):
                    assert asyncio.get_running_loop().time() < deadline, sink.bodies
                    await asyncio.sleep(0.02)
                assert (await c.set_webhook(""))["posting"] is False
        finally:
            await a.shutdown()
            await b.shutdown()
            await sink.close()
        names = [x["event"] for x in sink.bodies]
        assert "tunnel.peer_added" in names, names
        est = next(x for x in sink.bodies if x["event"] == "conn.established")
        assert (
            est["node_id"] == 1 and est["data"]["local_port"] == 5000 and est["data"]["remote_addr"] == str(Addr(0, 2))
        )
        assert all(p.startswith("POST /hooks/pilot?x=1 HTTP/1.1") for p in sink.paths)
        ids = [x["event_id"] for x in sink.bodies]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

    asyncio.run(main())


def test_poster_retries_a_5xx_and_gives_up_on_a_4xx() -> None:
    async def main() -> tuple[int, int, list[int]]:
        sink = _HttpSink([503, 200, 404])
        url = await sink.start()
        poster = WebhookPoster(url, lambda: 7, backoff=0.01)
        poster.start()
        poster.emit("first", {"n": 1})  # 503, then 200 on the retry
        poster.emit("second", {"n": 2})  # 404: not retried
        poster.emit("third", {"n": 3})  # 200
        deadline = asyncio.get_running_loop().time() + 10
        while poster.posted + poster.failed < 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        await poster.close()
        await sink.close()
        return poster.posted, poster.failed, [b["data"]["n"] for b in sink.bodies]

    assert asyncio.run(main()) == (2, 1, [1, 3])


def test_poster_queue_is_bounded() -> None:
    async def main() -> tuple[int, int]:
        poster = WebhookPoster("http://127.0.0.1:9/never-started", lambda: 1, max_queued=4)
        for i in range(10):  # the poster's task is not started: nothing is sent, the queue fills
            poster.emit("e", {"i": i})
        return poster._queue.qsize(), poster.dropped

    assert asyncio.run(main()) == (4, 6)


@pytest.mark.parametrize(("url", "ok"), [("http://127.0.0.1:80/x", True), ("https://example.test/hook", True),
                                          ("", True), ("ftp://127.0.0.1/x", False), ("http://", False),
                                          ("http://127.0.0.1:99999/", False), ("127.0.0.1:80", False)])  # fmt: skip
def test_webhook_url_check(url: str, ok: bool) -> None:
    assert (check_url(url) is None) is ok


def test_set_tags_without_registry_and_bad_requests_over_the_socket(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "a.sock")
        drv = await DaemonDriver.start(Daemon(9, os.urandom, trust=False), socket_path=path)
        try:
            async with await IpcClient.connect(path) as c:
                assert (await c.set_tags(["#a", "b", "a"]))["tags"] == ["a", "b"]
                for bad, why in ((["a", "b", "c", "d"], "maximum 3"), ({"not": "a list"}, "array of strings")):
                    with pytest.raises(DaemonError, match=why):
                        await c._json(ipc.JsonMessage(ipc.Command.SET_TAGS, json.dumps(bad).encode()),
                                      ipc.Command.SET_TAGS_OK)  # fmt: skip
                with pytest.raises(DaemonError, match="http:// or https://"):
                    await c.set_webhook("gopher://x")
                with pytest.raises(DaemonError, match="needs a registry"):
                    await c.network(ipc.NetworkSub.LIST)
                doc = await c.set_task_exec(False)
                assert doc["task_exec"] is False and doc["listening"] is False  # no task service configured
                assert (await c.info())["tags"] == ["a", "b"]
        finally:
            await drv.shutdown()

    asyncio.run(main())


def test_node_command_opt_in_posts_to_the_webhook(tmp_path: Path) -> None:
    """``pilot-proto node --webhook URL --webhook-posts``: a real daemon process POSTs its events (here the tunnel
    to a peer that pings it) to an HTTP server of this test on 127.0.0.1."""
    import http.server
    import threading

    bodies: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pilot"
    pa, pb = _free_udp(), _free_udp()
    a_sock = tmp_path / "a.sock"
    a = subprocess.Popen([*CLI, "node", "--node-id", "31", "--listen", f"127.0.0.1:{pa}", "--peer",
                          f"32=127.0.0.1:{pb}", "--socket", str(a_sock), "--webhook", url, "--webhook-posts",
                          "--duration", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    b = None
    try:
        deadline = time.monotonic() + 20
        while not a_sock.exists():
            assert a.poll() is None and time.monotonic() < deadline, a.communicate()
            time.sleep(0.05)
        assert Proc(a, a_sock).json("info")["webhook"] == url
        b = subprocess.Popen([*CLI, "node", "--node-id", "32", "--listen", f"127.0.0.1:{pb}", "--peer",
                              f"31=127.0.0.1:{pa}", "--socket", "none", "--ping", "31", "--duration", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 20
        while not any(x["event"] == "tunnel.peer_added" for x in bodies):
            assert time.monotonic() < deadline, bodies
            time.sleep(0.05)
    finally:
        for p in (b, a):
            if p is not None:
                _stop(p)
        server.shutdown()
        server.server_close()
    added = next(x for x in bodies if x["event"] == "tunnel.peer_added")
    assert added["node_id"] == 31 and added["data"]["peer_node_id"] == 32


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
