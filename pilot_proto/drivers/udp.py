"""A thin asyncio UDP driver running one sans-IO :class:`~pilot_proto.node.Node` (draft 7: one frame per datagram).

The only I/O around the node: a datagram socket (127.0.0.1 unless the caller binds elsewhere),
``loop.time()`` as ``now`` and ONE timer handle kept at ``node.get_timer()``, re-armed after every
input.  Events are pulled from the node after each input and routed to small per-connection buffers,
so tests and tools can ``await`` them::

    drv = await NodeDriver.start(Node(1, os.urandom), ("127.0.0.1", 0))
    drv.node.add_peer(2, ("127.0.0.1", 4002))
    cid = await drv.connect(SocketAddr(Addr(0, 2), 7))
    drv.send(cid, b"hello"); data = await drv.recv(cid)
    drv.close(cid); await drv.wait_closed(cid)
    drv.shutdown()

The driver pops ``DataReceived`` as soon as it arrives (freeing receive window) and keeps the bytes
in an unbounded per-connection buffer: fine for tests and the echo service, not a flow-controlled API.
``echo_ports`` turns listening ports into echo services (data is written back, FIN answered by close).

:class:`BackgroundNode` runs a driver on its own event loop in a daemon thread, for blocking test
code (e.g. :class:`pilot_proto.testing.scripted_peer.ScriptedPeer`) that needs a live node to talk to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pilot_proto.drivers._socket import allow_fragmentation
from pilot_proto.node import Node, NodeEvent
from pilot_proto.stream import CloseReason
from pilot_proto.stream import events as sev
from pilot_proto.tunnel import KeyEstablished
from pilot_proto.wire.address import Addr, SocketAddr

__all__ = ["BackgroundNode", "ConnState", "NodeDriver", "add_node_command"]

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT = 5.0
_RCVBUF = 4 << 20


@dataclass
class ConnState:
    """What the driver has seen of one connection."""

    data: bytearray = field(default_factory=bytearray)
    connected: bool = False
    ended: bool = False  # peer FIN seen
    closed: CloseReason | None = None
    reset: bool = False
    echo: bool = False


class NodeDriver(asyncio.DatagramProtocol):
    """Runs one :class:`Node` on a UDP socket of the running asyncio loop."""

    def __init__(self, node: Node, echo_ports: Iterable[int] = ()) -> None:
        self.node = node
        self.echo_ports = frozenset(echo_ports)
        for port in self.echo_ports:
            node.listen(port)
        self.transport: asyncio.DatagramTransport | None = None
        self.conns: dict[int, ConnState] = {}
        self.accepted: deque[int] = deque()
        self.notices: list[NodeEvent] = []  # tunnel notices and datagram/ping/control events, in order
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._changed: asyncio.Event | None = None

    @classmethod
    async def start(
        cls, node: Node, local: tuple[str, int] = (LOOPBACK, 0), echo_ports: Iterable[int] = (), **options: Any
    ) -> NodeDriver:
        """Bind ``local`` (127.0.0.1, ephemeral port by default) and start serving ``node``.

        ``options`` go to the constructor.
        """
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(node, echo_ports, **options), local_addr=local)
        return proto

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- asyncio.DatagramProtocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            allow_fragmentation(sock)  # draft 13.3: no DF bit, so full-MSS frames may fragment (MTU-008)
            with contextlib.suppress(OSError):  # the kernel default still works, with more loss under bursts
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self._changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams_received += 1
        self.bytes_received += len(data)
        self.node.receive_datagram(data, (str(addr[0]), int(addr[1])), self.now())
        self._after_input()

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.: UDP is best effort
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def shutdown(self) -> None:
        """Stop the timer and close the socket (connections are simply dropped)."""
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    # -- the sans-IO loop -----------------------------------------------------------------------------

    def _after_input(self) -> None:
        self._dispatch()
        self._flush()
        self._arm()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.node.handle_timer(self.now())
        self._after_input()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data, addr in self.node.datagrams_to_send():
            self.datagrams_sent += 1
            self.bytes_sent += len(data)
            self.transport.sendto(data, addr)  # type: ignore[arg-type]

    def _arm(self) -> None:
        deadline = self.node.get_timer()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None and self.transport is not None and not self.transport.is_closing():
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _dispatch(self) -> None:
        node = self.node
        changed = False
        while (ev := node.next_event()) is not None:
            changed = True
            if isinstance(ev, sev.DataReceived):
                st = self._conn(ev.conn_id)
                if st.echo:
                    node.send(ev.conn_id, ev.data, self.now())
                else:
                    st.data += ev.data
            elif isinstance(ev, sev.ConnectionRequested):
                st = self._conn(ev.conn_id)
                st.echo = ev.local_port in self.echo_ports
                if not st.echo:
                    self.accepted.append(ev.conn_id)
            elif isinstance(ev, sev.Connected):
                self._conn(ev.conn_id).connected = True
            elif isinstance(ev, sev.StreamEnded):
                st = self._conn(ev.conn_id)
                st.ended = True
                if st.echo:
                    node.close(ev.conn_id, self.now())
            elif isinstance(ev, sev.Reset):
                self._conn(ev.conn_id).reset = True
            elif isinstance(ev, sev.Closed):
                self._conn(ev.conn_id).closed = ev.reason
            else:
                self.notices.append(ev)
        if changed and self._changed is not None:
            self._changed.set()

    def _conn(self, cid: int) -> ConnState:
        st = self.conns.get(cid)
        if st is None:
            st = self.conns[cid] = ConnState()
        return st

    async def _until(self, pred: object, timeout: float, what: str) -> None:
        """Wait until ``pred()`` holds, re-checking after every batch of events; TimeoutError names ``what``."""
        assert callable(pred) and self._changed is not None
        changed = self._changed

        async def wait() -> None:
            while not pred():
                changed.clear()
                await changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None

    # -- application helpers (all bounded by timeouts) -------------------------------------------------

    def _input(self) -> None:
        """After an application call: pull events, send what the node queued, re-arm the timer."""
        self._after_input()

    async def wait_key(self, peer: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait for the tunnel to ``peer`` to be keyed."""
        await self._until(
            lambda: any(isinstance(e, KeyEstablished) and e.peer == peer for e in self.notices),
            timeout,
            f"a tunnel key with node {peer}",
        )

    async def connect(self, remote: SocketAddr, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Dial ``remote`` and wait for ESTABLISHED; ConnectionError if it is reset or times out."""
        cid = self.node.connect(remote, self.now())
        st = self._conn(cid)
        self._input()
        await self._until(lambda: st.connected or st.closed is not None, timeout, f"connect to {remote}")
        if not st.connected:
            raise ConnectionError(f"connect to {remote} failed: {st.closed}")
        return cid

    async def accept(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Next connection that reached a (non-echo) listening port."""
        await self._until(lambda: bool(self.accepted), timeout, "an incoming connection")
        return self.accepted.popleft()

    def send(self, cid: int, data: bytes | bytearray | memoryview) -> None:
        self.node.send(cid, data, self.now())
        self._input()

    def close(self, cid: int) -> None:
        self.node.close(cid, self.now())
        self._input()

    async def recv(self, cid: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Whatever has arrived (at least one byte), or ``b""`` once the peer ended the stream."""
        st = self._conn(cid)
        await self._until(lambda: bool(st.data) or st.ended or st.closed is not None, timeout, f"data on {cid}")
        out = bytes(st.data)
        st.data.clear()
        return out

    async def recv_exactly(self, cid: int, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        st = self._conn(cid)
        await self._until(lambda: len(st.data) >= n or st.closed is not None, timeout, f"{n} bytes on {cid}")
        if len(st.data) < n:
            raise ConnectionError(f"connection {cid} closed ({st.closed}) after {len(st.data)} of {n} bytes")
        out = bytes(st.data[:n])
        del st.data[:n]
        return out

    async def wait_ended(self, cid: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        st = self._conn(cid)
        await self._until(lambda: st.ended or st.closed is not None, timeout, f"peer FIN on {cid}")

    async def wait_closed(self, cid: int, timeout: float = DEFAULT_TIMEOUT) -> CloseReason:
        st = self._conn(cid)
        await self._until(lambda: st.closed is not None, timeout, f"close of {cid}")
        assert st.closed is not None
        return st.closed

    async def ping(self, dst: Addr, payload: bytes = b"", timeout: float = DEFAULT_TIMEOUT) -> sev.PingReply:
        """Control ping to port 0 of ``dst``; returns the matching ``PingReply``."""
        seq = self.node.ping(dst, self.now(), payload)
        self._input()

        def reply() -> sev.PingReply | None:
            for e in self.notices:
                if isinstance(e, sev.PingReply) and e.seq == seq and e.src.node == dst.node:
                    return e
            return None

        await self._until(lambda: reply() is not None, timeout, f"ping reply from {dst}")
        found = reply()
        assert found is not None
        return found


class BackgroundNode:
    """A :class:`NodeDriver` on its own asyncio loop in a daemon thread (127.0.0.1 by default).

    For blocking test code: ``call(fn, *args)`` runs ``fn`` on the loop thread and returns its result,
    ``run(coro)`` runs a coroutine there; both wait at most ``timeout`` seconds.  ``stop()`` (or
    leaving the ``with`` block) shuts the driver down and joins the thread::

        with BackgroundNode(Node(2, os.urandom), echo_ports=[7]) as bg:
            peer = ScriptedPeer(1, bg.address)
            ...
            notices = bg.call(lambda: list(bg.driver.notices))
    """

    def __init__(
        self,
        node: Node,
        local: tuple[str, int] = (LOOPBACK, 0),
        echo_ports: Iterable[int] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        **driver_options: Any,
    ) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"pilot-node-{node.node_id}", daemon=True)
        self._thread.start()
        try:
            self.driver: NodeDriver = self.run(NodeDriver.start(node, local, echo_ports, **driver_options))
        except BaseException:
            self._halt()
            raise

    @property
    def address(self) -> tuple[str, int]:
        return self.driver.address

    @property
    def node(self) -> Node:
        return self.driver.node

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the node's loop and wait for its result (TimeoutError after ``timeout``)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(self.timeout if timeout is None else timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run the plain function ``fn(*args)`` on the node's loop thread (the driver is not thread-safe)."""

        async def invoke() -> T:
            return fn(*args)

        return self.run(invoke(), timeout)

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self.call(self.driver.shutdown, timeout=2.0)
        self._halt()

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> BackgroundNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- CLI: ``pilot-proto node`` ------------------------------------------------------------------------------


def add_node_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pilot-proto node``: run one node over UDP for a bounded time (loopback unless told otherwise)."""
    p = sub.add_parser(
        "node",
        help="run a Pilot node over UDP (127.0.0.1 by default) for --duration seconds",
        description="Runs a Node (tunnel + session layers) on a UDP socket. Without a registry the node has no "
        "identity and keys tunnels with anonymous PILK. Binds 127.0.0.1 unless --listen names another address.",
    )
    p.add_argument("--listen", default=f"{LOOPBACK}:0", metavar="HOST:PORT", help="UDP bind address")
    p.add_argument("--node-id", type=int, required=True, help="this node's ID")
    p.add_argument("--network", type=int, default=0, help="network ID of the virtual address")
    p.add_argument("--profile", default="draft", help="draft or go-interop")
    p.add_argument("--echo", action="store_true", help="serve an echo service on port 7")
    p.add_argument("--peer", action="append", default=[], metavar="NODE=HOST:PORT", help="a direct peer (repeatable)")
    p.add_argument("--ping", type=int, action="append", default=[], metavar="NODE", help="ping a peer at start")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    p.set_defaults(func=_node_cmd)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _node_cmd(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    node = Node(args.node_id, os.urandom, network=args.network, profile=args.profile)
    for spec in args.peer:
        node_id, _, endpoint = spec.partition("=")
        node.add_peer(int(node_id), _endpoint(endpoint))
    drv = await NodeDriver.start(node, _endpoint(args.listen), echo_ports=[7] if args.echo else [])
    host, port = drv.address
    echo = ", echo on port 7" if args.echo else ""
    print(
        f"node {node.addr} on udp {host}:{port} (profile {node.profile.value}{echo}) for {args.duration} s", flush=True
    )
    status = 0
    t0 = drv.now()
    try:
        for target in args.ping:
            try:
                reply = await drv.ping(Addr(args.network, target), b"pilot-proto", timeout=min(5.0, args.duration))
                print(f"ping {reply.src}: seq {reply.seq} rtt {reply.rtt * 1000:.2f} ms", flush=True)
            except TimeoutError as exc:
                print(f"ping {target}: {exc}", flush=True)
                status = 1
        await asyncio.sleep(max(0.0, args.duration - (drv.now() - t0)))
    finally:
        drv.shutdown()
    conns = sum(1 for st in drv.conns.values() if st.connected)
    print(
        f"done: {drv.datagrams_received} datagrams in, {drv.datagrams_sent} out, {conns} connections, "
        f"{sum(1 for e in drv.notices if isinstance(e, KeyEstablished))} tunnel keys",
        flush=True,
    )
    return status
