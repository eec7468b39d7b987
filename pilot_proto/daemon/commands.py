"""``pilot-proto node`` and the client commands that drive a running daemon over its IPC socket (issue 11).

Server::

    pilot-proto node --listen 127.0.0.1:4000 --node-id 7 [--hostname NAME] [--registry HOST:PORT]
                     [--beacon HOST:PORT] [--identity FILE] [--public|--private] [--socket PATH]
                     [--profile draft|go-interop] [--echo] [--peer NODE=HOST:PORT ...] [--duration S] [-v]

Clients (``--socket``, default ``$PILOT_SOCKET`` or ``/tmp/pilot.sock``; they work against the Go
reference daemon too)::

    pilot-proto info | peers | health
    pilot-proto ping TARGET [--count N]          # echo round trips on port 7, like pilotctl
    pilot-proto connect TARGET PORT --message TEXT   # prints the reply
    pilot-proto send TARGET PORT --data TEXT | --file PATH
    pilot-proto recv PORT [--count N]
    pilot-proto trust | pending | handshake TARGET [WHY] | approve NODE | reject NODE [WHY] | untrust NODE
    pilot-proto set-tags TAG... | clear-tags | enable-tasks | disable-tasks | set-webhook URL | clear-webhook
    pilot-proto network list | join NET [--token T] | leave NET | members NET | invite NET NODE | invites
                        | accept NET | reject NET

TARGET is an address (``0:0000.0000.0007``), a node ID (``7``) or a hostname the daemon resolves.
Ctrl-C stops the node cleanly and prints a summary; ``-v`` logs connection events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pilot_proto.daemon.cliargs import (
    UsageError,
    duration,
    host_port,
    network_id,
    node_id,
    peer_spec,
    port,
    profile,
    resolve_endpoint,
)
from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile
from pilot_proto.tunnel import Identity
from pilot_proto.wire.address import Addr
from pilot_proto.wire.ipc import HandshakeSub, NetworkSub

__all__ = ["add_daemon_commands", "default_socket"]

DEFAULT_SOCKET = "/tmp/pilot.sock"
ClientCommand = Callable[[argparse.Namespace], Awaitable[int]]
LOOPBACK = "127.0.0.1"


def default_socket() -> str:
    return os.environ.get("PILOT_SOCKET") or DEFAULT_SOCKET


# -- registration ---------------------------------------------------------------------------------------


def add_daemon_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``node`` and the client commands."""
    p = sub.add_parser(
        "node",
        help="run a Pilot daemon on UDP (127.0.0.1 by default) with an IPC socket",
        description="Runs a Pilot daemon: tunnel + session layers, port table, trust gate, built-in services "
        "and the IPC socket that 'pilot-proto info/ping/connect ...' and the reference pilotctl talk to.",
    )
    p.add_argument("--listen", type=host_port, default=(LOOPBACK, 0), metavar="HOST:PORT",
                   help=f"UDP bind address (default {LOOPBACK}:0). Every HOST:PORT here is an IP literal ([V6] in "
                   "brackets) or a host name, which is resolved once at start, as the Go daemon does")  # fmt: skip
    p.add_argument("--node-id", type=node_id, help="this node's ID (required without --registry)")
    p.add_argument("--network", type=_network, default=0, help="network ID of the virtual address")
    p.add_argument("--hostname", default="", help="name this node answers to")
    p.add_argument(
        "--registry", type=host_port, metavar="HOST:PORT", help="registry (TCP) to register with (IP or host name)"
    )
    p.add_argument(
        "--beacon", type=host_port, metavar="HOST:PORT", help="beacon (UDP) for NAT traversal (IP or host name)"
    )
    p.add_argument("--identity", metavar="FILE", help="Ed25519 identity file (created if missing)")
    p.add_argument("--trust-file", metavar="FILE", help="keep trusted nodes and pending requests here across restarts")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--public", action="store_true", default=None, help="accept connections from any node")
    vis.add_argument("--private", dest="public", action="store_false",
                     help="only trusted nodes may connect (default with --registry)")  # fmt: skip
    p.add_argument("--socket", help="IPC socket path (default: $PILOT_SOCKET or /tmp/pilot.sock; 'none' disables)")
    p.add_argument("--profile", type=profile, default=Profile.DRAFT, help="draft or go-interop")
    p.add_argument("--echo", action="store_true", help="serve echo on port 7")
    p.add_argument("--no-services", action="store_true", help="no data exchange / event stream / task / secure")
    p.add_argument("--webhook", type=_webhook_url, metavar="URL", help="webhook URL (see --webhook-posts)")
    p.add_argument("--webhook-posts", action="store_true",
                   help="POST daemon events as JSON to the webhook URL (off by default: the URL a client sets "
                   "is then only stored and reported)")  # fmt: skip
    p.add_argument("--peer", type=peer_spec, action="append", default=[], metavar="NODE=HOST:PORT",
                   help="a direct peer (repeatable)")  # fmt: skip
    p.add_argument("--ping", type=node_id, action="append", default=[], metavar="NODE", help="ping a peer at start")
    p.add_argument("--duration", type=duration, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log connection events (-vv: everything)")
    cap = p.add_argument_group("capture and impairment (testing)")
    cap.add_argument("--pcap", metavar="FILE", help="write every datagram in and out to a pcap (Ethernet/IPv4/UDP)")
    cap.add_argument("--wire-log", metavar="FILE", help="write every datagram, decoded, as JSON lines")
    cap.add_argument("--keylog", metavar="FILE",
                     help="DANGEROUS: append every PILS session key to FILE so captures can be decrypted")  # fmt: skip
    cap.add_argument("--loss", type=_probability, default=0.0, metavar="P", help="drop outgoing datagrams")
    cap.add_argument("--delay", type=_delay, default=0.0, metavar="S", help="delay outgoing datagrams")
    cap.add_argument("--seed", type=int, default=0, help="seed of the impairment RNG (default 0)")
    p.set_defaults(func=_node_cmd)

    def client(
        name: str,
        helptext: str,
        func: Callable[[argparse.Namespace], Awaitable[int]],
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
    ) -> argparse.ArgumentParser:
        c = parent.add_parser(name, help=helptext, description=helptext)
        c.add_argument("--socket", default=None, help="daemon IPC socket (default: $PILOT_SOCKET or /tmp/pilot.sock)")
        c.add_argument("--timeout", type=duration, default=10.0, help="seconds to wait (default 10)")
        c.add_argument("--json", action="store_true", help="print JSON")
        c.set_defaults(func=lambda args: _run_client(func, args))
        return c

    client("info", "show the daemon's status", _cmd_info)
    client("health", "check the daemon is alive", _cmd_health)
    client("peers", "list tunnel peers", _cmd_peers)
    c = client("ping", "echo round trips to TARGET's port 7", _cmd_ping)
    c.add_argument("target", help="address, node ID or hostname")
    c.add_argument("--count", type=_count, default=3, help="round trips (default 3)")
    c = client("connect", "send a message to TARGET:PORT and print the reply", _cmd_connect)
    c.add_argument("target", help="address, node ID or hostname")
    c.add_argument("port", type=port, help="virtual port")
    c.add_argument("--message", required=True, help="text to send")
    c = client("send", "send data to TARGET:PORT (and print what comes back before it closes)", _cmd_send)
    c.add_argument("target", help="address, node ID or hostname")
    c.add_argument("port", type=port, help="virtual port")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="text to send")
    src.add_argument("--file", type=_readable_file, help="send this file's bytes")
    c.add_argument("--expect", type=_count, help="wait for this many reply bytes (default: until the peer closes)")
    c = client("recv", "accept connections on PORT and print what each sends", _cmd_recv)
    c.add_argument("port", type=port, help="virtual port to bind")
    c.add_argument("--count", type=_count, default=1, help="connections to accept (default 1)")
    client("trust", "list trusted nodes", _cmd_trust)
    client("pending", "list trust requests waiting for approval", _cmd_pending)
    c = client("handshake", "ask TARGET for trust (port 444)", _cmd_handshake)
    c.add_argument("target", help="address, node ID or hostname")
    c.add_argument("justification", nargs="?", default="", help="why")
    for name, helptext, func in (("approve", "approve a pending trust request", _cmd_approve),
                                 ("reject", "reject a pending trust request", _cmd_reject),
                                 ("untrust", "revoke trust in a node", _cmd_untrust)):  # fmt: skip
        c = client(name, helptext, func)
        c.add_argument("node", type=node_id, help="node ID")
        if name == "reject":
            c.add_argument("reason", nargs="?", default="", help="why")
    c = client("set-tags", f"advertise up to {MAX_TAGS} tags (registered with the registry)", _cmd_set_tags)
    c.add_argument("tags", nargs="+", type=_tag, metavar="TAG", help="lowercase letters, digits, hyphens (#tag ok)")
    client("clear-tags", "advertise no tags", _cmd_clear_tags)
    client("enable-tasks", "take task submissions on port 1003 and advertise it", _cmd_enable_tasks)
    client("disable-tasks", "refuse task submissions (port 1003 closed) and stop advertising it", _cmd_disable_tasks)
    c = client("set-webhook", "set the URL daemon events are POSTed to (the daemon posts only when started with "
               "--webhook-posts; otherwise it stores and reports the URL)", _cmd_set_webhook)  # fmt: skip
    c.add_argument("url", type=_webhook_url, help="http:// or https:// URL")
    client("clear-webhook", "remove the webhook URL", _cmd_clear_webhook)
    net = sub.add_parser("network", help="list, join, leave and inspect networks through the daemon's registry",
                         description="Network commands (IPC 0x1F, draft 16.3): the daemon asks its registry as "
                         "this node.")  # fmt: skip
    nsub = net.add_subparsers(dest="action", required=True, metavar="ACTION")
    client("list", "networks the registry knows", _cmd_network_list, nsub)
    c = client("join", "join network NET", _cmd_network_join, nsub)
    c.add_argument("net", type=network_id, metavar="NET", help="network ID")
    c.add_argument("--token", default="", help="the network's join token (token networks)")
    for name, helptext, func in (("leave", "leave network NET", _cmd_network_leave),
                                 ("members", "list the members of network NET", _cmd_network_members),
                                 ("invite", "invite NODE to the invite-only network NET (owner or admin)",
                                  _cmd_network_invite),
                                 ("invites", "pending invites to this node", _cmd_network_invites),
                                 ("accept", "accept the invite to network NET (joins it)", _cmd_network_accept),
                                 ("reject", "reject the invite to network NET", _cmd_network_reject)):  # fmt: skip
        c = client(name, helptext, func, nsub)
        if name != "invites":
            c.add_argument("net", type=network_id, metavar="NET", help="network ID")
        if name == "invite":
            c.add_argument("node", type=node_id, metavar="NODE", help="node ID")


