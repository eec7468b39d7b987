"""The built-in target: our own node (UDP driver + echo on port 7, discard on 9) in a subprocess on 127.0.0.1.

With no ``--target`` the plugin runs ``python -m pilot_proto.conformance.builtin`` and tests it.  The
process prints one JSON line (``{"host", "port", "node_id", "ed25519"}``) once its socket is bound, and
exits after ``--duration`` seconds or when its stdin closes (so it never outlives the suite).  It has
an Ed25519 identity (so it answers with PILA, SEC-011) and trusts the suite's PILA identities, which
both sides derive from ``--trust-secret`` and the node ID (:func:`trusted_identity`).

``--variant NAME`` flips one behaviour (:mod:`pilot_proto.conformance.variants`) for the suite's own
self-tests.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass

from pilot_proto.tunnel.identity import Identity

__all__ = ["Builtin", "main", "start_builtin", "trusted_identity"]

#: A port where the built-in node reads and discards stream data (no reply), like TCP's discard service.
DISCARD_PORT = 9

#: Node IDs the suite uses for PILA peers the built-in node trusts (below them: anonymous PILK peers).
TRUSTED_BASE = 0x7D000000


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
    profile: str, node_id: int, secret: bytes, *, variant: str | None = None, duration: float = 900.0
) -> Builtin:
    cmd = [sys.executable, "-m", "pilot_proto.conformance.builtin", "--profile", profile, "--node-id", str(node_id),
           "--trust-secret", secret.hex(), "--duration", str(duration)]  # fmt: skip
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


async def _serve(args: argparse.Namespace) -> None:
    from pilot_proto.drivers.udp import NodeDriver
    from pilot_proto.node import Node

    secret = bytes.fromhex(args.trust_secret)
    ident = Identity.from_seed(hashlib.sha256(b"pilot-conformance builtin\x00" + secret).digest())

    def peer_keys(node: int) -> bytes | None:
        return trusted_identity(secret, node).public_bytes if node & 0xFF000000 == TRUSTED_BASE else None

    node = Node(args.node_id, os.urandom, profile=args.profile, identity=ident, peer_keys=peer_keys)
    drv = await NodeDriver.start(node, ("127.0.0.1", 0), echo_ports=[7])
    node.listen(DISCARD_PORT)  # accepted and read, never answered: lets the suite see pure (delayed) ACKs
    host, port = drv.address
    print(json.dumps({"host": host, "port": port, "node_id": args.node_id, "ed25519": ident.public_bytes.hex()}),
          flush=True)  # fmt: skip
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stdin_closed.set)), daemon=True
    ).start()
    try:
        await asyncio.wait_for(stdin_closed.wait(), args.duration)
    except TimeoutError:
        pass
    finally:
        drv.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pilot_proto.conformance.builtin")
    p.add_argument("--profile", default="draft")
    p.add_argument("--node-id", type=int, default=0x00C0FFEE)
    p.add_argument("--trust-secret", default="00" * 16)
    p.add_argument("--duration", type=float, default=900.0)
    p.add_argument("--variant", default=None)
    args = p.parse_args(argv)
    if args.variant:
        from pilot_proto.conformance.variants import apply

        apply(args.variant)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
