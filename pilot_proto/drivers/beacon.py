"""Thin asyncio UDP drivers for the sans-IO NAT state machines.

:class:`EndpointDriver` runs any :class:`~pilot_proto.sansio.DatagramEndpoint` -- a
:class:`~pilot_proto.nat.NatNode`, a :class:`~pilot_proto.nat.PathManager` -- on one UDP socket:
the loop's monotonic clock is ``now``, ONE timer handle is kept at ``endpoint.get_timer()`` and
re-armed after every input, events are pulled after every input and handed to ``on_event`` (or
dropped).  :class:`BeaconDriver` is that for a :class:`~pilot_proto.nat.BeaconServer`.  Usage::

    beacon = await BeaconDriver.start(("127.0.0.1", 0))
    ...  # beacon.address is the bound (host, port)
    beacon.close()

    drv = await EndpointDriver.serve(nat_node, ("127.0.0.1", 0), on_event=events.append)
    nat_node.dial(peer, locator, drv.now()); drv.poke()  # after using the endpoint directly

This module also registers the ``pilot-proto beacon`` and ``pilot-proto nat-matrix`` commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import math
import signal
import sys
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from pilot_proto.drivers._socket import allow_fragmentation
from pilot_proto.nat.beacon_server import BeaconServer
from pilot_proto.nat.config import BeaconConfig
from pilot_proto.nat.events import NodeRegistered, PunchCoordinated
from pilot_proto.profile import Profile
from pilot_proto.sansio import DatagramEndpoint, Event, InputRejected
from pilot_proto.wire.beacon import Endpoint

__all__ = [
    "BeaconDriver",
    "EndpointDriver",
    "add_beacon_command",
    "add_nat_command",
    "parse_listen",
    "resolve_listen",
]

E = TypeVar("E", bound=DatagramEndpoint)


class EndpointDriver(asyncio.DatagramProtocol, Generic[E]):
    """Runs one sans-IO datagram endpoint on a UDP socket of the running loop."""

    def __init__(self, endpoint: E, on_event: Callable[[Event], None] | None = None) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.transport: asyncio.DatagramTransport | None = None
        self.datagrams_in = 0
        self.datagrams_out = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @classmethod
    async def serve(
        cls, endpoint: E, local: tuple[str, int], on_event: Callable[[Event], None] | None = None
    ) -> EndpointDriver[E]:
        """Bind ``local`` (pass 127.0.0.1 unless you mean otherwise) and serve ``endpoint`` on it."""
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(endpoint, on_event), local_addr=local)
        return proto

    @property
    def address(self) -> Endpoint:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return Endpoint(host, port)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            allow_fragmentation(sock)  # draft 13.3 (MTU-008): relayed full-MSS frames may need fragmenting
        self.poke()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams_in += 1
        self.endpoint.receive_datagram(data, Endpoint(str(addr[0]), int(addr[1])), self.now())
        self.poke()

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.: UDP is best effort
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def poke(self) -> None:
        """Pull events and datagrams and re-arm the timer (call after using the endpoint directly)."""
        while (ev := self.endpoint.next_event()) is not None:
            if self.on_event is not None:
                self.on_event(ev)
        if self.transport is None:
            return
        for dgram in self.endpoint.datagrams_to_send():
            self.datagrams_out += 1
            self.transport.sendto(dgram.data, cast(tuple[str, int], dgram.addr))
        self._arm()

    def _arm(self) -> None:
        deadline = self.endpoint.get_timer()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(self.now())
        self.poke()

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class BeaconDriver(EndpointDriver[BeaconServer]):
    """Runs one :class:`BeaconServer` on a UDP socket."""

    @classmethod
    async def start(
        cls,
        local: tuple[str, int],
        config: BeaconConfig | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> BeaconDriver:
        """Bind ``local`` and serve a fresh :class:`BeaconServer` on it."""
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(BeaconServer(config, loop.time()), on_event), local_addr=local
        )
        return proto

    @property
    def server(self) -> BeaconServer:
        return self.endpoint


# -- CLI: ``pilot-proto beacon`` and ``pilot-proto nat-matrix`` ------------------------------------------------

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9001  # the Go beacon's default


class UsageError(Exception):
    """A bad command-line value: printed as one line on stderr, exit status 2."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (127.0.0.1) -> ``(host, port)``.

    The host is an IP literal (returned normalised) or a well-formed host name, returned as given:
    :func:`resolve_listen` resolves it, once, at start (E-DF-1).  Nothing here looks a name up.
    """
    raw = text.strip()
    bracketed = raw.startswith("[")
    if bracketed:
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"--listen {text!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    elif ":" in raw:
        raise UsageError(f"--listen {text!r}: write an IPv6 address in brackets, e.g. [::1]:{DEFAULT_PORT}")
    else:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. {LOOPBACK}:{DEFAULT_PORT}")
    host = host or LOOPBACK
    if not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise UsageError(f"--listen {text!r}: the port must be a number from 0 to 65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if bracketed:
            raise UsageError(f"--listen {text!r}: only an IPv6 address goes in brackets") from None
        _check_host_name(text, host)
        return host, int(port_text)
    if bracketed and ip.version != 6:
        raise UsageError(f"--listen {text!r}: only an IPv6 address goes in brackets")
    return str(ip), int(port_text)


def _check_host_name(text: str, host: str) -> None:
    """Refuse what is neither an IP literal nor a host name (the node's and registry's rule, E-DF-1)."""
    from pilot_proto.daemon.cliargs import host_port

    try:
        host_port(f"{host}:0")
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--listen {text!r}: {exc}") from None


def resolve_listen(text: str) -> tuple[str, int]:
    """:func:`parse_listen`, then a host name resolved once, here, before the socket binds (E-DF-1).

    Only the bind address ever reaches the driver, as an IP literal; a name that does not resolve is a
    :class:`UsageError` (one line, exit status 2), as for ``node`` and ``registry``.
    """
    from pilot_proto.daemon.cliargs import UsageError as ResolveError
    from pilot_proto.daemon.cliargs import resolve_endpoint

    try:
        return resolve_endpoint(parse_listen(text), "--listen")
    except ResolveError as exc:
        raise UsageError(str(exc)) from None


def parse_duration(text: str | float | None) -> float | None:
    """A positive number of seconds (the CLI's hardening may already have made it a float)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--duration {text!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--duration {text!r}: must be a positive number of seconds")
    return value


def describe(event: Event) -> str:
    """One log line for a beacon event (``-v``)."""
    if isinstance(event, NodeRegistered):
        return f"registered node {event.node} at {event.endpoint}"
    if isinstance(event, PunchCoordinated):
        return f"punch: node {event.requester} <-> node {event.target}"
    if isinstance(event, InputRejected):
        return f"rejected {event.size} bytes from {event.source}: {event.error}"
    return repr(event)


def add_beacon_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pilot-proto beacon --listen HOST:PORT [--profile P] [--duration S] [-v]``."""
    p = sub.add_parser(
        "beacon",
        help="run a Pilot beacon (draft 9: discovery, punch coordination, relay) on UDP",
        description="Runs our BeaconServer on a UDP socket, 127.0.0.1 unless --listen names another address, "
        "until Ctrl-C (or --duration seconds), then prints a summary.",
    )
    p.add_argument(
        "--listen",
        default=f"{LOOPBACK}:{DEFAULT_PORT}",
        metavar="HOST:PORT",
        help=f"UDP bind address: an IP literal ([V6] in brackets) or a host name, resolved once at start "
        f"(default {LOOPBACK}:{DEFAULT_PORT}; port 0: any free port)",
    )
    p.add_argument("--profile", default="draft", help="draft or go-interop (relay delivery form, E-NAT-2)")
    p.add_argument("--duration", default=None, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("-v", "--verbose", action="store_true", help="log registrations, punches and rejected input")
    p.set_defaults(func=_beacon_cmd)  # fmt: skip


def _beacon_cmd(args: argparse.Namespace) -> int:
    try:
        local = resolve_listen(args.listen)
        duration = parse_duration(args.duration)
        try:
            profile = Profile.parse(args.profile)  # a Profile already when the CLI hardened the argument
        except ValueError as exc:
            raise UsageError(f"--profile: {exc}") from None
    except UsageError as exc:
        print(f"pilot-proto beacon: error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_beacon(local, profile, duration, args.verbose))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130


async def _serve_beacon(local: tuple[str, int], profile: Profile, duration: float | None, verbose: bool) -> int:
    loop = asyncio.get_running_loop()

    def log(event: Event) -> None:
        print(f"beacon: {describe(event)}", file=sys.stderr, flush=True)

    try:
        drv = await BeaconDriver.start(local, BeaconConfig.for_profile(profile), log if verbose else None)
    except OSError as exc:
        print(f"pilot-proto beacon: error: cannot listen on {local[0]}:{local[1]}: {exc.strerror or exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    stop = asyncio.Event()
    signals = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            signals.append(sig)
    t0 = loop.time()
    print(f"beacon listening on udp {drv.address} (profile {profile.value})", flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        drv.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
    st = drv.server.stats
    rejected = sum(st[k] for k in ("rate_limited", "malformed", "spoofed", "unknown_target", "unknown_dest",
                                   "too_large", "ignored"))  # fmt: skip
    print(
        f"beacon stopped after {loop.time() - t0:.1f} s: {len(drv.server.nodes)} nodes registered, "
        f"{st['discover']} discover, {st['punch']} punch, {st['relay']} relay, {rejected} rejected",
        flush=True,
    )
    return 0


def add_nat_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pilot-proto nat-matrix``: run the simulated 4 x 4 NAT matrix and print the table.

    Registered here so building the parser never imports the simulator; it loads on use.
    """
    p = sub.add_parser("nat-matrix", help="simulate every NAT pair (draft 9) and print which path each ends on")
    p.add_argument("--profile", default="draft", help="draft or go-interop")
    p.add_argument("--no-punch", action="store_true", help="dial without a punch request (control)")
    p.add_argument(
        "--nodes",
        action="store_true",
        help="run real nodes (PILA + PILS + a stream echo) instead of the stand-in tunnel",
    )
    p.set_defaults(func=_nat_matrix_cmd)  # fmt: skip


def _nat_matrix_cmd(args: argparse.Namespace) -> int:
    from pilot_proto.nat.config import NatConfig
    from pilot_proto.testing.nat import format_matrix, run_matrix

    try:
        config = NatConfig.for_profile(args.profile, use_punch=not args.no_punch)
    except ValueError as exc:
        print(f"pilot-proto nat-matrix: error: --profile: {exc}", file=sys.stderr)
        return 2
    results = run_matrix(config, nodes=args.nodes)
    punch = "without" if args.no_punch else "with"
    who = "real nodes, " if args.nodes else ""
    title = f"[{config.profile.value}] {who}{punch} punching (rows: A's NAT, dialling; cols: B's NAT)"
    print(format_matrix(results, title))
    return 0 if all(r.outcome in ("DIRECT", "RELAY") for r in results.values()) else 1
