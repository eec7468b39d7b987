"""The built-in target: our own daemon (tunnel, session layer, trust gate and the built-in services) on 127.0.0.1.

With no ``--target`` the plugin runs ``python -m pilot_proto.conformance.builtin`` and tests it.  The
process prints one JSON line (``{"host", "port", "node_id", "ed25519"}``) once its socket is bound, and
exits after ``--duration`` seconds or when its stdin closes (so it never outlives the suite).  It has
an Ed25519 identity (so it answers with PILA, SEC-011) and trusts the suite's PILA identities, which
both sides derive from ``--trust-secret`` and the node ID (:func:`trusted_identity`).

It serves echo (7), data exchange (1001), event stream (1002), task submission (1003), the secure
channel (443) and the trust handshake (444), like ``pilot-proto daemon --echo``.  ``--trust`` picks the
trust gate (draft 10.6, 10.7): ``open`` (a public node: every peer may connect, the default) or ``gated``
(a private node: new connections and datagrams from untrusted nodes are dropped, except to port 444).
The gated node's operator is this script: it approves at once a port-444 trust request from a node in the
suite's trusted range (:data:`TRUSTED_BASE`, whose keys it knows, so they key with PILA) or from a *member*
(:data:`MEMBER_BASE`: the ordinary peers of a gated run, which key anonymously with PILK) whose request
carries the identity derived for it (:func:`trusted_identity`), and leaves every other request pending (SEC-018).

``--dial HOST:PORT --dial-node N`` runs the *dialer* instead (``--dial-command`` default): a public node
that opens a stream to port :data:`DIAL_PORT` of node N at HOST:PORT, writes a line, and exits after
``--duration`` seconds.

``--variant NAME`` flips one behaviour (:mod:`pilot_proto.conformance.variants`) for the suite's own
self-tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pilot_proto.profile import Profile
from pilot_proto.sansio import Event
from pilot_proto.tunnel.identity import Identity

if TYPE_CHECKING:
    from pilot_proto.daemon.core import Daemon
    from pilot_proto.daemon.driver import DaemonDriver

__all__ = ["DIAL_PORT", "MEMBER_BASE", "TRUSTED_BASE", "TRUST_MODES", "Builtin", "main", "start_builtin",
           "trusted_identity"]  # fmt: skip

#: Node IDs the suite uses for PILA peers the built-in node trusts (below them: anonymous PILK peers).
TRUSTED_BASE = 0x7D000000
#: Node IDs of the suite's ordinary peers against a gated node: PILK to the tunnel, a derived key in trust requests.
MEMBER_BASE = 0x7E000000
#: Trust-gate settings of the built-in node.
TRUST_MODES = ("open", "gated")
#: The port the built-in dialer connects to (the suite's listener answers whatever it is).
DIAL_PORT = 7


def trusted_identity(secret: bytes, node_id: int) -> Identity:
    """The Ed25519 identity the built-in node expects from ``node_id`` (derived, test-only)."""
    return Identity.from_seed(
        hashlib.sha256(b"pilot-conformance trust\x00" + secret + node_id.to_bytes(4, "big")).digest()
    )


@dataclass
class Builtin:
    proc: subprocess.Popen[str]
    host: str
    port: int
    node_id: int
    ed25519: bytes

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_builtin(
    profile: str, node_id: int, secret: bytes, *, variant: str | None = None, duration: float = 900.0,
    trust: str = "open",
) -> Builtin:  # fmt: skip
    cmd = [sys.executable, "-m", "pilot_proto.conformance.builtin", "--profile", profile, "--node-id", str(node_id),
           "--trust-secret", secret.hex(), "--duration", str(duration), "--trust", trust]  # fmt: skip
    if variant:
        cmd += ["--variant", variant]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(20.0)
    if not line or not line[0].strip():
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the built-in node did not start: {err.strip()[-500:]}")
    info = json.loads(line[0])
    return Builtin(proc, info["host"], int(info["port"]), int(info["node_id"]), bytes.fromhex(info["ed25519"]))


def _daemon(args: argparse.Namespace, node_id: int, *, public: bool, identity: Identity | None,
            peer_keys: Callable[[int], bytes | None] | None) -> Daemon:  # fmt: skip
    from pilot_proto.daemon.core import Daemon
    from pilot_proto.services import (
        DataExchangeService,
        EchoService,
        EventStreamService,
        SecureService,
        TaskSubmitService,
    )

    services = [EchoService(), DataExchangeService(), EventStreamService(profile=args.profile), TaskSubmitService(),
                SecureService(os.urandom, profile=args.profile)]  # fmt: skip
    return Daemon(node_id, os.urandom, profile=args.profile, identity=identity, public=public, services=services,
                  peer_keys=peer_keys)  # fmt: skip


async def _until_stdin_closes(duration: float) -> None:
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stdin_closed.set)), daemon=True
    ).start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stdin_closed.wait(), duration)


async def _serve(args: argparse.Namespace) -> None:
    from pilot_proto.daemon.driver import DaemonDriver
    from pilot_proto.services import TrustRequested

    secret = bytes.fromhex(args.trust_secret)
    ident = Identity.from_seed(hashlib.sha256(b"pilot-conformance builtin\x00" + secret).digest())

    def peer_keys(node: int) -> bytes | None:
        return trusted_identity(secret, node).public_bytes if node & 0xFF000000 == TRUSTED_BASE else None

    daemon = _daemon(args, args.node_id, public=args.trust == "open", identity=ident, peer_keys=peer_keys)
    drv = await DaemonDriver.start(daemon)
    loop = asyncio.get_running_loop()

    def recognised(node: int) -> bool:
        if node & 0xFF000000 == TRUSTED_BASE:
            return True  # its request was verified against the key peer_keys gives
        pending = daemon.trust.pending.get(node) if daemon.trust is not None else None
        return (node & 0xFF000000 == MEMBER_BASE and pending is not None
                and pending.public_key == trusted_identity(secret, node).public_bytes)  # fmt: skip

    def operator(ev: Event) -> None:
        """The gated node's operator: approve the suite's identities at once, leave the rest pending."""
        if isinstance(ev, TrustRequested) and recognised(ev.node_id):
            loop.call_soon(_approve, drv, ev.node_id)

    drv.on_event = operator
    host, port = drv.address
    print(json.dumps({"host": host, "port": port, "node_id": args.node_id, "ed25519": ident.public_bytes.hex()}),
          flush=True)  # fmt: skip
    try:
        await _until_stdin_closes(args.duration)
    finally:
        await drv.shutdown()


def _approve(drv: DaemonDriver, node: int) -> None:
    from pilot_proto.errors import LocalProtocolError

    with contextlib.suppress(LocalProtocolError):  # already approved (a repeated request)
        drv.daemon.approve(node, drv.now())
    drv._after_input()


async def _dial(args: argparse.Namespace) -> None:
    """The dialer: open a stream to DIAL_PORT of ``--dial-node`` at ``--dial`` and write one line once it is open."""
    from pilot_proto.daemon.core import AppConnected
    from pilot_proto.daemon.driver import DaemonDriver
    from pilot_proto.wire.address import Addr, SocketAddr

    daemon = _daemon(args, args.node_id, public=True, identity=None, peer_keys=None)
    drv = await DaemonDriver.start(daemon)
    daemon.add_peer(args.dial_node, args.dial)

    def on_event(ev: Event) -> None:
        if isinstance(ev, AppConnected):
            daemon.send(ev.conn_id, b"pilot-conformance dialer\n", drv.now())

    drv.on_event = on_event
    daemon.dial("dialer", SocketAddr(Addr(0, args.dial_node), DIAL_PORT), drv.now())
    drv._after_input()
    try:
        await asyncio.sleep(args.duration)  # the suite kills the dialer when its test ends
    finally:
        await drv.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pilot_proto.conformance.builtin")
    p.add_argument("--profile", default="draft")
    p.add_argument("--node-id", type=int, default=0x00C0FFEE)
    p.add_argument("--trust-secret", default="00" * 16)
    p.add_argument("--duration", type=float, default=900.0)
    p.add_argument("--variant", default=None)
    p.add_argument("--trust", choices=TRUST_MODES, default="open", help="trust gate: open (public) or gated (private)")
    p.add_argument("--dial", type=_endpoint, default=None, metavar="HOST:PORT", help="run the dialer: the suite's UDP")
    p.add_argument("--dial-node", type=int, default=0, metavar="N", help="with --dial: the suite's node ID")
    args = p.parse_args(argv)
    args.profile = Profile.parse(args.profile)
    if args.variant:
        from pilot_proto.conformance.variants import apply

        apply(args.variant)
    asyncio.run(_dial(args) if args.dial is not None else _serve(args))
    return 0


def _endpoint(text: str) -> tuple[str, int]:
    from pilot_proto.conformance.harness import parse_endpoint

    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