MAX_TAGS = 3  # per set-tags, as pilotctl and the Go daemon
_TAG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def _tag(text: str) -> str:
    """A tag as the registry accepts it (``#`` allowed in front, as pilotctl)."""
    tag = text[1:] if text.startswith("#") else text
    if not _TAG.match(tag):
        raise argparse.ArgumentTypeError(f"bad tag {text!r}: 1-32 lowercase letters, digits and hyphens, "
                                         "not starting or ending with a hyphen")  # fmt: skip
    return tag


def _webhook_url(text: str) -> str:
    from pilot_proto.daemon.webhook import check_url

    why = check_url(text)
    if why is not None or not text:
        raise argparse.ArgumentTypeError(why or "empty webhook URL (use clear-webhook)")
    return text


def _network(text: str) -> int:
    from pilot_proto.daemon.cliargs import network_id

    return network_id(text)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def _delay(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 60.0:
        raise argparse.ArgumentTypeError(f"a delay is between 0 and 60 seconds, got {text}")
    return value


def _readable_file(text: str) -> str:
    path = Path(text)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read file {text}")
    return text


# -- the node -------------------------------------------------------------------------------------------


def _node_cmd(args: argparse.Namespace) -> int:
    if args.node_id is None and args.registry is None:
        raise UsageError("--node-id is required without --registry")
    if args.registry is not None and args.node_id is not None:
        raise UsageError("--node-id and --registry exclude each other: the registry assigns the node ID")
    _resolve_hosts(args)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(_serve(args))


def _resolve_hosts(args: argparse.Namespace) -> None:
    """Turn every host name among the node's endpoints into an IP literal, once, before anything starts (E-DF-1).

    The UDP destinations (``--beacon``, ``--peer``) must be of the ``--listen`` socket's family."""
    args.listen = resolve_endpoint(args.listen, "--listen")
    family = socket.AF_INET6 if ":" in args.listen[0] else socket.AF_INET
    if args.registry is not None:
        args.registry = resolve_endpoint(args.registry, "--registry", stream=True)
    if args.beacon is not None:
        args.beacon = resolve_endpoint(args.beacon, "--beacon", family=family)
    args.peer = [(nid, resolve_endpoint(ep, "--peer", family=family)) for nid, ep in args.peer]


def _load_identity(path: str | None) -> Identity:
    """The node's Ed25519 identity: from ``path`` (Go's identity-file form), created there if missing."""
    if path is None:
        return Identity.from_seed(os.urandom(32))
    file = Path(path)
    if file.exists():
        try:
            return Identity.from_json(file.read_bytes())
        except PilotError as exc:
            raise UsageError(f"{path}: {exc.rule}") from None
    ident = Identity.from_seed(os.urandom(32))
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(ident.to_json())
    return ident


async def _serve(args: argparse.Namespace) -> int:
    from pilot_proto.daemon.core import Daemon
    from pilot_proto.daemon.driver import DaemonDriver
    from pilot_proto.services import (
        DataExchangeService,
        EchoService,
        EventStreamService,
        SecureService,
        StreamService,
        TaskSubmitService,
        TrustChanged,
        TrustRequested,
    )

    prof: Profile = args.profile
    public = args.public if args.public is not None else args.registry is None
    identity = _load_identity(args.identity)
    udp = socket.socket(socket.AF_INET6 if ":" in args.listen[0] else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(args.listen)
    except OSError as exc:
        udp.close()
        raise UsageError(f"cannot bind udp {args.listen[0]}:{args.listen[1]}: {exc.strerror or exc}") from None
    registry = None
    node = args.node_id
    if args.registry is not None:
        registry, node = await _register(args, identity, udp.getsockname()[:2], public)
    services: list[StreamService] = [EchoService()] if args.echo else []
    if not args.no_services:
        services += [DataExchangeService(), EventStreamService(profile=prof), TaskSubmitService(),
                     SecureService(os.urandom, profile=prof)]  # fmt: skip
    keys: dict[int, bytes] = {}
    daemon = Daemon(node, os.urandom, network=args.network, profile=prof, identity=identity, public=public,
                    hostname=args.hostname, services=services, peer_keys=keys.get,
                    authenticate_tunnel=args.registry is not None, beacon=args.beacon)  # fmt: skip
    daemon.identity_persistent = args.identity is not None
    if args.keylog:
        daemon.node.tunnel.key_log = _key_log(args.keylog)
    for nid, endpoint in args.peer:
        daemon.add_peer(nid, endpoint)
    save_trust = _trust_store(args.trust_file, daemon)
    sock = args.socket if args.socket is not None else default_socket()
    sock_path = None if sock == "none" else sock
    resolver, locator = _registry_hooks(registry, keys) if registry is not None else (None, None)
    tap, impairment = _capture(args)
    try:
        drv = await DaemonDriver.start(daemon, socket_path=sock_path, resolver=resolver, locator=locator, sock=udp,
                                       tap=tap, impairment=impairment)  # fmt: skip
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or args.socket is not None or exc.filename != sock_path:
            raise UsageError(f"cannot start the node on socket {sock_path}: {exc.strerror or exc}") from None
        print(f"warning: {sock_path} belongs to another running daemon; running without an IPC socket",
              file=sys.stderr)  # fmt: skip
        sock_path = None
        udp = socket.socket(udp.family, socket.SOCK_DGRAM)
        udp.bind(args.listen if args.listen[1] else (args.listen[0], 0))
        drv = await DaemonDriver.start(daemon, resolver=resolver, locator=locator, sock=udp, tap=tap,
                                       impairment=impairment)  # fmt: skip
    drv.registry = registry
    drv.webhook_posts = args.webhook_posts
    if args.webhook:
        await drv.set_webhook(args.webhook)
    heartbeat = asyncio.get_running_loop().create_task(_heartbeats(registry)) if registry is not None else None
    relay = asyncio.get_running_loop().create_task(drv.relay_loop(RELAY_POLL)) if registry is not None else None
    if save_trust is not None:
        drv.on_event = lambda ev: save_trust() if isinstance(ev, TrustChanged | TrustRequested) else None
    host, udp_port = drv.address
    extras = [f"profile {prof.value}", "public" if public else "private"]
    if services:
        extras.append("services " + ",".join(f"{s.name}:{s.port}" for s in services))
    if sock_path:
        extras.append(f"socket {sock_path}")
    print(f"node {daemon.addr} on udp {host}:{udp_port} ({'; '.join(extras)})", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = 0
    try:
        for target in args.ping:
            t0 = time.perf_counter()
            seq = daemon.ping(Addr(args.network, target), drv.now(), b"pilot-proto")
            drv._after_input()
            if await _wait_ping(drv, seq, min(5.0, args.duration or 5.0)):
                print(f"ping node {target}: seq {seq} rtt {(time.perf_counter() - t0) * 1000:.2f} ms", flush=True)
            else:
                print(f"ping node {target}: no reply", flush=True)
                status = 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for task in (heartbeat, relay):
            if task is not None:
                task.cancel()
        await drv.shutdown()
        if save_trust is not None:
            save_trust()
        if tap is not None:
            tap.close()
        if registry is not None:
            await registry.close()
    print(f"done: {drv.summary()}", flush=True)
    return status


def _trust_store(path: str | None, daemon: Any) -> Callable[[], None] | None:
    """Load ``--trust-file`` into the daemon's trust book; return a saver (atomic replace) or None."""
    if path is None or daemon.trust is None:
        return None
    file = Path(path)
    if file.exists():
        try:
            daemon.trust.restore(json.loads(file.read_text()))
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise UsageError(f"{path}: {exc}") from None
    elif not file.parent.is_dir():
        raise UsageError(f"cannot create {path}: no directory {file.parent}")

    def save() -> None:
        tmp = file.with_name(file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(daemon.trust.snapshot(), out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, file)

    return save


def _key_log(path: str) -> Callable[[int, int, bytes], None]:
    """``--keylog``: the tunnel's test-only key-log hook writing :mod:`pilot_proto.tunnel.dangerous`'s format.

    Every session key goes to ``path`` (mode 0600 when created), which defeats key wiping (SEC-010)."""
    from pilot_proto.tunnel.dangerous import KeyLog

    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        raise UsageError(f"cannot write key log: {exc.strerror or exc}: {path}") from None
    return KeyLog(path=path).write


def _capture(args: argparse.Namespace) -> tuple[Any, Any]:
    """The ``--pcap``/``--wire-log`` tap and the ``--loss``/``--delay`` impairment (testing aids), if asked for."""
    tap = impairment = None
    if args.pcap or args.wire_log:
        from pilot_proto.testing.tap import Tap

        try:
            tap = Tap(pcap=args.pcap, wire_log=args.wire_log)
        except OSError as exc:
            raise UsageError(f"cannot write capture: {exc.strerror or exc}: {exc.filename}") from None
    if args.loss or args.delay:
        import random

        from pilot_proto.drivers.udp import Impairment
        from pilot_proto.testing.link import LinkConfig

        impairment = Impairment(outbound=LinkConfig(loss=args.loss, delay=args.delay), rng=random.Random(args.seed))
    return tap, impairment


HEARTBEAT_INTERVAL = 30.0  # seconds between registry heartbeats (the Go daemon sends one every 30 s)
RELAY_POLL = 2.0  # seconds between polls of the registry's relayed handshakes


async def _register(
    args: argparse.Namespace, identity: Identity, bound: tuple[str, int], public: bool
) -> tuple[Any, int]:
    """Register with the registry at ``--registry``: returns the client and the node ID it assigned (draft 3.2)."""
    from pilot_proto.registry.client import AsyncRegistryClient, RegistryError

    try:
        client = await AsyncRegistryClient.connect(args.registry, args.profile)
        node = await client.register(identity, f"{bound[0]}:{bound[1]}", hostname=args.hostname)
        await client.set_visibility(public)
    except RegistryError as exc:
        raise UsageError(f"registry {args.registry[0]}:{args.registry[1]}: {exc}") from None
    return client, node


def _registry_hooks(client: Any, keys: dict[int, bytes]) -> tuple[Any, Any]:
    """The driver's resolver (hostname -> node) and locator (node -> endpoint, key), both asking the registry."""
    import base64

    from pilot_proto.registry.client import RegistryError

    async def resolver(hostname: str) -> dict[str, Any]:
        try:
            node = await client.resolve_hostname(hostname)
        except RegistryError as exc:
            raise LookupError(str(exc)) from None
        return {"node_id": node, "address": str(Addr(0, node)), "hostname": hostname}

    async def locator(node: int) -> tuple[tuple[str, int] | None, bytes | None]:
        try:
            entry = await client.lookup(node)
        except RegistryError as exc:
            raise LookupError(str(exc)) from None
        key = base64.b64decode(str(entry.get("public_key") or "")) or None
        if key is not None:
            keys[node] = key
        endpoint: tuple[str, int] | None = None
        with contextlib.suppress(RegistryError, ValueError):
            host, _, port_text = (await client.resolve(node)).rpartition(":")
            endpoint = (host.strip("[]"), int(port_text))
        return endpoint, key

    return resolver, locator


async def _heartbeats(client: Any) -> None:
    from pilot_proto.registry.client import RegistryError

    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL)
        try:
            await client.heartbeat()
        except RegistryError as exc:
            logging.getLogger("pilot_proto.daemon").warning("registry heartbeat failed: %s", exc)


async def _wait_ping(drv: Any, seq: int, timeout: float) -> bool:
    from pilot_proto.stream.events import PingReply

    deadline = drv.now() + timeout
    while drv.now() < deadline:
        if any(isinstance(e, PingReply) and e.seq == seq for e in drv.log_events):
            return True
        await asyncio.sleep(0.01)
    return False


# -- clients --------------------------------------------------------------------------------------------


def _run_client(func: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    return asyncio.run(_client_main(func, args))


async def _client_main(func: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    from pilot_proto.daemon.client import DaemonError

    try:
        return await asyncio.wait_for(func(args), args.timeout + 5.0)
    except DaemonError as exc:
        print(f"pilot-proto {args.command}: error: daemon: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"pilot-proto {args.command}: error: no answer within {args.timeout:g} s", file=sys.stderr)
        return 1


async def _connect(args: argparse.Namespace) -> Any:
    from pilot_proto.daemon.client import IpcClient

    path = args.socket or default_socket()
    try:
        return await IpcClient.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise UsageError(
            f"no daemon listening on {path} (start one with 'pilot-proto node', or set --socket)"
        ) from None
    except PermissionError:
        raise UsageError(f"not allowed to use the daemon socket {path}") from None


async def _target(client: Any, text: str) -> Addr:
    """An address, a node ID or a hostname (resolved by the daemon)."""
    if ":" in text:
        try:
            return Addr.parse(text)
        except PilotError as exc:
            raise UsageError(f"bad address {text!r}: {exc.rule}") from None
    if text.isdigit():
        return Addr(0, node_id(text))
    doc = await client.resolve(text)
    try:
        return Addr.parse(str(doc["address"]))
    except (KeyError, PilotError):
        return Addr(0, int(doc["node_id"]))


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, indent=2) if args.json else text)


async def _cmd_info(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        info = await c.info()
    lines = [f"node {info.get('node_id')}  address {info.get('address')}  hostname {info.get('hostname') or '-'}",
             f"uptime {float(info.get('uptime_secs', 0)):.0f} s  connections {info.get('connections')}  "
             f"ports {info.get('ports')}  peers {info.get('peers')} ({info.get('encrypted_peers')} encrypted, "
             f"{info.get('authenticated_peers')} authenticated)",
             f"traffic {info.get('bytes_sent')} B sent / {info.get('bytes_recv')} B received"]  # fmt: skip
    _print(args, info, "\n".join(lines))
    return 0


async def _cmd_health(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        doc = await c.health()
    _print(args, doc, f"{doc.get('status')}: up {doc.get('uptime_seconds')} s, {doc.get('peers')} peers")
    return 0


async def _cmd_peers(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        info = await c.info()
    peers = info.get("peer_list") or []
    rows = [f"{p['node_id']:>10}  {p.get('endpoint', ''):<24} encrypted={p.get('encrypted')} "
            f"authenticated={p.get('authenticated')}" for p in peers]  # fmt: skip
    _print(args, {"peers": peers, "total": len(peers)}, "\n".join(rows) if rows else "no peers")
    return 0


async def _exchange(c: Any, dst: Addr, dport: int, data: bytes, timeout: float, expect: int | None) -> bytes:
    """Dial, write, read the reply (``expect`` bytes, or one chunk when None and the peer keeps the stream open)."""
    cid = await c.dial(dst, dport, timeout)
    try:
        await c.send(cid, data)
        if expect is not None:
            return bytes(await c.recv_exactly(cid, expect, timeout))
        return bytes(await c.recv(cid, timeout))
    finally:
        await c.close_conn(cid)


async def _cmd_ping(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        dst = await _target(c, args.target)
        results = []
        for seq in range(args.count):
            payload = f"ping-{seq}".encode()
            t0 = time.perf_counter()
            reply = await _exchange(c, dst, 7, payload, args.timeout, len(payload))
            rtt = (time.perf_counter() - t0) * 1000
            results.append({"seq": seq, "bytes": len(reply), "rtt_ms": round(rtt, 3), "ok": reply == payload})
            if not args.json:
                print(f"seq={seq} bytes={len(reply)} time={rtt:.2f} ms" + ("" if reply == payload else " MISMATCH"))
    if args.json:
        print(json.dumps({"target": str(dst), "results": results}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


async def _cmd_connect(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        dst = await _target(c, args.target)
        data = args.message.encode()
        reply = await _exchange(c, dst, args.port, data, args.timeout, len(data) if args.port == 7 else None)
    _print(args, {"target": str(dst), "port": args.port, "sent": args.message,
                  "response": reply.decode("utf-8", "replace")}, reply.decode("utf-8", "replace"))  # fmt: skip
    return 0


async def _cmd_send(args: argparse.Namespace) -> int:
    data = args.data.encode() if args.data is not None else Path(args.file).read_bytes()
    async with await _connect(args) as c:
        dst = await _target(c, args.target)
        cid = await c.dial(dst, args.port, args.timeout)
        t0 = time.perf_counter()
        await c.send(cid, data)
        if args.expect is not None:
            reply = await c.recv_exactly(cid, args.expect, args.timeout)
        else:
            reply = b""
        elapsed = time.perf_counter() - t0
        await c.close_conn(cid)
    rate = len(data) / elapsed / 1e6 if elapsed > 0 else 0.0
    doc = {"target": str(dst), "port": args.port, "sent": len(data), "received": len(reply),
           "seconds": round(elapsed, 4), "mb_per_s": round(rate, 2)}  # fmt: skip
    _print(args, doc, f"sent {len(data)} bytes to {dst}:{args.port}, {len(reply)} back in {elapsed:.3f} s")
    return 0


async def _cmd_recv(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        bound = await c.bind(args.port)
        if not args.json:
            print(f"listening on port {bound}", flush=True)
        got = []
        for _ in range(args.count):
            acc = await c.accept(bound, args.timeout)
            data = await c.recv_all(acc.conn_id, args.timeout)
            await c.close_conn(acc.conn_id)
            got.append({"from": f"{acc.remote}:{acc.remote_port}", "bytes": len(data),
                        "data": data.decode("utf-8", "replace")})  # fmt: skip
            if not args.json:
                print(data.decode("utf-8", "replace"), flush=True)
    if args.json:
        print(json.dumps({"messages": got}, indent=2))
    return 0


async def _cmd_trust(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        doc = await c.handshake(HandshakeSub.TRUSTED)
    rows = [f"{t['node_id']:>10}  mutual={t.get('mutual')}  approved_at={t.get('approved_at')}"
            for t in doc.get("trusted") or []]  # fmt: skip
    _print(args, doc, "\n".join(rows) if rows else "no trusted nodes")
    return 0


async def _cmd_pending(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        doc = await c.handshake(HandshakeSub.PENDING)
    rows = [f"{p['node_id']:>10}  {p.get('justification', '')!r}" for p in doc.get("pending") or []]
    _print(args, doc, "\n".join(rows) if rows else "no pending trust requests")
    return 0


async def _cmd_handshake(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        dst = await _target(c, args.target)
        doc = await c.handshake(HandshakeSub.SEND, dst.node, args.justification)
    _print(args, doc, f"trust request to node {dst.node}: {doc.get('status')}")
    return 0


async def _trust_op(args: argparse.Namespace, sub: HandshakeSub, text: str, verb: str) -> int:
    async with await _connect(args) as c:
        doc = await c.handshake(sub, args.node, text)
    _print(args, doc, f"node {args.node}: {verb}")
    return 0


async def _cmd_approve(args: argparse.Namespace) -> int:
    return await _trust_op(args, HandshakeSub.APPROVE, "", "approved")


async def _cmd_reject(args: argparse.Namespace) -> int:
    return await _trust_op(args, HandshakeSub.REJECT, args.reason, "rejected")


async def _cmd_untrust(args: argparse.Namespace) -> int:
    return await _trust_op(args, HandshakeSub.REVOKE, "", "trust revoked")


# -- tags, tasks, webhook, networks (IPC 0x19-0x1F, draft 16.2-16.3) --------------------------------------------


async def _cmd_set_tags(args: argparse.Namespace) -> int:
    tags = list(dict.fromkeys(args.tags))
    if len(tags) > MAX_TAGS:
        raise UsageError(f"set-tags: at most {MAX_TAGS} tags, got {len(tags)}")
    async with await _connect(args) as c:
        doc = await c.set_tags(tags)
    _print(args, doc, "tags: " + (", ".join(doc.get("tags") or []) or "(none)"))
    return 0


async def _cmd_clear_tags(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        doc = await c.set_tags([])
    _print(args, doc, "tags cleared")
    return 0


async def _task_exec(args: argparse.Namespace, enabled: bool) -> int:
    async with await _connect(args) as c:
        doc = await c.set_task_exec(enabled)
    state = "enabled" if doc.get("task_exec", enabled) else "disabled"
    port_text = "port 1003 listening" if doc.get("listening") else "port 1003 closed"
    _print(args, doc, f"task execution {state} ({port_text})")
    return 0


async def _cmd_enable_tasks(args: argparse.Namespace) -> int:
    return await _task_exec(args, True)


async def _cmd_disable_tasks(args: argparse.Namespace) -> int:
    return await _task_exec(args, False)


async def _cmd_set_webhook(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        doc = await c.set_webhook(args.url)
    how = "events are POSTed to it" if doc.get("posting") else "stored; the daemon posts only with --webhook-posts"
    _print(args, doc, f"webhook {doc.get('webhook')} ({how})")
    return 0


async def _cmd_clear_webhook(args: argparse.Namespace) -> int:
    async with await _connect(args) as c:
        doc = await c.set_webhook("")
    _print(args, doc, "webhook cleared")
    return 0


async def _network_call(args: argparse.Namespace, sub: NetworkSub, **fields: Any) -> Any:
    async with await _connect(args) as c:
        return await c.network(sub, timeout=args.timeout, **fields)


async def _cmd_network_list(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.LIST)
    rows = [f"{n.get('id'):>5}  {n.get('name', ''):<24} members={n.get('members')} join={n.get('join_rule')}"
            for n in doc.get("networks") or []]  # fmt: skip
    _print(args, doc, "\n".join(rows) if rows else "no networks")
    return 0


async def _cmd_network_join(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.JOIN, network_id=args.net, token=args.token)
    _print(args, doc, f"joined network {args.net}" + (f" as {doc['address']}" if doc.get("address") else ""))
    return 0


async def _cmd_network_leave(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.LEAVE, network_id=args.net)
    _print(args, doc, f"left network {args.net}")
    return 0


async def _cmd_network_members(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.MEMBERS, network_id=args.net)
    rows = [f"{n.get('node_id'):>10}  {n.get('hostname', '-'):<24} {n.get('role', '')}"
            + (" offline" if n.get("offline") else "") for n in doc.get("nodes") or []]  # fmt: skip
    _print(args, doc, "\n".join(rows) if rows else "no members")
    return 0


async def _cmd_network_invite(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.INVITE, network_id=args.net, node_id=args.node)
    again = " (already invited)" if doc.get("status") == "already_invited" else ""
    _print(args, doc, f"invited node {args.node} to network {args.net}{again}")
    return 0


async def _cmd_network_invites(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.POLL_INVITES)
    rows = [f"network {i.get('network_id')} from node {i.get('inviter_id')}" for i in doc.get("invites") or []]
    _print(args, doc, "\n".join(rows) if rows else "no pending invites")
    return 0


async def _cmd_network_accept(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.RESPOND_INVITE, network_id=args.net, accept=True)
    _print(args, doc, f"accepted the invite to network {args.net}")
    return 0


async def _cmd_network_reject(args: argparse.Namespace) -> int:
    doc = await _network_call(args, NetworkSub.RESPOND_INVITE, network_id=args.net, accept=False)
    _print(args, doc, f"rejected the invite to network {args.net}")
    return 0
