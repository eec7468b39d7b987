"""The harness's registry client: register a PILA identity (reference registry: u32 BE length || JSON over TCP).

Only what the suite needs: ``register`` returns the node ID the registry assigned to an Ed25519 key, so
a target that checks PILA against its registry (draft 7.4, TUN-019) can verify the suite's frames.
"""

from __future__ import annotations

import base64
import json
import socket
import struct

from pilot_proto.tunnel.identity import Identity

__all__ = ["call", "register", "set_public"]

_MAX_REPLY = 1 << 20


def call(addr: tuple[str, int], msg: dict[str, object], timeout: float = 5.0) -> dict[str, object]:
    """One request and its answer; ValueError for a malformed or oversized reply."""
    with socket.create_connection(addr, timeout=timeout) as s:
        body = json.dumps(msg).encode()
        s.sendall(struct.pack(">I", len(body)) + body)
        buf = b""
        need = 4
        while len(buf) < need:
            chunk = s.recv(65536)
            if not chunk:
                raise ValueError("the registry closed the connection")
            buf += chunk
            if len(buf) >= 4:
                n = struct.unpack(">I", buf[:4])[0]
                if n > _MAX_REPLY:
                    raise ValueError(f"registry reply of {n} bytes is too large")
                need = 4 + n
        reply = json.loads(buf[4:need])
    if not isinstance(reply, dict):
        raise ValueError("registry reply is not a JSON object")
    return reply


def register(addr: tuple[str, int], ident: Identity, listen_addr: str) -> int:
    reply = call(addr, {"type": "register", "listen_addr": listen_addr,
                        "public_key": base64.b64encode(ident.public_bytes).decode()})  # fmt: skip
    if reply.get("type") != "register_ok":
        raise ValueError(f"registration refused: {reply}")
    return int(str(reply["node_id"]))


def set_public(addr: tuple[str, int], ident: Identity, node_id: int) -> None:
    """Make ``node_id`` public so a daemon may resolve its endpoint and dial it (signs 'set_visibility:N')."""
    sig = base64.b64encode(ident.sign(f"set_visibility:{node_id}".encode())).decode()
    reply = call(addr, {"type": "set_visibility", "node_id": node_id, "public": True, "signature": sig})
    if reply.get("type") != "set_visibility_ok":
        raise ValueError(f"set_visibility refused: {reply}")
