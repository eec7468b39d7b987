"""What a registry request signs (draft 10.6, 19.3; wire-notes 1.22).

Every write names its node and carries a base64 Ed25519 ``signature`` over an ASCII *challenge*.
The Go reference signs a fixed string per operation (``"heartbeat:<n>"``, ``"resolve:<r>:<n>"`` ...),
so a signature once seen can be replayed for ever (erratum E-REG-3).  Under ``draft`` every signed
request also carries ``"timestamp"`` (POSIX milliseconds) and the challenge becomes
``"<go challenge>:t<timestamp>:<sha256 of the request>"`` (:func:`digest`), so the signature covers
every field -- Go's strings leave the new hostname, visibility or policy unsigned.  The registry refuses
a timestamp that is not newer than the last one it accepted from that node or that is outside its
freshness window.  Registration itself is signed
under ``draft`` over ``"register:<public key b64>:<listen_addr>"`` (+ the timestamp).

Client and server build challenges with the same functions, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["CHALLENGES", "base_challenge", "digest", "timestamped"]


def _ids(*keys: str) -> Any:
    def build(msg: dict[str, Any]) -> str:
        return ":".join(str(msg.get(k, "")) for k in keys)

    return build


#: request type -> (the field naming the signer, how the Go challenge is built after "<prefix>:").
CHALLENGES: dict[str, tuple[str, str, Any]] = {
    "heartbeat": ("node_id", "heartbeat", _ids("node_id")),
    "deregister": ("node_id", "deregister", _ids("node_id")),
    "set_hostname": ("node_id", "set_hostname", _ids("node_id")),
    "set_visibility": ("node_id", "set_visibility", _ids("node_id")),
    "resolve": ("requester_id", "resolve", _ids("requester_id", "node_id")),
    "report_trust": ("node_id", "report_trust", _ids("node_id", "peer_id")),
    "revoke_trust": ("node_id", "revoke_trust", _ids("node_id", "peer_id")),
    "join_network": ("node_id", "join_network", _ids("node_id", "network_id")),
    "leave_network": ("node_id", "leave_network", _ids("node_id", "network_id")),
    "request_handshake": ("from_node_id", "handshake", _ids("from_node_id", "to_node_id")),
    "respond_handshake": ("node_id", "respond", _ids("node_id", "peer_id")),
    "poll_handshakes": ("node_id", "poll_handshakes", _ids("node_id")),
    "punch": ("requester_id", "punch", _ids("node_a", "node_b")),
    "resolve_hostname": ("requester_id", "resolve_hostname", _ids("requester_id", "hostname")),
    "register": ("", "register", _ids("public_key", "listen_addr")),
    "set_tags": ("node_id", "set_tags", _ids("node_id")),
    "set_task_exec": ("node_id", "set_task_exec", _ids("node_id")),
    "invite_to_network": ("inviter_id", "invite", _ids("inviter_id", "network_id", "target_node_id")),
    "poll_invites": ("node_id", "poll_invites", _ids("node_id")),
    "respond_invite": ("node_id", "respond_invite", _ids("node_id", "network_id")),
    # Role-gated network operations (draft 18.1).  Go authorises them by an unauthenticated node_id or the
    # admin token (E-REG-10); we require the acting node's signature over these strings.
    "promote_member": ("node_id", "promote_member", _ids("node_id", "network_id", "target_node_id")),
    "demote_member": ("node_id", "demote_member", _ids("node_id", "network_id", "target_node_id")),
    "kick_member": ("node_id", "kick_member", _ids("node_id", "network_id", "target_node_id")),
    "transfer_ownership": ("node_id", "transfer_ownership", _ids("node_id", "network_id", "new_owner_id")),
    "delete_network": ("node_id", "delete_network", _ids("node_id", "network_id")),
    "set_network_policy": ("node_id", "set_network_policy", _ids("node_id", "network_id")),
    # Go signs only "rotate:<n>", which does not bind the new key (E-REG-1); ours names it, in both profiles.
    "rotate_key": ("node_id", "rotate", _ids("node_id", "new_public_key")),
}


def base_challenge(msg: dict[str, Any]) -> str:
    """Go's challenge for ``msg`` (``KeyError`` for a request type that is not signed)."""
    _, prefix, build = CHALLENGES[str(msg.get("type"))]
    return f"{prefix}:{build(msg)}"


def digest(msg: dict[str, Any]) -> str:
    """SHA-256 (hex) of the request without its signature: sorted keys, ``,``/``:`` separators, ASCII escapes."""
    body = {k: v for k, v in msg.items() if k != "signature"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def timestamped(challenge: str, timestamp_ms: int, msg: dict[str, Any]) -> str:
    """The ``draft`` challenge: Go's string, the request's timestamp and the digest of every other field."""
    return f"{challenge}:t{timestamp_ms}:{digest(msg)}"
