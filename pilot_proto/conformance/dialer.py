"""Dialer tests: the suite listens and has the implementation dial it (``--dial-command``).

``--dial-command "CMD {host} {port} {node}"`` is split like a shell line (no shell runs it) and the three
fields are filled with the suite's UDP address and node ID; the command must make the implementation
send something to that node (a ping, a connection).  With ``--registry`` the listening socket is first
registered there (public, with its own Ed25519 identity), so a daemon that resolves node IDs through
the registry finds it, and a PILA offer is answered with PILA.  Without ``--target`` the default command runs our
own daemon as a dialer (:mod:`pilot_proto.conformance.builtin` ``--dial``): it opens a stream to port 7 of the
suite's node and writes a line.  The process is killed when the test ends.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import shlex
import subprocess
import sys
import time

from pilot_proto.conformance.harness import Peer, Target
from pilot_proto.conformance.wirelog import WireLog

__all__ = ["DialSession", "default_dial_command"]


def default_dial_command(profile: str) -> str:
    return (f"{shlex.quote(sys.executable)} -m pilot_proto.conformance.builtin --node-id 4242 --profile {profile} "
            "--dial {host}:{port} --dial-node {node} --duration 60")  # fmt: skip


class DialSession:
    """One dial: our listening :class:`Peer` plus the dialer process it started."""

    def __init__(
        self, command: str, target: Target, rng: random.Random, log: WireLog, *, default: bool = False
    ) -> None:
        #: True when the command is the default one (our own daemon dialling a stream to port 7).
        self.default = default
        self.peer = Peer(dataclasses.replace(target, port=1), rng, log)  # the dialer's port is learned below
        host, port = self.peer.local
        if target.registry is not None:  # the dialer will resolve us there: register this socket, publicly
            from pilot_proto.conformance.registry import register, set_public
            from pilot_proto.tunnel.identity import Identity

            ident = Identity.from_seed(rng.randbytes(32))
            self.peer.node_id = register(target.registry, ident, f"{host}:{port}")
            set_public(target.registry, ident, self.peer.node_id)
            self.peer.identity = ident
        argv = [a.format(host=host, port=port, node=self.peer.node_id) for a in shlex.split(command)]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        self.first: bytes | None = None
        self.first_at = 0.0
        self.started = time.monotonic()
        #: datagrams from senders beyond loopback, ignored (the suite only ever talks to loopback)
        self.ignored = 0

    def wait_first(self, duration: float) -> bytes | None:
        """The dialer's first datagram (its sender address becomes the peer's target)."""
        sock = self.peer.sock
        deadline = time.monotonic() + self.peer.wait(duration)
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                return None
            except OSError:
                continue
            if not ipaddress.ip_address(str(addr[0]).split("%", 1)[0]).is_loopback:
                self.ignored += 1  # never adopt (and then send to) a sender beyond loopback
                continue
            self.peer.target = dataclasses.replace(self.peer.target, host=str(addr[0]), port=int(addr[1]))
            self.peer.log.add("in", self.peer.local, self.peer.target.addr, data, "first datagram from the dialer")
            self.first, self.first_at = data, time.monotonic()
            return data
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        self.peer.close()
