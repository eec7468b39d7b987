"""Shared helpers for interop tests against the Go reference (jerryfane/pilotprotocol) on 127.0.0.1.

:func:`go_network` starts the locally built Go ``registry``, ``beacon`` and one ``daemon`` from the
directory named by ``PILOT_GO_BIN`` (skipping the test when it is unset or incomplete), each on a free
127.0.0.1 port under ``timeout``, and stops them when the context ends.  :func:`register` enrols an
Ed25519 key with the Go registry (its JSON protocol: u32 BE length || JSON).  Nothing of Go's is part
of this repository.

Two builds are supported: the draft-era commit 64c2780 ("GoB") and the fork's head 6f863a1 ("GoC").
:func:`go_head` tells them apart from the daemon binary itself (only GoC's daemon has ``-version``), so the
same tests assert what each build does where they differ (errata E-TNL-3, E-NAT-5).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from pilot_proto.tunnel import Identity

GO_BIN = os.environ.get("PILOT_GO_BIN")
LOOPBACK = "127.0.0.1"
STEP_TIMEOUT = 10.0
T = TypeVar("T")


@dataclass
class GoNet:
    registry: tuple[str, int]
    daemon: tuple[str, int]
    node_id: int
    ed25519: bytes
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logdir: Path | None = None

    def daemon_log(self) -> bytes:
        return (self.logdir / "daemon.log").read_bytes() if self.logdir is not None else b""

    def connections(self) -> list[dict[str, object]] | None:
        """The daemon's connection table via ``pilotctl --json connections`` (None without pilotctl)."""
        doc = pilotctl(self, "connections")
        if doc is None:
            return None
        data = doc.get("data")
        assert isinstance(data, dict), doc
        conns = data.get("connections") or []
        assert isinstance(conns, list)
        return conns


@functools.cache
def go_head() -> bool:
    """True when ``PILOT_GO_BIN`` holds a build of the fork's head (GoC): its daemon's usage lists ``-version``."""
    daemon = Path(GO_BIN or "") / "daemon"
    if not GO_BIN or not daemon.is_file():
        return False
    usage = subprocess.run([str(daemon), "-h"], capture_output=True, timeout=10)
    return re.search(rb"^\s+-version\b", usage.stdout + usage.stderr, re.MULTILINE) is not None


