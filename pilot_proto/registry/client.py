"""Registry clients: a sans-IO codec, a blocking client and an asyncio client (draft 3.2, 10.6, 19.3).

The API (the same names on :class:`RegistryClient` and, as coroutines, on :class:`AsyncRegistryClient`)::

    client = RegistryClient(("127.0.0.1", 9000), profile="draft")   # or AsyncRegistryClient.connect(...)
    node_id = client.register(identity, "127.0.0.1:4000", hostname="my-agent")  # -> int; signs from now on
    client.lookup(node_id)            # -> dict: public_key, hostname, public, networks, (real_addr if public)
    client.resolve(node_id)           # -> "HOST:PORT" of a node we may see (public / trusted / shared network)
    client.resolve_hostname("name")   # -> node ID
    client.heartbeat()                # -> the registry's clock (POSIX seconds)
    client.set_visibility(True); client.set_hostname("other")
    client.report_trust(peer); client.revoke_trust(peer); client.check_trust(peer) -> bool
    client.request_handshake(peer, "why"); client.poll_handshakes() -> dict; client.respond_handshake(peer, True)
    client.join_network(net_id, token=""); client.leave_network(net_id)
    client.list_networks(); client.list_nodes(net_id)          # -> dict (the registry's reply)
    client.invite_to_network(net_id, node); client.poll_invites(); client.respond_invite(net_id, True)
    client.set_tags(["gpu", "eu"]); client.set_task_exec(True)  # what this node advertises
    client.rotate_key(new_identity)   # the old and the new key both sign; the node ID stays
    client.deregister(); client.close()

``tls_fingerprint="<hex sha256 of the registry certificate>"`` on either constructor speaks TLS and
refuses any other certificate (draft 19.4).  Every call raises :class:`RegistryError` (with the
registry's text) on an error reply.  Signed calls sign with the registered identity: under
``draft`` they carry a fresh millisecond ``timestamp`` that is part of the signed string; under
``go-interop`` they sign Go's fixed strings (:mod:`pilot_proto.registry.challenges`, erratum E-REG-3).

:class:`RegistryCodec` is the sans-IO part: ``request(msg, now)`` returns the framed bytes of a
(signed) request, ``receive_data(bytes)`` feeds reply bytes and ``next_reply()`` pulls parsed replies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import socket
import ssl
import time
from typing import Any

from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.registry.challenges import CHALLENGES, base_challenge, timestamped
from pilot_proto.tunnel.identity import Identity
from pilot_proto.wire.registry import RegistryReader, encode_registry_message

__all__ = ["AsyncRegistryClient", "ConnectionLost", "RegistryClient", "RegistryCodec", "RegistryError"]


class RegistryError(Exception):
    """The registry answered with an error (``reply`` holds the whole answer) or the connection failed."""

    def __init__(self, text: str, reply: dict[str, Any] | None = None) -> None:
        super().__init__(text)
        self.reply = reply or {}


class RegistryCodec:
    """Builds and signs requests, parses replies; opens nothing and reads no clock."""

    def __init__(self, profile: Profile | str = DEFAULT_PROFILE) -> None:
        self.profile = Profile.parse(profile)
        self.identity: Identity | None = None
        self.node_id: int | None = None
        self._reader = RegistryReader()
        self._last_ts = 0

    def sign(self, msg: dict[str, Any], now: float) -> dict[str, Any]:
        """Add ``signature`` (and under ``draft`` ``timestamp``) to a request type that is signed."""
        if self.identity is None or msg.get("type") not in CHALLENGES:
            return msg
        challenge = base_challenge(msg)
        if self.profile is Profile.DRAFT:
            ts = max(int(now * 1000), self._last_ts + 1)
            self._last_ts = ts
            msg = {**msg, "timestamp": ts}
            challenge = timestamped(challenge, ts, msg)
        elif msg["type"] == "register":
            return msg  # Go registers unsigned
        return {**msg, "signature": base64.b64encode(self.identity.sign(challenge.encode())).decode()}

    def request(self, msg: dict[str, Any], now: float) -> bytes:
        return encode_registry_message(self.sign(msg, now))

    def receive_data(self, data: bytes) -> None:
        self._reader.feed(data)

    def reset(self) -> None:
        """Forget a partly received reply (a new connection starts clean)."""
        self._reader = RegistryReader()

    def next_reply(self) -> dict[str, Any] | None:
        got = self._reader.messages()
        if not got:
            return None
        if len(got) > 1:
            raise RegistryError("registry sent more than one reply to one request")
        return got[0]

    # -- request builders (the client classes call these) -------------------------------------------

    def me(self) -> int:
        if self.node_id is None:
            raise RegistryError("register() first: this call is made as the registered node")
        return self.node_id

    def register_msg(self, identity: Identity, listen_addr: str, hostname: str = "", owner: str = "",
                     lan_addrs: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        self.identity = identity
        msg: dict[str, Any] = {"type": "register", "listen_addr": listen_addr,
                               "public_key": base64.b64encode(identity.public_bytes).decode()}  # fmt: skip
        if hostname:
            msg["hostname"] = hostname
        if owner:
            msg["owner"] = owner
        if lan_addrs:
            msg["lan_addrs"] = list(lan_addrs)
        return msg

    def rotate_msg(self, new_identity: Identity, now: float) -> dict[str, Any]:
        """A signed ``rotate_key``: the new key signs the same string the current one signs (E-REG-1)."""
        msg: dict[str, Any] = {"type": "rotate_key", "node_id": self.me(),
                               "new_public_key": base64.b64encode(new_identity.public_bytes).decode()}  # fmt: skip
        proof = new_identity.sign(base_challenge(msg).encode())
        return {**msg, "new_signature": base64.b64encode(proof).decode()}

    def registered(self, reply: dict[str, Any]) -> int:
        self.node_id = int(reply["node_id"])
        return self.node_id


def _check(reply: dict[str, Any], want: str) -> dict[str, Any]:
    if reply.get("type") == "error" or "error" in reply:
        raise RegistryError(f"registry: {reply.get('error', 'error')}", reply)
    if reply.get("type") != want:
        raise RegistryError(f"registry answered {reply.get('type')!r}, expected {want!r}", reply)
    return reply


class _Calls:
    """The request for each API call and what to return from its reply (shared by both clients)."""

    codec: RegistryCodec

    def _lookup(self, node_id: int) -> tuple[dict[str, Any], str]:
        return {"type": "lookup", "node_id": node_id}, "lookup_ok"

    def _resolve(self, node_id: int) -> tuple[dict[str, Any], str]:
        return {"type": "resolve", "node_id": node_id, "requester_id": self.codec.me()}, "resolve_ok"

    def _resolve_hostname(self, hostname: str) -> tuple[dict[str, Any], str]:
        msg: dict[str, Any] = {"type": "resolve_hostname", "hostname": hostname}
        if self.codec.node_id is not None:
            msg["requester_id"] = self.codec.node_id
        return msg, "resolve_hostname_ok"

    def _node_op(self, kind: str, **extra: Any) -> tuple[dict[str, Any], str]:
        return {"type": kind, "node_id": self.codec.me(), **extra}, f"{kind}_ok"

    def _invite(self, network_id: int, target: int) -> tuple[dict[str, Any], str]:
        return {"type": "invite_to_network", "network_id": network_id, "inviter_id": self.codec.me(),
                "target_node_id": target}, "invite_to_network_ok"  # fmt: skip

    def _peer_op(self, kind: str, peer: int, **extra: Any) -> tuple[dict[str, Any], str]:
        return {"type": kind, "node_id": self.codec.me(), "peer_id": peer, **extra}, f"{kind}_ok"


def _pinning_context() -> ssl.SSLContext:
    """TLS without CA checks: the pinned fingerprint is the check (draft 19.4, CONS-007)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _check_pin(der: bytes | None, fingerprint: str) -> None:
    got = hashlib.sha256(der or b"").hexdigest()
    if not hmac.compare_digest(got, fingerprint.lower()):
        raise RegistryError(f"registry certificate fingerprint mismatch: got {got}, pinned {fingerprint.lower()}")


