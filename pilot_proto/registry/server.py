"""The registry's asyncio TCP driver and the ``pilot-proto registry`` command (draft 3.2; wire-notes 1.22).

:class:`RegistryServer` frames the reference registry's messages (``u32 BE length || JSON``, at most
64 KiB, ARCH-012), hands each to the sans-IO :class:`~pilot_proto.registry.state.Registry`, writes
and fsyncs what it must persist through :class:`~pilot_proto.registry.store.Store`, and only then
sends the replies -- one fsync per event-loop turn for every connection's requests (group commit).  A
failed write is never acknowledged: the server stops (``failed`` / ``failure``).  It binds 127.0.0.1
unless told otherwise, holds at most ``max_connections`` connections, drops a connection idle for
``idle_timeout`` seconds (Go: 5 min), compacts the store every ``compact_every`` records and on
shutdown, optionally speaks TLS (clients pin the certificate, draft 19.4), and serves or follows
replication (:mod:`~pilot_proto.registry.replication`, draft 17).

``pilot-proto registry --listen HOST:PORT [--store FILE] [--profile draft|go-interop] [-v]`` runs it;
every bad argument is one line on stderr and exit status 2, Ctrl-C (or SIGTERM) prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from pilot_proto.errors import LocalProtocolError, PilotError
from pilot_proto.profile import Profile
from pilot_proto.registry.replication import Replicator, run_standby
from pilot_proto.registry.state import NodeDeregistered, NodeReaped, NodeRegistered, Registry, RegistryConfig
from pilot_proto.registry.store import Store, StoreError
from pilot_proto.registry.tls import fingerprint as tls_fingerprint
from pilot_proto.registry.tls import self_signed, server_context
from pilot_proto.sansio import InputRejected
from pilot_proto.wire.registry import RegistryReader, encode_registry_message

__all__ = ["RegistryServer", "add_registry_command"]

LOOPBACK = "127.0.0.1"


class RegistryServer:
    """One registry on one TCP listener (see the module docstring)."""

    def __init__(
        self,
        registry: Registry,
        store: Store | None = None,
        *,
        max_connections: int = 1024,
        idle_timeout: float = 300.0,
        compact_every: int = 10_000,
        clock: Callable[[], float] = time.time,
        log: TextIO | None = None,
        replication_token: str = "",
        standby_of: tuple[str, int] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls
        self.registry, self.store, self.clock, self.log = registry, store, clock, log
        self.replicator = Replicator(registry, replication_token, log=self._say)
        self.standby_of = standby_of
        self._standby_task: asyncio.Task[None] | None = None
        self.max_connections, self.idle_timeout, self.compact_every = max_connections, idle_timeout, compact_every
        self.connections = 0
        self.refused_connections = 0
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._open: dict[asyncio.StreamWriter, asyncio.Task[object] | None] = {}
        self._commit: asyncio.Future[None] | None = None
        self.commits = 0
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()

    async def start(self, host: str = LOOPBACK, port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True, ssl=self.tls)
        loop = asyncio.get_running_loop()
        self._timer = loop.create_task(self._timers())
        self.replicator.start()
        if self.standby_of is not None:
            token = self.replicator.token
            self._standby_task = loop.create_task(
                run_standby(self.registry, self.store, self.standby_of, token, log=self._say, clock=self.clock)
            )
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def close(self) -> None:
        if self._standby_task is not None:
            self._standby_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._standby_task
        await self.replicator.stop()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self._server is not None:
            self._server.close()
        # End open connections ourselves (their reads see EOF), so no handler is cancelled mid-read.
        for writer in list(self._open):
            writer.close()
        tasks = [t for t in self._open.values() if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self.store is not None:
            if self.failure is None:
                self._flush()
                self.store.compact(self.registry.snapshot())
            self.store.close()

    def _say(self, text: str) -> None:
        if self.log is not None:
            print(text, file=self.log, flush=True)

    def _flush(self) -> None:
        """Persist pending records (fsync), then log events; call before sending any reply."""
        records = self.registry.records_to_persist()
        if self.store is not None and records:
            self.store.append(records)
            if self.store.records_since_compaction >= self.compact_every:
                self.store.compact(self.registry.snapshot())
        if records:
            self.replicator.push()  # durable here first, then to the standbys (REPL-003)
        while (ev := self.registry.next_event()) is not None:
            if isinstance(ev, NodeRegistered):
                self._say(f"registered node {ev.node_id} at {ev.listen_addr}" + ("" if ev.new else " (known key)"))
            elif isinstance(ev, NodeDeregistered):
                self._say(f"deregistered node {ev.node_id}")
            elif isinstance(ev, NodeReaped):
                self._say(f"reaped node {ev.node_id} (silent {ev.silent_for:.0f} s)")
            elif isinstance(ev, InputRejected):
                self._say(f"refused from {ev.source}: {ev.error}")

    async def _commit_soon(self) -> None:
        """Group commit: one fsync for every request that arrived in this turn of the event loop.

        The first connection with requests schedules :meth:`_commit`; connections served in the same turn
        only add their requests.  The commit persists (fsync) and then writes every pending reply to the
        connection it belongs to, so no reply leaves before what it acknowledges is on disk.
        """
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._do_commit, self._commit)
        await asyncio.shield(self._commit)

    def _do_commit(self, done: asyncio.Future[None]) -> None:
        self._commit = None
        try:
            self._flush()  # durable before any reply goes out
            for reply in self.registry.replies_to_send():
                writer = reply.tag
                if not isinstance(writer, asyncio.StreamWriter) or writer.is_closing():
                    continue
                try:
                    wire = encode_registry_message(reply.message)
                except PilotError as exc:
                    wire = encode_registry_message({"type": "error", "error": f"reply not sent: {exc.rule}"})
                writer.write(wire)
        except Exception as exc:  # a failed write/fsync is never acknowledged; memory is now ahead of disk
            self.registry.replies_to_send()
            done.set_exception(ConnectionAbortedError(f"store write failed: {exc}"))
            self._die(exc)
            return
        done.set_result(None)
        self.commits += 1

    def _die(self, exc: BaseException) -> None:
        """Stop serving after a store failure: what memory holds beyond the disk was never acknowledged."""
        if self.failure is None:
            self.failure = exc
            self._say(f"store write failed, stopping: {exc}")
            if self._server is not None:
                self._server.close()
            for writer in list(self._open):
                writer.close()
            self.failed.set()

    async def _timers(self) -> None:
        while True:
            due = self.registry.get_timer()
            await asyncio.sleep(max(0.05, min(60.0, (due - self.clock()) if due is not None else 60.0)))
            self.registry.handle_timer(self.clock())
            try:
                self._flush()
            except Exception as exc:
                self._die(exc)
                return

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else None
        if self.connections >= self.max_connections:
            self.refused_connections += 1
            writer.close()
            return
        self.connections += 1
        self._open[writer] = asyncio.current_task()
        self._say(f"connection from {source}")
        frames = RegistryReader()
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
                except TimeoutError:
                    break
                if not data:
                    break
                try:
                    frames.feed(data)
                    messages = frames.messages()
                except PilotError as exc:
                    # Unframeable input (over 64 KiB, not JSON, not an object): say why, then hang up.
                    writer.write(encode_registry_message({"type": "error", "error": exc.rule}))
                    self._say(f"closing {source}: {exc}")
                    break
                if messages and messages[0].get("type") == "subscribe_replication":
                    await self.replicator.serve(messages[0], reader, writer, source)
                    break
                for msg in messages:
                    self.registry.receive_request(msg, source, self.clock(), tag=writer)
                if messages:
                    await self._commit_soon()
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            self._open.pop(writer, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


# -- the command --------------------------------------------------------------------------------


class _Usage(Exception):
    pass


def _endpoint(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (IP literal or host name, resolved once here as the Go registry's ``net.Listen`` would, E-DF-1)."""
    from pilot_proto.daemon.cliargs import UsageError, host_port, resolve_endpoint

    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise _Usage(f"{flag}: expected HOST:PORT, got {text!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _Usage(f"{flag}: port must be a number from 0 to 65535, got {port!r}")
    try:
        return resolve_endpoint(host_port(text), flag, stream=True)
    except argparse.ArgumentTypeError as exc:
        raise _Usage(f"{flag}: {exc}") from None
    except UsageError as exc:
        raise _Usage(str(exc)) from None


def add_registry_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pilot-proto registry``: serve the registry protocol on TCP (127.0.0.1 by default)."""
    p = sub.add_parser(
        "registry",
        help="run a Pilot registry on TCP (127.0.0.1:9000 by default)",
        description="Serves register / lookup / resolve / heartbeat / hostnames / trust / networks in the Go "
        "reference's JSON framing. With --store every acknowledged change is fsynced to FILE first.",
    )
    p.add_argument("--listen", default=f"{LOOPBACK}:9000", metavar="HOST:PORT",
                   help="TCP address: an IP literal ([V6] in brackets) or a host name, resolved once at start "
                   "(port 0: any free port)")  # fmt: skip
    p.add_argument("--store", metavar="FILE", help="journal file (created if missing); without it nothing persists")
    p.add_argument("--profile", default="draft", help="draft (default) or go-interop (what Go daemons need)")
    p.add_argument(
        "--admin-token",
        default=os.environ.get("PILOT_ADMIN_TOKEN", ""),
        metavar="TOKEN",
        help="admin token for network creation and admin writes (default $PILOT_ADMIN_TOKEN, which ps "
        "cannot show; empty: no admin token is accepted)",
    )
    p.add_argument("--rate", default="100", metavar="N", help="requests per second per source host (0: no limit)")
    p.add_argument("--max-connections", default="1024", metavar="N", help="concurrent TCP connections")
    p.add_argument("--standby", metavar="HOST:PORT", help="run as a read-only standby of the primary at HOST:PORT")
    p.add_argument(
        "--replication-token",
        default=os.environ.get("PILOT_REPLICATION_TOKEN", ""),
        metavar="TOKEN",
        help="shared secret for replication (primary: enables subscriptions; default $PILOT_REPLICATION_TOKEN)",
    )
    p.add_argument("--tls", action="store_true", help="serve TLS with a fresh self-signed certificate (prints its pin)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate (clients pin its SHA-256)")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("-v", "--verbose", action="store_true", help="log registrations, refusals and connections")
    p.set_defaults(func=_registry_cmd)


def _positive(text: str, flag: str, *, zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Usage(f"{flag}: expected a number, got {text!r}") from None
    if value < 0 or (value == 0 and not zero) or value != value or value == float("inf"):
        raise _Usage(f"{flag}: must be {'zero or more' if zero else 'more than zero'}, got {text!r}")
    return value


def _registry_cmd(args: argparse.Namespace) -> int:
    try:
        host, port = _endpoint(args.listen)
        try:
            profile = Profile.parse(args.profile)
        except ValueError:
            raise _Usage(f"--profile: expected draft or go-interop, got {args.profile!r}") from None
        rate = _positive(args.rate, "--rate", zero=True)
        max_conns = _positive(args.max_connections, "--max-connections")
        if not max_conns.is_integer():
            raise _Usage(f"--max-connections: expected a whole number, got {args.max_connections!r}")
        standby = _endpoint(args.standby, "--standby") if args.standby else None
        if standby is not None and not args.replication_token:
            raise _Usage("--standby needs --replication-token (or $PILOT_REPLICATION_TOKEN)")
        tls, fingerprint = None, ""
        if bool(args.tls_cert) != bool(args.tls_key):
            raise _Usage("--tls-cert and --tls-key go together")
        if args.tls_cert:
            try:
                cert_pem, key_pem = Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes()
                tls, fingerprint = server_context(cert_pem, key_pem), tls_fingerprint(cert_pem)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise _Usage(f"--tls-cert/--tls-key: cannot load: {getattr(exc, 'strerror', None) or exc}") from None
        elif args.tls:
            cert_pem, key_pem = self_signed()
            tls, fingerprint = server_context(cert_pem, key_pem), tls_fingerprint(cert_pem)
        args.tls, args.fingerprint = tls, fingerprint
        store = None
        restored = 0
        config = RegistryConfig.for_profile(profile, admin_token=args.admin_token, rate=rate, burst=max(10 * rate, 1),
                                            standby=standby is not None)  # fmt: skip
        registry = Registry(config, now=time.time())
        if args.store:
            if Path(args.store).is_dir():
                raise _Usage(f"--store: {args.store} is a directory")
            store = Store(args.store)
            try:
                restored = registry.restore(store.load(), time.time())
            except StoreError as exc:
                raise _Usage(f"--store: {exc}") from None
            except LocalProtocolError as exc:
                raise _Usage(f"--store: {args.store}: {exc.rule}") from None
    except _Usage as exc:
        print(f"pilot-proto registry: error: {exc}", file=sys.stderr)
        return 2
    args.standby_of = standby
    return asyncio.run(_run(registry, store, host, port, int(max_conns), args, restored))


async def _run(registry: Registry, store: Store | None, host: str, port: int, max_conns: int,
               args: argparse.Namespace, restored: int) -> int:  # fmt: skip
    server = RegistryServer(registry, store, max_connections=max_conns, log=sys.stderr if args.verbose else None,
                            replication_token=args.replication_token, standby_of=args.standby_of,
                            tls=args.tls)  # fmt: skip
    try:
        bound = await server.start(host, port)
    except OSError as exc:
        print(f"pilot-proto registry: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    where = f"store {store.path} ({restored} records, {len(registry.nodes())} live nodes)" if store else "no store"
    role = f", standby of {args.standby_of[0]}:{args.standby_of[1]}" if args.standby_of else ""
    role += f", tls sha256 {args.fingerprint}" if args.tls else ""
    print(f"registry listening on {bound[0]}:{bound[1]} (profile {registry.profile.value}, {where}{role})", flush=True)
    started = time.monotonic()
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.failed.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    await server.close()
    if server.failure is not None:
        print(f"pilot-proto registry: error: store write failed, stopped: {server.failure}", file=sys.stderr)
        return 1
    print(f"registry stopped after {time.monotonic() - started:.1f} s: {registry.requests} requests, "
          f"{registry.refused} refused, {len(registry.nodes())} live nodes, "
          f"{len(registry.nodes(live_only=False))} known" + (f", store {store.path} compacted" if store else ""),
          flush=True)  # fmt: skip
    if args.verbose and registry.by_type:
        print("requests by type: " + ", ".join(f"{k} {v}" for k, v in sorted(registry.by_type.items())), flush=True)
    return 0