def go_pila_length_ok(size: int) -> bool:
    """GoB's PILA is the draft's 136 bytes; GoC appends ``uvarint(caps) [uvarint(flags)]`` (E-TNL-3)."""
    return size == 136 or (go_head() and 136 < size <= 138)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def registry_call(addr: tuple[str, int], msg: dict[str, object]) -> dict[str, object]:
    """One request/response with the Go registry."""
    with socket.create_connection(addr, timeout=5) as s:
        body = json.dumps(msg).encode()
        s.sendall(struct.pack(">I", len(body)) + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("registry closed the connection")
            buf += chunk
        reply = json.loads(buf[4 : 4 + struct.unpack(">I", buf[:4])[0]])
        assert isinstance(reply, dict)
        return reply


def wait_for(pred: Callable[[], T], what: str, timeout: float = STEP_TIMEOUT) -> T:
    """Poll ``pred`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate (newest first), then kill whatever has not exited within 5 s."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def connectable(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def register(go: GoNet, ident: Identity, udp_port: int = 1) -> int:
    """Register ``ident`` (reachable at 127.0.0.1:``udp_port``) with the Go registry; returns its node ID."""
    reply = registry_call(
        go.registry,
        {"type": "register", "listen_addr": f"{LOOPBACK}:{udp_port}",
         "public_key": base64.b64encode(ident.public_bytes).decode()},
    )  # fmt: skip
    assert reply.get("type") == "register_ok", reply
    return int(str(reply["node_id"]))


def set_public(go: GoNet, ident: Identity, node_id: int) -> None:
    """Make ``node_id`` public, so a Go daemon may resolve its endpoint and dial it (signature 'set_visibility:N')."""
    sig = base64.b64encode(ident.sign(f"set_visibility:{node_id}".encode())).decode()
    reply = registry_call(go.registry, {"type": "set_visibility", "node_id": node_id, "public": True, "signature": sig})
    assert reply.get("type") == "set_visibility_ok", reply


def pilotctl(go: GoNet, *args: str, timeout: float = 20.0) -> dict[str, object] | None:
    """Run ``pilotctl --json ARGS`` against the daemon (None when PILOT_GO_BIN has no pilotctl)."""
    tool = Path(GO_BIN or "") / "pilotctl"
    if not GO_BIN or not tool.is_file() or go.logdir is None:
        return None
    env = {**os.environ, "HOME": str(go.logdir / "home"), "PILOT_SOCKET": str(go.logdir / "d.sock"),
           "PILOT_REGISTRY": f"{go.registry[0]}:{go.registry[1]}"}  # fmt: skip
    out = subprocess.run([shutil.which("timeout") or "timeout", str(int(timeout)), str(tool), "--json", *args],
                         env=env, capture_output=True, timeout=timeout + 5)  # fmt: skip
    doc = json.loads(out.stdout or b"{}")
    assert isinstance(doc, dict)
    return doc


@contextmanager
def go_network(tmp: Path, lifetime: int = 180, *, public: bool = True, services: bool = False) -> Iterator[GoNet]:
    """Go registry + beacon + one daemon with encryption, all on 127.0.0.1 under ``timeout``.

    The daemon is ``-public`` and runs only echo unless ``public=False`` (a private node: its trust gate is on) or
    ``services=True`` (data exchange, event stream and task submission too)."""
    if not GO_BIN:
        pytest.skip(
            "set PILOT_GO_BIN to a directory with locally built Go reference binaries (registry, beacon, daemon)"
        )
    bindir = Path(GO_BIN)
    missing = [b for b in ("registry", "beacon", "daemon") if not (bindir / b).is_file()]
    if missing:
        pytest.skip(f"PILOT_GO_BIN={bindir} lacks {', '.join(missing)}")
    (tmp / "home").mkdir(exist_ok=True)
    reg_port, beacon_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    daemon_port = free_port(socket.SOCK_DGRAM)
    timeout = [shutil.which("timeout") or "timeout", "-s", "TERM", "-k", "5", str(lifetime)]
    env = {**os.environ, "HOME": str(tmp / "home")}
    reg = f"{LOOPBACK}:{reg_port}"
    beacon = f"{LOOPBACK}:{beacon_port}"
    cmds = {
        "registry": [str(bindir / "registry"), "-addr", reg, "-beacon", beacon, "-log-level", "debug"],
        "beacon": [str(bindir / "beacon"), "-addr", beacon, "-log-level", "debug"],
        "daemon": [
            str(bindir / "daemon"), "-registry", reg, "-beacon", beacon,
            "-listen", f"{LOOPBACK}:{daemon_port}", "-endpoint", f"{LOOPBACK}:{daemon_port}",
            "-socket", str(tmp / "d.sock"), "-encrypt=true", *(["-public"] if public else []),
            "-email", "interop@example.com", "-webhook", "",
            *([] if services else ["-no-dataexchange", "-no-eventstream", "-no-tasksubmit"]), "-log-level", "debug",
        ],
    }  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("registry", "beacon"):
            procs.append(subprocess.Popen([*timeout, *cmds[name]], stdout=(tmp / f"{name}.log").open("wb"),
                                          stderr=subprocess.STDOUT, env=env))  # fmt: skip
        wait_for(lambda: connectable(reg_port), "the Go registry")
        log = tmp / "daemon.log"
        procs.append(subprocess.Popen([*timeout, *cmds["daemon"]], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                      env=env))  # fmt: skip
        line = wait_for(lambda: re.search(rb'msg="daemon registered" node_id=(\d+)', log.read_bytes()), "registration")
        assert line is not None
        node_id = int(line.group(1))
        lookup = registry_call((LOOPBACK, reg_port), {"type": "lookup", "node_id": node_id})
        assert lookup.get("type") == "lookup_ok", lookup
        key = base64.b64decode(str(lookup["public_key"]))
        yield GoNet((LOOPBACK, reg_port), (LOOPBACK, daemon_port), node_id, key, procs, tmp)
    finally:
        stop_processes(procs)