#: Pauses before each reconnection attempt after a connection fails mid-call (Go: 5 attempts, 0.5 s to 10 s).
RECONNECT_BACKOFF = (0.25, 0.5, 1.0, 2.0)


class ConnectionLost(RegistryError):
    """The TCP/TLS connection failed (as opposed to an error reply)."""


class RegistryClient(_Calls):
    """A blocking client over one TCP connection (see the module docstring for the API).

    ``tls_fingerprint`` (hex SHA-256 of the registry certificate's DER) turns on TLS with pinning: a
    certificate with another hash is refused before any request is sent (CONS-008).  When the
    connection fails before a reply arrives (the registry restarted, say), the client reconnects and
    sends the request once more, freshly signed, as Go's client does; ``reconnect=False`` turns that off.
    """

    def __init__(self, addr: tuple[str, int], profile: Profile | str = DEFAULT_PROFILE, timeout: float = 5.0,
                 *, tls_fingerprint: str | None = None, reconnect: bool = True) -> None:  # fmt: skip
        self.codec = RegistryCodec(profile)
        self.addr, self.timeout, self.tls_fingerprint, self.reconnect = addr, timeout, tls_fingerprint, reconnect
        self.reconnects = 0
        self._sock = self._dial()

    def _dial(self) -> socket.socket:
        addr = self.addr
        try:
            sock = socket.create_connection(addr, timeout=self.timeout)
        except OSError as exc:
            raise ConnectionLost(f"cannot reach registry at {addr[0]}:{addr[1]}: {exc.strerror or exc}") from None
        if self.tls_fingerprint is not None:
            try:
                sock = _pinning_context().wrap_socket(sock)
                _check_pin(sock.getpeercert(binary_form=True), self.tls_fingerprint)
            except (OSError, RegistryError) as exc:
                sock.close()
                raise RegistryError(str(exc)) from None
        return sock

    def _once(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            self._sock.sendall(self.codec.request(msg, time.time()))
            while (reply := self.codec.next_reply()) is None:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionLost("registry closed the connection")
                self.codec.receive_data(chunk)
        except OSError as exc:
            raise ConnectionLost(f"registry connection failed: {exc}") from None
        return reply

    def call(self, msg: dict[str, Any], want: str | None = None) -> dict[str, Any]:
        """Send one request and return its reply (raising :class:`RegistryError` on an error reply)."""
        try:
            reply = self._once(msg)
        except ConnectionLost:
            if not self.reconnect:
                raise
            self._sock.close()
            for pause in RECONNECT_BACKOFF:
                time.sleep(pause)
                self.codec.reset()
                try:
                    self._sock = self._dial()
                except ConnectionLost:
                    continue
                self.reconnects += 1
                reply = self._once(msg)
                break
            else:
                raise
        return _check(reply, want) if want else reply

    def register(self, identity: Identity, listen_addr: str, *, hostname: str = "", owner: str = "",
                 lan_addrs: list[str] | None = None) -> int:  # fmt: skip
        msg = self.codec.register_msg(identity, listen_addr, hostname, owner, lan_addrs)
        self.last_register = self.call(msg, "register_ok")
        return self.codec.registered(self.last_register)

    def lookup(self, node_id: int) -> dict[str, Any]:
        return self.call(*self._lookup(node_id))

    def rotate_key(self, new_identity: Identity) -> None:
        """Move this node ID to ``new_identity``; later calls sign with it."""
        self.call(self.codec.rotate_msg(new_identity, time.time()), "rotate_key_ok")
        self.codec.identity = new_identity

    def resolve(self, node_id: int) -> str:
        return str(self.call(*self._resolve(node_id))["real_addr"])

    def resolve_hostname(self, hostname: str) -> int:
        return int(self.call(*self._resolve_hostname(hostname))["node_id"])

    def heartbeat(self) -> int:
        return int(self.call(*self._node_op("heartbeat"))["time"])

    def deregister(self) -> None:
        self.call(*self._node_op("deregister"))

    def set_hostname(self, hostname: str) -> None:
        self.call(*self._node_op("set_hostname", hostname=hostname))

    def set_visibility(self, public: bool) -> None:
        self.call(*self._node_op("set_visibility", public=public))

    def report_trust(self, peer: int) -> dict[str, Any]:
        return self.call(*self._peer_op("report_trust", peer))

    def revoke_trust(self, peer: int) -> None:
        self.call(*self._peer_op("revoke_trust", peer))

    def check_trust(self, peer: int) -> bool:
        return bool(self.call(*self._peer_op("check_trust", peer))["trusted"])

    def request_handshake(self, peer: int, justification: str = "") -> None:
        me = self.codec.me()
        self.call({"type": "request_handshake", "from_node_id": me, "to_node_id": peer,
                   "justification": justification}, "request_handshake_ok")  # fmt: skip

    def poll_handshakes(self) -> dict[str, Any]:
        return self.call(*self._node_op("poll_handshakes"))

    def respond_handshake(self, peer: int, accept: bool) -> None:
        self.call(*self._peer_op("respond_handshake", peer, accept=accept))

    def join_network(self, network_id: int, token: str = "") -> dict[str, Any]:
        return self.call(*self._node_op("join_network", network_id=network_id, token=token))

    def leave_network(self, network_id: int) -> dict[str, Any]:
        return self.call(*self._node_op("leave_network", network_id=network_id))

    def set_tags(self, tags: list[str]) -> dict[str, Any]:
        return self.call(*self._node_op("set_tags", tags=list(tags)))

    def set_task_exec(self, enabled: bool) -> dict[str, Any]:
        return self.call(*self._node_op("set_task_exec", enabled=enabled))

    def list_networks(self) -> dict[str, Any]:
        return self.call({"type": "list_networks"}, "list_networks_ok")

    def list_nodes(self, network_id: int) -> dict[str, Any]:
        return self.call({"type": "list_nodes", "network_id": network_id}, "list_nodes_ok")

    def invite_to_network(self, network_id: int, target: int) -> dict[str, Any]:
        return self.call(*self._invite(network_id, target))

    def poll_invites(self) -> dict[str, Any]:
        return self.call(*self._node_op("poll_invites"))

    def respond_invite(self, network_id: int, accept: bool) -> dict[str, Any]:
        return self.call(*self._node_op("respond_invite", network_id=network_id, accept=accept))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRegistryClient(_Calls):
    """The asyncio twin of :class:`RegistryClient`; build it with ``await AsyncRegistryClient.connect(addr)``."""

    def __init__(self, addr: tuple[str, int], profile: Profile | str, timeout: float, tls_fingerprint: str | None,
                 reconnect: bool) -> None:  # fmt: skip
        self.codec = RegistryCodec(profile)
        self.addr, self.timeout, self.tls_fingerprint, self.reconnect = addr, timeout, tls_fingerprint, reconnect
        self.reconnects = 0
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader
        self._writer: asyncio.StreamWriter

    @classmethod
    async def connect(cls, addr: tuple[str, int], profile: Profile | str = DEFAULT_PROFILE, timeout: float = 5.0, *,
                      tls_fingerprint: str | None = None, reconnect: bool = True) -> AsyncRegistryClient:  # fmt: skip
        self = cls(addr, profile, timeout, tls_fingerprint, reconnect)
        self._reader, self._writer = await self._dial()
        return self

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        addr = self.addr
        ctx = _pinning_context() if self.tls_fingerprint is not None else None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr, ssl=ctx), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot reach registry at {addr[0]}:{addr[1]}: {exc}") from None
        if self.tls_fingerprint is not None:
            tls = writer.get_extra_info("ssl_object")
            try:
                _check_pin(tls.getpeercert(binary_form=True) if tls else None, self.tls_fingerprint)
            except RegistryError:
                writer.close()
                raise
        return reader, writer

    async def _once(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            self._writer.write(self.codec.request(msg, time.time()))
            await self._writer.drain()
            while (reply := self.codec.next_reply()) is None:
                chunk = await asyncio.wait_for(self._reader.read(65536), self.timeout)
                if not chunk:
                    raise ConnectionLost("registry closed the connection")
                self.codec.receive_data(chunk)
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"registry connection failed: {exc!r}") from None
        return reply

    async def call(self, msg: dict[str, Any], want: str | None = None) -> dict[str, Any]:
        async with self._lock:
            try:
                reply = await self._once(msg)
            except ConnectionLost:
                if not self.reconnect:
                    raise
                self._writer.close()
                for pause in RECONNECT_BACKOFF:
                    await asyncio.sleep(pause)
                    self.codec.reset()
                    try:
                        self._reader, self._writer = await self._dial()
                    except ConnectionLost:
                        continue
                    self.reconnects += 1
                    reply = await self._once(msg)
                    break
                else:
                    raise
        return _check(reply, want) if want else reply

    async def register(self, identity: Identity, listen_addr: str, *, hostname: str = "", owner: str = "",
                       lan_addrs: list[str] | None = None) -> int:  # fmt: skip
        msg = self.codec.register_msg(identity, listen_addr, hostname, owner, lan_addrs)
        self.last_register = await self.call(msg, "register_ok")
        return self.codec.registered(self.last_register)

    async def lookup(self, node_id: int) -> dict[str, Any]:
        return await self.call(*self._lookup(node_id))

    async def rotate_key(self, new_identity: Identity) -> None:
        """Move this node ID to ``new_identity``; later calls sign with it."""
        await self.call(self.codec.rotate_msg(new_identity, time.time()), "rotate_key_ok")
        self.codec.identity = new_identity

    async def resolve(self, node_id: int) -> str:
        return str((await self.call(*self._resolve(node_id)))["real_addr"])

    async def resolve_hostname(self, hostname: str) -> int:
        return int((await self.call(*self._resolve_hostname(hostname)))["node_id"])

    async def heartbeat(self) -> int:
        return int((await self.call(*self._node_op("heartbeat")))["time"])

    async def deregister(self) -> None:
        await self.call(*self._node_op("deregister"))

    async def set_hostname(self, hostname: str) -> None:
        await self.call(*self._node_op("set_hostname", hostname=hostname))

    async def set_visibility(self, public: bool) -> None:
        await self.call(*self._node_op("set_visibility", public=public))

    async def report_trust(self, peer: int) -> dict[str, Any]:
        return await self.call(*self._peer_op("report_trust", peer))

    async def revoke_trust(self, peer: int) -> None:
        await self.call(*self._peer_op("revoke_trust", peer))

    async def check_trust(self, peer: int) -> bool:
        return bool((await self.call(*self._peer_op("check_trust", peer)))["trusted"])

    async def request_handshake(self, peer: int, justification: str = "") -> None:
        me = self.codec.me()
        await self.call({"type": "request_handshake", "from_node_id": me, "to_node_id": peer,
                         "justification": justification}, "request_handshake_ok")  # fmt: skip

    async def poll_handshakes(self) -> dict[str, Any]:
        return await self.call(*self._node_op("poll_handshakes"))

    async def respond_handshake(self, peer: int, accept: bool) -> None:
        await self.call(*self._peer_op("respond_handshake", peer, accept=accept))

    async def join_network(self, network_id: int, token: str = "") -> dict[str, Any]:
        return await self.call(*self._node_op("join_network", network_id=network_id, token=token))

    async def leave_network(self, network_id: int) -> dict[str, Any]:
        return await self.call(*self._node_op("leave_network", network_id=network_id))

    async def set_tags(self, tags: list[str]) -> dict[str, Any]:
        return await self.call(*self._node_op("set_tags", tags=list(tags)))

    async def set_task_exec(self, enabled: bool) -> dict[str, Any]:
        return await self.call(*self._node_op("set_task_exec", enabled=enabled))

    async def list_networks(self) -> dict[str, Any]:
        return await self.call({"type": "list_networks"}, "list_networks_ok")

    async def list_nodes(self, network_id: int) -> dict[str, Any]:
        return await self.call({"type": "list_nodes", "network_id": network_id}, "list_nodes_ok")

    async def invite_to_network(self, network_id: int, target: int) -> dict[str, Any]:
        return await self.call(*self._invite(network_id, target))

    async def poll_invites(self) -> dict[str, Any]:
        return await self.call(*self._node_op("poll_invites"))

    async def respond_invite(self, network_id: int, accept: bool) -> dict[str, Any]:
        return await self.call(*self._node_op("respond_invite", network_id=network_id, accept=accept))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
