"""The registry's store file, asyncio server, clients and ``pilot-proto registry`` command, on 127.0.0.1.

The crash test runs the registry as a real subprocess, registers from four client threads over TCP,
SIGKILLs the registry while requests are in flight, restarts it on the same store and looks up every
registration that had been acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pilot_proto.cli import main as cli_main
from pilot_proto.profile import Profile
from pilot_proto.registry import (
    AsyncRegistryClient,
    Registry,
    RegistryClient,
    RegistryConfig,
    RegistryError,
    RegistryServer,
    Store,
    StoreError,
)
from pilot_proto.registry.client import ConnectionLost
from pilot_proto.registry.tls import fingerprint, self_signed
from pilot_proto.tunnel import Identity

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent

# A TCP port on 127.0.0.1 held (listening) for this module's lifetime: listening on it again is the late
# OSError a user meets; tests bind loopback only, so a foreign address is not how to provoke it.
_BUSY = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_BUSY.bind(("127.0.0.1", 0))
_BUSY.listen()
BUSY_TCP = f"127.0.0.1:{_BUSY.getsockname()[1]}"


def ident(n: int) -> Identity:
    return Identity.from_seed(n.to_bytes(4, "big") * 8)


# -- store ----------------------------------------------------------------------------------------


def test_store_round_trip_torn_tail_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "reg.store"
    st = Store(path)
    assert st.load() == []
    st.append([{"op": "trust", "a": 4, "b": 5, "on": True}, {"op": "trust", "a": 5, "b": 4, "on": True}])
    st.close()
    good = path.read_bytes()
    path.write_bytes(good + b'0badc0de {"op":')  # a write torn by a crash
    st = Store(path)
    assert [r["a"] for r in st.load()] == [4, 5]
    assert path.read_bytes() == good  # the torn tail was cut off
    st.append([{"op": "trust", "a": 6, "b": 4, "on": True}])
    st.close()
    assert len(Store(path).load()) == 3
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"a":5', b'"a":7')  # bit rot in the middle: the CRC catches it
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match="corrupt at line 2"):
        Store(path).load()


def test_store_compaction_replaces_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "reg.store"
    reg = Registry(RegistryConfig(), now=1e9)
    st = Store(path)
    st.load()
    st.append([{"op": "trust", "a": 4, "b": 5, "on": True}] * 3)
    st.compact(reg.snapshot())
    assert [r["op"] for r in Store(path).load()] == ["snapshot"]
    assert not (tmp_path / "reg.store.tmp").exists()


# -- in-process server + asyncio client --------------------------------------------------------------


async def _async_session(tmp_path: Path) -> None:
    reg = Registry(RegistryConfig(), now=time.time())
    store = Store(tmp_path / "a.store")
    reg.restore(store.load(), time.time())
    server = RegistryServer(reg, store)
    host, port = await server.start(LOOPBACK, 0)
    try:
        a = await AsyncRegistryClient.connect((host, port))
        b = await AsyncRegistryClient.connect((host, port))
        na = await a.register(ident(1), "127.0.0.1:4001", hostname="alpha")
        nb = await b.register(ident(2), "127.0.0.1:4002")
        await a.set_visibility(True)
        assert await b.resolve_hostname("alpha") == na
        assert await b.resolve(na) == "127.0.0.1:4001"
        with pytest.raises(RegistryError, match="private"):
            await a.resolve(nb)
        await a.report_trust(nb)
        await b.report_trust(na)
        assert await a.check_trust(nb) is True
        assert await a.resolve(nb) == "127.0.0.1:4002"
        assert await a.heartbeat() >= int(time.time()) - 1
        look = await b.lookup(na)
        assert look["hostname"] == "alpha" and look["real_addr"] == "127.0.0.1:4001"
        await b.deregister()
        with pytest.raises(RegistryError, match="not found"):
            await a.lookup(nb)
        await a.close()
        await b.close()
    finally:
        await server.close()
    # a clean shutdown compacts (temp file, fsync, rename); a new registry on the file sees the same state
    records = Store(tmp_path / "a.store").load()
    assert [r["op"] for r in records] == ["snapshot"]
    again = Registry(RegistryConfig(), now=time.time())
    again.restore(records, time.time())
    assert [n.node_id for n in again.nodes()] == [na]
    assert again.trusted(na, nb)
    assert again.audit_log() == reg.audit_log() and len(reg.audit_log()) == 7


@pytest.mark.req("ARCH-006", "ARCH-012", "SEC-019", "ENT-013")
def test_async_client_against_in_process_server(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_async_session(tmp_path), 20))


async def _limits() -> None:
    reg = Registry(RegistryConfig(), now=time.time())
    server = RegistryServer(reg, None, max_connections=2)
    host, port = await server.start(LOOPBACK, 0)
    try:
        # a length over 64 KiB: one error reply, then the connection is closed
        r, w = await asyncio.open_connection(host, port)
        w.write(struct.pack(">I", 70_000))
        await w.drain()
        head = await asyncio.wait_for(r.readexactly(4), 5)
        body = await r.readexactly(struct.unpack(">I", head)[0])
        assert b"exceeds 65536" in body
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
        # not JSON: the same
        r, w = await asyncio.open_connection(host, port)
        w.write(struct.pack(">I", 3) + b"{{{")
        head = await asyncio.wait_for(r.readexactly(4), 5)
        assert b"error" in await r.readexactly(struct.unpack(">I", head)[0])
        w.close()
        await asyncio.sleep(0.1)
        # connection limit: the third concurrent connection is closed at once
        c1 = await AsyncRegistryClient.connect((host, port))
        c2 = await AsyncRegistryClient.connect((host, port))
        r3, w3 = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(r3.read(), 5) == b""
        assert server.refused_connections == 1
        assert (await c1.call({"type": "list_networks"}))["type"] == "list_networks_ok"
        await c1.close()
        await c2.close()
        w3.close()
    finally:
        await server.close()


def test_server_bounds_message_size_and_connections() -> None:
    asyncio.run(asyncio.wait_for(_limits(), 20))


# -- the command as a subprocess ------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pilot_proto.cli", "registry", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@contextmanager
def registry_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    proc = subprocess.Popen(_cli("--listen", f"{LOOPBACK}:0", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield proc, (LOOPBACK, int(m.group(1)))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.req("SEC-019")
def test_sigkill_mid_load_loses_no_acknowledged_registration(tmp_path: Path) -> None:
    store = tmp_path / "reg.store"
    acked: dict[int, bytes] = {}
    lock = threading.Lock()
    total_killed_in_flight = 0
    serial = iter(range(1, 1_000_000))
    for round_no in range(3):
        with registry_process("--store", str(store), "--rate", "0") as (proc, addr):
            stop = threading.Event()
            errors: list[str] = []

            def worker(stop: threading.Event, errors: list[str], addr: tuple[str, int]) -> None:
                try:
                    client = RegistryClient(addr, timeout=5, reconnect=False)
                except RegistryError as exc:
                    errors.append(str(exc))
                    return
                while not stop.is_set():
                    with lock:
                        who = ident(next(serial))
                    try:
                        nid = client.register(who, "127.0.0.1:7000")
                    except RegistryError:
                        break  # the registry died under us: this one was not acknowledged
                    with lock:
                        acked[nid] = who.public_bytes
                client.close()

            before = len(acked)
            threads = [threading.Thread(target=worker, args=(stop, errors, addr)) for _ in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 20
            while len(acked) - before < 150 and time.monotonic() < deadline and not errors:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)  # in the middle of the load
            proc.wait(timeout=10)
            stop.set()
            for t in threads:
                t.join(timeout=10)
            assert not errors, errors
            assert len(acked) - before >= 150, f"round {round_no}: only {len(acked) - before} registrations"
            total_killed_in_flight += 1
    # restart on the same store: every acknowledged registration is there, with its key
    with registry_process("--store", str(store)) as (proc, addr), RegistryClient(addr) as client:
        missing = []
        for nid, key in sorted(acked.items()):
            try:
                look = client.lookup(nid)
            except RegistryError:
                missing.append(nid)
                continue
            assert look["public_key"] == base64.b64encode(key).decode()
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged registrations lost"
        assert len(acked) >= 450 and total_killed_in_flight == 3
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "registry stopped" in out


def test_ctrl_c_prints_a_summary_and_exits_cleanly(tmp_path: Path) -> None:
    with registry_process("--store", str(tmp_path / "s"), "-v") as (proc, addr):
        with RegistryClient(addr) as c:
            nid = c.register(ident(1), "127.0.0.1:9", hostname="alpha")
            with pytest.raises(RegistryError):
                c.call({"type": "lookup", "node_id": 999}, "lookup_ok")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert re.search(r"registry stopped after [\d.]+ s: 2 requests, 1 refused, 1 live nodes", out), out
    assert f"registered node {nid} at 127.0.0.1:9" in err and "refused from 127.0.0.1:" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "127.0.0.1:99999"], "port must be a number from 0 to 65535"),
        (["--listen", "127.0.0.1:-5"], "port must be a number from 0 to 65535"),
        (["--listen", "garbage"], "expected HOST:PORT"),
        (["--profile", "banana"], "banana"),
        (["--store", "/proc/registry.store"], "cannot write store"),
        (["--store", "/"], "is a directory"),
        (["--rate", "fast"], "--rate: expected a number"),
        (["--max-connections", "0"], "--max-connections: must be more than zero"),
        (["--max-connections", "2.5"], "whole number"),
        (["--listen", BUSY_TCP], f"cannot listen on {BUSY_TCP}"),
        (["--standby", "nowhere"], "--standby: expected HOST:PORT"),
        (["--standby", "127.0.0.1:9000"], "--standby needs --replication-token"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["registry", *args]) == 2  # in-process: the same code path as the command, without start-up cost
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith("pilot-proto registry: error: ")


def test_a_bad_argument_in_a_real_process_is_one_line_without_traceback() -> None:
    out = subprocess.run(_cli("--listen", "127.0.0.1:99999"), capture_output=True, text=True, timeout=30, env=_env())
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_corrupt_store_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "s"
    bad.write_bytes(b"garbage\nmore\n")
    assert cli_main(["registry", "--store", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "corrupt at line 1" in err and len(err.splitlines()) == 1
    # intact lines (good CRC) that are not registry records: one line, no traceback
    other = tmp_path / "t"
    st = Store(other)
    st.load()
    st.append([{"op": "trust", "a": 4, "b": 5, "on": True}, {"op": "node", "node": {"id": "x"}}])
    st.close()
    assert cli_main(["registry", "--store", str(other)]) == 2
    err = capsys.readouterr().err
    assert "store record 2 ('node') is malformed" in err and len(err.splitlines()) == 1, err


def test_blocking_client_go_interop_profile(tmp_path: Path) -> None:
    with registry_process("--profile", "go-interop") as (_, addr), RegistryClient(addr, Profile.GO_INTEROP) as c:
        nid = c.register(ident(3), "127.0.0.1:5", hostname="gamma")
        assert "signature" not in c.codec.sign({"type": "register", "listen_addr": "x"}, 0.0)
        c.set_visibility(True)
        assert c.resolve_hostname("gamma") == nid
        assert c.heartbeat() > 0


# -- TLS with certificate pinning (draft 19.4) ---------------------------------------------------------


def make_cert(directory: Path, name: str = "reg") -> tuple[Path, Path, str]:
    """A self-signed certificate (PEM files) and its DER SHA-256 fingerprint."""
    cert_pem, key_pem = self_signed()
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key, fingerprint(cert_pem)


@pytest.mark.req("CONS-007", "CONS-008")
def test_tls_with_a_pinned_certificate(tmp_path: Path) -> None:
    cert, key, fp = make_cert(tmp_path)
    _, _, other_fp = make_cert(tmp_path, "other")
    with registry_process("--tls-cert", str(cert), "--tls-key", str(key)) as (proc, addr):
        with RegistryClient(addr, tls_fingerprint=fp) as c:
            nid = c.register(ident(5), "127.0.0.1:5")
            assert c.lookup(nid)["node_id"] == nid
        with pytest.raises(RegistryError, match="fingerprint mismatch"):
            RegistryClient(addr, tls_fingerprint=other_fp)
        with RegistryClient(addr, timeout=3, reconnect=False) as plain, pytest.raises(RegistryError):
            plain.call({"type": "list_networks"})  # plain TCP to a TLS registry gets nowhere

        async def pinned() -> int:
            ac = await AsyncRegistryClient.connect(addr, tls_fingerprint=fp)
            try:
                return int((await ac.lookup(nid))["node_id"])
            finally:
                await ac.close()

        assert asyncio.run(asyncio.wait_for(pinned(), 10)) == nid
        with pytest.raises(RegistryError, match="fingerprint mismatch"):
            asyncio.run(asyncio.wait_for(AsyncRegistryClient.connect(addr, tls_fingerprint=other_fp), 10))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "registry stopped" in out
    assert "Traceback" not in err, err


def test_tls_startup_line_names_the_fingerprint_and_bad_tls_args(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key, fp = make_cert(tmp_path)
    proc = subprocess.Popen(_cli("--listen", f"{LOOPBACK}:0", "--tls-cert", str(cert), "--tls-key", str(key)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        assert f"tls sha256 {fp}" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    proc = subprocess.Popen(_cli("--listen", f"{LOOPBACK}:0", "--tls"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+) .*tls sha256 ([0-9a-f]{64})", line)
        assert m, line
        with RegistryClient((LOOPBACK, int(m.group(1))), tls_fingerprint=m.group(2)) as c:
            assert c.call({"type": "list_networks"}, "list_networks_ok")["networks"][0]["name"] == "backbone"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    for args, message in (
        (["--tls-cert", str(cert)], "go together"),
        (["--tls-cert", str(tmp_path / "none.crt"), "--tls-key", str(key)], "cannot load"),
        (["--tls-cert", str(key), "--tls-key", str(cert)], "cannot load"),
    ):
        assert cli_main(["registry", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err


def test_clients_reconnect_after_a_registry_restart(tmp_path: Path) -> None:
    """SIGKILL the registry, restart it on the same port and store: the next call reconnects, re-signed, once."""
    store = str(tmp_path / "s")
    with registry_process("--store", store) as (proc, addr):
        port = str(addr[1])
        sync = RegistryClient(addr)
        nid = sync.register(ident(8), "127.0.0.1:8")

        async def start_async() -> AsyncRegistryClient:
            ac = await AsyncRegistryClient.connect(addr)
            await ac.register(ident(9), "127.0.0.1:9")
            return ac

        loop = asyncio.new_event_loop()
        ac = loop.run_until_complete(start_async())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    restarted = subprocess.Popen(_cli("--listen", f"{LOOPBACK}:{port}", "--store", store), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    try:
        assert restarted.stdout is not None and "listening on" in restarted.stdout.readline()
        assert sync.heartbeat() > 0 and sync.reconnects == 1
        assert sync.lookup(nid)["node_id"] == nid
        assert loop.run_until_complete(ac.heartbeat()) > 0 and ac.reconnects == 1
        loop.run_until_complete(ac.close())
        sync.close()
        with RegistryClient(addr, reconnect=False) as plain:
            plain.codec.node_id = nid
            restarted.send_signal(signal.SIGKILL)
            restarted.wait(timeout=10)
            with pytest.raises(ConnectionLost):
                plain.call({"type": "lookup", "node_id": nid})
    finally:
        loop.close()
        if restarted.poll() is None:
            restarted.kill()
        restarted.wait(timeout=10)


async def _group_commit(tmp_path: Path) -> tuple[int, int]:
    reg = Registry(RegistryConfig(rate=0), now=time.time())
    store = Store(tmp_path / "g.store")
    store.load()
    server = RegistryServer(reg, store)
    addr = await server.start(LOOPBACK, 0)
    try:
        clients = [await AsyncRegistryClient.connect(addr) for _ in range(8)]

        async def burst(i: int, c: AsyncRegistryClient) -> None:
            for k in range(10):
                await c.register(ident(1000 + 10 * i + k), "127.0.0.1:1")

        await asyncio.gather(*(burst(i, c) for i, c in enumerate(clients)))
        for c in clients:
            await c.close()
        return server.commits, store.appends
    finally:
        await server.close()


def test_group_commit_batches_fsyncs_across_connections(tmp_path: Path) -> None:
    commits, appends = asyncio.run(asyncio.wait_for(_group_commit(tmp_path), 30))
    again = Registry(RegistryConfig(), now=time.time())
    again.restore(Store(tmp_path / "g.store").load(), time.time())
    assert len(again.nodes()) == 80  # all 80 acknowledged registrations are on disk
    assert appends <= commits < 80, (commits, appends)  # 8 clients: requests share commits (fsyncs)


async def _disk_failure(tmp_path: Path) -> None:
    reg = Registry(RegistryConfig(), now=time.time())
    store = Store(tmp_path / "f.store")
    store.load()
    server = RegistryServer(reg, store)
    addr = await server.start(LOOPBACK, 0)
    try:
        c = await AsyncRegistryClient.connect(addr, reconnect=False)
        await c.register(ident(1), "127.0.0.1:1")

        def full(records: object) -> int:
            raise OSError(28, "No space left on device")

        store.append = full  # type: ignore[method-assign]
        with pytest.raises(RegistryError):
            await c.register(ident(2), "127.0.0.1:2")  # never acknowledged
        await asyncio.wait_for(server.failed.wait(), 5)
        assert "No space left" in str(server.failure)
        with pytest.raises(RegistryError):
            await AsyncRegistryClient.connect(addr, timeout=1, reconnect=False)  # it stopped listening
    finally:
        await server.close()


def test_a_failed_fsync_is_never_acknowledged_and_stops_the_server(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_disk_failure(tmp_path), 20))
    again = Registry(RegistryConfig(), now=time.time())
    again.restore(Store(tmp_path / "f.store").load(), time.time())
    assert [n.node_id for n in again.nodes()] == [4]  # only the acknowledged registration
