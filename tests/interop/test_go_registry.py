"""Interop: our registry with the Go reference (jerryfane/pilotprotocol 64c2780) on 127.0.0.1, both ways.

Runs only when ``PILOT_GO_BIN`` names a directory with locally built ``registry``, ``beacon``, ``daemon``
and ``pilotctl`` binaries; nothing of Go's is part of this repository.  Every process binds 127.0.0.1
and runs under ``timeout``.

1. A Go daemon registers in **our** registry (``pilot-proto registry --profile go-interop`` as a
   subprocess): it is found by node ID (our client and Go's ``pilotctl lookup``) and by hostname (ours
   and ``pilotctl find`` through the daemon), every signed request it makes (set_visibility,
   set_hostname, heartbeat, poll_handshakes) verifies, and after we SIGKILL and restart our registry on
   the same store the daemon's heartbeats keep being accepted under the same node ID.
2. Two Go daemons registered in **our** registry find each other by hostname and echo / ping (drop-in).
3. **Our** client registers in the Go registry: the Go side finds it (``pilotctl lookup`` and ``pilotctl
   find`` through the Go daemon), Go verifies our signed writes, and the two unsafe Go behaviours of
   errata E-REG-1 and E-REG-2 are shown on the wire.
4. A Go daemon pins our TLS registry's certificate (``-registry-tls -registry-fingerprint``); a wrong
   pin never registers.
5. A ``draft`` registry refuses a Go daemon's unsigned registration (E-REG-3), with a reason that says so.
6. A Go daemon and our ``pilot-proto node`` (``go-interop``), both registered in our registry, echo each other
   on port 7 by hostname: Go's ``pilotctl connect`` to ours and our ``pilot-proto connect`` to Go's.
7. Go's ``pilotctl network create/join/members`` and ``pilotctl audit`` against our registry.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _go import (  # tests/interop is on sys.path (no __init__.py)
    LOOPBACK,
    connectable,
    free_port,
    go_network,
    stop_processes,
    wait_for,
)

from pilot_proto.profile import Profile
from pilot_proto.registry import RegistryClient, RegistryError
from pilot_proto.registry.tls import fingerprint, self_signed
from pilot_proto.tunnel import Identity

pytestmark = pytest.mark.interop
GO_BIN = os.environ.get("PILOT_GO_BIN")
GO = Profile.GO_INTEROP
ROOT = Path(__file__).resolve().parents[2]
LIFETIME = "120"
_RECONNECTED = b'msg="registry reconnected"'  # both Go builds log it when a registry connection is back


def _bin(name: str) -> Path:
    if not GO_BIN:
        pytest.skip("set PILOT_GO_BIN to a directory with locally built Go reference binaries")
    path = Path(GO_BIN) / name
    if not path.is_file():
        pytest.skip(f"PILOT_GO_BIN={GO_BIN} lacks {name}")
    return path


def _timeout() -> list[str]:
    return [shutil.which("timeout") or "timeout", "-s", "TERM", "-k", "5", LIFETIME]


def _pilotctl(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([*_timeout()[:-1], "20", str(_bin("pilotctl")), "--json", *args], env={**os.environ, **env},
                         capture_output=True, timeout=30)  # fmt: skip
    doc = json.loads(out.stdout or b"{}")
    assert isinstance(doc, dict), out
    return doc


@contextmanager
def our_registry(
    tmp: Path, port: int, profile: str = "go-interop", admin_token: str = ""
) -> Iterator[subprocess.Popen[str]]:
    """``pilot-proto registry --profile PROFILE`` on 127.0.0.1:``port`` with a store in ``tmp``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PILOT_ADMIN_TOKEN": admin_token}  # fmt: skip
    cmd = [*_timeout(), sys.executable, "-m", "pilot_proto.cli", "registry", "--listen", f"{LOOPBACK}:{port}",
           "--profile", profile, "--store", str(tmp / "reg.store"), "-v"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=(tmp / "ours.log").open("a"), text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # `timeout` and our registry under it (its own session)
        proc.wait(timeout=10)


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to our registry itself (the `timeout` wrapper would not pass SIGKILL on)."""
    os.killpg(proc.pid, sig)


def test_go_daemon_registers_in_our_registry(tmp_path: Path) -> None:
    daemon_bin, beacon_bin = _bin("daemon"), _bin("beacon")
    _bin("pilotctl")
    reg_port, beacon_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    udp = free_port(socket.SOCK_DGRAM)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PILOT_SOCKET": str(tmp_path / "d.sock"), "PILOT_REGISTRY": f"{LOOPBACK}:{reg_port}"}
    procs: list[subprocess.Popen[bytes]] = []
    with our_registry(tmp_path, reg_port) as ours:
        try:
            procs.append(subprocess.Popen([*_timeout(), str(beacon_bin), "-addr", f"{LOOPBACK}:{beacon_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            log = tmp_path / "daemon.log"
            procs.append(subprocess.Popen(
                [*_timeout(), str(daemon_bin), "-registry", f"{LOOPBACK}:{reg_port}",
                 "-beacon", f"{LOOPBACK}:{beacon_port}", "-listen", f"{LOOPBACK}:{udp}",
                 "-endpoint", f"{LOOPBACK}:{udp}", "-socket", env["PILOT_SOCKET"], "-hostname", "go-agent",
                 "-public", "-email", "interop@example.com", "-identity", str(tmp_path / "id.json"),
                 "-keepalive", "1s", "-webhook", "", "-no-dataexchange", "-no-eventstream", "-no-tasksubmit",
                 "-log-level", "debug"],
                stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **env}))  # fmt: skip
            m = wait_for(lambda: re.search(rb'msg="daemon registered" node_id=(\d+)', log.read_bytes()), "registration")
            node_id = int(m.group(1))
            key = Identity.from_json((tmp_path / "id.json").read_bytes()).public_bytes

            with RegistryClient((LOOPBACK, reg_port), GO) as me:
                wait_for(lambda: me.lookup(node_id).get("hostname") == "go-agent", "the daemon's set_hostname")
                look = me.lookup(node_id)
                assert base64.b64decode(look["public_key"]) == key
                assert look["public"] is True and look["real_addr"] == f"{LOOPBACK}:{udp}"
                assert me.resolve_hostname("go-agent") == node_id
                me.register(Identity.from_seed(b"\x42" * 32), f"{LOOPBACK}:9")
                assert me.resolve(node_id) == f"{LOOPBACK}:{udp}"

            # Go's own tools find it: pilotctl lookup (straight to our registry) and find (through the daemon)
            got = _pilotctl(env, "lookup", str(node_id))
            assert got.get("status") == "ok" and got["data"]["node_id"] == node_id, got
            found = _pilotctl(env, "find", "go-agent")
            assert found.get("status") == "ok" and found["data"]["node_id"] == node_id, found

            # crash and restart our registry on the same store and port: the daemon carries on as the same node
            time.sleep(2.5)  # a few 1 s heartbeats (each also polls the handshake inbox)
            reconnects = log.read_bytes().count(_RECONNECTED)
            _signal(ours, signal.SIGKILL)
            ours.wait(timeout=10)
        except BaseException:
            stop_processes(procs)
            raise
    try:
        with our_registry(tmp_path, reg_port) as again:
            with RegistryClient((LOOPBACK, reg_port), GO) as me:
                look = me.lookup(node_id)
                assert look["hostname"] == "go-agent" and base64.b64decode(look["public_key"]) == key
            # Go redials with backoff (GoC: 0.5 s doubling), so count the heartbeats from its reconnect on
            wait_for(lambda: log.read_bytes().count(_RECONNECTED) > reconnects, "the daemon's reconnect", timeout=20)
            time.sleep(3.0)
            _signal(again, signal.SIGINT)
            out, _ = again.communicate(timeout=10)
        print(out)
        summary = re.search(r"(\d+) requests, (\d+) refused", out)
        assert summary and summary.group(2) == "0", out
        # after the restart the daemon's signed heartbeats and handshake polls were accepted, as the same node
        by_type = dict(re.findall(r"(\w+) (\d+)", out.split("requests by type:")[1]))
        assert int(by_type["heartbeat"]) >= 2 and int(by_type["poll_handshakes"]) >= 2, out
        text = (tmp_path / "ours.log").read_text()
        assert "refused from" not in text and "Traceback" not in text, text[-2000:]
        assert b"re-registered with new node ID" not in log.read_bytes()
    finally:
        stop_processes(procs)


def test_our_client_in_the_go_registry(tmp_path: Path) -> None:
    _bin("pilotctl")
    with go_network(tmp_path) as go:
        env = {"HOME": str(tmp_path / "home"), "PILOT_SOCKET": str(tmp_path / "d.sock"),
               "PILOT_REGISTRY": f"{go.registry[0]}:{go.registry[1]}"}  # fmt: skip
        me = Identity.from_seed(b"\x07" * 32)
        with RegistryClient(go.registry, GO) as c:
            nid = c.register(me, f"{LOOPBACK}:4100", hostname="py-agent")
            assert c.last_register["hostname"] == "py-agent"
            c.set_visibility(True)  # Go verifies our signature over "set_visibility:<n>"
            assert c.heartbeat() > 0
            assert c.resolve(go.node_id) == f"{go.daemon[0]}:{go.daemon[1]}"

            got = _pilotctl(env, "lookup", str(nid))
            assert got.get("status") == "ok", got
            assert got["data"]["hostname"] == "py-agent" and got["data"]["public"] is True
            assert base64.b64decode(got["data"]["public_key"]) == me.public_bytes
            found = _pilotctl(env, "find", "py-agent")
            assert found.get("status") == "ok" and found["data"]["node_id"] == nid, found

            # E-REG-2 on the wire: one signed report makes Go call the pair trusted (ours needs both sides)
            assert c.check_trust(go.node_id) is False
            c.report_trust(go.node_id)
            assert c.check_trust(go.node_id) is True

            c.deregister()
            gone = _pilotctl(env, "lookup", str(nid))
            assert gone.get("status") != "ok", gone

        # E-REG-1 on the wire: a new key naming the daemon's e-mail is handed the daemon's node ID
        thief = Identity.from_seed(b"\x66" * 32)
        with RegistryClient(go.registry, GO) as t:
            assert t.register(thief, f"{LOOPBACK}:4200", owner="interop@example.com") == go.node_id
            assert base64.b64decode(t.lookup(go.node_id)["public_key"]) == thief.public_bytes
        with pytest.raises(RegistryError):
            RegistryClient((LOOPBACK, free_port(socket.SOCK_STREAM)), GO, timeout=1)
        assert connectable(go.registry[1])


def test_go_daemon_pins_our_tls_registry(tmp_path: Path) -> None:
    """``-registry-tls -registry-fingerprint``: the Go daemon registers over TLS only with the right pin."""
    daemon_bin = _bin("daemon")
    cert_pem, key_pem = self_signed()
    cert, key, fp = tmp_path / "reg.crt", tmp_path / "reg.key", fingerprint(cert_pem)
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    port = free_port(socket.SOCK_STREAM)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HOME": str(tmp_path)}  # fmt: skip
    ours = subprocess.Popen([*_timeout(), sys.executable, "-m", "pilot_proto.cli", "registry", "--listen",
                             f"{LOOPBACK}:{port}", "--profile", "go-interop", "--tls-cert", str(cert), "--tls-key",
                             str(key), "-v"], stdout=subprocess.PIPE, stderr=(tmp_path / "ours.log").open("wb"),
                            text=True, env=env, start_new_session=True)  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        assert ours.stdout is not None and f"tls sha256 {fp}" in ours.stdout.readline()
        for pin, name in ((fp, "good"), ("00" * 32, "bad")):
            udp = free_port(socket.SOCK_DGRAM)
            log = tmp_path / f"daemon-{name}.log"
            procs.append(subprocess.Popen(
                [*_timeout(), str(daemon_bin), "-registry", f"{LOOPBACK}:{port}", "-registry-tls",
                 "-registry-fingerprint", pin, "-beacon", f"{LOOPBACK}:1", "-listen", f"{LOOPBACK}:{udp}",
                 "-endpoint", f"{LOOPBACK}:{udp}", "-socket", str(tmp_path / f"{name}.sock"),
                 "-hostname", f"tls-{name}", "-email", f"{name}@example.com", "-webhook", "",
                 "-no-dataexchange", "-no-eventstream", "-no-tasksubmit", "-log-level", "debug"],
                stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env))  # fmt: skip
        good = wait_for(lambda: re.search(rb'msg="daemon registered" node_id=(\d+)', (tmp_path / "daemon-good.log")
                                          .read_bytes()), "the pinned daemon's registration")  # fmt: skip
        wait_for(lambda: b"fingerprint mismatch" in (tmp_path / "daemon-bad.log").read_bytes(), "the wrong pin failing")
        with RegistryClient((LOOPBACK, port), GO, tls_fingerprint=fp) as me:
            wait_for(lambda: me.lookup(int(good.group(1))).get("hostname") == "tls-good", "set_hostname over TLS")
            with pytest.raises(RegistryError, match="not found"):
                me.resolve_hostname("tls-bad")
    finally:
        stop_processes(procs)
        if ours.poll() is None:
            os.killpg(ours.pid, signal.SIGKILL)
        ours.wait(timeout=10)


def _go_daemon(tmp: Path, name: str, registry: int, beacon: int, procs: list[subprocess.Popen[bytes]],
               wait: bool = True) -> int:  # fmt: skip
    """Start a ``-public`` Go daemon called ``name`` against the registry on port ``registry``; its node ID."""
    udp = free_port(socket.SOCK_DGRAM)
    log = tmp / f"{name}.log"
    procs.append(subprocess.Popen(
        [*_timeout(), str(_bin("daemon")), "-registry", f"{LOOPBACK}:{registry}", "-beacon", f"{LOOPBACK}:{beacon}",
         "-listen", f"{LOOPBACK}:{udp}", "-endpoint", f"{LOOPBACK}:{udp}", "-socket", str(tmp / f"{name}.sock"),
         "-hostname", name, "-public", "-email", f"{name}@example.com", "-identity", str(tmp / f"{name}.id"),
         "-webhook", "", "-no-dataexchange", "-no-eventstream", "-no-tasksubmit", "-log-level", "debug"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(tmp)}))  # fmt: skip
    if not wait:
        return 0
    m = wait_for(lambda: re.search(rb'msg="daemon registered" node_id=(\d+)', log.read_bytes()), f"{name} registering")
    return int(m.group(1))


def test_two_go_daemons_meet_through_our_registry(tmp_path: Path) -> None:
    """Our registry as a drop-in: Go daemon A finds B by hostname, keys a PILA tunnel with the key we hold, echoes."""
    reg_port, beacon_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    procs: list[subprocess.Popen[bytes]] = []
    with our_registry(tmp_path, reg_port) as ours:
        try:
            procs.append(subprocess.Popen([*_timeout(), str(_bin("beacon")), "-addr", f"{LOOPBACK}:{beacon_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            a = _go_daemon(tmp_path, "go-a", reg_port, beacon_port, procs)
            b = _go_daemon(tmp_path, "go-b", reg_port, beacon_port, procs)
            with RegistryClient((LOOPBACK, reg_port), GO) as me:
                wait_for(lambda: me.lookup(b).get("hostname") == "go-b", "go-b's hostname")
            env = {"HOME": str(tmp_path), "PILOT_SOCKET": str(tmp_path / "go-a.sock")}
            found = _pilotctl(env, "find", "go-b")
            assert found.get("status") == "ok" and found["data"]["node_id"] == b, found
            echo = _pilotctl(env, "connect", "go-b", "7", "--message", "through-our-registry", "--timeout", "10s")
            assert echo.get("status") == "ok" and echo["data"]["response"] == "through-our-registry", echo
            ping = _pilotctl(env, "ping", str(b), "--count", "2", "--timeout", "10s")
            assert ping.get("status") == "ok", ping
            assert a != b
        finally:
            stop_processes(procs)
            _signal(ours, signal.SIGINT)
            out, _ = ours.communicate(timeout=10)
    print(out)
    counts = dict(re.findall(r"(\w+) (\d+)", out.split("requests by type:")[1]))
    assert re.search(r", 0 refused", out), out
    assert int(counts["resolve"]) >= 1 and int(counts["lookup"]) >= 1, counts


def test_a_draft_registry_refuses_a_go_daemons_unsigned_registration(tmp_path: Path) -> None:
    """E-REG-3: under ``draft`` registration proves possession of the key; a Go daemon sends no signature."""
    reg_port = free_port(socket.SOCK_STREAM)
    procs: list[subprocess.Popen[bytes]] = []
    with our_registry(tmp_path, reg_port, "draft"):
        try:
            _go_daemon(tmp_path, "go-draft", reg_port, 1, procs, wait=False)
            log = tmp_path / "go-draft.log"
            wait_for(
                lambda: b"registration must be signed by the key it registers" in log.read_bytes(),
                "the daemon to report the refusal",
            )
            assert b"daemon registered" not in log.read_bytes()
        finally:
            stop_processes(procs)
    assert "refused from" in (tmp_path / "ours.log").read_text()


def test_go_daemon_and_our_node_meet_in_our_registry(tmp_path: Path) -> None:
    """A Go daemon and our ``pilot-proto node`` both registered in our registry echo each other by hostname."""
    reg_port, beacon_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HOME": str(tmp_path)}  # fmt: skip
    ours_sock = tmp_path / "py-node.sock"
    with our_registry(tmp_path, reg_port) as ours:
        try:
            procs.append(subprocess.Popen([*_timeout(), str(_bin("beacon")), "-addr", f"{LOOPBACK}:{beacon_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            go_id = _go_daemon(tmp_path, "go-a", reg_port, beacon_port, procs)
            procs.append(subprocess.Popen(
                [*_timeout(), sys.executable, "-m", "pilot_proto.cli", "node", "--registry", f"{LOOPBACK}:{reg_port}",
                 "--hostname", "py-node", "--public", "--profile", "go-interop", "--socket", str(ours_sock), "--echo",
                 "--duration", "60", "-v"],
                stdout=(tmp_path / "py-node.log").open("wb"), stderr=subprocess.STDOUT, env=env))  # fmt: skip
            wait_for(ours_sock.exists, "our node's IPC socket", timeout=20)
            with RegistryClient((LOOPBACK, reg_port), GO) as me:
                py_id = wait_for(lambda: _resolved(me, "py-node"), "our node's hostname")
            go_env = {"HOME": str(tmp_path), "PILOT_SOCKET": str(tmp_path / "go-a.sock")}
            echo = _pilotctl(go_env, "connect", "py-node", "7", "--message", "go-to-python", "--timeout", "10s")
            assert echo.get("status") == "ok" and echo["data"]["response"] == "go-to-python", echo
            back = subprocess.run([sys.executable, "-m", "pilot_proto.cli", "connect", "go-a", "7", "--message",
                                   "python-to-go", "--socket", str(ours_sock), "--timeout", "10"],
                                  capture_output=True, text=True, timeout=30, env=env)  # fmt: skip
            assert back.returncode == 0 and back.stdout.strip() == "python-to-go", back
            assert py_id != go_id
        finally:
            stop_processes(procs)
            _signal(ours, signal.SIGINT)
            out, _ = ours.communicate(timeout=10)
    print(out)
    assert re.search(r", 0 refused", out), (out, (tmp_path / "ours.log").read_text()[-3000:])


def _resolved(client: RegistryClient, name: str) -> int | None:
    try:
        return client.resolve_hostname(name)
    except RegistryError:
        return None


def test_pilotctl_network_commands_against_our_registry(tmp_path: Path) -> None:
    """Go's ``pilotctl network create/join/members`` and ``pilotctl audit`` drive our registry (admin token)."""
    reg_port, beacon_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    procs: list[subprocess.Popen[bytes]] = []
    with our_registry(tmp_path, reg_port, admin_token="interop-admin") as ours:
        try:
            procs.append(subprocess.Popen([*_timeout(), str(_bin("beacon")), "-addr", f"{LOOPBACK}:{beacon_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            a = _go_daemon(tmp_path, "go-a", reg_port, beacon_port, procs)
            b = _go_daemon(tmp_path, "go-b", reg_port, beacon_port, procs)
            env = {"HOME": str(tmp_path), "PILOT_REGISTRY": f"{LOOPBACK}:{reg_port}",
                   "PILOT_ADMIN_TOKEN": "interop-admin"}  # fmt: skip
            made = _pilotctl(env, "network", "create", "--name", "lab", "--node-id", str(a))
            assert made.get("status") == "ok", made
            net = int(made["data"]["network_id"])
            joined = _pilotctl({**env, "PILOT_SOCKET": str(tmp_path / "go-b.sock")}, "network", "join", str(net))
            assert joined.get("status") == "ok", joined  # signed by go-b's daemon: join_network:<b>:<net>
            members = _pilotctl({**env, "PILOT_SOCKET": str(tmp_path / "go-a.sock")}, "network", "members", str(net))
            assert members.get("status") == "ok", members
            with RegistryClient((LOOPBACK, reg_port), GO) as me:
                listing = me.call({"type": "list_nodes", "network_id": net}, "list_nodes_ok")["nodes"]
                assert {(n["node_id"], n.get("role")) for n in listing} == {(a, "owner"), (b, "member")}
            audit = _pilotctl(env, "audit")
            assert audit.get("status") == "ok", audit
            actions = [e["action"] for e in audit["data"]["entries"]]
            assert "network.created" in actions and "network.joined" in actions, actions
            wrong = _pilotctl({**env, "PILOT_ADMIN_TOKEN": "nope"}, "audit")
            assert wrong.get("status") != "ok", wrong
        finally:
            stop_processes(procs)
            _signal(ours, signal.SIGINT)
            ours.communicate(timeout=10)
