"""Real processes on 127.0.0.1: two ``pilot-proto node`` daemons and the client commands over their IPC sockets.

Every process is bounded (``--duration``, subprocess timeouts) and binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pilot_proto.daemon.client import IpcClient
from pilot_proto.profile import Profile
from pilot_proto.wire.address import Addr

CLI = [sys.executable, "-m", "pilot_proto.cli"]
LIFETIME = "60"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    node_id: int
    port: int
    sock: Path
    proc: subprocess.Popen[str]

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args, "--socket", str(self.sock)], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip


def start_node(tmp: Path, node_id: int, port: int, peers: dict[int, int], *extra: str) -> Node:
    sock = tmp / f"n{node_id}.sock"
    args = [*CLI, "node", "--node-id", str(node_id), "--listen", f"127.0.0.1:{port}", "--socket", str(sock),
            "--echo", "--duration", LIFETIME, "-v", *extra]  # fmt: skip
    for nid, p in peers.items():
        args += ["--peer", f"{nid}=127.0.0.1:{p}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"node {node_id} did not start: {proc.communicate()}")
        time.sleep(0.05)
    return Node(node_id, port, sock, proc)


def stop(node: Node) -> tuple[str, str]:
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGINT)
    try:
        return node.proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        return node.proc.communicate()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    tmp = tmp_path_factory.mktemp("daemons")
    pa, pb = free_udp_port(), free_udp_port()
    a = start_node(tmp, 11, pa, {12: pb})
    b = start_node(tmp, 12, pb, {11: pa})
    try:
        yield a, b
    finally:
        for n in (a, b):
            stop(n)


def test_info_and_peers(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    res = a.cli("info", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["node_id"] == 11 and info["address"] == "0:0000.0000.000B"
    assert info["ports"] >= 5  # echo, trust, data exchange, event stream, task submit, secure


@pytest.mark.req("SVC-001")
def test_ping_and_connect_through_the_echo_service(pair: tuple[Node, Node]) -> None:
    a, b = pair
    res = a.cli("ping", "12", "--count", "3", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [r["ok"] for r in doc["results"]] == [True, True, True]
    res = b.cli("connect", "0:0000.0000.000B", "7", "--message", "hello over pilot")
    assert res.returncode == 0 and res.stdout.strip() == "hello over pilot", res
    peers = json.loads(a.cli("peers", "--json").stdout)
    assert peers["total"] == 1 and peers["peers"][0]["encrypted"] is True


def test_ten_megabytes_through_echo(pair: tuple[Node, Node], tmp_path: Path) -> None:
    a, _ = pair
    blob = tmp_path / "blob"
    data = os.urandom(10_000_000)
    blob.write_bytes(data)

    async def run() -> bytes:
        async with await IpcClient.connect(str(a.sock), Profile.DRAFT) as c:
            cid = await c.dial(Addr(0, 12), 7)
            sender = asyncio.ensure_future(c.send(cid, data))
            echoed = await c.recv_exactly(cid, len(data), timeout=60)
            await sender
            await c.close_conn(cid)
            return echoed

    assert asyncio.run(asyncio.wait_for(run(), 90)) == data
    res = a.cli("send", "12", "7", "--file", str(blob), "--expect", str(len(data)), "--json", "--timeout", "60",
                timeout=90)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["received"] == len(data)


def test_send_to_recv_and_datagrams(pair: tuple[Node, Node]) -> None:
    a, b = pair
    recv = subprocess.Popen([*CLI, "recv", "6000", "--count", "1", "--json", "--socket", str(b.sock), "--timeout",
                             "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        # A send before b has bound port 6000 may still succeed (and be dropped there), so send again until the
        # recv process has its one message, bounded.
        deadline = time.monotonic() + 20
        out = err = ""
        while True:
            res = a.cli("send", "12", "6000", "--data", "to the recv command")
            try:
                out, err = recv.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise
        assert res.returncode == 0, res.stderr
    finally:
        recv.kill()
    assert out, err
    assert json.loads(out)["messages"][0]["data"] == "to the recv command", err

    async def datagrams() -> list[bytes]:
        async with await IpcClient.connect(str(a.sock), Profile.DRAFT) as ca, \
                await IpcClient.connect(str(b.sock), Profile.DRAFT) as cb:  # fmt: skip
            await cb.bind(7000)
            for i in range(5):
                await ca.send_to(Addr(0, 12), 7000, f"dgram {i}".encode())
            got: list[bytes] = []
            while len(got) < 5:
                got.append((await asyncio.wait_for(cb.datagrams.get(), 10)).data)
            return got

    assert sorted(asyncio.run(datagrams())) == [f"dgram {i}".encode() for i in range(5)]


def test_closed_port_refuses_and_unknown_node_is_one_line(pair: tuple[Node, Node]) -> None:
    a, _ = pair
    res = a.cli("connect", "12", "4444", "--message", "anyone?")
    assert res.returncode == 1 and "reset" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res
    res = a.cli("ping", "99")
    assert res.returncode == 1 and "no route" in res.stderr and "Traceback" not in res.stderr, res
    res = subprocess.run([*CLI, "info", "--socket", "/nonexistent/pilot.sock"], capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res


@pytest.mark.req("SEC-015", "SEC-018", "SEC-019")
def test_private_node_needs_trust(tmp_path: Path) -> None:
    pa, pb = free_udp_port(), free_udp_port()
    trust_file = tmp_path / "b-trust.json"
    a = start_node(tmp_path, 21, pa, {22: pb})
    b = start_node(tmp_path, 22, pb, {21: pa}, "--private", "--trust-file", str(trust_file))
    try:
        res = a.cli("connect", "22", "7", "--message", "let me in", "--timeout", "2")
        assert res.returncode == 1, res  # the SYN is dropped silently: no reply before the timeout
        res = a.cli("handshake", "22", "for the test", "--json")
        assert res.returncode == 0 and json.loads(res.stdout)["status"] == "sent", res
        deadline = time.monotonic() + 10
        while not json.loads(b.cli("pending", "--json").stdout)["pending"]:
            assert time.monotonic() < deadline, "no pending request"
            time.sleep(0.1)
        assert b.cli("approve", "21").returncode == 0
        deadline = time.monotonic() + 10
        while not json.loads(a.cli("trust", "--json").stdout)["trusted"]:
            assert time.monotonic() < deadline, "no accept came back"
            time.sleep(0.1)
        res = a.cli("connect", "22", "7", "--message", "let me in")
        assert res.returncode == 0 and res.stdout.strip() == "let me in", res
    finally:
        out_a, err_a = stop(a)
        out_b, err_b = stop(b)
    assert "untrusted packets dropped" in out_b and "done:" in out_a
    assert "trust request from node 21" in err_b and "node 21 trusted (approved)" in err_b, err_b  # -v log
    assert "connection" in err_a and "established" in err_a, err_a
    # the trust survives a restart of the private node
    (tmp_path / "n22.sock").unlink(missing_ok=True)
    b = start_node(tmp_path, 22, pb, {21: pa}, "--private", "--trust-file", str(trust_file))
    try:
        trusted = json.loads(b.cli("trust", "--json").stdout)["trusted"]
        assert [t["node_id"] for t in trusted] == [21]
    finally:
        stop(b)


def start_registry(tmp: Path) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([*CLI, "registry", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"registry did not start: {proc.communicate()}") from None
            time.sleep(0.05)


def start_registered(tmp: Path, name: str, registry: int, *extra: str) -> Node:
    sock = tmp / f"{name}.sock"
    proc = subprocess.Popen([*CLI, "node", "--registry", f"127.0.0.1:{registry}", "--hostname", name, "--socket",
                             str(sock), "--echo", "--duration", LIFETIME, "-v", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 20
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"node {name} did not start: {proc.communicate()}")
        time.sleep(0.05)
    node = Node(0, 0, sock, proc)
    node.node_id = int(json.loads(node.cli("info", "--json").stdout)["node_id"])
    return node


@pytest.mark.req("SVC-001")
def test_echo_by_hostname_through_our_registry(tmp_path: Path) -> None:
    """Registry + two registered CLI nodes: each finds the other by hostname over a PILA-authenticated tunnel."""
    reg, port = start_registry(tmp_path)
    nodes: list[Node] = []
    try:
        nodes = [start_registered(tmp_path, "alpha", port, "--public"),
                 start_registered(tmp_path, "beta", port, "--public")]  # fmt: skip
        a, b = nodes
        assert a.node_id != b.node_id
        res = a.cli("connect", "beta", "7", "--message", "found you by name")
        assert res.returncode == 0 and res.stdout.strip() == "found you by name", res
        res = b.cli("ping", "alpha", "--count", "2", "--json")
        assert res.returncode == 0 and all(r["ok"] for r in json.loads(res.stdout)["results"]), res
        peers = json.loads(a.cli("peers", "--json").stdout)["peers"]
        assert [(p["node_id"], p["authenticated"]) for p in peers] == [(b.node_id, True)]
        res = a.cli("ping", "nobody-by-that-name")
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res
    finally:
        for n in nodes:
            stop(n)
        reg.send_signal(signal.SIGINT)
        reg.communicate(timeout=15)


def test_exact_bytes_at_five_percent_loss_with_garbage_on_the_side(tmp_path: Path) -> None:
    """Both nodes drop 5 % of what they send (the driver's impairment hook) while a raw socket throws garbage
    datagrams at them; 1 MB still comes back through echo byte-exact and neither node reports an internal error."""
    pa, pb = free_udp_port(), free_udp_port()
    a = start_node(tmp_path, 31, pa, {32: pb}, "--loss", "0.05", "--seed", "1")
    b = start_node(tmp_path, 32, pb, {31: pa}, "--loss", "0.05", "--seed", "2")
    data = os.urandom(1_000_000)

    async def run() -> bytes:
        async with await IpcClient.connect(str(a.sock)) as c:
            cid = await c.dial(Addr(0, 32), 7, timeout=20)
            sender = asyncio.ensure_future(c.send(cid, data))
            echoed = await c.recv_exactly(cid, len(data), timeout=60)
            await sender
            await c.close_conn(cid)
            return echoed

    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(500):  # garbage before and during the transfer: random bytes and truncated magic
            payload = os.urandom(1 + i % 300) if i % 2 else b"PILS" + os.urandom(i % 40)
            junk.sendto(payload, ("127.0.0.1", pa if i % 3 else pb))
        assert asyncio.run(asyncio.wait_for(run(), 90)) == data
        info = json.loads(a.cli("info", "--json").stdout)
        assert info["peers"] == 1  # the garbage created no peers
    finally:
        junk.close()
        out_a, _ = stop(a)
        out_b, _ = stop(b)
    assert "0 internal errors" in out_a and "0 internal errors" in out_b, (out_a, out_b)
    dropped = [int(m) for m in re.findall(r"impairment \(outbound\) dropped (\d+) of", out_a + out_b)]
    assert len(dropped) == 2 and sum(dropped) > 20, (out_a, out_b)  # the loss really happened


@pytest.mark.req("IPC-002", "IPC-004")
def test_garbage_on_the_ipc_socket_drops_only_that_client(pair: tuple[Node, Node]) -> None:
    """An unknown command, a zero length and an oversized length each get an Error and lose their connection;
    the daemon keeps serving everyone else."""
    a, _ = pair
    for junk in (b"\x00\x00\x00\x01\xee", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff" + b"x" * 8):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(a.sock))
            s.sendall(junk)
            reply = b""
            while chunk := s.recv(4096):  # the daemon answers, then closes
                reply += chunk
        assert reply[4] == 0x0A, reply  # Error
    res = a.cli("info", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["node_id"] == 11


@pytest.mark.req("SEC-015", "SEC-018", "SEC-020")
def test_two_private_nodes_trust_through_the_registry_relay(tmp_path: Path) -> None:
    """Neither private node may learn the other's endpoint, so the request and the approval travel through the
    registry (signed, SEC-020); once both agree the registry resolves them to each other and echo works."""
    reg, port = start_registry(tmp_path)
    nodes: list[Node] = []
    try:
        nodes = [start_registered(tmp_path, "left", port), start_registered(tmp_path, "right", port)]
        left, right = nodes
        res = left.cli("connect", str(right.node_id), "7", "--message", "hello?", "--timeout", "3")
        assert res.returncode != 0, res  # private: the registry will not tell left where right is
        res = left.cli("handshake", str(right.node_id), "relay me", "--json")
        assert res.returncode == 0, res
        deadline = time.monotonic() + 20
        while not json.loads(right.cli("pending", "--json").stdout)["pending"]:
            assert time.monotonic() < deadline, "the relayed request did not arrive"
            time.sleep(0.2)
        assert right.cli("approve", str(left.node_id)).returncode == 0
        deadline = time.monotonic() + 20
        while not json.loads(left.cli("trust", "--json").stdout)["trusted"]:
            assert time.monotonic() < deadline, "the relayed approval did not arrive"
            time.sleep(0.2)
        res = left.cli("connect", "right", "7", "--message", "trusted now")
        assert res.returncode == 0 and res.stdout.strip() == "trusted now", res
    finally:
        errs = [stop(n)[1] for n in nodes]
        reg.send_signal(signal.SIGINT)
        reg.communicate(timeout=15)
    assert any("relayed through the registry" in e for e in errs), errs


def test_a_client_that_vanishes_mid_transfer_is_cleaned_up(pair: tuple[Node, Node]) -> None:
    """Its connections are closed and its ports released (Go's handleClient cleanup); others carry on."""
    a, _ = pair

    async def vanish() -> int:
        c = await IpcClient.connect(str(a.sock))
        await c.bind(6100)
        cid = await c.dial(Addr(0, 12), 7)
        await c.send(cid, os.urandom(2_000_000))
        c.writer.transport.abort()  # gone without Close
        await c.close()
        return cid

    cid = asyncio.run(asyncio.wait_for(vanish(), 30))
    deadline = time.monotonic() + 15
    while True:
        conns = json.loads(a.cli("info", "--json").stdout)["conn_list"]
        if not any(c["id"] == cid and c["state"] == "ESTABLISHED" for c in conns):
            break
        assert time.monotonic() < deadline, conns
        time.sleep(0.2)

    async def rebind() -> int:
        async with await IpcClient.connect(str(a.sock)) as c:
            return await c.bind(6100)  # free again

    assert asyncio.run(asyncio.wait_for(rebind(), 10)) == 6100


@pytest.mark.req("SVC-054", "SEC-013")
def test_secure_channel_on_port_443_end_to_end(pair: tuple[Node, Node]) -> None:
    """X25519 + HKDF + AES-GCM records on port 443 of the other node (its secure echo), through our IPC."""
    from pilot_proto.tunnel.secure_channel import SecureChannel
    from pilot_proto.wire.secure import Role

    a, _ = pair

    async def run() -> list[bytes]:
        async with await IpcClient.connect(str(a.sock)) as c:
            cid = await c.dial(Addr(0, 12), 443)
            ch = SecureChannel(Role.CLIENT, os.urandom, Profile.DRAFT)
            await c.send(cid, ch.data_to_send())
            got: list[bytes] = []
            while not got:
                got += ch.receive_data(await c.recv(cid))
                if ch.state.value == "open" and not got:
                    ch.send(b"first secret")
                    ch.send(os.urandom(20_000))
                    await c.send(cid, ch.data_to_send())
            while len(got) < 2:
                got += ch.receive_data(await c.recv(cid))
            await c.close_conn(cid)
            return got

    first, second = asyncio.run(asyncio.wait_for(run(), 30))
    assert first == b"first secret" and len(second) == 20_000
